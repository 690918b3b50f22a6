//! Regressions found in review: each test failed on the code before its fix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use support::pg::{self, PgCluster};
use support::ssvirt;
use support::sync::{Db, connected_sink, ingest, open_store, running};
use virtsync::config::SchemaMode;
use virtsync::model::{Timestamp, VmKey};
use virtsync::state::{Store, StoreOptions};

/// two writers flushing the same row concurrently. The older one (rv 500) reads
/// the fence before the newer one (rv 600) commits, waits on the row lock, and then
/// overwrites the newer data (READ COMMITTED re-check does not re-evaluate `g.eff`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_flushes_cannot_bypass_the_fence() {
    let db = Db::new(PgCluster::shared(), "race", SchemaMode::Extended).await;
    db.add_rows(["vm-r".to_string()]).await;
    let (d_new, d_old) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (s_new, s_old) = (open_store(&d_new, db.mode), open_store(&d_old, db.mode));
    let mut sink_new = connected_sink(&db, &s_new).await;
    let mut sink_old = connected_sink(&db, &s_old).await;
    ingest(&s_new, &[running("vm-r", 8, 8192, "10.0.0.200", 600)]).await;
    ingest(&s_old, &[running("vm-r", 1, 512, "10.0.0.100", 500)]).await;

    // A third session holds the row lock (e.g. the cloud API updating the row).
    let mut locker = pg::connect(&db.url).await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("SELECT 1 FROM vms WHERE vm_name = 'vm-r' FOR UPDATE")
        .await
        .unwrap();
    let new = tokio::spawn(async move { sink_new.flush_pending().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let old = tokio::spawn(async move { sink_old.flush_pending().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.rollback().await.unwrap();
    let (rn, ro) = (new.await.unwrap(), old.await.unwrap());
    eprintln!("new: {rn:?}\nold: {ro:?}");
    let row = &db.rows(&["cpu_count", "runtime_primary_ip"]).await["vm-r"];
    let fence: (Option<i64>, Option<i64>) = {
        let r = db
            .client
            .query_one(
                "SELECT vm_resource_version, vmi_resource_version FROM virtsync.vm_fence",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    eprintln!("row {row:?} fence {fence:?}");
    assert_eq!(fence, (Some(600), Some(600)));
    assert_eq!(
        row[0].as_deref(),
        Some("8"),
        "older data (rv 500) overwrote newer data (rv 600)"
    );
}

/// two live rows for one (namespace, vm_name) that both drifted: anti-entropy
/// queues the key twice, `order` gets two entries, the batch holds the key twice, and
/// the fence upsert fails with 21000 for ever (classified Fatal → retried for ever).
#[tokio::test]
async fn duplicate_rows_and_anti_entropy_do_not_wedge_the_flush() {
    let db = Db::new(PgCluster::shared(), "dup", SchemaMode::Extended).await;
    db.add_rows(["vm-d".to_string(), "vm-d".to_string(), "vm-x".to_string()])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut sink = connected_sink(&db, &store).await;
    ingest(
        &store,
        &[
            running("vm-d", 2, 2048, "10.0.0.1", 1),
            running("vm-x", 2, 2048, "10.0.0.1", 1),
        ],
    )
    .await;
    sink.flush_pending().await.unwrap();
    // The cloud API's controller sets status on "the" row (both of them).
    db.client
        .batch_execute("UPDATE vms SET status = 'POWERED_OFF' WHERE vm_name = 'vm-d'")
        .await
        .unwrap();
    assert_eq!(sink.anti_entropy().await.unwrap(), 2);
    let batch = store.next_batch(10).await.unwrap();
    eprintln!(
        "batch keys: {:?}",
        batch.iter().map(|d| d.key.to_string()).collect::<Vec<_>>()
    );
    // A later, unrelated change to another VM is stuck behind it.
    ingest(&store, &[running("vm-x", 4, 2048, "10.0.0.1", 2)]).await;
    let r = sink.flush_pending().await;
    eprintln!("flush: {r:?}");
    assert!(r.is_ok(), "flush wedged: {r:?}");
}

/// a status/legacy value going from known to unknown (None) writes NULL over the
/// cloud API's value, although first sight and anti-entropy treat None as "unknown,
/// never erase".
#[tokio::test]
async fn an_unknown_legacy_value_never_erases_the_cloud_api_value() {
    let db = Db::new(PgCluster::shared(), "nullwrite", SchemaMode::Compat).await;
    db.add_rows(["vm-n".to_string()]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut sink = connected_sink(&db, &store).await;
    ingest(&store, &[running("vm-n", 2, 2048, "10.0.0.1", 1)]).await;
    sink.flush_pending().await.unwrap();
    // The cloud API sets guest_os; then the VMI stops and the spec cannot tell the
    // guest OS / CPU count (instancetype): derivation says "unknown".
    let mut o = running("vm-n", 2, 2048, "10.0.0.1", 2);
    o.record.guest_os = None;
    o.record.cpu_count = None;
    ingest(&store, &[o]).await;
    sink.flush_pending().await.unwrap();
    let row = &db.rows(&["cpu_count", "guest_os"]).await["vm-n"];
    eprintln!("row after unknown values: {row:?}");
    assert_eq!(row[0].as_deref(), Some("2"), "cpu_count erased to NULL");
    assert_eq!(
        row[1].as_deref(),
        Some("Fedora Linux 40"),
        "guest_os erased"
    );
}

/// a record whose key does not round-trip through "namespace/name" poisons the
/// state file: the next open moves the whole file (outbox included) aside.
#[test]
fn an_invalid_key_is_rejected_and_cannot_poison_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        path: dir.path().join("state.redb"),
        cache_size: 4 << 20,
        sync_interval: std::time::Duration::from_secs(1),
        writable: virtsync::columns::ColumnSet::all(),
    };
    {
        let (mut store, _) = Store::open(options.clone(), Timestamp::now()).unwrap();
        store
            .set_managed(
                [(VmKey::new("ns", "good"), "id-good".to_string())]
                    .into_iter()
                    .collect::<HashMap<_, _>>(),
                Timestamp::now(),
            )
            .unwrap();
        let mut bad = running("x", 1, 1, "10.0.0.1", 1);
        bad.record.namespace = "".into(); // or "a/b"
        store
            .ingest(
                &[running("good", 2, 2048, "10.0.0.1", 1), bad],
                Timestamp::now(),
            )
            .unwrap();
        assert_eq!(store.outbox_stats().pending, 1);
        store.close().unwrap();
    }
    let (store, report) = Store::open(options, Timestamp::now()).unwrap();
    eprintln!("{report:?}");
    assert_eq!(report.moved_aside, None, "state moved aside");
    assert_eq!(store.outbox_stats().pending, 1, "pending delta lost");
}

/// the cloud API replaces the row (soft delete + new row, one transaction) while a
/// flush waits on the old row's lock: the outcome is FencedOut (not written, "live" in
/// the statement snapshot), the delta is deleted, the key stays managed, and the new
/// row never receives the values.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_row_replaced_during_a_flush_gets_the_values() {
    let db = Db::new(PgCluster::shared(), "replace", SchemaMode::Extended).await;
    db.add_rows(["vm-p".to_string()]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut sink = connected_sink(&db, &store).await;
    ingest(&store, &[running("vm-p", 4, 4096, "10.0.0.9", 7)]).await;

    let mut cloud = pg::connect(&db.url).await;
    let tx = cloud.transaction().await.unwrap();
    tx.batch_execute(
        "UPDATE vms SET deleted_at = now() WHERE vm_name = 'vm-p' AND deleted_at IS NULL;
         INSERT INTO vms (id, name, vm_name, namespace, status, cpu_count, memory_mb, guest_os)
         VALUES ('urn:vcloud:vm:replacement', 'vm-p', 'vm-p', 'ns', 'POWERED_OFF', 1, 1024, 'rhel9')",
    )
    .await
    .unwrap();
    let flush = tokio::spawn(async move {
        let r = sink.flush_pending().await.unwrap();
        (sink, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.commit().await.unwrap();
    let (mut sink, report) = flush.await.unwrap();
    eprintln!("{report:?}");
    sink.refresh_managed().await.unwrap();
    sink.flush_pending().await.unwrap();
    let row = &db.rows(&["cpu_count", "runtime_primary_ip"]).await["vm-p"];
    eprintln!(
        "new row: {row:?}; outbox pending {}",
        store.snapshot().stats.pending
    );
    assert_eq!(
        row[0].as_deref(),
        Some("4"),
        "the live row never got the change"
    );
}

/// pending deltas present when the sink (re)connects are not flushed until the next
/// notify or the next managed refresh (resync disabled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deltas_are_flushed_right_after_connecting() {
    use std::sync::Arc;
    let db = Db::new(PgCluster::shared(), "startup", SchemaMode::Extended).await;
    db.add_rows(["vm-s".to_string()]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    store
        .set_managed(
            [(VmKey::new("ns", "vm-s"), "id-s".to_string())]
                .into_iter()
                .collect(),
            Timestamp::now(),
        )
        .await
        .unwrap();
    // Left over from the previous run (e.g. crash before the flush).
    ingest(&store, &[running("vm-s", 4, 4096, "10.0.0.4", 1)]).await;
    let mut settings = db.settings();
    settings.managed_refresh_interval = Duration::from_secs(8);
    let sink = support::sync::sink(settings, &store);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(sink.run(Arc::new(tokio::sync::Notify::new()), stop.clone()));
    let t = std::time::Instant::now();
    while store.snapshot().stats.pending > 0 && t.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t.elapsed();
    stop.cancel();
    task.await.unwrap().unwrap();
    eprintln!("drained after {took:?}");
    assert!(took < Duration::from_secs(2), "drained only after {took:?}");
}

/// one value that cannot be written (guest-controlled guest OS name longer than the
/// column) parks the whole delta, and every later change of that VM with it.
#[tokio::test]
async fn an_oversized_guest_value_does_not_block_the_other_columns() {
    let db = Db::new(PgCluster::shared(), "blockall", SchemaMode::Extended).await;
    db.add_rows(["vm-g".to_string()]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut sink = connected_sink(&db, &store).await;
    let mut o = running("vm-g", 2, 2048, "10.0.0.1", 1);
    o.record.guest_os = Some("x".repeat(300)); // PRETTY_NAME chosen by the guest
    ingest(&store, &[o.clone()]).await;
    sink.flush_pending().await.unwrap();
    // Later: the VM is powered off; the IP changes.
    o.record.status = Some(virtsync::model::VmStatus::Suspended);
    Arc::make_mut(o.record.runtime_details.as_mut().unwrap()).primary_ip = Some("10.9.9.9".into());
    o.versions.vm_resource_version = Some(2);
    o.versions.vmi_resource_version = Some(2);
    ingest(&store, &[o]).await;
    let r = sink.flush_pending().await.unwrap();
    eprintln!("{r:?} parked={}", store.snapshot().stats.parked);
    let row = &db
        .rows(&["status", "runtime_primary_ip", "cpu_count"])
        .await["vm-g"];
    eprintln!("row {row:?}");
    assert_eq!(row[0].as_deref(), Some("SUSPENDED"), "status never written");
}

/// the row is replaced (soft delete + new live row) between two refreshes, no flush
/// in between: the managed set is keyed by name, so nothing "appears" and the new row
/// never receives the current values (until some column changes again).
#[tokio::test]
async fn a_replaced_row_is_written_like_a_new_one() {
    let db = Db::new(PgCluster::shared(), "replace2", SchemaMode::Extended).await;
    db.add_rows(["vm-q".to_string()]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut sink = connected_sink(&db, &store).await;
    ingest(&store, &[running("vm-q", 4, 4096, "10.0.0.9", 7)]).await;
    sink.flush_pending().await.unwrap();
    ssvirt::soft_delete(&db.client, "ns", "vm-q").await;
    db.add_rows(["vm-q".to_string()]).await;
    let queued = sink.refresh_managed().await.unwrap();
    sink.flush_pending().await.unwrap();
    let row = &db.rows(&["cpu_count", "runtime_primary_ip"]).await["vm-q"];
    eprintln!("queued {queued}; new row {row:?}");
    assert_eq!(row[1].as_deref(), Some("10.0.0.9"));
}

/// A DEFERRABLE INITIALLY DEFERRED constraint (constraint trigger) refusing one row:
/// the batch fails at COMMIT, write_rows retries under savepoints (RELEASE does not
/// check deferred constraints) and fails at COMMIT again with a Data error that is
/// returned as-is: no row is parked, the good row never lands, and the run loop
/// retries the same batch for ever.
#[tokio::test]
async fn a_deferred_constraint_violation_parks_one_row_not_the_outbox() {
    let db = Db::new(PgCluster::shared(), "deferred", SchemaMode::Extended).await;
    db.add_rows(["vm-a".to_string(), "vm-b".to_string()]).await;
    db.client
        .batch_execute(
            "CREATE FUNCTION no_three() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.cpu_count = 3 THEN RAISE EXCEPTION 'three CPUs refused'; END IF;
             RETURN NULL; END $$;
             CREATE CONSTRAINT TRIGGER no_three AFTER UPDATE ON vms
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION no_three();",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut sink = connected_sink(&db, &store).await;
    ingest(
        &store,
        &[
            running("vm-a", 3, 2048, "10.0.0.1", 1),
            running("vm-b", 2, 2048, "10.0.0.2", 1),
        ],
    )
    .await;
    let r = sink.flush_pending().await;
    eprintln!("flush: {r:?}");
    let row = &db.rows(&["cpu_count"]).await["vm-b"];
    assert!(r.is_ok(), "flush failed: {r:?}");
    assert_eq!(row[0].as_deref(), Some("2"), "the good row never landed");
}

/// A server that accepts connections but refuses writes (read-only / demoted
/// primary; 25006 is classified Connection): every reconnect succeeds and resets the
/// backoff to 200 ms, so the daemon reconnects, re-reads the schema and the managed
/// set (a full GROUP BY over vms) about five times a second, for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_server_gets_a_growing_backoff() {
    let db = Db::new(PgCluster::shared(), "readonly", SchemaMode::Extended).await;
    db.add_rows(["vm-r".to_string()]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    ingest(&store, &[running("vm-r", 4, 4096, "10.0.0.4", 1)]).await;
    let dbname = db.url.rsplit('/').next().unwrap().to_string();
    db.client
        .batch_execute(&format!(
            "ALTER DATABASE \"{dbname}\" SET default_transaction_read_only = on"
        ))
        .await
        .unwrap();
    ssvirt::reset_statements(&db.client).await;
    let sink = support::sync::sink(db.settings(), &store);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(sink.run(Arc::new(tokio::sync::Notify::new()), stop.clone()));
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.cancel();
    let _ = task.await;
    let reads = ssvirt::statements_touching(&db.client, "min(id::text)").await;
    eprintln!("managed-set reads in 4 s: {reads}");
    // 200+400+800+1600 ms: at most ~5 connects in 4 s with a growing backoff.
    assert!(
        reads <= 7,
        "{reads} reconnects in 4 s: the backoff never grows"
    );
}

/// With postgres.ca_file set and the default sslmode (prefer), a server (or anyone
/// in the path) answering 'N' to the SSLRequest gets a plaintext session.
#[tokio::test]
async fn a_configured_ca_file_never_falls_back_to_plaintext() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = [0u8; 8];
        s.read_exact(&mut req).unwrap();
        s.write_all(b"N").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = vec![0u8; 512];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let mut pg: tokio_postgres::Config = format!("postgres://secretuser@127.0.0.1:{port}/db")
        .parse()
        .unwrap();
    pg.connect_timeout(Duration::from_secs(2));
    let tls = virtsync::sink::postgres::tls::setup(
        &mut pg,
        Some(std::path::Path::new("/etc/ssl/certs/ca-certificates.crt")),
    )
    .unwrap();
    let _ = tokio::time::timeout(
        Duration::from_secs(3),
        virtsync::sink::postgres::connect_client(&pg, &tls),
    )
    .await;
    let seen = server.join().unwrap();
    eprintln!("server saw: {seen:?}");
    assert!(
        !seen.contains("secretuser"),
        "startup message sent in plaintext after the server declined TLS"
    );
}

/// Another session holds a row lock (idle in transaction): the flush waits for ever
/// (no lock_timeout / statement_timeout), and with it every other VM's change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_row_lock_does_not_stall_the_sink_for_ever() {
    let db = Db::new(PgCluster::shared(), "rowlock", SchemaMode::Extended).await;
    db.add_rows(["vm-l".to_string(), "vm-o".to_string()]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let settings = db.settings_with(|c| c.postgres.lock_timeout = Duration::from_millis(500));
    let mut sink = support::sync::connected_sink_with(settings, &store).await;
    ingest(
        &store,
        &[
            running("vm-l", 4, 4096, "10.0.0.4", 1),
            running("vm-o", 4, 4096, "10.0.0.5", 1),
        ],
    )
    .await;
    let mut locker = pg::connect(&db.url).await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("SELECT 1 FROM vms WHERE vm_name = 'vm-l' FOR UPDATE")
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), sink.flush_pending()).await;
    let err = r
        .expect("flush still waiting on the row lock after 20 s")
        .unwrap_err();
    assert!(err.to_string().contains("55P03"), "{err}");
    assert_eq!(err.class(), virtsync::sink::postgres::ErrorClass::Transient);
    drop(tx);
    assert_eq!(
        sink.flush_pending().await.unwrap().applied,
        2,
        "lands once the lock is gone"
    );
}

/// A daemon frozen (SIGSTOP, a paused host) between the statements of its flush keeps
/// that transaction's row locks: every other daemon's writes to those rows waited for as
/// long as it stayed frozen. The flush transaction's own limits make PostgreSQL end such
/// a session after `postgres.lock_idle_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_frozen_inside_its_flush_loses_its_row_locks() {
    let db = Db::new(PgCluster::shared(), "frozenlock", SchemaMode::Extended).await;
    db.add_rows(["vm-z".to_string()]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let settings = db.settings_with(|c| {
        c.postgres.lock_timeout = Duration::from_millis(300);
        c.postgres.lock_idle_timeout = Duration::from_secs(1);
    });
    let limits = settings.limits;
    let mut sink = support::sync::connected_sink_with(settings, &store).await;
    ingest(&store, &[running("vm-z", 4, 4096, "10.0.0.9", 1)]).await;
    // The frozen writer: a flush transaction begun with the same limits, stopped after
    // it locked the row.
    let mut frozen = pg::connect(&db.url).await;
    let tx = virtsync::sink::postgres::session::begin(&mut frozen, &limits, None)
        .await
        .unwrap();
    tx.batch_execute("SELECT 1 FROM vms WHERE vm_name = 'vm-z' FOR UPDATE")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut landed = 0;
    while landed == 0 && started.elapsed() < Duration::from_secs(20) {
        match sink.flush_pending().await {
            Ok(r) => landed = r.applied,
            Err(e) => assert!(e.to_string().contains("55P03"), "{e}"),
        }
    }
    assert_eq!(landed, 1, "still locked out after {:?}", started.elapsed());
    println!("measured: the row was free {:?} after", started.elapsed());
    let gone = tx.batch_execute("SELECT 1").await.unwrap_err();
    assert!(
        gone.is_closed() || gone.to_string().contains("idle-in-transaction"),
        "the frozen session was ended by PostgreSQL: {gone}"
    );
}

/// A restart from a state file that is behind PostgreSQL (the last second of local
/// state was lost with a SIGKILL, after that second's changes were committed): the
/// start's anti-entropy sends the stale record, the fence refuses it (the row carries
/// newer resourceVersions) and the delta was dropped as done. Then the source reports
/// the stale value again, now with the newest resourceVersions (the VM went back to
/// it): equal to the record, so nothing was queued and the row kept the value of the
/// lost second until the next periodic anti-entropy, an hour later.
#[tokio::test]
async fn a_fenced_out_record_is_written_once_newer_sources_confirm_it() {
    let db = Db::new(PgCluster::shared(), "refence", SchemaMode::Extended).await;
    db.add_rows(["vm-f".to_string()]).await;
    let dir = tempfile::tempdir().unwrap();
    let lost = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let mut sink = connected_sink(&db, &store).await;
    ingest(&store, &[running("vm-f", 2, 2048, "10.0.0.1", 100)]).await;
    assert_eq!(sink.flush_pending().await.unwrap().applied, 1);
    // The lost second: the previous incarnation wrote .2 at rv 200 (a store of its own
    // stands for the memory that died with it).
    let gone = open_store(&lost, db.mode);
    let mut gone_sink = connected_sink(&db, &gone).await;
    ingest(&gone, &[running("vm-f", 2, 2048, "10.0.0.2", 200)]).await;
    assert_eq!(gone_sink.flush_pending().await.unwrap().applied, 1);
    // After the restart: anti-entropy finds the drift, the stale record is fenced out.
    assert_eq!(sink.anti_entropy().await.unwrap(), 1);
    let report = sink.flush_pending().await.unwrap();
    assert_eq!((report.applied, report.fenced), (0, 1));
    // The source now says .1 at rv 300, newer than the row's .2.
    ingest(&store, &[running("vm-f", 2, 2048, "10.0.0.1", 300)]).await;
    assert_eq!(sink.flush_pending().await.unwrap().applied, 1);
    let rows = db.rows(&["runtime_primary_ip"]).await;
    assert_eq!(rows["vm-f"][0].as_deref(), Some("10.0.0.1"));
    // Written once: the next equal event costs nothing.
    ingest(&store, &[running("vm-f", 2, 2048, "10.0.0.1", 310)]).await;
    assert_eq!(sink.flush_pending().await.unwrap().batches, 0);
}
