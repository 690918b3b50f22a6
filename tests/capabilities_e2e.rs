//! Host capabilities end to end: the built daemon discovers them from a real libvirtd,
//! stores them in redb and writes `virtsync.host_capabilities` once; a restart with
//! nothing changed writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::daemon::DaemonProcess;
use support::libvirtd::{self, Libvirtd};
use support::pg::PgCluster;
use support::sync::Db;
use virtsync::config::SchemaMode;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_capabilities_reach_postgres_once_and_a_restart_writes_nothing() {
    Libvirtd::shared();
    let _lock = Libvirtd::read().await;
    let db = Db::new(PgCluster::shared(), "caps", SchemaMode::Compat).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        r#"
node_name = "host-a"
[libvirt]
uri = "{uri}"
[postgres]
url = "{url}"
flush_interval = "10ms"
[cache]
path = "{state}"
"#,
        uri = libvirtd::URI,
        url = db.url,
        state = dir.path().join("h.redb").display(),
    );
    let mut d = DaemonProcess::start(dir.path(), "h", &cfg);
    d.wait_for("host capabilities in PostgreSQL", WAIT).await;
    let first = row(&db).await;
    let (hostname, fingerprint, arch): (String, String, Option<String>) =
        (first.get(0), first.get(1), first.get(2));
    assert!(!hostname.is_empty());
    assert_eq!(fingerprint.len(), 16, "{fingerprint}");
    assert_eq!(arch.as_deref(), Some(std::env::consts::ARCH));
    assert_eq!(
        first.get::<_, Option<String>>(3).as_deref(),
        Some("complete")
    );
    assert_eq!(d.stop(), Some(0));

    // Restart: the same capabilities are found, nothing is written.
    d.restart();
    d.wait_for("host capabilities unchanged", WAIT).await;
    d.wait_for("connected to PostgreSQL", WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(d.count("host capabilities in PostgreSQL"), 1, "{}", d.log());
    let second = row(&db).await;
    assert_eq!(
        second.get::<_, String>(4),
        first.get::<_, String>(4),
        "updated_at moved"
    );
    assert_eq!(d.stop(), Some(0));
}

async fn row(db: &Db) -> tokio_postgres::Row {
    db.client
        .query_one(
            "SELECT hostname, fingerprint, data->'cpu_info'->>'arch', \
             data->'host_info'->'status'->>'state', updated_at::text \
             FROM virtsync.host_capabilities WHERE host_id = 'host-a'",
            &[],
        )
        .await
        .unwrap()
}
