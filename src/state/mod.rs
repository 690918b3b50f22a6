//! The local state (docs/ARCHITECTURE.md, "State and outbox"): a redb file holding the
//! last derived record per VM and a durable outbox of pending deltas, mirrored in memory
//! so that a no-op event costs one comparison and no I/O at all.

mod commands;
mod file;
mod handle;
pub mod owner;
mod snapshot;
mod store;

use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::columns::ColumnSet;
use crate::model::{Observation, SourceVersions, Timestamp, VmKey, VmRecord};

pub use handle::StateHandle;
pub use owner::{OwnerSettings, spawn};
pub use snapshot::Snapshot;
pub use store::{IngestReport, ManagedChange, OpenReport, Store, StoreOptions, known_columns};

/// The redb file layout version; a file with another version is moved aside and rebuilt.
pub const SCHEMA_VERSION: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening {path}: creating {dir}: {source}")]
    CreateDir {
        path: String,
        dir: String,
        source: std::io::Error,
    },
    #[error("opening {path}: {source}")]
    OpenIo {
        path: String,
        source: std::io::Error,
    },
    /// Unreadable even after it was moved aside and created anew.
    #[error("opening {path}: {problem}")]
    Unreadable { path: String, problem: String },
    #[error("{path} is in use by another process (is another virtsync running?)")]
    Locked { path: String },
    #[error("moving the unreadable state file {path} aside: {source}")]
    MoveAside {
        path: String,
        source: std::io::Error,
    },
    #[error("redb {step}: {source}")]
    Redb {
        step: &'static str,
        source: redb::Error,
    },
    #[error("encoding {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("the state file is closed after an I/O error and not reopened yet")]
    Closed,
    #[error("starting the state owner thread: {0}")]
    Start(#[source] std::io::Error),
}

impl StoreError {
    /// redb wants to be closed and reopened after an I/O error (e.g. a full disk).
    pub fn needs_reopen(&self) -> bool {
        match self {
            StoreError::Redb { source, .. } => matches!(
                source,
                redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
            ),
            StoreError::Closed => true,
            _ => false,
        }
    }
}

pub(crate) fn redb_err<E: Into<redb::Error>>(step: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Redb {
        step,
        source: e.into(),
    }
}

/// What a source hands to the state writer, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateEvent {
    /// A derived record (stored when it differs from the last one).
    Observed(Arc<Observation>),
    /// A record seen while this daemon takes over the cluster role: stored like
    /// `Observed`, but not queued for writing. The anti-entropy pass that follows the
    /// takeover (`ResyncAfterThis`) writes only the rows PostgreSQL has different: a
    /// takeover must not rewrite the rows the previous holder wrote (every row for the
    /// VMs new to this daemon, the status of its own).
    Adopted(Arc<Observation>),
    /// The VM is no longer this daemon's to handle (e.g. its VMI moved to another host):
    /// its record and pending delta are dropped, nothing is written.
    Forget(VmKey),
    /// Asks for an anti-entropy pass once everything before this event is stored (a new
    /// cluster-role holder compares with PostgreSQL using its fresh records).
    ResyncAfterThis,
}

impl From<Observation> for StateEvent {
    fn from(obs: Observation) -> Self {
        StateEvent::Observed(Arc::new(obs))
    }
}

/// What is kept per VM: the last derived record and the source versions behind it
/// (read through `Deref`), and when its runtime details last changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredVm {
    /// The source's last observation itself, shared with the tracker (one copy per VM in
    /// memory; BENCHMARKS.md, memory). Its `runtime_details.vmi_updated_at` is `None`.
    pub obs: Arc<Observation>,
    /// Bookkeeping, not derived: set by the store when a runtime column changed.
    pub vmi_updated_at: Option<Timestamp>,
}

impl Deref for StoredVm {
    type Target = Observation;
    fn deref(&self) -> &Observation {
        &self.obs
    }
}

impl AsRef<StoredVm> for StoredVm {
    fn as_ref(&self) -> &StoredVm {
        self
    }
}

impl StoredVm {
    /// The record with its bookkeeping: what is written to PostgreSQL and shown.
    pub fn full_record(&self) -> VmRecord {
        let mut record = self.obs.record.clone();
        if let Some(rt) = record.runtime_details.as_mut() {
            if rt.vmi_updated_at != self.vmi_updated_at {
                Arc::make_mut(rt).vmi_updated_at = self.vmi_updated_at;
            }
        }
        record
    }

    /// The state file's encoding (unchanged since the first version: the timestamp sits
    /// in the record's runtime details).
    pub(crate) fn to_wire(&self) -> StoredWire {
        StoredWire {
            record: self.full_record(),
            versions: self.obs.versions.clone(),
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct StoredWire {
    pub record: VmRecord,
    pub versions: SourceVersions,
}

impl From<StoredWire> for StoredVm {
    fn from(mut wire: StoredWire) -> StoredVm {
        let vmi_updated_at = wire
            .record
            .runtime_details
            .as_mut()
            .and_then(|rt| Arc::make_mut(rt).vmi_updated_at.take());
        StoredVm {
            obs: Arc::new(Observation {
                record: wire.record,
                versions: wire.versions,
            }),
            vmi_updated_at,
        }
    }
}

/// A pending delta: which columns of one row still have to be written. The values are
/// the stored record's, so a later change simply widens the set (latest value wins).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Changes on every merge; the flusher deletes the entry only if it is unchanged.
    pub seq: u64,
    /// Position in the flush order: set once, so a busy VM cannot starve the others.
    pub first_seq: u64,
    pub first_enqueued: Timestamp,
    pub columns: ColumnSet,
    /// Set when PostgreSQL refused the delta; a parked entry is not retried until it
    /// changes or an operator retries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked: Option<String>,
}

/// One delta handed to the sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingDelta {
    pub key: VmKey,
    pub seq: u64,
    pub columns: ColumnSet,
    pub record: VmRecord,
    pub versions: SourceVersions,
    /// When the first change still in this delta was stored (event → commit latency).
    pub enqueued_at: Timestamp,
}

/// What became of a delta the sink tried to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Committed in PostgreSQL.
    Applied,
    /// The row exists but newer source data is already there (fence); nothing to do.
    FencedOut,
    /// No live row (deleted or soft-deleted): the VM is no longer managed.
    RowMissing,
    /// PostgreSQL or validation refused it; kept with the reason.
    Parked(String),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub pending: usize,
    pub parked: usize,
    pub oldest_enqueued: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckReport {
    pub deleted: usize,
    pub kept_changed: usize,
    pub parked: usize,
    pub unmanaged: usize,
}
