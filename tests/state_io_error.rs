//! A write failing with a real I/O error (the file may not grow: RLIMIT_FSIZE → EFBIG, as
//! on a full disk): the writer reopens the file, keeps the batch, serves reads from
//! memory meanwhile, and stores everything once writes work again. Its own test binary
//! because the limit applies to the whole process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::disk;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use virtsync::columns::ColumnSet;
use virtsync::model::{Observation, Timestamp, VmKey, VmRecord, VmStatus};
use virtsync::state::writer::{self, WriterOptions, lock};
use virtsync::state::{Store, StoreOptions};

fn record(i: usize) -> Observation {
    let mut r = VmRecord::new(&VmKey::new("ns", format!("vm-{i:05}")));
    r.status = Some(VmStatus::PoweredOn);
    r.guest_os = Some(format!("{i:0>2000}")); // ~2 KB each: the file must grow
    Observation {
        record: r,
        versions: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_error_reopens_the_file_and_loses_nothing() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    disk::fail_oversized_writes_instead_of_dying();
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        path: dir.path().join("state.redb"),
        cache_size: 1 << 20,
        sync_interval: std::time::Duration::from_secs(1),
        writable: ColumnSet::all(),
    };
    let (mut store, _) = Store::open(options.clone(), Timestamp::now()).unwrap();
    store.ingest(&[record(0)], Timestamp::now()).unwrap();
    let store = Arc::new(Mutex::new(store));
    let size = std::fs::metadata(&options.path).unwrap().len();
    disk::set_file_size_limit(size);

    let (tx, rx) = tokio::sync::mpsc::channel(10_000);
    let writer = tokio::spawn(writer::run(
        store.clone(),
        rx,
        WriterOptions::default(),
        Arc::new(tokio::sync::Notify::new()),
        Timestamp::now,
    ));
    for i in 1..=2000 {
        tx.send(record(i).into()).await.unwrap();
    }
    // The writer keeps failing and reopening while the file may not grow...
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while lock(&store).reopens() == 0 {
        assert!(std::time::Instant::now() < deadline, "no I/O error seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...while reads are served from memory.
    assert!(lock(&store).record(&VmKey::new("ns", "vm-00000")).is_some());
    assert!(lock(&store).records().count() < 2001);

    disk::set_file_size_limit(libc::RLIM_INFINITY);
    drop(tx);
    tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("writer finished after the disk recovered")
        .unwrap();
    let reopens = lock(&store).reopens();
    assert!(reopens >= 1);
    assert_eq!(lock(&store).sync_due(), None, "all of it synced");
    assert_eq!(lock(&store).records().count(), 2001);

    // And it is all on disk.
    let store = Arc::try_unwrap(store).ok().unwrap().into_inner().unwrap();
    store.close().unwrap();
    let (store, report) = Store::open(options, Timestamp::now()).unwrap();
    assert_eq!(report.moved_aside, None);
    assert_eq!(store.records().count(), 2001);
}
