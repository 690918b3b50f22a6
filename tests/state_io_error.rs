//! A write failing with a real I/O error (the file may not grow: RLIMIT_FSIZE → EFBIG, as
//! on a full disk): the owner reopens the file, keeps every change in memory and serves
//! reads from there meanwhile, and writes everything once writes work again. Its own test binary
//! because the limit applies to the whole process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::disk;

use std::time::Duration;

use virtsync::columns::ColumnSet;
use virtsync::model::{Observation, Timestamp, VmKey, VmRecord, VmStatus};
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
    let size = std::fs::metadata(&options.path).unwrap().len();
    disk::set_file_size_limit(size);

    let (tx, rx) = tokio::sync::mpsc::channel(10_000);
    let health = virtsync::health::Health::default();
    let settings = virtsync::state::OwnerSettings::new(
        virtsync::metrics::Metrics::new().unwrap(),
        health.clone(),
    );
    let state = virtsync::state::spawn(store, rx, settings).unwrap();
    for i in 1..=2000 {
        tx.send(record(i).into()).await.unwrap();
    }
    // Every event is applied in memory and served from there, while the writes keep
    // failing and the file is reopened...
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while state.snapshot().reopens == 0 || state.snapshot().records.len() < 2001 {
        assert!(std::time::Instant::now() < deadline, "no I/O error seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snapshot = state.snapshot();
    assert!(snapshot.record(&VmKey::new("ns", "vm-02000")).is_some());
    assert!(!snapshot.synced, "the file cannot have them");
    let writable = health
        .conditions()
        .into_iter()
        .find(|c| c.type_ == virtsync::health::STATE_WRITABLE)
        .expect("StateWritable reported");
    assert_eq!(
        writable.status,
        virtsync::derive::condition::ConditionStatus::False,
        "reported as not writable: {writable:?}"
    );

    disk::set_file_size_limit(libc::RLIM_INFINITY);
    drop(tx);
    tokio::time::timeout(Duration::from_secs(60), state.sources_done())
        .await
        .expect("everything stored after the disk recovered");
    let snapshot = state.snapshot();
    assert!(snapshot.reopens >= 1);
    assert!(snapshot.synced, "all of it synced");
    assert_eq!(snapshot.records.len(), 2001);

    // And it is all on disk.
    state.close().await.unwrap();
    let (store, report) = Store::open(options, Timestamp::now()).unwrap();
    assert_eq!(report.moved_aside, None);
    assert_eq!(store.records().count(), 2001);
}
