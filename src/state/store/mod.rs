//! `Store`: the redb file plus its in-memory mirror. The mirror is the state: every
//! change is made there first and its keys marked unwritten; the file follows within
//! `sync_interval` (write-behind, see `unwritten`) and at close.
//!
//! A crash loses at most that interval of the file, which the relist after the restart
//! derives again. Rare operators' and the sink's changes (the managed set, a hand-off, a
//! retried or dropped delta, capabilities) are written at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};

mod host;
mod outbox;
#[cfg(test)]
mod persisted;
mod unwritten;

use super::file::{self, MANAGED, META, META_NEXT_SEQ, OUTBOX, VM_RECORDS};
use super::{OutboxEntry, StateEvent, StoreError, StoredVm, StoredWire, redb_err};
use crate::columns::{self, Column, ColumnSet, Group, Value};
use crate::model::{
    HostCapabilities, Observation, SourceVersions, Timestamp, VmKey, VmRecord, VmStatus,
};
use unwritten::{Table, Unwritten};

#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub path: PathBuf,
    pub cache_size: u64,
    /// Longest time a change may stay unwritten (`Duration::ZERO`: written at once).
    pub sync_interval: Duration,
    /// Columns this daemon writes (owns × schema mode); others never enter the outbox.
    pub writable: ColumnSet,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub moved_aside: Option<PathBuf>,
    pub records: usize,
    pub outbox: usize,
    pub managed: usize,
    /// Rows that could not be read and were left out (logged).
    pub skipped_rows: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Events equal to the stored record: nothing written.
    pub noop: usize,
    /// Records with an invalid namespace/name: logged, not stored.
    pub rejected: usize,
    /// Events that changed the stored record.
    pub changed: usize,
    /// Changes that created or widened an outbox entry (managed VMs only).
    pub enqueued: usize,
    /// Records dropped because another host took the VM over.
    pub forgotten: usize,
    /// A source asked for an anti-entropy pass after these events.
    pub resync_requested: bool,
    /// Records of gone VMs/VMIs dropped because nothing was left to write.
    pub dropped: usize,
    /// New records whose row nobody has looked up yet (the sink looks them up).
    pub unchecked: usize,
}

impl IngestReport {
    fn merge(&mut self, other: IngestReport) {
        self.noop += other.noop;
        self.rejected += other.rejected;
        self.changed += other.changed;
        self.enqueued += other.enqueued;
        self.forgotten += other.forgotten;
        self.resync_requested |= other.resync_requested;
        self.dropped += other.dropped;
        self.unchecked += other.unchecked;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagedChange {
    pub appeared: usize,
    pub vanished: usize,
    /// Appeared VMs we already had a record for: flushed once now.
    pub enqueued: usize,
}

/// How a record reached the store (see `StateEvent::Adopted`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arrival {
    Observed,
    Adopted,
}

pub struct Store {
    db: Option<Database>,
    options: StoreOptions,
    /// Persistent maps (structural sharing): the published snapshot is a clone that
    /// costs O(1), and the next change copies only the nodes on its path. Each record
    /// behind an `Arc` (a `StoredVm` is ~650 bytes; see the tracker's maps).
    records: imbl::HashMap<VmKey, Arc<StoredVm>>,
    outbox: imbl::HashMap<VmKey, OutboxEntry>,
    /// Outbox entries that are parked (kept here so the gauges cost O(1)).
    parked: usize,
    order: BTreeMap<u64, VmKey>,
    managed: imbl::HashMap<VmKey, String>,
    /// Records whose row has not been looked up since they appeared (or since the
    /// start, for those without a row): the sink looks these keys up next. Adopted ones
    /// (a new cluster-role holder's lists) become managed without being queued: the
    /// anti-entropy pass after the lists writes only what differs.
    unchecked: HashMap<VmKey, Arrival>,
    next_seq: u64,
    /// What the mirror has and the file not yet.
    unwritten: Unwritten,
    /// Keys with an outbox row in the file (an entry acknowledged before it was written
    /// costs the file nothing).
    outbox_in_file: HashSet<VmKey>,
    write_transactions: u64,
    reopens: u64,
    skipped_rows: usize,
    /// Columns whose last delta the fence refused: the row holds values from sources
    /// newer than that record (e.g. a write of an incarnation whose last second of state
    /// was lost). They are sent again with the next record from newer sources, even
    /// when its values equal the stored ones. In memory only: after a restart, the
    /// next anti-entropy pass finds such rows again.
    fenced: HashMap<VmKey, ColumnSet>,
    capabilities: Option<Arc<HostCapabilities>>,
    capabilities_written: Option<String>,
}

fn encode<T: serde::Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|source| StoreError::Encode { what, source })
}

