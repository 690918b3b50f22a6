//! Write-behind: the in-memory mirror is the state, the file its copy. A change marks
//! its keys here; [`Store::sync`] writes the mirror's current rows of every marked key
//! in one durable transaction, at most `sync_interval` after the first change (or at
//! once when too many wait, or when the interval is zero), and at close.
//!
//! A crash loses at most that interval of the file, as unsynced commits did before:
//! the relist after the restart derives the records again. What is gained: a change
//! acknowledged by PostgreSQL before the next write never touches the outbox table,
//! each record is written once per interval however often it changed, and one commit
//! serves every change of the interval. After a failed write the marks stay, so the
//! reopened file is brought up to the mirror by the next attempt.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::{Store, StoreError, encode, redb_err};
use crate::failpoint;
use crate::model::VmKey;
use crate::state::file::{MANAGED, META, META_NEXT_SEQ, OUTBOX, VM_RECORDS};

/// Keys waiting beyond this are written at once: bounds a transaction's memory (the
/// first list after a start marks every VM).
pub(super) const MAX_UNWRITTEN: usize = 1024;

/// What the file does not have yet, per table.
#[derive(Default)]
pub(super) struct Unwritten {
    records: HashSet<VmKey>,
    outbox: HashSet<VmKey>,
    managed: HashSet<VmKey>,
    next_seq: bool,
    /// When the oldest unwritten change was made.
    since: Option<Instant>,
}

/// Which table a change touched.
#[derive(Clone, Copy)]
pub(super) enum Table {
    Records,
    Outbox,
    Managed,
}

impl Unwritten {
    pub(super) fn mark(&mut self, table: Table, key: &VmKey) {
        let set = match table {
            Table::Records => &mut self.records,
            Table::Outbox => &mut self.outbox,
            Table::Managed => &mut self.managed,
        };
        if !set.contains(key) {
            set.insert(key.clone());
        }
        self.since.get_or_insert_with(Instant::now);
    }

    pub(super) fn mark_next_seq(&mut self) {
        self.next_seq = true;
        self.since.get_or_insert_with(Instant::now);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.since.is_none()
    }

    fn len(&self) -> usize {
        self.records.len() + self.outbox.len() + self.managed.len()
    }

    /// How long until the file must be written (`None`: it has everything).
    pub(super) fn due(&self, interval: Duration) -> Option<Duration> {
        let since = self.since?;
        if self.len() >= MAX_UNWRITTEN {
            return Some(Duration::ZERO);
        }
        Some(interval.saturating_sub(since.elapsed()))
    }
}

/// Sorted, so each B-tree page is visited once per write.
fn sorted(keys: &HashSet<VmKey>) -> Vec<(String, &VmKey)> {
    let mut keys: Vec<(String, &VmKey)> = keys.iter().map(|k| (k.to_string(), k)).collect();
    keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    keys
}

impl Store {
    /// Writes every unwritten change in one durable transaction. Returns whether there
    /// was anything to write.
    pub fn sync(&mut self) -> Result<bool, StoreError> {
        if self.unwritten.is_empty() {
            return Ok(false);
        }
        let txn = self.begin()?;
        let mut outbox_in_file = Vec::new();
        {
            let mut table = txn.open_table(VM_RECORDS).map_err(redb_err("open"))?;
            for (k, key) in sorted(&self.unwritten.records) {
                match self.records.get(key) {
                    Some(stored) => {
                        let bytes = encode("record", &stored.to_wire())?;
                        table
                            .insert(k.as_str(), bytes.as_slice())
                            .map_err(redb_err("write record"))?;
                    }
                    None => {
                        table
                            .remove(k.as_str())
                            .map_err(redb_err("remove record"))?;
                    }
                }
            }
            let mut table = txn.open_table(OUTBOX).map_err(redb_err("open"))?;
            for (k, key) in sorted(&self.unwritten.outbox) {
                match self.outbox.get(key) {
                    Some(entry) => {
                        let bytes = encode("outbox entry", entry)?;
                        table
                            .insert(k.as_str(), bytes.as_slice())
                            .map_err(redb_err("write outbox"))?;
                        outbox_in_file.push((key.clone(), true));
                    }
                    // Written and acknowledged between two writes: never in the file.
                    None if !self.outbox_in_file.contains(key) => {}
                    None => {
                        table
                            .remove(k.as_str())
                            .map_err(redb_err("remove outbox"))?;
                        outbox_in_file.push((key.clone(), false));
                    }
                }
            }
            let mut table = txn.open_table(MANAGED).map_err(redb_err("open"))?;
            for (k, key) in sorted(&self.unwritten.managed) {
                match self.managed.get(key) {
                    Some(id) => table.insert(k.as_str(), id.as_str()).map(drop),
                    None => table.remove(k.as_str()).map(drop),
                }
                .map_err(redb_err("write managed"))?;
            }
            if self.unwritten.next_seq {
                let mut meta = txn.open_table(META).map_err(redb_err("open meta"))?;
                meta.insert(META_NEXT_SEQ, self.next_seq.to_string().as_str())
                    .map_err(redb_err("write meta"))?;
            }
        }
        txn.commit().map_err(redb_err("commit"))?;
        failpoint::hit("after_redb_commit");
        self.write_transactions += 1;
        self.unwritten = Unwritten::default();
        for (key, present) in outbox_in_file {
            if present {
                self.outbox_in_file.insert(key);
            } else {
                self.outbox_in_file.remove(&key);
            }
        }
        Ok(true)
    }
}
