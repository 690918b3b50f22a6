//! The PostgreSQL sink against a real server: statement counts, column-exact updates,
//! parking, fencing, soft deletes, the managed set and anti-entropy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;

use support::pg::PgCluster;
use support::ssvirt;
use support::sync::{Db, connected_sink, ingest, open_store, running};
use virtsync::config::SchemaMode;

/// How virtsync's statements name the table (the column log's table must not match).
const VMS_TABLE: &str = "\"public\".\"vms\"";

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn unchanged_records_touch_neither_postgres_nor_redb() {
    let db = Db::new(PgCluster::shared(), "noop", SchemaMode::Extended).await;
    db.add_rows((0..10).map(|i| format!("vm-{i}"))).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut sink = connected_sink(&db, &store).await;
    let batch: Vec<_> = (0..10)
        .map(|i| running(&format!("vm-{i}"), 2, 2048, "10.0.0.1", 100))
        .collect();
    ingest(&store, &batch).await;
    sink.flush_pending().await.unwrap();
    // A backend reports its table statistics when it exits: measure across fresh sinks.
    drop(sink);
    let upd_before = ssvirt::n_tup_upd(&db.client, "vms").await;
    let mut sink = connected_sink(&db, &store).await;
    ssvirt::reset_statements(&db.client).await;
    ssvirt::clear_column_log(&db.client).await;
    let txns_before = store.snapshot().write_transactions;
    // The same records again, with newer resourceVersions (as a relist delivers them).
    let again: Vec<_> = (0..10)
        .map(|i| running(&format!("vm-{i}"), 2, 2048, "10.0.0.1", 200))
        .collect();
    let report = ingest(&store, &again).await;
    let flushed = sink.flush_pending().await.unwrap();

    assert_eq!((report.noop, report.changed), (10, 0));
    assert_eq!(flushed.batches, 0);
    assert_eq!(
        store.snapshot().write_transactions,
        txns_before,
        "redb write transactions"
    );
    assert_eq!(ssvirt::statements_touching(&db.client, VMS_TABLE).await, 0);
    assert!(ssvirt::changed_columns(&db.client).await.is_empty());
    drop(sink);
    assert_eq!(ssvirt::n_tup_upd(&db.client, "vms").await, upd_before);
}

#[tokio::test]
async fn a_thousand_changes_to_a_hundred_vms_are_one_update_of_a_hundred_rows() {
    let db = Db::new(PgCluster::shared(), "coalesce", SchemaMode::Extended).await;
    db.add_rows((0..100).map(|i| format!("vm-{i:03}"))).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut sink = connected_sink(&db, &store).await;
    // First sight, flushed; then only memory and IP change.
    let base: Vec<_> = (0..100)
        .map(|i| running(&format!("vm-{i:03}"), 2, 1024, "10.0.0.1", 1))
        .collect();
    ingest(&store, &base).await;
    sink.flush_pending().await.unwrap();
    drop(sink);
    let upd_before = ssvirt::n_tup_upd(&db.client, "vms").await;
    let mut sink = connected_sink(&db, &store).await;
    ssvirt::clear_column_log(&db.client).await;
    ssvirt::reset_statements(&db.client).await;

    let txns_before = store.snapshot().write_transactions;
    for round in 1..=10 {
        let batch: Vec<_> = (0..100)
            .map(|i| {
                running(
                    &format!("vm-{i:03}"),
                    2,
                    1024 + round,
                    &format!("10.0.{round}.{i}"),
                    1 + round,
                )
            })
            .collect();
        ingest(&store, &batch).await;
    }
    assert_eq!(store.snapshot().stats.pending, 100);
    // The state file is written when due (at most once per `cache.sync_interval`, 1 s
    // here), not per group of changes.
    let during = store.snapshot().write_transactions - txns_before;
    assert!(during <= 1, "{during} state file writes for 10 groups");
    let report = sink.flush_pending().await.unwrap();
    assert_eq!(
        store.snapshot().write_transactions - txns_before,
        during,
        "acknowledging writes nothing to the state file by itself"
    );
    assert!(
        store.sync().await.unwrap(),
        "the changed records are written"
    );
    // Everything the flush sent: BEGIN, the three SET LOCAL limits, the row locks in key
    // order, the UPDATE, COMMIT (the test trigger's own nested INSERTs into the column
    // log are not ours).
    let all = ssvirt::statements_touching(&db.client, "").await;
    let trigger = ssvirt::statements_touching(&db.client, "vms_column_log").await;
    assert_eq!(all - trigger, 7);
    assert_eq!(
        ssvirt::statements_touching(&db.client, "FOR UPDATE").await,
        1,
        "one lock statement"
    );

    assert_eq!((report.batches, report.applied), (1, 100));
    assert_eq!(
        ssvirt::statements_touching(&db.client, "UPDATE \"public\".\"vms\"").await,
        1,
        "one UPDATE statement"
    );
    assert_eq!(
        ssvirt::statement_rows_touching(&db.client, "UPDATE \"public\".\"vms\"").await,
        100
    );
    assert_eq!(
        ssvirt::changed_columns(&db.client).await,
        set(&[
            "memory_mb",
            "runtime_primary_ip",
            "runtime_vmi_updated_at",
            "updated_at"
        ])
    );
    let rows = db
        .rows(&["memory_mb", "runtime_primary_ip", "cpu_count"])
        .await;
    assert_eq!(rows.len(), 100);
    for (i, (name, vals)) in rows.iter().enumerate() {
        assert_eq!(name, &format!("vm-{i:03}"));
        assert_eq!(vals[0].as_deref(), Some("1034"));
        assert_eq!(vals[1].as_deref(), Some(format!("10.0.10.{i}").as_str()));
        assert_eq!(vals[2].as_deref(), Some("2"));
    }
    assert_eq!(store.snapshot().stats.pending, 0);
    drop(sink);
    assert_eq!(ssvirt::n_tup_upd(&db.client, "vms").await - upd_before, 100);
}