fn decode<T: serde::de::DeserializeOwned>(what: &'static str, b: &[u8]) -> Result<T, String> {
    serde_json::from_slice(b).map_err(|e| format!("decoding {what}: {e}"))
}

/// The columns of a record that may be written: runtime columns (only virtsync writes
/// them, NULL = no VMI) unless the source cannot tell them, and status/legacy columns
/// only where the value is known, so an unknown value never erases what the cloud API
/// put there.
pub fn known_columns(record: &VmRecord, versions: &SourceVersions) -> ColumnSet {
    Column::ALL
        .iter()
        .copied()
        .filter(|c| match c.group() {
            Group::Runtime => !versions.runtime_unknown,
            _ => columns::value(record, *c) != Value::Null,
        })
        .collect()
}

impl Store {
    pub fn open(options: StoreOptions, now: Timestamp) -> Result<(Store, OpenReport), StoreError> {
        let now_unix = u64::try_from(now.unix_millis / 1000).unwrap_or(0);
        let (db, moved_aside) = file::open_or_rebuild(&options.path, options.cache_size, now_unix)?;
        file::initialise(&db)?;
        let mut store = Store {
            db: Some(db),
            options,
            records: imbl::HashMap::new(),
            outbox: imbl::HashMap::new(),
            parked: 0,
            order: BTreeMap::new(),
            managed: imbl::HashMap::new(),
            unchecked: HashMap::new(),
            next_seq: 1,
            unwritten: Unwritten::default(),
            outbox_in_file: HashSet::new(),
            write_transactions: 0,
            reopens: 0,
            skipped_rows: 0,
            fenced: HashMap::new(),
            capabilities: None,
            capabilities_written: None,
        };
        if let Err(problem) = store.load() {
            // Decodable by redb but not by us: same treatment as a corrupt file.
            let options = store.options.clone();
            store.close()?;
            let aside = file::move_aside(&options.path, now_unix, &problem)?;
            let (fresh, _) = Store::open(options, now)?;
            let report = OpenReport {
                moved_aside: Some(aside),
                ..OpenReport::default()
            };
            return Ok((fresh, report));
        }
        // Whether these have a row now is unknown (the managed keys are trusted until
        // a flush finds their row gone or the periodic recheck says otherwise).
        store.unchecked = store
            .records
            .keys()
            .filter(|k| !store.managed.contains_key(*k))
            .map(|k| (k.clone(), Arrival::Observed))
            .collect();
        let report = OpenReport {
            moved_aside,
            records: store.records.len(),
            outbox: store.outbox.len(),
            managed: store.managed.len(),
            skipped_rows: store.skipped_rows,
        };
        Ok((store, report))
    }

    fn db(&self) -> Result<&Database, StoreError> {
        self.db.as_ref().ok_or(StoreError::Closed)
    }

