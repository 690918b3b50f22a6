//! A state-store I/O error while the sink records a flush (the disk is full) must not
//! end the sink: it reopens the file, keeps going, and drains once writes work again.
//! Its own test binary because the file size limit applies to the whole process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::disk;
use support::pg::PgCluster;
use support::sync::{Db, connected_sink, ingest, open_store_syncing, running};
use virtsync::config::SchemaMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_while_acking_does_not_stop_the_sink() {
    disk::fail_oversized_writes_instead_of_dying();
    let db = Db::new(PgCluster::shared(), "ioack", SchemaMode::Extended).await;
    db.add_rows((0..200).map(|i| format!("vm-{i:03}"))).await;
    let dir = tempfile::tempdir().unwrap();
    // Every commit synced: an acknowledgement then meets the full disk itself (with the
    // default 1 s it would stay in memory until the writer's next sync).
    let store = open_store_syncing(&dir, db.mode, Duration::ZERO);
    let batch: Vec<_> = (0..200)
        .map(|i| {
            let mut o = running(&format!("vm-{i:03}"), 2, 2048, "10.0.0.1", 1);
            o.record.guest_os = Some(format!("{i:0>200}"));
            o
        })
        .collect();
    ingest(&store, &batch).await;
    // Looks the records' rows up: all 200 managed, their first deltas queued.
    drop(connected_sink(&db, &store).await);
    assert_eq!(store.snapshot().stats.pending, 200);
    disk::set_file_size_limit(8192);
    let sink = support::sync::sink(db.settings(), &store);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(sink.run(Arc::new(tokio::sync::Notify::new()), stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.snapshot().reopens == 0 {
        assert!(Instant::now() < deadline, "no store error seen");
        assert!(!task.is_finished(), "the sink stopped: {:?}", task.await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!task.is_finished(), "the sink stopped on a store error");
    assert!(store.snapshot().stats.pending > 0);

    disk::set_file_size_limit(libc::RLIM_INFINITY);
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.snapshot().stats.pending > 0 {
        assert!(
            Instant::now() < deadline,
            "outbox not drained after the disk recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    task.await.unwrap().unwrap();
    let rows = db.rows(&["guest_os"]).await;
    assert_eq!(rows.len(), 200);
    assert!(
        rows.iter()
            .all(|(_, v)| v[0].as_deref().is_some_and(|g| g.len() == 200))
    );
}
