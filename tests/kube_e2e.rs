//! End to end: the built binary as a process with a config file, the fake Kubernetes API
//! server speaking the real list/watch protocol, and a real PostgreSQL with SSVirt-shaped
//! rows and the column-change trigger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::DaemonProcess;
use support::fake_kube::{FakeApiServer, node};
use support::pg::PgCluster;
use support::ssvirt;
use support::sync::Db;
use virtsync::config::SchemaMode;

use support::fixtures::{CNV_NAME as NAME, CNV_NS as NS};
const NODE: &str = "sno-0-0";
const WAIT: Duration = Duration::from_secs(20);

/// The real CNV VMI (running on sno-0-0).
fn vmi() -> Value {
    let mut v = support::fixtures::cnv_vmi();
    v["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    v
}

/// The real CNV VM, renamed to own that VMI.
fn vm() -> Value {
    let mut v = support::fixtures::cnv_vm();
    v["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    v
}

fn config(dir: &Path, name: &str, node: &str, role: &str, kube: &str, db: &Db) -> String {
    config_with(dir, name, node, role, kube, db, "")
}

/// `kube_extra`: more keys for the [kubernetes] table (filters).
fn config_with(
    dir: &Path,
    name: &str,
    node: &str,
    role: &str,
    kube: &str,
    db: &Db,
    kube_extra: &str,
) -> String {
    let mode = match db.mode {
        SchemaMode::Compat => "compat",
        SchemaMode::Extended => "extended",
    };
    format!(
        r#"
node_name = "{node}"
role = "{role}"
[kubernetes]
url = "{kube}"
{kube_extra}
[postgres]
url = "{url}"
schema = "{mode}"
flush_interval = "10ms"
managed_refresh_interval = "1s"
lock_idle_timeout = "3s"
lock_retry_interval = "300ms"
[cache]
path = "{state}"
"#,
        url = db.url,
        state = dir.join(format!("{name}.redb")).display(),
    )
}

/// One row's columns as text, by name.
async fn row(db: &Db, cols: &[&str]) -> Vec<Option<String>> {
    db.rows(cols).await.remove(NAME).unwrap_or_default()
}

/// Polls the row until `ok` holds; returns how long it took.
async fn wait_row(db: &Db, cols: &[&str], ok: impl Fn(&[Option<String>]) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let r = row(db, cols).await;
        if ok(&r) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < WAIT,
            "row never got there: {cols:?} = {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn is(v: &Option<String>, want: &str) -> bool {
    v.as_deref() == Some(want)
}

/// The flush statement (reads such as the managed-set refresh are not writes).
const VMS: &str = r#"UPDATE "public"."vms""#;

async fn start_one(
    kube: &FakeApiServer,
    db: &Db,
    dir: &Path,
    name: &str,
    node_name: &str,
    role: &str,
) -> DaemonProcess {
    let mut d = DaemonProcess::start(
        dir,
        name,
        &config(dir, name, node_name, role, &kube.url(), db),
    );
    if role != "cluster" {
        d.wait_for("vmi list complete", WAIT).await;
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_and_vmi_become_a_row_and_only_real_changes_are_written() {
    let kube = FakeApiServer::start().await;
    kube.apply(node(NODE));
    let db = Db::new(PgCluster::shared(), "e2e", SchemaMode::Extended).await;
    ssvirt::insert_vm(&db.client, NS, NAME).await;
    ssvirt::insert_vm(&db.client, NS, "sentinel").await;
    let dir = tempfile::tempdir().unwrap();
    let mut d = start_one(&kube, &db, dir.path(), "a", NODE, "all").await;
    d.wait_for("vm list complete", WAIT).await;

    // Created → status, legacy and runtime fields.
    ssvirt::clear_column_log(&db.client).await;
    kube.apply(vm());
    kube.apply(vmi());
    let cols = [
        "status",
        "cpu_count",
        "memory_mb",
        "guest_os",
        "runtime_primary_ip",
        "runtime_node_name",
        "runtime_qos_class",
        "runtime_agent_connected",
    ];
    let took = wait_row(&db, &cols, |r| {
        is(&r[0], "POWERED_ON") && is(&r[4], "10.128.1.193")
    })
    .await;
    println!("measured: VM + VMI created -> row written in {took:?}");
    let r = row(&db, &cols).await;
    assert!(is(&r[1], "1") && is(&r[2], "2048"), "{r:?}");
    assert!(is(&r[3], "CentOS Linux 7 (Core)"), "{r:?}");
    assert!(
        is(&r[5], NODE) && is(&r[6], "Burstable") && is(&r[7], "true"),
        "{r:?}"
    );

    // Only guest-agent data changes → exactly those columns.
    ssvirt::clear_column_log(&db.client).await;
    let mut changed = vmi();
    changed["status"]["interfaces"][0]["ipAddress"] = json!("10.128.1.200");
    changed["status"]["interfaces"][0]["ipAddresses"] = json!(["10.128.1.200", "fe80::1"]);
    kube.apply(changed.clone());
    wait_row(&db, &["runtime_primary_ip"], |r| is(&r[0], "10.128.1.200")).await;
    let columns = ssvirt::changed_columns(&db.client).await;
    let want = [
        "runtime_network_interfaces",
        "runtime_primary_ip",
        "runtime_vmi_updated_at",
        "updated_at",
    ];
    assert_eq!(columns.iter().map(String::as_str).collect::<Vec<_>>(), want);

    // Unused fields, resourceVersion and lastProbeTime changes → nothing touches vms.
    let before = d.scrape().await;
    ssvirt::reset_statements(&db.client).await;
    ssvirt::clear_column_log(&db.client).await;
    kube.apply(changed.clone()); // same content, new resourceVersion
    let mut probe = changed.clone();
    for c in probe["status"]["conditions"].as_array_mut().unwrap() {
        c["lastProbeTime"] = json!("2030-01-01T00:00:00Z");
    }
    probe["metadata"]["annotations"]["unrelated"] = json!("x");
    probe["status"]["launcherContainerImageVersion"] = json!("other");
    kube.apply(probe);
    let mut vm2 = vm();
    vm2["metadata"]["annotations"] = json!({"unrelated": "y"});
    kube.apply(vm2);
    // A real change to another VM, applied last, shows when the no-ops were processed.
    let mut sentinel = vmi();
    sentinel["metadata"]["name"] = json!("sentinel");
    sentinel["metadata"]["uid"] = json!("uid-sentinel");
    kube.apply(sentinel);
    db_wait_named(&db, "sentinel", "runtime_primary_ip", "10.128.1.193").await;
    let statements = ssvirt::statements_touching(&db.client, VMS).await;
    let changes = ssvirt::column_changes(&db.client).await;
    assert!(
        changes.iter().all(|(id, _)| !id.is_empty()),
        "changes logged: {changes:?}"
    );
    let touched: std::collections::BTreeSet<String> = db
        .client
        .query(
            "SELECT DISTINCT v.vm_name FROM vms_column_log l JOIN vms v ON v.id = l.vm_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(touched.into_iter().collect::<Vec<_>>(), vec!["sentinel"]);
    assert_eq!(statements, 1, "one UPDATE, for the sentinel only");

    // The metrics saw the same: no-ops counted, one row flushed (the sentinel's).
    let after = d.scrape().await;
    support::metrics::promtool_check(&after);
    let delta = |name: &str, labels: &str| {
        let get = |t: &str| support::metrics::sample(t, name, labels).unwrap_or(0.0);
        get(&after) - get(&before)
    };
    // (An identical re-apply makes no event, as on a real API server: the annotation
    // change of the VM and the VMI's unused-field change are the no-ops.)
    assert_eq!(
        delta("virtsync_noop_events_total", r#"source="kubernetes""#),
        2.0,
        "no-ops not counted:\n{after}"
    );
    assert_eq!(delta("virtsync_flush_rows_total", ""), 1.0, "{after}");
    assert_eq!(
        delta(
            "virtsync_vm_field_updates_total",
            r#"field="runtime_primary_ip""#
        ),
        1.0
    );
    assert_eq!(
        delta("virtsync_vm_field_updates_total", r#"field="status""#),
        0.0
    );
    assert_eq!(
        delta("virtsync_events_total", r#"kind="vmi",source="kubernetes""#),
        2.0
    );
    assert_eq!(
        delta("virtsync_events_total", r#"kind="vm",source="kubernetes""#),
        1.0
    );
    assert_eq!(delta("virtsync_event_to_commit_seconds_count", ""), 1.0);
    for (name, labels, want) in [
        ("virtsync_source_up", r#"source="kubernetes""#, 1.0),
        ("virtsync_source_up", r#"source="postgres""#, 1.0),
        ("virtsync_cluster_role_holder", "", 1.0),
        ("virtsync_outbox_pending", "", 0.0),
        ("virtsync_outbox_parked", "", 0.0),
        (
            "virtsync_build_info",
            &format!(r#"version="{}""#, env!("CARGO_PKG_VERSION")),
            1.0,
        ),
    ] {
        assert_eq!(
            support::metrics::sample(&after, name, labels),
            Some(want),
            "{name}{{{labels}}}:\n{after}"
        );
    }

    // The guest shuts down (runStrategy Manual): the VMI stays, in phase Succeeded,
    // which counts as no VMI: runtime cleared.
    let mut succeeded = changed.clone();
    succeeded["status"]["phase"] = json!("Succeeded");
    kube.apply(succeeded);
    wait_row(&db, &["runtime_primary_ip", "runtime_phase"], |r| {
        r[0].is_none() && r[1].is_none()
    })
    .await;

    // The VMI stops: runtime cleared, legacy from the VM spec, POWERED_OFF.
    let mut stopped = vm();
    stopped["status"]["printableStatus"] = json!("Stopped");
    stopped["status"]["created"] = json!(false);
    stopped["status"]["ready"] = json!(false);
    stopped["spec"]["running"] = json!(false);
    stopped["spec"]
        .as_object_mut()
        .unwrap()
        .remove("runStrategy");
    let part =
        virtsync::derive::derive_vm(&virtsync::derive::decode_vm(&stopped).unwrap()).unwrap();
    kube.delete("VirtualMachineInstance", NS, NAME);
    kube.apply(stopped);
    let cols = [
        "status",
        "runtime_primary_ip",
        "runtime_node_name",
        "cpu_count",
        "memory_mb",
    ];
    wait_row(&db, &cols, |r| is(&r[0], "POWERED_OFF") && r[1].is_none()).await;
    let r = row(&db, &cols).await;
    assert_eq!(r[2], None, "runtime cleared: {r:?}");
    if let Some(cpu) = part.spec_cpu_count {
        assert!(is(&r[3], &cpu.to_string()), "cpu from the spec: {r:?}");
    }
    if let Some(mem) = part.spec_memory_mb {
        assert!(is(&r[4], &mem.to_string()), "memory from the spec: {r:?}");
    }

    // The VM deleted → DELETED.
    kube.delete("VirtualMachine", NS, NAME);
    wait_row(&db, &["status"], |r| is(&r[0], "DELETED")).await;
    assert_eq!(d.stop(), Some(0), "clean stop");
}

async fn db_wait_named(db: &Db, name: &str, col: &str, want: &str) {
    let start = Instant::now();
    loop {
        let rows = db.rows(&[col]).await;
        if rows.get(name).is_some_and(|r| is(&r[0], want)) {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "{name}.{col} never became {want}: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The VMI fixture placed on `node` (label and status), with `mem` as its current memory.
fn vmi_on(node: &str, ip: &str, mem: &str) -> Value {
    let mut v = vmi();
    v["metadata"]["labels"]["kubevirt.io/nodeName"] = json!(node);
    v["status"]["nodeName"] = json!(node);
    v["status"]["interfaces"][0]["ipAddress"] = json!(ip);
    v["status"]["interfaces"][0]["ipAddresses"] = json!([ip]);
    v["status"]["memory"]["guestCurrent"] = json!(mem);
    v
}

/// Column changes logged since the last clear, as (column, new value).
async fn logged(db: &Db) -> Vec<(String, Option<String>)> {
    db.client
        .query(
            "SELECT column_name, new_value FROM vms_column_log ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_cut_watches_relist_and_converge_without_spurious_writes() {
    let kube = FakeApiServer::start().await;
    kube.apply(node(NODE));
    let db = Db::new(PgCluster::shared(), "e2e410", SchemaMode::Extended).await;
    ssvirt::insert_vm(&db.client, NS, NAME).await;
    let dir = tempfile::tempdir().unwrap();
    let mut d = start_one(&kube, &db, dir.path(), "a", NODE, "all").await;
    d.wait_for("vm list complete", WAIT).await;
    kube.apply(vm());
    kube.apply(vmi());
    wait_row(&db, &["runtime_primary_ip"], |r| is(&r[0], "10.128.1.193")).await;
    ssvirt::reset_statements(&db.client).await;
    ssvirt::clear_column_log(&db.client).await;

    // 410 Expired in the stream: both watchers relist; nothing changed, nothing written.
    let lists = d.count("list complete");
    kube.expire_watches();
    d.wait_for_n("list complete", lists + 2, WAIT).await;
    // A stream cut in the middle of an event, and a change made while it is down.
    kube.cut_connections_mid_event();
    kube.apply(vmi_on(NODE, "10.128.1.77", "2Gi"));
    wait_row(&db, &["runtime_primary_ip"], |r| is(&r[0], "10.128.1.77")).await;
    // An apiserver restart with a new resourceVersion history.
    let lists = d.count("list complete");
    kube.restart_with_new_history();
    d.wait_for_n("list complete", lists + 2, WAIT).await;
    kube.apply(vmi_on(NODE, "10.128.1.78", "2Gi"));
    wait_row(&db, &["runtime_primary_ip"], |r| is(&r[0], "10.128.1.78")).await;

    let statements = ssvirt::statements_touching(&db.client, VMS).await;
    assert_eq!(
        statements, 2,
        "the two real changes, nothing for the relists"
    );
    let columns: Vec<String> = logged(&db).await.into_iter().map(|(c, _)| c).collect();
    assert!(
        columns
            .iter()
            .all(|c| c.starts_with("runtime_") || c == "updated_at"),
        "{columns:?}"
    );
    println!(
        "measured: lists served {}, watches opened {}",
        kube.lists_served(),
        kube.watches_opened()
    );
    assert_eq!(d.stop(), Some(0));
}

async fn migration_between_two_node_daemons(mode: SchemaMode, prefix: &str) {
    let kube = FakeApiServer::start().await;
    kube.apply(node("node-a"));
    kube.apply(node("node-b"));
    let db = Db::new(PgCluster::shared(), prefix, mode).await;
    ssvirt::insert_vm(&db.client, NS, NAME).await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = start_one(&kube, &db, dir.path(), "a", "node-a", "node").await;
    let mut b = start_one(&kube, &db, dir.path(), "b", "node-b", "node").await;
    // What each node writes differs (memory; in extended mode also node and IP).
    let cols: &[&str] = match mode {
        SchemaMode::Compat => &["memory_mb"],
        SchemaMode::Extended => &["memory_mb", "runtime_node_name"],
    };
    let wrote = |node: &'static str, mem: &'static str| {
        move |r: &[Option<String>]| {
            is(&r[0], mem) && (mode == SchemaMode::Compat || is(&r[1], node))
        }
    };
    kube.apply(vmi_on("node-a", "10.0.0.1", "2Gi"));
    wait_row(&db, cols, wrote("node-a", "2048")).await;

    // a → b while both run: b writes, a hands off without writing.
    ssvirt::clear_column_log(&db.client).await;
    kube.apply(vmi_on("node-b", "10.0.0.2", "3Gi"));
    wait_row(&db, cols, wrote("node-b", "3072")).await;
    a.wait_for("now handled elsewhere", WAIT).await;
    let after_b = logged(&db).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(logged(&db).await, after_b, "a wrote after the hand-off");
    assert!(
        after_b
            .iter()
            .all(|(c, v)| c != "memory_mb" || v.as_deref() == Some("3072")),
        "{after_b:?}"
    );

    // a is down while the VMI moves back to a and then to b again... then a restarts.
    kube.apply(vmi_on("node-a", "10.0.0.3", "4Gi"));
    wait_row(&db, cols, wrote("node-a", "4096")).await;
    b.wait_for("now handled elsewhere", WAIT).await;
    assert_eq!(a.stop(), Some(0));
    kube.apply(vmi_on("node-b", "10.0.0.4", "5Gi"));
    wait_row(&db, cols, wrote("node-b", "5120")).await;
    ssvirt::clear_column_log(&db.client).await;
    let handed = a.count("now handled elsewhere");
    a.restart();
    a.wait_for_n("now handled elsewhere", handed + 1, WAIT)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        logged(&db).await,
        vec![],
        "a restarted after the migration wrote nothing"
    );
    assert!(wrote("node-b", "5120")(&row(&db, cols).await));
    assert_eq!(a.stop(), Some(0));
    assert_eq!(b.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_is_written_by_the_new_node_only_compat() {
    migration_between_two_node_daemons(SchemaMode::Compat, "e2emigc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_is_written_by_the_new_node_only_extended() {
    migration_between_two_node_daemons(SchemaMode::Extended, "e2emige").await;
}

fn vm_with_status(printable: &str) -> Value {
    let mut v = vm();
    v["status"]["printableStatus"] = json!(printable);
    v
}

const ACTIVE: &str = "cluster role (all VMs) active";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_role_moves_when_its_holder_is_killed_or_frozen() {
    let kube = FakeApiServer::start().await;
    let db = Db::new(PgCluster::shared(), "e2erole", SchemaMode::Compat).await;
    ssvirt::insert_vm(&db.client, NS, NAME).await;
    kube.apply(vm_with_status("Running"));
    let dir = tempfile::tempdir().unwrap();
    let mut x = start_one(&kube, &db, dir.path(), "x", "node-x", "cluster").await;
    x.wait_for(ACTIVE, WAIT).await;
    let mut y = start_one(&kube, &db, dir.path(), "y", "node-y", "cluster").await;
    wait_row(&db, &["status"], |r| is(&r[0], "POWERED_ON")).await;
    assert_eq!(y.count(ACTIVE), 0, "one holder at a time");

    // SIGKILL the holder: the standby takes over within seconds and writes.
    let killed = Instant::now();
    x.kill();
    y.wait_for(ACTIVE, WAIT).await;
    println!(
        "measured: role taken {:?} after SIGKILL of the holder",
        killed.elapsed()
    );
    kube.apply(vm_with_status("Paused"));
    wait_row(&db, &["status"], |r| is(&r[0], "SUSPENDED")).await;

    // Back to Running: x's state file (from before it was killed) says the same.
    kube.apply(vm_with_status("Running"));
    wait_row(&db, &["status"], |r| is(&r[0], "POWERED_ON")).await;
    x.restart();
    x.wait_for("anti-entropy pass done", WAIT).await;
    assert_eq!(x.count(ACTIVE), 1, "x is standby while y holds the role");
    // Another writer changes the row behind the holders' backs.
    db.client
        .execute(
            "UPDATE vms SET status = 'ERROR' WHERE vm_name = $1",
            &[&NAME],
        )
        .await
        .unwrap();

    // Freeze the holder: it loses the role after the idle timeout (3 s).
    let frozen = Instant::now();
    y.signal(libc::SIGSTOP);
    x.wait_for_n(ACTIVE, 2, WAIT).await;
    println!(
        "measured: role taken {:?} after SIGSTOP of the holder",
        frozen.elapsed()
    );
    // The VM did not change, so only the new holder's comparison with PostgreSQL
    // (anti-entropy on taking the role) can repair the row.
    wait_row(&db, &["status"], |r| is(&r[0], "POWERED_ON")).await;
    ssvirt::clear_column_log(&db.client).await;
    kube.apply(vm_with_status("Stopping"));
    wait_row(&db, &["status"], |r| is(&r[0], "POWERING_OFF")).await;
    kube.apply(vm_with_status("Running"));
    wait_row(&db, &["status"], |r| is(&r[0], "POWERED_ON")).await;
    // y resumes with the older events still in its socket: it steps down, and whatever
    // it still writes is fenced out by the newer resourceVersions.
    y.signal(libc::SIGCONT);
    y.wait_for("stepped down from the cluster role", WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let statuses: Vec<Option<String>> = logged(&db)
        .await
        .into_iter()
        .filter(|(c, _)| c == "status")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        statuses,
        vec![
            Some("POWERING_OFF".to_string()),
            Some("POWERED_ON".to_string())
        ],
        "no late write from the deposed holder"
    );
    assert_eq!(x.stop(), Some(0));
    assert_eq!(y.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_hold_and_a_node_name_without_a_node_object_is_reported() {
    let kube = FakeApiServer::start().await;
    let db = Db::new(PgCluster::shared(), "e2efilter", SchemaMode::Extended).await;
    for (ns, name) in [(NS, NAME), ("other", NAME), (NS, "unlabelled")] {
        ssvirt::insert_vm(&db.client, ns, name).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"namespaces = ["openshift-cnv"]
label_selector = "tier in (web, db)""#;
    let cfg = config_with(dir.path(), "f", "ghost", "node", &kube.url(), &db, extra);
    let mut d = DaemonProcess::start(dir.path(), "f", &cfg);
    d.wait_for("NO Node object named \"ghost\"", WAIT).await;
    d.wait_for("vmi list complete", WAIT).await;
    let place = |mut v: Value, ns: &str, name: &str, tier: Option<&str>| {
        v["metadata"]["namespace"] = json!(ns);
        v["metadata"]["name"] = json!(name);
        v["metadata"]["uid"] = json!(format!("uid-{ns}-{name}"));
        v["metadata"]["labels"]["kubevirt.io/nodeName"] = json!("ghost");
        if let Some(t) = tier {
            v["metadata"]["labels"]["tier"] = json!(t);
        }
        v
    };
    kube.apply(place(vmi(), "other", NAME, Some("web")));
    kube.apply(place(vmi(), NS, "unlabelled", None));
    kube.apply(place(vmi(), NS, NAME, Some("web")));
    let node_of = |ns: &'static str, name: &'static str| {
        let db = &db;
        async move {
            db.client
                .query_one(
                    "SELECT runtime_node_name FROM vms WHERE namespace = $1 AND vm_name = $2",
                    &[&ns, &name],
                )
                .await
                .unwrap()
                .get::<_, Option<String>>(0)
        }
    };
    let start = Instant::now();
    while node_of(NS, NAME).await.is_none() {
        assert!(start.elapsed() < WAIT, "the selected VMI was not written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        node_of("other", NAME).await,
        None,
        "outside the namespace filter"
    );
    assert_eq!(
        node_of(NS, "unlabelled").await,
        None,
        "outside the label selector"
    );
    // Leaving the label selector is a disappearance: confirmed, handed off, no write.
    ssvirt::clear_column_log(&db.client).await;
    kube.apply(place(vmi(), NS, NAME, Some("batch")));
    d.wait_for("now handled elsewhere", WAIT).await;
    assert_eq!(logged(&db).await, vec![]);
    assert_eq!(d.stop(), Some(0));
}

// ---- review 3 ----

/// Was a bug (review 3): node a is down while its VM stops; back up, a's relist misses the
/// VMI and a GET says 404, so a clears the runtime columns with no fence at all
/// (vmi_resource_version NULL) and keeps that unfenced record. The VM then starts on
/// node b, which writes its runtime columns. a's periodic anti-entropy sees "drift"
/// between its stale record and b's row and "corrects" it: the unfenced write clears
/// what b wrote, again at every pass (b's own pass puts it back: the row flaps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_confirmed_stop_does_not_clear_the_next_vmi_on_another_node() {
    let kube = FakeApiServer::start().await;
    kube.apply(node("node-a"));
    kube.apply(node("node-b"));
    let db = Db::new(PgCluster::shared(), "e2er3fence", SchemaMode::Extended).await;
    ssvirt::insert_vm(&db.client, NS, NAME).await;
    let dir = tempfile::tempdir().unwrap();
    let with_resync = |name: &str, node_name: &str| {
        config(dir.path(), name, node_name, "node", &kube.url(), &db)
            .replace("[cache]", "resync_interval = \"1s\"\n[cache]")
    };
    let mut a = DaemonProcess::start(dir.path(), "a", &with_resync("a", "node-a"));
    a.wait_for("vmi list complete", WAIT).await;
    let mut b = DaemonProcess::start(dir.path(), "b", &with_resync("b", "node-b"));
    b.wait_for("vmi list complete", WAIT).await;
    let cols = ["runtime_node_name", "runtime_primary_ip"];
    kube.apply(vmi_on("node-a", "10.0.0.1", "2Gi"));
    wait_row(&db, &cols, |r| is(&r[0], "node-a")).await;

    // a is down while the VM stops (its VMI is deleted); a comes back and clears.
    assert_eq!(a.stop(), Some(0));
    kube.delete("VirtualMachineInstance", NS, NAME);
    a.restart();
    wait_row(&db, &cols, |r| r[0].is_none() && r[1].is_none()).await;

    // The VM starts again, on node b this time (a new VMI, a new uid).
    let mut next = vmi_on("node-b", "10.0.0.2", "2Gi");
    next["metadata"]["uid"] = json!("uid-second-run");
    kube.apply(next);
    wait_row(&db, &cols, |r| is(&r[0], "node-b")).await;
    // Give both anti-entropy passes (every second) a few rounds.
    let passes = a.count("anti-entropy pass done");
    a.wait_for_n("anti-entropy pass done", passes + 3, WAIT)
        .await;
    let mut seen = Vec::new();
    for _ in 0..40 {
        seen.push(row(&db, &cols).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen.iter()
            .all(|r| is(&r[0], "node-b") && is(&r[1], "10.0.0.2")),
        "b's runtime columns were overwritten by stale node a: {:?}",
        seen.iter()
            .filter(|r| !is(&r[0], "node-b"))
            .take(3)
            .collect::<Vec<_>>()
    );
    let c = ssvirt::column_changes(&db.client).await;
    println!("column changes logged: {}", c.len());
    assert_eq!(a.stop(), Some(0));
    assert_eq!(b.stop(), Some(0));
}
