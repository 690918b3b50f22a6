//! Scale-out: one daemon per simulated node (role "all": node role for its
//! own VMIs, candidate for the cluster role) against one fake API server and one
//! PostgreSQL. Changes arrive and VMIs migrate between nodes while the cluster-role
//! holder is killed twice and frozen once.
//!
//! Pass: PostgreSQL ends at the truth; no row's `runtime_node_name` ever goes back to a
//! node its VMI had left (no stale overwrite); the role moves within seconds; the
//! statements writing `vms` follow the real changes, not the number of daemons.
//!
//! CI: 20 daemons, 1,000 VMs, 20 s of changes. `scripts/scale-out` (SCALE_VMS,
//! SCALE_DAEMONS, SCALE_SECONDS, SCALE_SEED) runs it bigger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::daemon::DaemonProcess;
use support::fake_kube::{FakeApiServer, Rng};
use support::pg::PgCluster;
use support::ssvirt;
use support::sync::Db;
use support::truth::{insert_rows, vm_keys, wait_converged};
use tokio_postgres::Client;
use virtsync::config::SchemaMode;
use virtsync::sink::postgres::cluster_role::current_holder;

const LOCK_KEY: i64 = 0x7669_7274_7379_6e63;
const LOCK_IDLE: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(120);
const VMS: &str = r#"UPDATE "public"."vms""#;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map_or(default, |v| {
        v.parse().unwrap_or_else(|_| panic!("{name}={v}"))
    })
}

/// UTC time of day, as PostgreSQL prints it above.
fn wall_clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

fn node_name(i: usize) -> String {
    format!("node-{i:02}")
}

fn config(dir: &Path, kube: &FakeApiServer, db: &Db, node: &str) -> String {
    format!(
        r#"
node_name = "{node}"
role = "all"
[kubernetes]
url = "{kube}"
[postgres]
url = "{url}"
schema = "extended"
flush_interval = "50ms"
lock_idle_timeout = "{idle}s"
lock_retry_interval = "300ms"
[cache]
path = "{state}"
cache_size = "4MiB"
"#,
        kube = kube.url(),
        url = db.url,
        idle = LOCK_IDLE.as_secs(),
        state = dir.join(format!("{node}.redb")).display(),
    )
}