#[tokio::test]
async fn refused_deltas_are_parked_and_the_rest_of_the_batch_lands() {
    let db = Db::new(PgCluster::shared(), "park", SchemaMode::Compat).await;
    db.add_rows((0..5).map(|i| format!("vm-{i}"))).await;
    // A constraint virtsync cannot know about: PostgreSQL refuses it at flush time.
    db.client
        .batch_execute(
            "ALTER TABLE vms ADD CONSTRAINT no_evil CHECK (guest_os IS DISTINCT FROM 'evil')",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut sink = connected_sink(&db, &store).await;
    let mut batch: Vec<_> = (0..5)
        .map(|i| running(&format!("vm-{i}"), 2, 1024, "10.0.0.1", 1))
        .collect();
    batch[1].record.guest_os = Some("evil".into());
    batch[3].record.memory_mb = Some(0); // caught before sending (CHECK > 0)
    batch[4].record.guest_os = Some("é".repeat(300)); // longer than varchar(255): cut
    ingest(&store, &batch).await;
    let report = sink.flush_pending().await.unwrap();

    assert_eq!((report.applied, report.parked), (3, 2));
    let stats = store.snapshot().stats;
    assert_eq!((stats.pending, stats.parked), (0, 2));
    let reasons: Vec<String> = store
        .snapshot()
        .outbox_entries()
        .into_iter()
        .filter_map(|(k, e)| e.parked.clone().map(|p| format!("{}: {p}", k.name)))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("vm-1: 23514") && r.contains("no_evil")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("vm-3: memory_mb: 0 is not > 0")),
        "{reasons:?}"
    );

    let rows = db.rows(&["cpu_count", "guest_os"]).await;
    assert_eq!(rows["vm-0"][0].as_deref(), Some("2"));
    assert_eq!(rows["vm-2"][1].as_deref(), Some("Fedora Linux 40"));
    // The parked rows keep what the cloud API inserted.
    assert_eq!(rows["vm-1"][0].as_deref(), Some("1"));
    assert_eq!(rows["vm-1"][1].as_deref(), Some("rhel9"));
    assert_eq!(rows["vm-4"][1].as_deref(), Some("é".repeat(255).as_str()));
    // What was cut is what anti-entropy compares: no endless "drift".
    assert_eq!(sink.anti_entropy().await.unwrap(), 0);
}

