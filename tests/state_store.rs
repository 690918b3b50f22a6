//! The redb store on real files: change detection, coalescing, the outbox protocol, the
//! managed set, and recovery from unreadable files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;

use virtsync::columns::{Column, ColumnSet};
use virtsync::model::{
    LegacyOrigin, Observation, RuntimeDetails, SourceVersions, Timestamp, VmKey, VmRecord, VmStatus,
};
use virtsync::state::{Outcome, Store, StoreOptions};

fn options(dir: &tempfile::TempDir) -> StoreOptions {
    StoreOptions {
        path: dir.path().join("state.redb"),
        cache_size: 4 << 20,
        sync_interval: std::time::Duration::from_secs(1),
        writable: ColumnSet::all(),
    }
}

fn t(ms: i64) -> Timestamp {
    Timestamp { unix_millis: ms }
}

fn obs(name: &str, cpu: i64, ip: &str, rv: i64) -> Observation {
    let mut r = VmRecord::new(&VmKey::new("ns", name));
    r.status = Some(VmStatus::PoweredOn);
    r.cpu_count = Some(cpu);
    r.memory_mb = Some(1024);
    r.runtime_details = Some(Arc::new(RuntimeDetails {
        primary_ip: Some(ip.into()),
        phase: Some("Running".into()),
        ..RuntimeDetails::default()
    }));
    Observation {
        record: r,
        versions: SourceVersions {
            vm_resource_version: Some(rv),
            vmi_uid: Some("uid-1".into()),
            vmi_resource_version: Some(rv),
            legacy_origin: LegacyOrigin::Vmi,
            runtime_unknown: false,
        },
    }
}

fn managed(names: &[&str]) -> HashMap<VmKey, String> {
    names
        .iter()
        .map(|n| (VmKey::new("ns", *n), format!("urn:vcloud:vm:{n}")))
        .collect()
}

#[test]
fn unchanged_records_cost_no_write_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(options(&dir), t(0)).unwrap();
    store.set_managed(managed(&["a"]), t(0)).unwrap();
    let r = store.ingest(&[obs("a", 2, "10.0.0.1", 5)], t(1)).unwrap();
    assert_eq!((r.changed, r.enqueued, r.noop), (1, 1, 0));
    assert!(store.sync().unwrap(), "the change is written");
    let before = store.write_transactions();
    // Same data with a newer resourceVersion: still nothing to write.
    let r = store
        .ingest(
            &[obs("a", 2, "10.0.0.1", 6), obs("a", 2, "10.0.0.1", 7)],
            t(2),
        )
        .unwrap();
    assert_eq!((r.changed, r.noop), (0, 2));
    assert_eq!(store.sync_due(), None, "nothing waits to be written");
    assert!(!store.sync().unwrap());
    assert_eq!(store.write_transactions(), before);
}

#[test]
fn changes_coalesce_per_key_and_keep_their_place_in_line() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(options(&dir), t(0)).unwrap();
    store.set_managed(managed(&["a", "b"]), t(0)).unwrap();
    store.ingest(&[obs("a", 1, "10.0.0.1", 1)], t(1)).unwrap();
    store.ingest(&[obs("b", 1, "10.0.0.9", 2)], t(2)).unwrap();
    let first = store.next_batch(10);
    assert_eq!(first.len(), 2);
    // Ten more changes to "a", in one group: one write of its record, when due.
    let batch: Vec<_> = (2..12).map(|i| obs("a", i, "10.0.0.1", 10 + i)).collect();
    let before = store.write_transactions();
    let r = store.ingest(&batch, t(3)).unwrap();
    assert_eq!(r.changed, 10);
    assert_eq!(
        store.write_transactions(),
        before,
        "written when due, not per change"
    );
    assert!(store.sync().unwrap());
    assert_eq!(store.write_transactions(), before + 1);
    let pending = store.next_batch(10);
    assert_eq!(pending.len(), 2, "one delta per VM");
    assert_eq!(
        pending[0].key,
        VmKey::new("ns", "a"),
        "a keeps its first place"
    );
    assert_eq!(pending[0].record.cpu_count, Some(11), "latest value wins");
    assert_eq!(pending[0].versions.vm_resource_version, Some(21));
    // The first flush of "a" raced with the later changes: its entry must survive the ack.
    let acks: Vec<_> = first
        .iter()
        .map(|d| (d.key.clone(), d.seq, Outcome::Applied))
        .collect();
    let ack = store.ack(&acks).unwrap();
    assert_eq!((ack.deleted, ack.kept_changed), (1, 1));
    let left = store.next_batch(10);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key, VmKey::new("ns", "a"));
}

