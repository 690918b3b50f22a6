//! A full disk under the state file while the sink flushes must not stop the sink or
//! hold PostgreSQL back: the flushes and their acknowledgements go on in memory while the
//! owner's writes of the file fail (it reopens the file and reports it), and the file is
//! brought up to date once writes work again. Its own test binary because the file size
//! limit applies to the whole process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::disk;
use support::pg::PgCluster;
use support::sync::{Db, connected_sink, ingest, open_store_syncing, running};
use virtsync::config::SchemaMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_state_file_holds_neither_the_sink_nor_postgresql_back() {
    disk::fail_oversized_writes_instead_of_dying();
    let db = Db::new(PgCluster::shared(), "ioack", SchemaMode::Extended).await;
    db.add_rows((0..200).map(|i| format!("vm-{i:03}"))).await;
    let dir = tempfile::tempdir().unwrap();
    // Every change written at once: each acknowledgement meets the full disk.
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
    // PostgreSQL gets everything while the file refuses every write...
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.snapshot().reopens == 0 || store.snapshot().stats.pending > 0 {
        assert!(
            Instant::now() < deadline,
            "not drained while the disk is full: {:?}, {} reopens",
            store.snapshot().stats,
            store.snapshot().reopens
        );
        assert!(!task.is_finished(), "the sink stopped: {:?}", task.await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !store.snapshot().synced,
        "the file cannot have the acknowledgements"
    );

    // ...and the file catches up once it can be written.
    disk::set_file_size_limit(libc::RLIM_INFINITY);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !store.snapshot().synced {
        assert!(
            Instant::now() < deadline,
            "the file not written after the disk recovered"
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
    store.close().await.unwrap();
    let reopened = support::sync::store_at(&dir, db.mode, Duration::ZERO);
    assert_eq!(
        reopened.outbox_entries().count(),
        0,
        "the file holds no acknowledged delta"
    );
}
