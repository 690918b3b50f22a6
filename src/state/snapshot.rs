//! What readers see of the state: a consistent view the owner publishes after every
//! command's change, before it answers, so a reader never waits for a commit or a sync
//! and still sees its own changes. Changes from source events follow within 250 ms.

use std::sync::Arc;

use super::{OutboxEntry, OutboxStats, Store, StoredVm};
use crate::columns::ColumnSet;
use crate::model::{HostCapabilities, VmKey};

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The stored record per VM.
    pub records: imbl::HashMap<VmKey, Arc<StoredVm>>,
    /// Pending and parked deltas.
    pub outbox: imbl::HashMap<VmKey, OutboxEntry>,
    /// VMs with a live row (key → row id).
    pub managed: imbl::HashMap<VmKey, String>,
    pub stats: OutboxStats,
    /// Records whose row nobody has looked up yet.
    pub unchecked: usize,
    pub capabilities: Option<Arc<HostCapabilities>>,
    /// The fingerprint of the capabilities PostgreSQL holds.
    pub capabilities_written: Option<String>,
    /// Columns this daemon writes.
    pub writable: ColumnSet,
    /// Write transactions committed since open.
    pub write_transactions: u64,
    /// Times the file was reopened after an I/O error.
    pub reopens: u64,
    /// The state file has every change (nothing waits to be written).
    pub synced: bool,
    /// Every event sender is gone and all they sent is stored.
    pub sources_done: bool,
}

impl Snapshot {
    pub fn of(store: &Store) -> Snapshot {
        Snapshot {
            records: store.records_map().clone(),
            outbox: store.outbox_map().clone(),
            managed: store.managed_map().clone(),
            stats: store.outbox_stats(),
            unchecked: store.unchecked_count(),
            capabilities: store.capabilities().cloned(),
            capabilities_written: store.capabilities_written().map(str::to_owned),
            writable: store.writable(),
            write_transactions: store.write_transactions(),
            reopens: store.reopens(),
            synced: store.sync_due().is_none(),
            sources_done: false,
        }
    }

    pub fn record(&self, key: &VmKey) -> Option<&StoredVm> {
        self.records.get(key).map(Arc::as_ref)
    }

    pub fn records(&self) -> impl Iterator<Item = (&VmKey, &StoredVm)> {
        self.records.iter().map(|(k, v)| (k, v.as_ref()))
    }

    pub fn is_managed(&self, key: &VmKey) -> bool {
        self.managed.contains_key(key)
    }

    pub fn outbox_entry(&self, key: &VmKey) -> Option<&OutboxEntry> {
        self.outbox.get(key)
    }

    /// Outbox entries in flush order (oldest first).
    pub fn outbox_entries(&self) -> Vec<(&VmKey, &OutboxEntry)> {
        let mut entries: Vec<_> = self.outbox.iter().collect();
        entries.sort_by_key(|(_, e)| e.first_seq);
        entries
    }
}