#[test]
fn only_changed_columns_enter_the_outbox_and_runtime_changes_stamp_the_time() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(options(&dir), t(0)).unwrap();
    store.set_managed(managed(&["a"]), t(0)).unwrap();
    store.ingest(&[obs("a", 1, "10.0.0.1", 1)], t(1)).unwrap();
    let d = store.next_batch(1).remove(0);
    store.ack(&[(d.key, d.seq, Outcome::Applied)]).unwrap();
    store.ingest(&[obs("a", 1, "10.0.0.2", 2)], t(50)).unwrap();
    let d = store.next_batch(1).remove(0);
    assert_eq!(
        d.columns.names(),
        vec!["runtime_primary_ip", "runtime_vmi_updated_at"]
    );
    assert_eq!(
        d.record.runtime_details.unwrap().vmi_updated_at,
        Some(t(50))
    );
}

#[test]
fn unmanaged_vms_keep_a_record_but_no_outbox_entry_until_their_row_appears() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(options(&dir), t(0)).unwrap();
    store.set_managed(HashMap::new(), t(0)).unwrap();
    let batch: Vec<_> = (0..1000)
        .map(|i| obs(&format!("vm-{i}"), 1, "10.0.0.1", i))
        .collect();
    let r = store.ingest(&batch, t(1)).unwrap();
    assert_eq!((r.changed, r.enqueued), (1000, 0));
    assert_eq!(store.outbox_stats().pending, 0);
    let change = store.set_managed(managed(&["vm-7"]), t(2)).unwrap();
    assert_eq!((change.appeared, change.enqueued), (1, 1));
    let d = store.next_batch(10);
    assert_eq!(d.len(), 1);
    assert!(d[0].columns.contains(Column::CpuCount));
    assert!(
        !d[0].columns.contains(Column::GuestOs),
        "unknown legacy values are not written"
    );
    // The row is replaced (same name, new id): written again like a new row.
    let d = store.next_batch(10).remove(0);
    store.ack(&[(d.key, d.seq, Outcome::Applied)]).unwrap();
    let mut replaced = managed(&["vm-7"]);
    replaced.insert(VmKey::new("ns", "vm-7"), "urn:vcloud:vm:new".into());
    let change = store.set_managed(replaced.clone(), t(3)).unwrap();
    assert_eq!((change.appeared, change.enqueued), (1, 1));
    assert_eq!(store.set_managed(replaced, t(3)).unwrap().appeared, 0);
    // The row goes away again: its pending delta is dropped.
    let change = store.set_managed(HashMap::new(), t(3)).unwrap();
    assert_eq!(change.vanished, 1);
    assert_eq!(store.outbox_stats().pending, 0);
}

