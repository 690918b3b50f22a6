//! The outbox side of the store: handing batches to the sink, recording what
//! PostgreSQL did with them, and an operator's retry of a parked delta.

use super::{Store, is_terminal};
use crate::failpoint;
use crate::model::VmKey;
use crate::state::{AckReport, OutboxEntry, OutboxStats, Outcome, PendingDelta, StoreError};

impl Store {
    /// Up to `limit` deltas, oldest first, parked ones skipped.
    pub fn next_batch(&self, limit: usize) -> Vec<PendingDelta> {
        self.order
            .values()
            .filter_map(|key| {
                let entry = self.outbox.get(key)?;
                if entry.parked.is_some() {
                    return None;
                }
                let stored = self.records.get(key)?;
                Some(PendingDelta {
                    key: key.clone(),
                    seq: entry.seq,
                    columns: entry.columns,
                    record: stored.full_record(),
                    versions: stored.versions.clone(),
                    enqueued_at: entry.first_enqueued,
                })
            })
            .take(limit)
            .collect()
    }

    /// Records what PostgreSQL did with a batch. An entry that changed meanwhile (its seq
    /// moved on) is kept: it still has to be written.
    pub fn ack(&mut self, outcomes: &[(VmKey, u64, Outcome)]) -> Result<AckReport, StoreError> {
        let mut report = AckReport::default();
        let mut deletes = Vec::new();
        let mut parks = Vec::new();
        let mut unmanage = Vec::new();
        for (key, seq, outcome) in outcomes {
            let Some(entry) = self.outbox.get(key) else {
                continue;
            };
            if entry.seq != *seq {
                report.kept_changed += 1;
                if *outcome == Outcome::RowMissing {
                    unmanage.push(key.clone());
                }
                continue;
            }
            match outcome {
                Outcome::Applied => {
                    if let Some(cols) = self.fenced.get_mut(key) {
                        *cols = cols.difference(entry.columns);
                        if cols.is_empty() {
                            self.fenced.remove(key);
                        }
                    }
                    deletes.push(key.clone());
                }
                Outcome::FencedOut => {
                    let cols = self.fenced.entry(key.clone()).or_default();
                    *cols = cols.union(entry.columns);
                    deletes.push(key.clone());
                }
                Outcome::RowMissing => {
                    deletes.push(key.clone());
                    unmanage.push(key.clone());
                }
                Outcome::Parked(reason) => {
                    let mut entry = entry.clone();
                    entry.parked = Some(reason.clone());
                    parks.push((key.clone(), entry));
                }
            }
        }
        // Unmanaged: the entry goes too, whatever its seq (no row to write to).
        for key in &unmanage {
            if !deletes.contains(key) {
                deletes.push(key.clone());
            }
        }
        if deletes.is_empty() && parks.is_empty() {
            return Ok(report);
        }
        // Written (or unwritable): the last record of something gone is not kept.
        let finished: Vec<VmKey> = deletes
            .iter()
            .filter(|k| self.records.get(*k).is_some_and(|s| is_terminal(s)))
            .cloned()
            .collect();
        failpoint::hit("before_outbox_delete");
        report.deleted = deletes.len();
        report.parked = parks.len();
        report.unmanaged = unmanage.len();
        for key in &deletes {
            self.remove_entry(key);
        }
        for key in &finished {
            self.remove_record(key);
        }
        for (key, entry) in parks {
            self.insert_entry(key, entry);
        }
        for key in &unmanage {
            self.set_managed_row(key, None);
            // Looked up again before the next flush: a row replaced by the cloud API
            // (soft delete, then a new row) is found at once.
            if self.records.contains_key(key) {
                self.unchecked.insert(key.clone(), super::Arrival::Observed);
            }
        }
        Ok(report)
    }

    /// Operator action: put a parked delta back in line.
    pub fn retry_parked(&mut self, key: &VmKey) -> Result<bool, StoreError> {
        let Some(mut entry) = self.outbox.get(key).cloned() else {
            return Ok(false);
        };
        entry.parked = None;
        self.insert_entry(key.clone(), entry);
        self.write_now()?;
        Ok(true)
    }

    /// Operator action: forget a pending or parked delta (the record stays; the row is
    /// written again at the VM's next change or when anti-entropy finds it different).
    pub fn drop_outbox_entry(&mut self, key: &VmKey) -> Result<bool, StoreError> {
        if !self.outbox.contains_key(key) {
            return Ok(false);
        }
        self.remove_entry(key);
        self.write_now()?;
        Ok(true)
    }

    pub fn outbox_entry(&self, key: &VmKey) -> Option<&OutboxEntry> {
        self.outbox.get(key)
    }

    pub fn outbox_entries(&self) -> impl Iterator<Item = (&VmKey, &OutboxEntry)> {
        self.order
            .values()
            .filter_map(|k| self.outbox.get(k).map(|e| (k, e)))
    }

    /// O(1) unless parked entries lead the line.
    pub fn outbox_stats(&self) -> OutboxStats {
        OutboxStats {
            pending: self.outbox.len() - self.parked,
            parked: self.parked,
            oldest_enqueued: self
                .outbox_entries()
                .find(|(_, e)| e.parked.is_none())
                .map(|(_, e)| e.first_enqueued),
        }
    }
}
