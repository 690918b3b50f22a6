//! What the state owner can be asked: one variant per operation, each with the channel
//! its answer goes back on.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{AckReport, IngestReport, ManagedChange, Outcome, PendingDelta, StoreError};
use crate::columns::ColumnSet;
use crate::model::{HostCapabilities, Observation, Timestamp, VmKey};

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Command {
    /// Records in, as a source would hand them (`virtsync ingest`, tests).
    Ingest(Vec<Observation>, Reply<IngestReport>),
    /// Up to this many deltas, oldest first, parked ones skipped.
    NextBatch(usize, oneshot::Sender<Vec<PendingDelta>>),
    /// What PostgreSQL did with a batch.
    Ack(Vec<(VmKey, u64, Outcome)>, Reply<AckReport>),
    /// The whole table's live rows (the cluster-role holder).
    SetManaged {
        rows: HashMap<VmKey, String>,
        now: Timestamp,
        reply: Reply<ManagedChange>,
    },
    /// The live rows of `keys` only; `prune` first forgets managed keys without a record.
    SetManagedOf {
        keys: Vec<VmKey>,
        rows: HashMap<VmKey, String>,
        prune: bool,
        now: Timestamp,
        reply: Reply<ManagedChange>,
    },
    /// Keys of records whose row nobody has looked up yet, at most this many.
    Unchecked(usize, oneshot::Sender<Vec<VmKey>>),
    /// Keys of the managed records.
    ManagedRecordKeys(oneshot::Sender<Vec<VmKey>>),
    /// Columns anti-entropy found different; answers what was queued.
    EnqueueDrift {
        items: Vec<(VmKey, ColumnSet)>,
        now: Timestamp,
        reply: Reply<Vec<(VmKey, ColumnSet)>>,
    },
    RetryParked(VmKey, Reply<bool>),
    DropOutboxEntry(VmKey, Reply<bool>),
    /// A discovery's result; answers the form now current and whether it changed.
    PutCapabilities(Box<HostCapabilities>, Reply<(Arc<HostCapabilities>, bool)>),
    /// PostgreSQL holds the capabilities with this fingerprint.
    CapabilitiesWritten(String, Reply<()>),
    /// Makes every commit so far durable.
    Sync(Reply<bool>),
    /// Syncs and closes the file; the owner stops.
    Close(Reply<()>),
}