#[test]
fn outbox_and_records_survive_reopen_and_row_missing_unmanages() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _) = Store::open(options(&dir), t(0)).unwrap();
        store.set_managed(managed(&["a", "b"]), t(0)).unwrap();
        store
            .ingest(
                &[obs("a", 1, "10.0.0.1", 1), obs("b", 3, "10.0.0.3", 2)],
                t(1),
            )
            .unwrap();
        store.close().unwrap();
    }
    let (mut store, report) = Store::open(options(&dir), t(5)).unwrap();
    assert_eq!((report.records, report.outbox, report.managed), (2, 2, 2));
    let batch = store.next_batch(10);
    let outcomes = vec![
        (batch[0].key.clone(), batch[0].seq, Outcome::RowMissing),
        (
            batch[1].key.clone(),
            batch[1].seq,
            Outcome::Parked("23514: check".into()),
        ),
    ];
    let ack = store.ack(&outcomes).unwrap();
    assert_eq!((ack.deleted, ack.parked, ack.unmanaged), (1, 1, 1));
    assert!(!store.is_managed(&VmKey::new("ns", "a")));
    assert!(
        store.next_batch(10).is_empty(),
        "parked deltas are not retried"
    );
    assert_eq!(store.outbox_stats().parked, 1);
    // A new change un-parks it.
    store.ingest(&[obs("b", 4, "10.0.0.3", 3)], t(6)).unwrap();
    assert_eq!(store.next_batch(10).len(), 1);
    assert_eq!(store.outbox_stats().parked, 0);
}

#[test]
fn a_garbage_file_is_moved_aside_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    std::fs::write(&path, vec![0x5a_u8; 64 * 1024]).unwrap();
    let (mut store, report) = Store::open(options(&dir), t(1_700_000_000_000)).unwrap();
    let aside = report.moved_aside.expect("moved aside");
    assert!(aside.exists());
    assert_eq!(std::fs::read(&aside).unwrap()[..4], [0x5a; 4]);
    assert_eq!(report.records, 0);
    store.ingest(&[obs("a", 1, "10.0.0.1", 1)], t(2)).unwrap();
}

#[test]
fn a_foreign_redb_file_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("vm_records");
            txn.open_table(def).unwrap().insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let (_store, report) = Store::open(options(&dir), t(1)).unwrap();
    assert!(report.moved_aside.is_some());
}

#[test]
fn a_file_in_use_is_an_error_not_moved() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, _) = Store::open(options(&dir), t(0)).unwrap();
    let err = match Store::open(options(&dir), t(0)) {
        Ok(_) => panic!("second open succeeded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("in use"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn the_owner_stores_a_burst_of_events_in_few_group_commits() {
    use virtsync::health::Health;
    use virtsync::metrics::Metrics;
    use virtsync::state::OwnerSettings;

    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(options(&dir), t(0)).unwrap();
    store.set_managed(managed(&["vm-1"]), t(0)).unwrap();
    let before = store.write_transactions();
    let (tx, rx) = tokio::sync::mpsc::channel(1000);
    for i in 0..500 {
        tx.try_send(obs(&format!("vm-{i}"), 1, "10.0.0.1", i).into())
            .unwrap();
    }
    drop(tx);
    let settings = OwnerSettings::new(Metrics::new().unwrap(), Health::default());
    let enqueued = settings.enqueued.clone();
    let state = virtsync::state::spawn(store, rx, settings).unwrap();
    state.sources_done().await;
    {
        let s = state.snapshot();
        assert_eq!(s.records.len(), 500);
        // Applied in memory, written once when the sources ended.
        assert_eq!(
            s.write_transactions - before,
            1,
            "500 events, one write transaction"
        );
        assert!(s.synced);
        assert_eq!(s.stats.pending, 1, "only the managed VM is queued");
    }
    // The flusher was told.
    tokio::time::timeout(std::time::Duration::from_secs(1), enqueued.notified())
        .await
        .unwrap();
    state.close().await.unwrap();
}

#[test]
fn an_unreadable_row_costs_that_row_only() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut store, _) = Store::open(options(&dir), t(0)).unwrap();
        store.set_managed(managed(&["a", "b"]), t(0)).unwrap();
        store
            .ingest(
                &[obs("a", 1, "10.0.0.1", 1), obs("b", 2, "10.0.0.2", 2)],
                t(1),
            )
            .unwrap();
        store.close().unwrap();
    }
    {
        // Another version (or a bit flip redb's checksums did not cover) left one row
        // we cannot decode.
        let db = redb::Database::create(dir.path().join("state.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("vm_records");
            txn.open_table(def)
                .unwrap()
                .insert("ns/a", b"{\"not\": \"a record\"}".as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let (store, report) = Store::open(options(&dir), t(2)).unwrap();
    assert_eq!(report.moved_aside, None);
    assert_eq!(report.skipped_rows, 1);
    assert_eq!((report.records, report.outbox, report.managed), (1, 1, 2));
    assert!(store.record(&VmKey::new("ns", "b")).is_some());
    // b's pending delta survives; a's went with its record (the sources bring it back).
    let batch = store.next_batch(10);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].key, VmKey::new("ns", "b"));
    assert_eq!(store.outbox_stats().pending, 1);
}

#[test]
fn a_record_whose_runtime_is_unknown_leaves_the_runtime_columns_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(options(&dir), t(0)).unwrap();
    store.set_managed(managed(&["a"]), t(0)).unwrap();
    // The cluster role's view of a VM whose VMI runs elsewhere: status only.
    let mut o = obs("a", 1, "10.0.0.1", 1);
    o.record.cpu_count = None;
    o.record.memory_mb = None;
    o.record.guest_os = None;
    o.record.runtime_details = None;
    o.versions.runtime_unknown = true;
    store.ingest(&[o.clone()], t(1)).unwrap();
    let d = store.next_batch(1).remove(0);
    assert_eq!(d.columns.names(), vec!["status"]);
    // Anti-entropy's enqueue is held to the same rule.
    store
        .ack(&[(d.key.clone(), d.seq, Outcome::Applied)])
        .unwrap();
    let runtime: ColumnSet = [Column::RuntimePrimaryIp, Column::Status]
        .into_iter()
        .collect();
    assert_eq!(store.enqueue(vec![(d.key, runtime)], t(2)).unwrap(), 1);
    assert_eq!(
        store.next_batch(1).remove(0).columns.names(),
        vec!["status"]
    );
}