async fn fencing(mode: SchemaMode) {
    let db = Db::new(PgCluster::shared(), "fence", mode).await;
    db.add_rows(["vm-f".to_string()]).await;
    // Two writers with their own state (e.g. the old and the new host of a migration).
    let (dir_new, dir_old) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (new_store, old_store) = (open_store(&dir_new, mode), open_store(&dir_old, mode));
    let mut new_sink = connected_sink(&db, &new_store).await;
    let mut old_sink = connected_sink(&db, &old_store).await;
    ingest(&new_store, &[running("vm-f", 4, 4096, "10.0.0.200", 500)]).await;
    assert_eq!(new_sink.flush_pending().await.unwrap().applied, 1);
    // A late write carrying older resourceVersions.
    let mut late = running("vm-f", 1, 512, "10.0.0.100", 400);
    late.record.status = Some(virtsync::model::VmStatus::PoweredOff);
    ingest(&old_store, &[late]).await;
    let report = old_sink.flush_pending().await.unwrap();
    assert_eq!((report.applied, report.fenced), (0, 1));
    let cols: &[&str] = match mode {
        SchemaMode::Extended => &["cpu_count", "memory_mb", "status", "runtime_primary_ip"],
        SchemaMode::Compat => &["cpu_count", "memory_mb", "status"],
    };
    let row = &db.rows(cols).await["vm-f"];
    assert_eq!(row[0].as_deref(), Some("4"));
    assert_eq!(row[1].as_deref(), Some("4096"));
    assert_eq!(row[2].as_deref(), Some("POWERED_ON"));
    if mode == SchemaMode::Extended {
        assert_eq!(row[3].as_deref(), Some("10.0.0.200"));
    }
    assert_eq!(
        old_store.snapshot().stats.pending,
        0,
        "a fenced delta is done"
    );
    // Newer data from the old writer's source does land.
    ingest(&old_store, &[running("vm-f", 8, 8192, "10.0.0.100", 600)]).await;
    assert_eq!(old_sink.flush_pending().await.unwrap().applied, 1);
    assert_eq!(
        db.rows(&["cpu_count"]).await["vm-f"][0].as_deref(),
        Some("8")
    );
    let fence = db
        .client
        .query_one(
            "SELECT vm_resource_version, vmi_resource_version, vmi_uid FROM virtsync.vm_fence WHERE vm_name = 'vm-f'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(fence.get::<_, Option<i64>>(0), Some(600));
    assert_eq!(fence.get::<_, Option<i64>>(1), Some(600));
}

#[tokio::test]
async fn older_resource_versions_never_overwrite_newer_ones_extended() {
    fencing(SchemaMode::Extended).await;
}

#[tokio::test]
async fn older_resource_versions_never_overwrite_newer_ones_compat() {
    fencing(SchemaMode::Compat).await;
}

#[tokio::test]
async fn soft_deleted_rows_are_never_updated_and_late_rows_are_written_once() {
    let db = Db::new(PgCluster::shared(), "managed", SchemaMode::Extended).await;
    db.add_rows(["vm-live".to_string(), "vm-gone".to_string()])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut sink = connected_sink(&db, &store).await;
    ssvirt::soft_delete(&db.client, "ns", "vm-gone").await;
    ingest(
        &store,
        &[
            running("vm-live", 2, 1024, "10.0.0.1", 1),
            running("vm-gone", 2, 1024, "10.0.0.2", 1),
            running("vm-late", 3, 3072, "10.0.0.3", 1),
        ],
    )
    .await;
    // The rows of the new records are looked up first: vm-gone's row is deleted, so it
    // is not managed and nothing is sent for it (nor for vm-late, without a row).
    let report = sink.flush_pending().await.unwrap();
    assert_eq!((report.applied, report.missing), (1, 0));
    let gone = db
        .client
        .query_one(
            "SELECT cpu_count, runtime_primary_ip FROM vms WHERE vm_name = 'vm-gone'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(gone.get::<_, Option<i32>>(0), Some(1), "as inserted");
    assert_eq!(gone.get::<_, Option<String>>(1), None);
    let touched: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM vms_column_log l JOIN vms v ON v.id = l.vm_id WHERE v.vm_name = 'vm-gone' AND l.column_name <> 'deleted_at'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(touched, 0, "a soft-deleted row is never updated");
    assert!(
        !store
            .snapshot()
            .is_managed(&virtsync::model::VmKey::new("ns", "vm-gone"))
    );
    // The cloud API creates the row for vm-late later: written once it exists.
    db.add_rows(["vm-late".to_string()]).await;
    let queued = sink.refresh_managed().await.unwrap();
    assert_eq!(queued, 1);
    assert_eq!(sink.flush_pending().await.unwrap().applied, 1);
    let late = &db.rows(&["cpu_count", "runtime_primary_ip"]).await["vm-late"];
    assert_eq!(late[0].as_deref(), Some("3"));
    assert_eq!(late[1].as_deref(), Some("10.0.0.3"));
    // Refreshing again queues nothing more.
    assert_eq!(sink.refresh_managed().await.unwrap(), 0);
}

#[tokio::test]
async fn a_thousand_unmanaged_vms_create_no_outbox_entries_and_one_lookup() {
    let db = Db::new(PgCluster::shared(), "unmanaged", SchemaMode::Extended).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut sink = connected_sink(&db, &store).await;
    ssvirt::reset_statements(&db.client).await;
    for round in 0..3 {
        let batch: Vec<_> = (0..1000)
            .map(|i| {
                running(
                    &format!("other-{i}"),
                    1 + round,
                    1024,
                    "10.1.0.1",
                    10 + round,
                )
            })
            .collect();
        let r = ingest(&store, &batch).await;
        assert_eq!((r.changed, r.enqueued), (1000, 0));
        assert_eq!(sink.flush_pending().await.unwrap().batches, 0);
    }
    assert_eq!(store.snapshot().stats.pending, 0);
    // One indexed lookup of the 1,000 new keys when they appeared; their changes after
    // that cost nothing.
    assert_eq!(ssvirt::statements_touching(&db.client, VMS_TABLE).await, 1);
    assert_eq!(
        ssvirt::statements_touching(&db.client, "unnest").await,
        1,
        "the lookup by key"
    );
}

/// The cluster-role holder with more new records than one page of keys (its first
/// start, a takeover's lists) reads the table once instead of a lookup per page, each of
/// which the planner may answer with a scan of the whole table.
#[tokio::test]
async fn a_holder_with_thousands_of_new_records_reads_the_table_once() {
    const VMS: usize = 2500;
    let db = Db::new(PgCluster::shared(), "holder_first", SchemaMode::Extended).await;
    db.add_rows((0..VMS).map(|i| format!("vm-{i}"))).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut sink = support::sync::sink(db.settings(), &store)
        .with_cluster_role(tokio::sync::watch::channel(true).1);
    sink.connect().await.unwrap();
    let batch: Vec<_> = (0..VMS)
        .map(|i| running(&format!("vm-{i}"), 2, 2048, "10.0.0.1", 1))
        .collect();
    let r = ingest(&store, &batch).await;
    assert_eq!(r.unchecked, VMS);
    ssvirt::reset_statements(&db.client).await;
    let report = sink.flush_pending().await.unwrap();
    assert_eq!(report.applied, VMS, "{report:?}");
    assert_eq!(store.snapshot().managed.len(), VMS);
    assert_eq!(store.snapshot().unchecked, 0);
    assert_eq!(
        ssvirt::statements_touching(
            &db.client,
            "JOIN unnest($1::text[], $2::text[]) AS k(ns, n)"
        )
        .await,
        0,
        "no lookups by key page"
    );
}

#[tokio::test]
async fn anti_entropy_corrects_and_counts_rows_changed_behind_our_back() {
    let db = Db::new(PgCluster::shared(), "drift", SchemaMode::Extended).await;
    db.add_rows((0..3).map(|i| format!("vm-{i}"))).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut sink = connected_sink(&db, &store).await;
    let batch: Vec<_> = (0..3)
        .map(|i| running(&format!("vm-{i}"), 2, 2048, "10.0.0.1", 1))
        .collect();
    ingest(&store, &batch).await;
    sink.flush_pending().await.unwrap();
    assert_eq!(
        sink.anti_entropy().await.unwrap(),
        0,
        "no drift after our own flush"
    );

    db.client
        .batch_execute(
            "UPDATE vms SET status = 'POWERED_OFF', runtime_primary_ip = '192.0.2.1' WHERE vm_name = 'vm-1';
             UPDATE vms SET cpu_count = 64 WHERE vm_name = 'vm-2'",
        )
        .await
        .unwrap();
    ssvirt::clear_column_log(&db.client).await;
    assert_eq!(sink.anti_entropy().await.unwrap(), 2);
    assert_eq!(sink.flush_pending().await.unwrap().applied, 2);
    let rows = db
        .rows(&["status", "runtime_primary_ip", "cpu_count"])
        .await;
    for (name, vals) in &rows {
        assert_eq!(vals[0].as_deref(), Some("POWERED_ON"), "{name}");
        assert_eq!(vals[1].as_deref(), Some("10.0.0.1"), "{name}");
        assert_eq!(vals[2].as_deref(), Some("2"), "{name}");
    }
    assert_eq!(
        ssvirt::changed_columns(&db.client).await,
        set(&["status", "runtime_primary_ip", "cpu_count", "updated_at"])
    );
    assert_eq!(sink.anti_entropy().await.unwrap(), 0);
}

#[tokio::test]
async fn the_shipped_grants_are_enough_for_the_daemon() {
    let db = Db::new(PgCluster::shared(), "grants", SchemaMode::Extended).await;
    db.add_rows(["vm-g".to_string()]).await;
    let role = format!("virtsync_daemon_{}", std::process::id());
    let grants = include_str!("../packaging/postgres-grants.sql").replace("virtsync_daemon", &role);
    db.client
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN"
        ))
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    db.client.batch_execute(&grants).await.unwrap();
    // The column log is the test's own trigger, not part of what the daemon needs.
    db.client
        .batch_execute(&format!(
            "GRANT INSERT ON vms_column_log TO {role}; GRANT USAGE ON SEQUENCE vms_column_log_id_seq TO {role}"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut settings = db.settings();
    settings.pg.user(&role);
    let mut sink = support::sync::connected_sink_with(settings, &store).await;
    ingest(&store, &[running("vm-g", 2, 2048, "10.0.0.7", 1)]).await;
    assert_eq!(sink.flush_pending().await.unwrap().applied, 1);
    sink.anti_entropy().await.unwrap();
    assert_eq!(
        db.rows(&["runtime_primary_ip"]).await["vm-g"][0].as_deref(),
        Some("10.0.0.7")
    );
    // Without the UPDATE grant the same role is refused: the grants are what made it work.
    db.client
        .batch_execute(&format!("REVOKE UPDATE ON vms FROM {role}"))
        .await
        .unwrap();
    ingest(&store, &[running("vm-g", 4, 2048, "10.0.0.7", 2)]).await;
    let err = sink.flush_pending().await.unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    assert_eq!(store.snapshot().stats.pending, 1, "kept for later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_sink_corrects_drift_periodically() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let db = Db::new(PgCluster::shared(), "periodic", SchemaMode::Extended).await;
    db.add_rows(["vm-p".to_string()]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut settings = db.settings();
    settings.resync_interval = Duration::from_millis(300);
    let sink = support::sync::sink(settings, &store);
    let stop = tokio_util::sync::CancellationToken::new();
    let enqueued = Arc::new(tokio::sync::Notify::new());
    let task = tokio::spawn(sink.run(enqueued.clone(), stop.clone()));
    let wait_for = |what: &'static str, f: Box<dyn Fn(&str) -> bool + Send>| {
        let db_url = db.url.clone();
        async move {
            let client = support::pg::connect(&db_url).await;
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let ip: Option<String> = client
                    .query_one(
                        "SELECT runtime_primary_ip FROM vms WHERE vm_name = 'vm-p'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if f(ip.as_deref().unwrap_or("")) {
                    return;
                }
                assert!(Instant::now() < deadline, "{what}: still {ip:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // The new record's row is looked up (by its key) and then written.
    ingest(&store, &[running("vm-p", 2, 2048, "10.0.0.1", 1)]).await;
    enqueued.notify_one();
    wait_for("first write", Box::new(|ip| ip == "10.0.0.1")).await;
    // Someone else changes the row; no event arrives: only anti-entropy can notice.
    db.client
        .batch_execute("UPDATE vms SET runtime_primary_ip = '192.0.2.99' WHERE vm_name = 'vm-p'")
        .await
        .unwrap();
    wait_for("drift corrected", Box::new(|ip| ip == "10.0.0.1")).await;
    stop.cancel();
    task.await.unwrap().unwrap();
}