    fn load(&mut self) -> Result<(), String> {
        let db = self.db.as_ref().ok_or("closed")?;
        let read = db.begin_read().map_err(|e| e.to_string())?;
        let records = read.open_table(VM_RECORDS).map_err(|e| e.to_string())?;
        for row in records.iter().map_err(|e| e.to_string())? {
            let (k, v) = row.map_err(|e| e.to_string())?;
            let Some(key) = stored_key(k.value()) else {
                self.skipped_rows += 1;
                continue;
            };
            match decode::<StoredWire>("record", v.value()) {
                Ok(mut wire) => {
                    // The record's names share the key's text.
                    if (&wire.record.namespace, &wire.record.name) == (&key.namespace, &key.name) {
                        wire.record.namespace = key.namespace.clone();
                        wire.record.name = key.name.clone();
                    }
                    self.records.insert(key, Arc::new(StoredVm::from(wire)));
                }
                Err(problem) => self.skip(&key, &problem),
            }
        }
        let outbox = read.open_table(OUTBOX).map_err(|e| e.to_string())?;
        for row in outbox.iter().map_err(|e| e.to_string())? {
            let (k, v) = row.map_err(|e| e.to_string())?;
            let Some(key) = stored_key(k.value()) else {
                self.skipped_rows += 1;
                continue;
            };
            match decode::<OutboxEntry>("outbox entry", v.value()) {
                Ok(entry) => self.insert_entry(key, entry),
                Err(problem) => self.skip(&key, &problem),
            }
        }
        // What was read is what the file has.
        self.outbox_in_file = self.outbox.keys().cloned().collect();
        self.unwritten = Unwritten::default();
        // A delta without its record cannot be written (its values are the record's);
        // the record comes back from the sources and is then written as first seen.
        let orphans: Vec<VmKey> = self
            .outbox
            .keys()
            .filter(|k| !self.records.contains_key(*k))
            .cloned()
            .collect();
        for key in orphans {
            self.remove_entry(&key);
        }
        let managed = read.open_table(MANAGED).map_err(|e| e.to_string())?;
        for row in managed.iter().map_err(|e| e.to_string())? {
            let (k, id) = row.map_err(|e| e.to_string())?;
            if let Some(key) = stored_key(k.value()) {
                let key = self.held_key(key);
                self.managed.insert(key, id.value().to_string());
            }
        }
        let meta = read.open_table(META).map_err(|e| e.to_string())?;
        if let Some(v) = meta.get(META_NEXT_SEQ).map_err(|e| e.to_string())? {
            self.next_seq = v.value().parse().map_err(|_| "bad next_seq")?;
        }
        let max_seen = self.outbox.values().map(|e| e.seq).max().unwrap_or(0);
        self.next_seq = self.next_seq.max(max_seen + 1);
        self.load_host().map_err(|e| e.to_string())
    }

    /// One row we cannot read (e.g. written by another version) costs that row only: a
    /// record is derived again from the sources, a lost delta is found by anti-entropy.
    fn skip(&mut self, key: &VmKey, problem: &str) {
        tracing::warn!(vm = %key, problem, "skipping an unreadable row of the state file");
        self.skipped_rows += 1;
    }