#[test]
fn a_hand_off_forgets_the_record_and_its_pending_delta_for_good() {
    use virtsync::state::StateEvent;
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(options(&dir), t(0)).unwrap();
    store.set_managed(managed(&["a", "b"]), t(0)).unwrap();
    let events: Vec<StateEvent> = vec![
        obs("a", 1, "10.0.0.1", 1).into(),
        obs("b", 1, "10.0.0.2", 1).into(),
        StateEvent::Forget(VmKey::new("ns", "a")),
    ];
    let report = store.apply(&events, t(1)).unwrap();
    assert_eq!(report.forgotten, 1);
    assert!(store.record(&VmKey::new("ns", "a")).is_none());
    assert!(store.outbox_entry(&VmKey::new("ns", "a")).is_none());
    assert!(store.outbox_entry(&VmKey::new("ns", "b")).is_some());
    store.reopen().unwrap();
    drop(store);
    let (store, report) = Store::open(options(&dir), t(2)).unwrap();
    assert_eq!((report.records, report.outbox), (1, 1));
    // Coming back is a first sight again: every known column is written.
    let mut store = store;
    store.ingest(&[obs("a", 1, "10.0.0.1", 1)], t(3)).unwrap();
    let entry = store.outbox_entry(&VmKey::new("ns", "a")).unwrap();
    assert!(entry.columns.names().contains(&"runtime_primary_ip"));
    assert!(entry.columns.names().contains(&"cpu_count"));
}

#[test]
fn a_no_op_with_newer_versions_refreshes_them_in_memory_without_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(options(&dir), t(0)).unwrap();
    store.ingest(&[obs("a", 1, "10.0.0.1", 1)], t(1)).unwrap();
    let before = store.write_transactions();
    let report = store.ingest(&[obs("a", 1, "10.0.0.1", 7)], t(2)).unwrap();
    assert_eq!(report.noop, 1);
    assert_eq!(store.write_transactions(), before, "no I/O for a no-op");
    let versions = &store.record(&VmKey::new("ns", "a")).unwrap().versions;
    assert_eq!(versions.vm_resource_version, Some(7));
    // Within one batch a change after a no-op keeps the change's versions.
    store
        .ingest(
            &[obs("a", 1, "10.0.0.1", 8), obs("a", 2, "10.0.0.1", 9)],
            t(3),
        )
        .unwrap();
    let versions = &store.record(&VmKey::new("ns", "a")).unwrap().versions;
    assert_eq!(versions.vm_resource_version, Some(9));
}