/// Every row update, and whether it changed nothing but the bookkeeping timestamps (a
/// write with equal values).
const ROW_LOG: &str = r#"
CREATE TABLE vms_row_log (vm_id text, same boolean, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION vms_row_log_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO vms_row_log (vm_id, same) VALUES (NEW.id,
        to_jsonb(OLD) - 'updated_at' - 'runtime_vmi_updated_at'
          = to_jsonb(NEW) - 'updated_at' - 'runtime_vmi_updated_at');
    RETURN NULL;
END
$fn$;
CREATE TRIGGER vms_row_log_trg AFTER UPDATE ON vms FOR EACH ROW EXECUTE FUNCTION vms_row_log_fn();
"#;

/// (rows updated, of which with equal values) since the log was emptied.
async fn row_updates(client: &Client) -> (i64, i64) {
    let r = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE same) FROM vms_row_log",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

/// Rows written with equal values per second of the run (diagnostics).
async fn equal_writes_by_second(client: &Client) -> Vec<(String, i64)> {
    client
        .query(
            "SELECT to_char(date_trunc('second', at), 'HH24:MI:SS'), count(*) FROM vms_row_log \
             WHERE same GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The node (application name `virtsync/<node>`) holding the cluster role, if any.
async fn holder(client: &Client) -> Option<String> {
    current_holder(client, LOCK_KEY)
        .await
        .unwrap()
        .map(|app| app.trim_start_matches("virtsync/").to_owned())
}

/// Waits until a node other than `old` holds the role; returns it and the time taken.
async fn new_holder(client: &Client, old: &str) -> (String, Duration) {
    let start = Instant::now();
    loop {
        if let Some(h) = holder(client).await.filter(|h| h != old) {
            return (h, start.elapsed());
        }
        assert!(start.elapsed() < WAIT, "the role did not move from {old}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Moves a synthetic VMI to `node` (as KubeVirt does after a live migration: a new
/// pod on the target, the node label and status), with a new IP.
fn migrate(kube: &FakeApiServer, ns: &str, name: &str, node: &str, seq: u64) {
    let mut vmi = kube.get("VirtualMachineInstance", ns, name).unwrap();
    let uid = vmi["metadata"]["uid"].as_str().unwrap().to_owned();
    vmi["metadata"]["labels"]["kubevirt.io/nodeName"] = json!(node);
    let st = &mut vmi["status"];
    st["nodeName"] = json!(node);
    st["activePods"] = json!({format!("{uid}-pod-{seq}"): node});
    let ip = format!(
        "100.{}.{}.{}",
        64 + (seq >> 16) % 64,
        (seq >> 8) % 256,
        seq % 256
    );
    st["interfaces"][0]["ipAddress"] = json!(ip);
    st["interfaces"][0]["ipAddresses"][0] = json!(ip);
    kube.apply(vmi);
}

/// `runtime_node_name` values each row took, in order (from the column log).
async fn node_history(client: &Client) -> BTreeMap<String, Vec<String>> {
    let rows = client
        .query(
            "SELECT v.namespace || '/' || v.vm_name, l.new_value FROM vms_column_log l \
             JOIN vms v ON v.id = l.vm_id \
             WHERE l.column_name = 'runtime_node_name' AND l.new_value IS NOT NULL ORDER BY l.id",
            &[],
        )
        .await
        .unwrap();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows {
        out.entry(r.get(0)).or_default().push(r.get(1));
    }
    out
}

/// Whether `written` follows `moves` in order (each write is the node the VMI was on
/// at that time or later; a write of a node it had already left is stale).
fn in_order(written: &[String], moves: &[String]) -> bool {
    let mut at = 0;
    written
        .iter()
        .all(|w| match moves[at..].iter().position(|m| m == w) {
            Some(i) => {
                at += i;
                true
            }
            None => false,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_node_daemons_share_one_database() {
    let n_daemons = env_num("SCALE_DAEMONS", 20) as usize;
    let n_vms = env_num("SCALE_VMS", 1_000) as usize;
    let seconds = env_num("SCALE_SECONDS", 20);
    let seed = env_num(
        "SCALE_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    println!(
        "scale-out: {n_daemons} daemons, {n_vms} VMs, {seconds} s, seed {seed} (SCALE_SEED repeats it)"
    );
    let cluster = PgCluster::start_new();
    let kube = FakeApiServer::start().await;
    let nodes: Vec<String> = (0..n_daemons).map(node_name).collect();
    kube.load_synthetic(n_vms, &nodes, seed);
    let db = Db::new(&cluster, "scale", SchemaMode::Extended).await;
    insert_rows(&db.client, &vm_keys(&kube)).await;
    db.client.batch_execute(ROW_LOG).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut daemons: Vec<DaemonProcess> = nodes
        .iter()
        .map(|n| {
            DaemonProcess::start_with_env(
                dir.path(),
                n,
                &config(dir.path(), &kube, &db, n),
                &[("RUST_LOG", "info")],
            )
        })
        .collect();
    for d in &mut daemons {
        d.wait_for("vmi list complete", WAIT).await;
    }
    let first = wait_converged(&kube, &db, WAIT).await;
    println!(
        "measured: {n_vms} rows written by {n_daemons} daemons in {:?} ({first:?} after the last list)",
        started.elapsed()
    );
    let watches = kube.open_watches();

    ssvirt::reset_statements(&db.client).await;
    ssvirt::clear_column_log(&db.client).await;
    db.client
        .batch_execute("TRUNCATE vms_row_log")
        .await
        .unwrap();
    let mut rng = Rng::new(seed);
    let keys = kube.vmi_keys();
    // Every node each VM was on, in order (for the stale-overwrite check).
    let mut moves: HashMap<String, Vec<String>> = kube
        .list("VirtualMachineInstance")
        .iter()
        .map(|v| {
            let md = &v["metadata"];
            (
                format!(
                    "{}/{}",
                    md["namespace"].as_str().unwrap(),
                    md["name"].as_str().unwrap()
                ),
                vec![v["status"]["nodeName"].as_str().unwrap().to_owned()],
            )
        })
        .collect();
    let rv0 = kube.resource_version();
    let churn = kube.spawn_churn(100.0, seed ^ 1);

    // Role faults at 1/4, 2/4 (kills) and 3/4 (freeze) of the run, migrations throughout.
    let mut takeovers = Vec::new();
    let mut seq = 0;
    let mut migrations = 0;
    let run = Duration::from_secs(seconds);
    let t0 = Instant::now();
    let mut next_fault = 1;
    while t0.elapsed() < run {
        for _ in 0..2 {
            let (ns, name) = &keys[rng.below(keys.len() as u64) as usize];
            let key = format!("{ns}/{name}");
            let to = node_name(rng.below(n_daemons as u64) as usize);
            if moves[&key].last() != Some(&to) {
                seq += 1;
                migrate(&kube, ns, name, &to, seq);
                moves.get_mut(&key).unwrap().push(to);
                migrations += 1;
            }
        }
        if next_fault <= 3 && t0.elapsed() >= run * next_fault / 4 {
            let old = holder(&db.client).await.expect("a cluster-role holder");
            let i = nodes.iter().position(|n| *n == old).unwrap();
            let (new, took) = if next_fault < 3 {
                daemons[i].kill();
                let moved = new_holder(&db.client, &old).await;
                daemons[i].restart();
                moved
            } else {
                daemons[i].signal(libc::SIGSTOP);
                let moved = new_holder(&db.client, &old).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                daemons[i].signal(libc::SIGCONT);
                moved
            };
            let how = if next_fault < 3 { "killed" } else { "frozen" };
            println!(
                "measured: holder {old} {how} at {}; {new} holds the role after {took:?}",
                wall_clock()
            );
            takeovers.push(took);
            next_fault += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    churn.stop().await;
    let changes = kube.resource_version() - rv0;
    let converged = wait_converged(&kube, &db, WAIT).await;
    println!(
        "measured: {changes} VMI changes ({migrations} migrations); truth {converged:?} after the last"
    );

    // No stale overwrite: every row's node history follows its VMI's moves.
    let history = node_history(&db.client).await;
    let stale: Vec<_> = history
        .iter()
        .filter(|(k, written)| !in_order(written, &moves[*k]))
        .map(|(k, w)| (k.clone(), w.clone(), moves[k].clone()))
        .collect();
    assert!(
        stale.is_empty(),
        "stale node written (row, written, moves): {:?}",
        &stale[..stale.len().min(5)]
    );

    // Statements follow the real changes: rows updated no more than the changes
    // (coalescing only lowers it), plus what a killed daemon may write again after its
    // restart (its deltas committed in PostgreSQL but not yet marked done: at most its
    // own VMs, twice).
    let updates = ssvirt::statements_touching(&db.client, VMS).await;
    let (rows, same) = row_updates(&db.client).await;
    println!(
        "measured: {updates} UPDATE statements updated {rows} rows ({same} with equal values) \
         for {changes} changes ({:.2} rows and {:.3} statements per change); {watches} watches \
         open on the API server for {n_daemons} daemons; role moved in {:?}",
        rows as f64 / changes as f64,
        updates as f64 / changes as f64,
        takeovers
    );
    println!(
        "measured: rows written with equal values, per second: {:?}",
        equal_writes_by_second(&db.client).await
    );
    let replay_bound = 2 * n_vms.div_ceil(n_daemons) as u64;
    assert!(
        rows as u64 <= changes + replay_bound,
        "{rows} rows updated for {changes} changes; equal values per second: {:?}",
        equal_writes_by_second(&db.client).await
    );
    assert!(
        same as u64 <= replay_bound,
        "{same} rows written with equal values"
    );
    assert!(
        takeovers.iter().all(|t| *t < LOCK_IDLE * 3),
        "the role took too long to move: {takeovers:?}"
    );
    for d in &mut daemons {
        assert_eq!(d.stop(), Some(0), "{}: {}", d.name, d.log());
    }
}
