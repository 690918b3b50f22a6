//! Nothing acknowledged is lost: the built binary killed with SIGKILL at every failpoint,
//! and PostgreSQL stopped while changes arrive. The failpoint test needs the binary built
//! with `--features failpoints` (`scripts/test` does) and fails at once without it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::pg::PgCluster;
use support::sync::{Db, ingest, open_store, running};
use tokio::sync::Notify;
use virtsync::config::SchemaMode;
use virtsync::failpoint;

const VMS: usize = 40;

fn write_records(path: &Path, cpu: i64, rv: i64) {
    let mut f = std::fs::File::create(path).unwrap();
    for i in 0..VMS {
        let o = running(
            &format!("vm-{i:02}"),
            cpu,
            1024 * cpu,
            &format!("10.{cpu}.0.{i}"),
            rv,
        );
        writeln!(f, "{}", serde_json::to_string(&o).unwrap()).unwrap();
    }
}

fn virtsync(
    dir: &Path,
    url: &str,
    records: &Path,
    failpoint: Option<&str>,
) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_virtsync"));
    cmd.args(["--cache-path"])
        .arg(dir.join("state.redb"))
        .args(["--postgres-url", url, "--set", "postgres.schema=extended"])
        .args(["ingest", "--chunk", "10", "--flush-timeout", "30"])
        .arg(records)
        .env_remove("VIRTSYNC_FAILPOINT")
        .env("RUST_LOG", "warn");
    if let Some(fp) = failpoint {
        cmd.env("VIRTSYNC_FAILPOINT", fp);
    }
    cmd.output().unwrap()
}

fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn sigkill_at_every_failpoint_loses_nothing() {
    support::failpoints::require();
    for fp in failpoint::NAMES {
        let db = Db::new(PgCluster::shared(), "crash", SchemaMode::Extended).await;
        db.add_rows((0..VMS).map(|i| format!("vm-{i:02}"))).await;
        let dir = tempfile::tempdir().unwrap();
        let (v1, v2) = (dir.path().join("v1.jsonl"), dir.path().join("v2.jsonl"));
        write_records(&v1, 1, 100);
        write_records(&v2, 2, 200);
        assert_ok(&virtsync(dir.path(), &db.url, &v1, None));

        let killed = virtsync(dir.path(), &db.url, &v2, Some(fp));
        assert_eq!(
            killed.status.signal(),
            Some(9),
            "{fp}: expected SIGKILL, got {:?}; stderr: {}",
            killed.status,
            String::from_utf8_lossy(&killed.stderr)
        );
        // Restarted: the sources deliver the same (latest) state again, as a relist would.
        let again = virtsync(dir.path(), &db.url, &v2, None);
        assert_ok(&again);
        let summary: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(summary["pending"], 0, "{fp}: {summary}");

        let rows = db
            .rows(&["cpu_count", "memory_mb", "runtime_primary_ip"])
            .await;
        assert_eq!(rows.len(), VMS);
        for (i, (_, vals)) in rows.iter().enumerate() {
            let want = [
                Some("2".to_string()),
                Some("2048".to_string()),
                Some(format!("10.2.0.{i}")),
            ];
            assert_eq!(vals.as_slice(), want.as_slice(), "{fp}: vm-{i:02}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_while_changes_arrive_drains_by_itself() {
    let cluster = PgCluster::start_new();
    let db = Db::new(&cluster, "outage", SchemaMode::Extended).await;
    db.add_rows((0..20).map(|i| format!("vm-{i:02}"))).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir, db.mode);
    let enqueued = Arc::new(Notify::new());
    let stop = tokio_util::sync::CancellationToken::new();
    let sink = support::sync::sink(db.settings(), &store);
    let task = tokio::spawn(sink.run(enqueued.clone(), stop.clone()));

    let wave = |cpu: i64| -> Vec<_> {
        (0..20)
            .map(|i| running(&format!("vm-{i:02}"), cpu, 1024, "10.0.0.1", cpu))
            .collect()
    };
    // New records: their rows are looked up by key, then written.
    assert_eq!(ingest(&store, &wave(1)).await.unchecked, 20);
    enqueued.notify_one();
    wait_until(Duration::from_secs(20), || {
        let s = store.snapshot();
        s.managed.len() == 20 && s.stats.pending == 0
    })
    .await;

    tokio::task::block_in_place(|| cluster.stop());
    for cpu in 2..=5 {
        let r = ingest(&store, &wave(cpu)).await;
        assert_eq!(r.enqueued, 20);
        enqueued.notify_one();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        store.snapshot().stats.pending,
        20,
        "changes wait in the outbox"
    );
    tokio::task::block_in_place(|| cluster.start());
    wait_until(Duration::from_secs(60), || {
        store.snapshot().stats.pending == 0
    })
    .await;

    let client = support::pg::connect(&db.url).await;
    let rows = client
        .query("SELECT cpu_count FROM vms WHERE deleted_at IS NULL", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|r| r.get::<_, Option<i32>>(0) == Some(5)));
    stop.cancel();
    task.await.unwrap().unwrap();
}

async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