#[test]
fn changes_are_written_within_the_interval_and_at_close() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(&dir);
    opts.sync_interval = Duration::from_secs(3600);
    let (mut store, _) = Store::open(opts.clone(), t(0)).unwrap();
    assert_eq!(store.sync_due(), None);
    store.ingest(&[obs("a", 2, "10.0.0.1", 5)], t(1)).unwrap();
    let due = store.sync_due().expect("a change waits to be written");
    assert!(due > Duration::from_secs(3500), "{due:?}");
    assert!(store.sync().unwrap());
    assert_eq!(store.sync_due(), None);
    assert!(!store.sync().unwrap(), "nothing left to write");

    store.ingest(&[obs("a", 3, "10.0.0.1", 6)], t(2)).unwrap();
    assert!(store.sync_due().is_some());
    store.close().unwrap();
    let (store, _) = Store::open(opts.clone(), t(3)).unwrap();
    let a = store.record(&VmKey::new("ns", "a")).unwrap();
    assert_eq!(a.record.cpu_count, Some(3), "close wrote the last change");
    store.close().unwrap();

    // Once the interval has passed, the write is due at once.
    opts.sync_interval = Duration::from_millis(30);
    let (mut store, _) = Store::open(opts.clone(), t(4)).unwrap();
    store.ingest(&[obs("a", 4, "10.0.0.1", 7)], t(5)).unwrap();
    assert!(store.sync_due().is_some_and(|d| d > Duration::ZERO));
    std::thread::sleep(Duration::from_millis(40));
    assert_eq!(store.sync_due(), Some(Duration::ZERO));
    store.close().unwrap();

    // Zero: every change is due at once.
    opts.sync_interval = Duration::ZERO;
    let (mut store, _) = Store::open(opts.clone(), t(7)).unwrap();
    store.ingest(&[obs("a", 6, "10.0.0.1", 9)], t(8)).unwrap();
    assert_eq!(store.sync_due(), Some(Duration::ZERO));
    store.close().unwrap();

    // So many waiting keys that one transaction would grow too large: due at once.
    opts.sync_interval = Duration::from_secs(3600);
    let (mut store, _) = Store::open(opts, t(9)).unwrap();
    let many: Vec<_> = (0..1100)
        .map(|i| obs(&format!("vm-{i}"), 1, "10.0.0.1", i))
        .collect();
    store.ingest(&many, t(10)).unwrap();
    assert_eq!(store.sync_due(), Some(Duration::ZERO));
}

/// The record the store keeps is the observation a source sent (one copy in memory),
/// and the time its runtime details last changed is kept beside it: in the file where
/// earlier versions put it (inside `runtimeDetails`), and back after a reopen.
#[test]
fn the_stored_record_is_the_sent_observation_and_its_timestamp_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(options(&dir), t(0)).unwrap();
    let sent = Arc::new(obs("a", 1, "10.0.0.1", 1));
    let event = virtsync::state::StateEvent::Observed(Arc::clone(&sent));
    store.apply(&[event], t(7)).unwrap();
    let key = VmKey::new("ns", "a");
    let stored = store.record(&key).unwrap();
    assert!(Arc::ptr_eq(&stored.obs, &sent), "stored without a copy");
    assert_eq!(stored.vmi_updated_at, Some(t(7)));
    let runtime = |r: &virtsync::model::VmRecord| r.runtime_details.clone().unwrap();
    assert_eq!(
        runtime(&stored.record).vmi_updated_at,
        None,
        "shared part untouched"
    );
    assert_eq!(runtime(&stored.full_record()).vmi_updated_at, Some(t(7)));
    store.close().unwrap();

    let db = redb::Database::create(dir.path().join("state.redb")).unwrap();
    let read = redb::ReadableDatabase::begin_read(&db).unwrap();
    let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("vm_records");
    let table = read.open_table(def).unwrap();
    let bytes = table.get("ns/a").unwrap().unwrap().value().to_vec();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        json["record"]["runtimeDetails"]["vmiUpdatedAt"],
        "1970-01-01T00:00:00.007Z"
    );
    drop((table, read, db));

    let (store, _) = Store::open(options(&dir), t(9)).unwrap();
    let stored = store.record(&key).unwrap();
    assert_eq!(stored.vmi_updated_at, Some(t(7)));
    assert_eq!(runtime(&stored.record).vmi_updated_at, None);
    assert_eq!(stored.obs.as_ref(), sent.as_ref());
}

