//! What one host costs the shared PostgreSQL: a node-role daemon holds one connection and
//! reads only its own rows, however large the table; a daemon that holds the cluster role
//! reads the whole table (the control that shows the measurement can tell the two apart).

mod support;

use std::path::Path;
use std::time::Duration;

use tokio_postgres::Client;
use virtsync::config::SchemaMode;

use support::daemon::DaemonProcess;
use support::fake_kube::FakeApiServer;
use support::pg::PgCluster;
use support::ssvirt;
use support::sync::Db;
use support::truth::{insert_rows, vm_keys};

const NODE: &str = "node-a";
/// Rows of other hosts' VMs in the table.
const OTHERS: usize = 20_000;
const WINDOW: Duration = Duration::from_secs(12);
const WAIT: Duration = Duration::from_secs(60);

fn config(dir: &Path, kube: &FakeApiServer, db: &Db, role: &str) -> String {
    format!(
        r#"
node_name = "{NODE}"
role = "{role}"
[kubernetes]
url = "{kube}"
[postgres]
url = "{url}"
schema = "extended"
flush_interval = "20ms"
managed_refresh_interval = "1s"
resync_interval = "5s"
lock_idle_timeout = "3s"
lock_retry_interval = "300ms"
[cache]
path = "{state}"
"#,
        kube = kube.url(),
        url = db.url,
        state = dir.join(format!("{role}.redb")).display(),
    )
}

/// Rows returned by the SELECTs on `vms` since the last reset (pg_stat_statements: exact
/// and immediate).
async fn rows_read(client: &Client) -> i64 {
    let sql = "SELECT coalesce(sum(rows), 0)::bigint FROM pg_stat_statements \
               WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND query ILIKE '%vms%' AND query ILIKE 'SELECT%' \
                 AND query NOT ILIKE '%pg_stat_statements%'";
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Connections of virtsync daemons to this database.
async fn daemon_connections(client: &Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name LIKE 'virtsync%'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Until every VMI of `NODE` has its runtime node name written.
async fn wait_written(client: &Client, want: i64) {
    let start = std::time::Instant::now();
    loop {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM vms WHERE runtime_node_name = $1",
                &[&NODE],
            )
            .await
            .unwrap()
            .get(0);
        if n == want {
            return;
        }
        assert!(start.elapsed() < WAIT, "{n} of {want} rows written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a daemon of `role` for [`WINDOW`] after it wrote its rows; returns the rows it
/// read in that window and the most connections it held at once.
async fn measure(dir: &Path, kube: &FakeApiServer, db: &Db, role: &str, own: i64) -> (i64, i64) {
    let mut d = DaemonProcess::start(dir, role, &config(dir, kube, db, role));
    d.wait_for("vmi list complete", WAIT).await;
    wait_written(&db.client, own).await;
    ssvirt::reset_statements(&db.client).await;
    let mut most = 0;
    let start = std::time::Instant::now();
    while start.elapsed() < WINDOW {
        most = most.max(daemon_connections(&db.client).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let read = rows_read(&db.client).await;
    assert_eq!(d.stop(), Some(0));
    (read, most)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_daemon_reads_its_own_rows_on_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeApiServer::start().await;
    kube.load_synthetic(10, &[NODE.to_owned(), "node-b".to_owned()], 7);
    let db = Db::new(PgCluster::shared(), "fleet_scope", SchemaMode::Extended).await;
    let mut keys = vm_keys(&kube);
    keys.extend((0..OTHERS).map(|i| format!("other/vm-{i:05}")));
    insert_rows(&db.client, &keys).await;
    let own = kube
        .list("VirtualMachineInstance")
        .iter()
        .filter(|v| v["status"]["nodeName"] == NODE)
        .count() as i64;
    assert!(own > 0, "no VMI on {NODE}");

    let (node_read, node_connections) = measure(dir.path(), &kube, &db, "node", own).await;
    println!(
        "measured: role node, {own} own VMs of {} rows: {node_read} rows read in {WINDOW:?} \
         (refresh every 1s, anti-entropy every 5s), at most {node_connections} connections",
        keys.len()
    );
    assert_eq!(
        node_connections, 1,
        "a node-role daemon holds one connection"
    );
    // 12 refreshes and 2–3 passes over its own rows; the whole table would be 20,000+
    // per read.
    assert!(
        node_read <= 20 * own,
        "a node-role daemon read {node_read} rows for {own} VMs of its own"
    );

    let (holder_read, holder_connections) = measure(dir.path(), &kube, &db, "all", own).await;
    println!(
        "measured: role all (cluster-role holder): {holder_read} rows read in {WINDOW:?}, \
         at most {holder_connections} connections"
    );
    assert_eq!(
        holder_connections, 2,
        "the sink and the election's lock session"
    );
    assert!(
        holder_read >= OTHERS as i64,
        "the holder reads the whole table: {holder_read}"
    );
}