    fn begin(&self) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db()?.begin_write().map_err(redb_err("begin write"))?;
        txn.set_quick_repair(true);
        Ok(txn)
    }

    /// How long until unwritten changes must be written (`Some(ZERO)`: now); `None` when
    /// the file has everything.
    pub fn sync_due(&self) -> Option<Duration> {
        self.unwritten.due(self.options.sync_interval)
    }

    /// Writes what is unwritten now: a change that must not wait for the interval.
    fn write_now(&mut self) -> Result<(), StoreError> {
        self.sync().map(drop)
    }

    /// Derived records in; changed ones replace the stored ones with their outbox entries
    /// (in memory; the file follows when due). Records equal to the stored ones cost
    /// nothing.
    pub fn ingest(
        &mut self,
        batch: &[Observation],
        now: Timestamp,
    ) -> Result<IngestReport, StoreError> {
        let refs: Vec<(Arc<Observation>, Arrival)> = batch
            .iter()
            .map(|o| (Arc::new(o.clone()), Arrival::Observed))
            .collect();
        self.ingest_refs(&refs, now)
    }

    fn ingest_refs(
        &mut self,
        batch: &[(Arc<Observation>, Arrival)],
        now: Timestamp,
    ) -> Result<IngestReport, StoreError> {
        let mut report = IngestReport::default();
        let mut new_records: HashMap<VmKey, StoredVm> = HashMap::new();
        let mut new_entries: HashMap<VmKey, OutboxEntry> = HashMap::new();
        let mut next_seq = self.next_seq;
        let mut refreshed: HashMap<VmKey, Arc<Observation>> = HashMap::new();
        let mut resent: Vec<VmKey> = Vec::new();
        let mut arrivals: HashMap<VmKey, Arrival> = HashMap::new();
        for (obs, arrival) in batch {
            let arrival = *arrival;
            let key = obs.record.key();
            if let Err(problem) = key.validate() {
                tracing::warn!(vm = %key, problem, "record rejected");
                report.rejected += 1;
                continue;
            }
            let old = new_records
                .get(&key)
                .or_else(|| self.records.get(&key).map(Arc::as_ref));
            let queue = arrival == Arrival::Observed;
            let mut changed = match old {
                None => known_columns(&obs.record, &obs.versions),
                Some(old) => {
                    let mut changed = columns::diff(Some(&old.record), &obs.record);
                    // Runtime columns this daemon could not tell before and can now
                    // (e.g. cleared): the records alike, the columns still to write.
                    if old.versions.runtime_unknown && !obs.versions.runtime_unknown {
                        changed = changed.union(runtime_columns());
                    }
                    changed
                }
            };
            // Refused by the fence before, now from newer sources: sent again.
            let resend = match (queue, old, self.fenced.get(&key)) {
                (true, Some(old), Some(cols)) if old.versions != obs.versions => *cols,
                _ => ColumnSet::EMPTY,
            };
            if changed.is_empty() && resend.is_empty() {
                report.noop += 1;
                // Newer source versions with equal data: kept in memory only (no I/O for
                // a no-op), so that a correction queued later (anti-entropy) carries
                // them and passes the fence.
                if old.is_some_and(|o| o.versions != obs.versions) {
                    match new_records.get_mut(&key) {
                        Some(pending) => pending.obs = Arc::clone(obs),
                        None => {
                            refreshed.insert(key, Arc::clone(obs));
                        }
                    }
                }
                continue;
            }
            refreshed.remove(&key);
            let has_runtime = obs.record.runtime_details.is_some();
            // Kept from the stored record while the runtime details stay.
            let mut vmi_updated_at = old
                .filter(|o| has_runtime && o.record.runtime_details.is_some())
                .and_then(|o| o.vmi_updated_at);
            if changed.iter().any(|c| c.group() == Group::Runtime) {
                vmi_updated_at = Some(now).filter(|_| has_runtime);
                changed.insert(Column::RuntimeVmiUpdatedAt);
            }
            report.changed += 1;
            tracing::debug!(vm = %key, columns = ?changed.names(), managed = self.managed.contains_key(&key), "record changed");
            let to_write = changed
                .union(resend)
                .intersect(self.options.writable)
                .intersect(known_columns(&obs.record, &obs.versions));
            if queue && self.managed.contains_key(&key) && !to_write.is_empty() {
                let pending = new_entries.get(&key).or_else(|| self.outbox.get(&key));
                new_entries.insert(key.clone(), merge_entry(pending, to_write, next_seq, now));
                next_seq += 1;
                report.enqueued += 1;
                if !resend.is_empty() {
                    resent.push(key.clone());
                }
            }
            let stored = StoredVm {
                obs: Arc::clone(obs),
                vmi_updated_at,
            };
            // An observed change wins over an adoption of the same key.
            let seen = arrivals.entry(key.clone()).or_insert(arrival);
            if arrival == Arrival::Observed {
                *seen = Arrival::Observed;
            }
            new_records.insert(key, stored);
        }
        for (key, obs) in refreshed {
            if let Some(stored) = self.records.get_mut(&key) {
                Arc::make_mut(stored).obs = obs;
            }
        }
        // The last word about something gone, with nothing left to write: not kept.
        let dropped: Vec<VmKey> = new_records
            .iter()
            .filter(|(k, stored)| {
                is_terminal(stored)
                    && !new_entries.contains_key(*k)
                    && !self.outbox.contains_key(*k)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in &dropped {
            new_records.remove(key);
        }
        if new_records.is_empty() && dropped.is_empty() {
            return Ok(report);
        }
        self.set_next_seq(next_seq);
        for key in &dropped {
            self.remove_record(key);
            self.fenced.remove(key);
            self.unchecked.remove(key);
        }
        for key in &resent {
            self.fenced.remove(key);
        }
        report.dropped = dropped.len();
        for key in new_records.keys() {
            let arrival = arrivals.get(key).copied().unwrap_or(Arrival::Observed);
            if !self.records.contains_key(key) && !self.managed.contains_key(key) {
                self.unchecked.insert(key.clone(), arrival);
                report.unchecked += 1;
            } else if let Some(waiting) = self.unchecked.get_mut(key)
                && arrival == Arrival::Observed
            {
                *waiting = Arrival::Observed;
            }
        }
        for (key, stored) in new_records {
            self.put_record(key, stored);
        }
        for (key, entry) in new_entries {
            self.insert_entry(key, entry);
        }
        Ok(report)
    }

    /// Source events in order: runs of observations are ingested together, hand-offs drop
    /// their keys (written at once).
    pub fn apply(
        &mut self,
        events: &[StateEvent],
        now: Timestamp,
    ) -> Result<IngestReport, StoreError> {
        let mut report = IngestReport::default();
        let mut run: Vec<(Arc<Observation>, Arrival)> = Vec::new();
        for event in events {
            match event {
                StateEvent::Observed(obs) => run.push((Arc::clone(obs), Arrival::Observed)),
                StateEvent::Adopted(obs) => run.push((Arc::clone(obs), Arrival::Adopted)),
                StateEvent::Forget(key) => {
                    report.merge(self.ingest_refs(&run, now)?);
                    run.clear();
                    report.forgotten += usize::from(self.forget(key)?);
                }
                StateEvent::ResyncAfterThis => report.resync_requested = true,
            }
        }
        report.merge(self.ingest_refs(&run, now)?);
        Ok(report)
    }

    /// Drops a VM's record and pending delta (hand-off to another host). Returns whether
    /// there was anything to drop.
    pub fn forget(&mut self, key: &VmKey) -> Result<bool, StoreError> {
        if !self.records.contains_key(key) && !self.outbox.contains_key(key) {
            return Ok(false);
        }
        // Written at once: a record of a VM that is another host's now must not come
        // back with the file after a crash.
        self.remove_record(key);
        self.unchecked.remove(key);
        self.remove_entry(key);
        self.write_now()?;
        Ok(true)
    }

    /// Replaces the set of VMs that have a live row (key → row id) with what a read of
    /// the whole table found. VMs whose row appeared, or was replaced by one with another
    /// id, are flushed once (their known columns); pending deltas of VMs whose row
    /// vanished are dropped.
    pub fn set_managed(
        &mut self,
        rows: HashMap<VmKey, String>,
        now: Timestamp,
    ) -> Result<ManagedChange, StoreError> {
        let vanished: Vec<VmKey> = self
            .managed
            .keys()
            .filter(|k| !rows.contains_key(*k))
            .cloned()
            .collect();
        let quiet = std::mem::take(&mut self.unchecked)
            .into_iter()
            .filter(|(_, arrival)| *arrival == Arrival::Adopted)
            .map(|(key, _)| key)
            .collect();
        self.apply_managed(rows, vanished, &quiet, now)
    }

    /// As [`Store::set_managed`], for a lookup of the `looked_up` keys only: the managed
    /// state of every other key stays as it is.
    pub fn set_managed_of(
        &mut self,
        looked_up: &[VmKey],
        rows: HashMap<VmKey, String>,
        now: Timestamp,
    ) -> Result<ManagedChange, StoreError> {
        let vanished: Vec<VmKey> = looked_up
            .iter()
            .filter(|k| self.managed.contains_key(*k) && !rows.contains_key(*k))
            .cloned()
            .collect();
        let quiet = looked_up
            .iter()
            .filter(|key| self.unchecked.remove(*key) == Some(Arrival::Adopted))
            .cloned()
            .collect();
        self.apply_managed(rows, vanished, &quiet, now)
    }

    /// Keys of records whose row nobody has looked up yet, at most `max`. They stay
    /// unchecked until [`Store::set_managed_of`] reports the lookup.
    pub fn unchecked(&self, max: usize) -> Vec<VmKey> {
        self.unchecked.keys().take(max).cloned().collect()
    }

    pub fn unchecked_count(&self) -> usize {
        self.unchecked.len()
    }

    /// The keys of every record (what a daemon that reads only its own rows looks up).
    pub fn record_keys(&self) -> Vec<VmKey> {
        self.records.keys().cloned().collect()
    }

    /// The keys of the managed records (a daemon's own anti-entropy pass).
    pub fn managed_record_keys(&self) -> Vec<VmKey> {
        self.managed
            .keys()
            .filter(|k| self.records.contains_key(*k))
            .cloned()
            .collect()
    }

    /// Forgets the managed keys that have no record (a state file from a version that
    /// kept every row of the table); returns how many.
    pub fn prune_managed_without_records(&mut self, now: Timestamp) -> Result<usize, StoreError> {
        let orphans: Vec<VmKey> = self
            .managed
            .keys()
            .filter(|k| !self.records.contains_key(*k))
            .cloned()
            .collect();
        if orphans.is_empty() {
            return Ok(0);
        }
        self.apply_managed(HashMap::new(), orphans, &HashSet::new(), now)
            .map(|change| change.vanished)
    }

    /// Appeared rows are flushed once (their record's known columns), except the
    /// `quiet` keys.
    fn apply_managed(
        &mut self,
        rows: HashMap<VmKey, String>,
        vanished: Vec<VmKey>,
        quiet: &HashSet<VmKey>,
        now: Timestamp,
    ) -> Result<ManagedChange, StoreError> {
        let appeared: Vec<(VmKey, String)> = rows
            .iter()
            .filter(|(k, id)| self.managed.get(*k) != Some(*id))
            .map(|(k, id)| (self.held_key(k.clone()), id.clone()))
            .collect();
        let mut change = ManagedChange {
            appeared: appeared.len(),
            vanished: vanished.len(),
            enqueued: 0,
        };
        if appeared.is_empty() && vanished.is_empty() {
            return Ok(change);
        }
        let first_sight = appeared.iter().filter_map(|(key, _)| {
            if quiet.contains(key) {
                return None;
            }
            let stored = self.records.get(key)?;
            Some((key.clone(), known_columns(&stored.record, &stored.versions)))
        });
        let (entries, next_seq) = self.queue(first_sight, now);
        change.enqueued = entries.len();
        self.set_next_seq(next_seq);
        for key in vanished {
            self.remove_entry(&key);
            self.set_managed_row(&key, None);
        }
        for (key, entry) in entries {
            self.insert_entry(key, entry);
        }
        for (key, id) in appeared {
            self.set_managed_row(&key, Some(id));
        }
        self.write_now()?;
        Ok(change)
    }

    /// Adds columns to the outbox (anti-entropy found them different in PostgreSQL).
    pub fn enqueue(
        &mut self,
        items: Vec<(VmKey, ColumnSet)>,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let known = items.into_iter().filter_map(|(key, cols)| {
            let stored = self.records.get(&key)?;
            let cols = cols.intersect(known_columns(&stored.record, &stored.versions));
            Some((key, cols))
        });
        let (entries, next_seq) = self.queue(known, now);
        if entries.is_empty() {
            return Ok(0);
        }
        self.set_next_seq(next_seq);
        let n = entries.len();
        for (key, entry) in entries {
            self.insert_entry(key, entry);
        }
        self.write_now()?;
        Ok(n)
    }

    /// Anti-entropy's findings: queued for managed VMs whose delta is not parked (a
    /// parked delta is known to differ; it waits for a change or an operator, not for
    /// every pass to queue it again). Returns what was queued.
    pub fn enqueue_drift(
        &mut self,
        items: Vec<(VmKey, ColumnSet)>,
        now: Timestamp,
    ) -> Result<Vec<(VmKey, ColumnSet)>, StoreError> {
        let items: Vec<(VmKey, ColumnSet)> = items
            .into_iter()
            .filter(|(key, _)| {
                self.managed.contains_key(key)
                    && self.outbox.get(key).is_none_or(|e| e.parked.is_none())
            })
            .collect();
        self.enqueue(items.clone(), now)?;
        Ok(items)
    }

    /// Outbox entries for these columns (merged into pending ones, writable columns only),
    /// with the sequence counter after them. Nothing is written yet.
    fn queue(
        &self,
        items: impl IntoIterator<Item = (VmKey, ColumnSet)>,
        now: Timestamp,
    ) -> (Vec<(VmKey, OutboxEntry)>, u64) {
        let mut next_seq = self.next_seq;
        // The same key twice (e.g. duplicate rows) merges into one entry.
        let mut entries: HashMap<VmKey, OutboxEntry> = HashMap::new();
        for (key, cols) in items {
            let cols = cols.intersect(self.options.writable);
            if cols.is_empty() {
                continue;
            }
            let pending = entries.get(&key).or_else(|| self.outbox.get(&key));
            let entry = merge_entry(pending, cols, next_seq, now);
            next_seq += 1;
            entries.insert(key, entry);
        }
        (entries.into_iter().collect(), next_seq)
    }

    fn set_next_seq(&mut self, next_seq: u64) {
        if next_seq != self.next_seq {
            self.next_seq = next_seq;
            self.unwritten.mark_next_seq();
        }
    }

    fn put_record(&mut self, key: VmKey, stored: StoredVm) {
        self.unwritten.mark(Table::Records, &key);
        self.records.insert(key, Arc::new(stored));
    }

    fn remove_record(&mut self, key: &VmKey) {
        if self.records.remove(key).is_some() {
            self.unwritten.mark(Table::Records, key);
        }
    }

    fn set_managed_row(&mut self, key: &VmKey, id: Option<String>) {
        let old = match id {
            Some(id) => self.managed.insert(key.clone(), id),
            None => self.managed.remove(key),
        };
        if old.as_deref() != self.managed.get(key).map(String::as_str) {
            self.unwritten.mark(Table::Managed, key);
        }
    }

    fn insert_entry(&mut self, key: VmKey, entry: OutboxEntry) {
        self.unwritten.mark(Table::Outbox, &key);
        let first_seq = entry.first_seq;
        self.parked += usize::from(entry.parked.is_some());
        if let Some(old) = self.outbox.insert(key.clone(), entry) {
            self.parked -= usize::from(old.parked.is_some());
            if old.first_seq != first_seq {
                self.order.remove(&old.first_seq);
            }
        }
        self.order.insert(first_seq, key);
    }

    fn remove_entry(&mut self, key: &VmKey) {
        if let Some(entry) = self.outbox.remove(key) {
            self.unwritten.mark(Table::Outbox, key);
            self.parked -= usize::from(entry.parked.is_some());
            self.order.remove(&entry.first_seq);
        }
    }

    /// The key as the records hold it (its text shared), else `key`.
    fn held_key(&self, key: VmKey) -> VmKey {
        match self.records.get_key_value(&key) {
            Some((held, _)) => held.clone(),
            None => key,
        }
    }

    pub fn record(&self, key: &VmKey) -> Option<&StoredVm> {
        self.records.get(key).map(Arc::as_ref)
    }

    pub fn records(&self) -> impl Iterator<Item = (&VmKey, &StoredVm)> {
        self.records.iter().map(|(k, v)| (k, v.as_ref()))
    }

    pub(crate) fn records_map(&self) -> &imbl::HashMap<VmKey, Arc<StoredVm>> {
        &self.records
    }

    pub(crate) fn outbox_map(&self) -> &imbl::HashMap<VmKey, OutboxEntry> {
        &self.outbox
    }

    pub(crate) fn managed_map(&self) -> &imbl::HashMap<VmKey, String> {
        &self.managed
    }

    pub fn is_managed(&self, key: &VmKey) -> bool {
        self.managed.contains_key(key)
    }

    pub fn managed_count(&self) -> usize {
        self.managed.len()
    }

    /// Write transactions committed since open (tests and metrics).
    pub fn write_transactions(&self) -> u64 {
        self.write_transactions
    }

    pub fn writable(&self) -> ColumnSet {
        self.options.writable
    }

    /// Times the file was reopened after an I/O error (reported, later a metric).
    pub fn reopens(&self) -> u64 {
        self.reopens
    }

    /// After an I/O error redb must be closed and reopened; the mirror keeps serving reads.
    pub fn reopen(&mut self) -> Result<(), StoreError> {
        self.reopens += 1;
        self.db = None;
        // The reopened file is at the last successful write: the unwritten marks still
        // say what it lacks.
        let cache = usize::try_from(self.options.cache_size).unwrap_or(usize::MAX);
        let db = Database::builder()
            .set_cache_size(cache)
            .create(&self.options.path)
            .map_err(redb_err("reopen"))?;
        self.db = Some(db);
        Ok(())
    }

    /// Writes what the file lacks and closes it.
    pub fn close(mut self) -> Result<(), StoreError> {
        if self.db.is_some() {
            self.sync()?;
        }
        match self.db.take() {
            Some(db) => db.close().map_err(redb_err("close")),
            None => Ok(()),
        }
    }
}

/// A store dropped without `close` (an early return, the last `Arc` let go elsewhere)
/// still writes what the file lacks.
impl Drop for Store {
    fn drop(&mut self) {
        if self.db.is_some() {
            if let Err(e) = self.sync() {
                tracing::error!(error = %e, "writing the state file at exit failed");
            }
        }
    }
}

/// A key read back from the file; one that is not valid (never written by this version)
/// is skipped with a log line rather than condemning the whole file.
fn stored_key(text: &str) -> Option<VmKey> {
    let key = VmKey::parse(text).filter(|k| k.validate().is_ok());
    if key.is_none() {
        tracing::warn!(vm = text, "skipping an invalid key in the state file");
    }
    key
}

fn runtime_columns() -> ColumnSet {
    Column::ALL
        .iter()
        .copied()
        .filter(|c| c.group() == Group::Runtime)
        .collect()
}

/// The last record of something gone: a deleted VM, or a stopped VMI seen by the node
/// role only. Once written (or with nothing to write) it is dropped, so the state does
/// not grow with every VM ever seen.
pub(super) fn is_terminal(stored: &StoredVm) -> bool {
    matches!(stored.record.status, None | Some(VmStatus::Deleted))
        && stored.record.runtime_details.is_none()
        && !stored.versions.runtime_unknown
}

fn merge_entry(
    pending: Option<&OutboxEntry>,
    columns: ColumnSet,
    seq: u64,
    now: Timestamp,
) -> OutboxEntry {
    match pending {
        Some(p) => OutboxEntry {
            seq,
            first_seq: p.first_seq,
            first_enqueued: p.first_enqueued,
            columns: p.columns.union(columns),
            parked: None,
        },
        None => OutboxEntry {
            seq,
            first_seq: seq,
            first_enqueued: now,
            columns,
            parked: None,
        },
    }
}