/// New records wait to be looked up; a lookup manages the keys it found (queuing their
/// first write, except for adopted records) and leaves every other key alone; a row
/// gone on a write is looked up again.
#[test]
fn new_records_are_looked_up_by_key_and_adopted_ones_are_not_queued() {
    use virtsync::state::StateEvent;
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(options(&dir), t(0)).unwrap();
    store.set_managed_of(&[], managed(&["kept"]), t(0)).unwrap();
    let report = store
        .apply(
            &[
                StateEvent::Observed(Arc::new(obs("a", 1, "10.0.0.1", 1))),
                StateEvent::Observed(Arc::new(obs("b", 1, "10.0.0.2", 1))),
                StateEvent::Adopted(Arc::new(obs("c", 1, "10.0.0.3", 1))),
            ],
            t(1),
        )
        .unwrap();
    assert_eq!((report.unchecked, report.enqueued), (3, 0));
    let mut waiting = store.unchecked(10);
    waiting.sort();
    assert_eq!(
        waiting,
        ["a", "b", "c"].map(|n| VmKey::new("ns", n)).to_vec()
    );
    // Rows exist for a and c, not for b.
    let change = store
        .set_managed_of(&waiting, managed(&["a", "c"]), t(2))
        .unwrap();
    assert_eq!(
        (change.appeared, change.vanished, change.enqueued),
        (2, 0, 1)
    );
    assert_eq!(store.unchecked_count(), 0);
    let batch = store.next_batch(10);
    assert_eq!(batch.len(), 1, "only the observed record is queued");
    assert_eq!(batch[0].key, VmKey::new("ns", "a"));
    assert!(store.is_managed(&VmKey::new("ns", "c")));
    assert!(!store.is_managed(&VmKey::new("ns", "b")));
    assert!(
        store.is_managed(&VmKey::new("ns", "kept")),
        "a lookup of other keys leaves it alone"
    );
    // The row is gone when written: unmanaged, and looked up again.
    store
        .ack(&[(batch[0].key.clone(), batch[0].seq, Outcome::RowMissing)])
        .unwrap();
    assert!(!store.is_managed(&VmKey::new("ns", "a")));
    assert_eq!(store.unchecked(10), vec![VmKey::new("ns", "a")]);
    // Managed keys without a record (kept) go with a prune.
    assert_eq!(store.prune_managed_without_records(t(3)).unwrap(), 1);
    assert_eq!(store.managed_count(), 1);
}

/// The checked-in bytes of `tests/fixtures/persisted/` (see its README.md), exactly as a
/// state file written by this version holds them.
fn persisted(file: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/persisted")
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A state file holding the pinned bytes, laid out as `layout-v1.txt` says, opens with
/// today's store and loses nothing: a file written by this version stays readable. A
/// failure means the format changed without a migration (docs/ARCHITECTURE.md, "State
/// and outbox").
#[test]
fn a_state_file_with_the_pinned_bytes_opens_with_every_record_and_outbox_entry() {
    use redb::TableDefinition;
    const VM_RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("vm_records");
    const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
    const MANAGED: TableDefinition<&str, &str> = TableDefinition::new("managed");
    const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
    let dir = tempfile::tempdir().unwrap();
    {
        let db = redb::Database::create(dir.path().join("state.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert("schema_version", "1").unwrap();
            meta.insert("next_seq", "43").unwrap();
            let mut records = txn.open_table(VM_RECORDS).unwrap();
            let mut outbox = txn.open_table(OUTBOX).unwrap();
            let mut managed = txn.open_table(MANAGED).unwrap();
            for (key, record, entry) in [
                ("vdc-a/web-1", "record-v1.json", "outbox-v1.json"),
                (
                    "vdc-b/db-2",
                    "record-cluster-v1.json",
                    "outbox-pending-v1.json",
                ),
            ] {
                records.insert(key, persisted(record).as_slice()).unwrap();
                outbox.insert(key, persisted(entry).as_slice()).unwrap();
                managed.insert(key, "urn:vcloud:vm:1").unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let (store, report) = Store::open(options(&dir), t(0)).unwrap();
    assert_eq!(
        (report.moved_aside, report.skipped_rows),
        (None, 0),
        "rows of tests/fixtures/persisted/ no longer read (see the log): the state file's \
         format changed, which needs a migration"
    );
    assert_eq!((report.records, report.outbox, report.managed), (2, 2, 2));

    for (key, file) in [
        (VmKey::new("vdc-a", "web-1"), "record-v1.json"),
        (VmKey::new("vdc-b", "db-2"), "record-cluster-v1.json"),
    ] {
        let wire: serde_json::Value = serde_json::from_slice(&persisted(file)).unwrap();
        let stored = store.record(&key).unwrap();
        assert_eq!(
            serde_json::to_value(stored.full_record()).unwrap(),
            wire["record"],
            "{file}"
        );
        assert_eq!(
            serde_json::to_value(&stored.versions).unwrap(),
            wire["versions"],
            "{file}"
        );
    }
    let web = store.outbox_entry(&VmKey::new("vdc-a", "web-1")).unwrap();
    assert_eq!((web.seq, web.first_seq), (42, 7));
    assert_eq!(web.first_enqueued, t(1_755_357_931_456));
    assert_eq!(
        web.columns.names(),
        [
            "status",
            "memory_mb",
            "runtime_primary_ip",
            "runtime_agent_connected",
            "runtime_vmi_updated_at"
        ]
    );
    assert!(
        web.parked
            .as_deref()
            .unwrap()
            .contains("vms_memory_mb_check")
    );
    let db = store.outbox_entry(&VmKey::new("vdc-b", "db-2")).unwrap();
    assert_eq!(db.columns.names(), ["cpu_count", "runtime_phase"]);
    assert_eq!(db.parked, None);
    // The parked entry waits; the pending one is next in line.
    let batch = store.next_batch(10);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].key, VmKey::new("vdc-b", "db-2"));
    assert_eq!(batch[0].seq, 3);
    assert_eq!(store.outbox_stats().parked, 1);
}

/// What the store itself writes for a record is the pinned bytes (the source's
/// observation of `record-v1.json`, stored at the time its `vmiUpdatedAt` says).
#[test]
fn the_store_writes_a_record_as_the_pinned_bytes() {
    let pinned = persisted("record-v1.json");
    let mut sent: Observation = serde_json::from_slice(&pinned).unwrap_or_else(|e| {
        panic!("record-v1.json no longer decodes ({e}): the format changed, needs a migration")
    });
    // Sources never set the timestamp: the store stamps it when runtime columns change.
    let rt = Arc::make_mut(sent.record.runtime_details.as_mut().unwrap());
    let stamped = rt.vmi_updated_at.take().unwrap();
    let key = sent.record.key();
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(options(&dir), t(0)).unwrap();
    store.ingest(&[sent], stamped).unwrap();
    store.close().unwrap();

    let db = redb::Database::create(dir.path().join("state.redb")).unwrap();
    let read = redb::ReadableDatabase::begin_read(&db).unwrap();
    let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("vm_records");
    let table = read.open_table(def).unwrap();
    let bytes = table
        .get(key.to_string().as_str())
        .unwrap()
        .unwrap()
        .value()
        .to_vec();
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        String::from_utf8_lossy(&pinned),
        "the store's record bytes differ from tests/fixtures/persisted/record-v1.json: \
         the state file's format changed, which needs a migration"
    );
}
