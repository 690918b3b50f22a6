//! libvirt end to end, the built daemon against a real libvirtd with real KVM and TCG
//! guests, the fake Kubernetes API server and a real PostgreSQL:
//! - host capabilities discovered, stored in redb and written to
//!   `virtsync.host_capabilities` once; a restart with nothing changed writes nothing;
//! - `kubevirt_vmi_hypervisor_info` and `runtime_hypervisor_type` per running VMI in
//!   `uri` mode (guest destroyed, libvirtd restarted, VMI stopped) and in `kubevirt`
//!   mode (a fake kubelet root whose launcher socket leads to the test libvirtd).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::DaemonProcess;
use support::fake_kube::{FakeApiServer, node};
use support::libvirtd::{self, Guest, Libvirtd, unique};
use support::pg::PgCluster;
use support::ssvirt;
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
        uri = libvirtd::uri(),
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
    // The machine-specific values: the guests' machine is the default q35 (no VMI runs
    // here), asked for kvm and qemu.
    let virt_status: Option<String> = first.get(8);
    assert_eq!(
        first.get::<_, Option<String>>(5).as_deref(),
        Some("q35"),
        "{virt_status:?}"
    );
    let canonical: Option<String> = first.get(6);
    assert!(
        canonical
            .as_deref()
            .is_some_and(|c| c.starts_with("pc-q35-")),
        "{canonical:?}"
    );
    assert_eq!(first.get::<_, Option<i32>>(7), Some(2), "{virt_status:?}");
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
             data->'host_info'->'status'->>'state', updated_at::text, \
             data->'virt_info'->'guest_machine'->>'name', \
             data->'virt_info'->'guest_machine'->>'canonical', \
             jsonb_array_length(data->'virt_info'->'machines'), \
             (data->'virt_info'->'status')::text \
             FROM virtsync.host_capabilities WHERE host_id = 'host-a'",
            &[],
        )
        .await
        .unwrap()
}

const NODE: &str = "hv-node";

/// A VMI running on `NODE`: the real CNV VMI renamed, with its launcher pods.
fn running_vmi(ns: &str, name: &str, active_pods: Value, runtime_user: u32) -> Value {
    let mut v = support::fixtures::cnv_vmi();
    let meta = v["metadata"].as_object_mut().unwrap();
    meta.remove("resourceVersion");
    meta.insert("namespace".into(), json!(ns));
    meta.insert("name".into(), json!(name));
    meta.insert("uid".into(), json!(format!("uid-{ns}-{name}")));
    v["metadata"]["labels"]["kubevirt.io/nodeName"] = json!(NODE);
    v["status"]["nodeName"] = json!(NODE);
    v["status"]["activePods"] = active_pods;
    v["status"]["runtimeUser"] = json!(runtime_user);
    v
}

/// The `kubevirt_vmi_hypervisor_info` series of `ns`: (name, hypervisor_type), sorted.
fn hypervisor_series(metrics: &str, ns: &str) -> Vec<(String, String)> {
    let label = |line: &str, key: &str| -> String {
        let at = line.find(&format!("{key}=\"")).unwrap() + key.len() + 2;
        line[at..at + line[at..].find('"').unwrap()].to_owned()
    };
    let mut v: Vec<(String, String)> = metrics
        .lines()
        .filter(|l| l.starts_with("kubevirt_vmi_hypervisor_info{"))
        .filter(|l| label(l, "namespace") == ns)
        .map(|l| {
            assert!(l.ends_with("} 1"), "{l}");
            assert_eq!(label(l, "node"), NODE, "{l}");
            (label(l, "name"), label(l, "hypervisor_type"))
        })
        .collect();
    v.sort();
    v
}

/// The status (`True`/`False`/`Unknown`) of one condition in `virtsync status` JSON.
fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a str> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == json!(type_))?["status"]
        .as_str()
}

fn pairs(want: &[(&str, &str)]) -> Vec<(String, String)> {
    want.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// Scrapes until the namespace's series are `want`; returns how long it took.
async fn wait_series(d: &mut DaemonProcess, ns: &str, want: &[(&str, &str)]) -> Duration {
    let want = pairs(want);
    let start = Instant::now();
    loop {
        let got = hypervisor_series(&d.scrape().await, ns);
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < WAIT,
            "series {got:?}, want {want:?}; log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `runtime_hypervisor_type` of the namespace's rows, by VM name.
async fn stored_types(db: &Db, ns: &str) -> Vec<(String, Option<String>)> {
    db.client
        .query(
            "SELECT vm_name, runtime_hypervisor_type FROM vms \
             WHERE namespace = $1 ORDER BY vm_name",
            &[&ns],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn wait_stored(db: &Db, ns: &str, want: &[(&str, Option<&str>)]) {
    let want: Vec<(String, Option<String>)> = want
        .iter()
        .map(|(n, t)| ((*n).to_owned(), t.map(str::to_owned)))
        .collect();
    let start = Instant::now();
    loop {
        let got = stored_types(db, ns).await;
        if got == want {
            return;
        }
        assert!(start.elapsed() < WAIT, "stored {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn hv_config(dir: &Path, kube: &str, libvirt: &str, postgres: &str) -> String {
    format!(
        r#"
node_name = "{NODE}"
role = "node"
[kubernetes]
url = "{kube}"
[libvirt]
{libvirt}
domain_check_interval = "300ms"
{postgres}
[cache]
path = "{state}"
"#,
        state = dir.join("hv.redb").display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_mode_metric_and_column_follow_the_real_guests() {
    // This test restarts libvirtd: no other test of this binary may use it meanwhile.
    let _lock = Libvirtd::write().await;
    let ns = unique("hv");
    let kvm = Guest::create("kvm", &format!("{ns}_kvm-a"));
    let mut tcg = Guest::create("qemu", &format!("{ns}_tcg-b"));
    let db = Db::new(PgCluster::shared(), "hv", SchemaMode::Extended).await;
    for name in ["kvm-a", "tcg-b", "no-domain-c", "tcg-e"] {
        ssvirt::insert_vm(&db.client, &ns, name).await;
    }
    let kube = FakeApiServer::start().await;
    kube.apply(node(NODE));
    let pods = json!({"pod-1": NODE});
    for name in ["kvm-a", "tcg-b", "no-domain-c"] {
        kube.apply(running_vmi(&ns, name, pods.clone(), 107));
    }
    let dir = tempfile::tempdir().unwrap();
    let postgres = format!(
        "[postgres]\nurl = \"{}\"\nschema = \"extended\"\nflush_interval = \"10ms\"\nmanaged_refresh_interval = \"1s\"",
        db.url
    );
    let cfg = hv_config(
        dir.path(),
        &kube.url(),
        &format!("uri = \"{}\"\nlocator = \"uri\"", libvirtd::uri()),
        &postgres,
    );
    let mut d = DaemonProcess::start(dir.path(), "hv", &cfg);

    // Both guests: the right type in the metric and in the column; a running VMI
    // without a domain has no series and no type.
    let took = wait_series(&mut d, &ns, &[("kvm-a", "kvm"), ("tcg-b", "qemu-tcg")]).await;
    println!("measured: VMIs listed -> series for both guests in {took:?}");
    let text = d.scrape().await;
    support::metrics::promtool_check(&text);
    assert_eq!(
        support::metrics::sample(&text, "virtsync_source_up", r#"source="libvirt""#),
        Some(1.0)
    );
    // The operator's view of the host, refreshed on request through the socket. The
    // VMIs on this node run pc-q35-rhel9.2.0 (the CNV fixture's), which this host's
    // QEMU does not know: once they are stored, discovery asks about it too (its
    // refusal reported), and q35 still describes the guests.
    let unchanged = |scrape: &str| {
        support::metrics::sample(
            scrape,
            "virtsync_host_capabilities_refresh_total",
            r#"result="unchanged""#,
        )
        .unwrap_or(0.0)
    };
    let socket = d.socket();
    let refresh = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_virtsync"))
            .arg("--socket")
            .arg(&socket)
            .args(["host", "capabilities", "--refresh", "--output", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let asked_vmi_machine = |caps: &Value| {
        caps["capabilities"]["virt_info"]["machines"]
            .as_array()
            .is_some_and(|ms| ms.iter().any(|m| m["machine"] == "pc-q35-rhel9.2.0"))
    };
    let started = Instant::now();
    let mut caps = refresh();
    while !asked_vmi_machine(&caps) {
        assert!(
            started.elapsed() < WAIT,
            "the VMIs' machine type never asked: {caps}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        caps = refresh();
    }
    assert_eq!(
        caps["capabilities"]["cpu_info"]["arch"],
        json!(std::env::consts::ARCH)
    );
    assert_eq!(
        caps["capabilities"]["virt_info"]["guest_machine"]["name"], "q35",
        "{caps}"
    );
    let rhel = caps["capabilities"]["virt_info"]["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["machine"] == "pc-q35-rhel9.2.0" && m["virttype"] == "kvm")
        .unwrap()
        .clone();
    assert_eq!(rhel["status"]["state"], "unavailable", "{rhel}");
    // Nothing changed since: the requested refresh runs once and finds nothing new.
    let before = unchanged(&d.scrape().await);
    let again = refresh();
    assert_eq!(again["fingerprint"], caps["fingerprint"]);
    assert_eq!(
        caps["fingerprint"].as_str().map(str::len),
        Some(16),
        "{caps}"
    );
    assert_eq!(
        unchanged(&d.scrape().await),
        before + 1.0,
        "the requested refresh ran once and found nothing new"
    );
    wait_stored(
        &db,
        &ns,
        &[
            ("kvm-a", Some("kvm")),
            ("no-domain-c", None),
            ("tcg-b", Some("qemu-tcg")),
            ("tcg-e", None),
        ],
    )
    .await;

    // The TCG guest destroyed behind KubeVirt's back: its series goes, the other stays.
    tcg.destroy();
    let took = wait_series(&mut d, &ns, &[("kvm-a", "kvm")]).await;
    println!("measured: guest destroyed -> series gone in {took:?}");

    // libvirtd killed and started again: the daemon reconnects by itself, keeps the
    // KVM guest's series throughout, and a guest started afterwards is found.
    Libvirtd::kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let scrape = d.scrape().await;
    let down = hypervisor_series(&scrape, &ns);
    assert_eq!(
        down,
        pairs(&[("kvm-a", "kvm")]),
        "an outage keeps the known type"
    );
    let status = d.cli_json(&["status"]).unwrap();
    assert_eq!(
        condition(&status, "LibvirtConnected"),
        Some("False"),
        "{status}"
    );
    Libvirtd::start();
    d.wait_for("libvirt connection re-established", WAIT).await;
    // Capabilities again from the restarted libvirtd: the same host, the same fingerprint.
    let again = d.cli_json(&["host", "capabilities", "--refresh"]).unwrap();
    if again["fingerprint"] != caps["fingerprint"] {
        std::fs::write(
            "/tmp/caps-before.json",
            serde_json::to_string_pretty(&caps).unwrap(),
        )
        .unwrap();
        std::fs::write(
            "/tmp/caps-after.json",
            serde_json::to_string_pretty(&again).unwrap(),
        )
        .unwrap();
    }
    assert_eq!(again["fingerprint"], caps["fingerprint"], "{again}");
    assert_eq!(
        again["capabilities"]["cpu_info"]["arch"],
        json!(std::env::consts::ARCH)
    );
    let status = d.cli_json(&["status"]).unwrap();
    assert_eq!(
        condition(&status, "LibvirtConnected"),
        Some("True"),
        "{status}"
    );
    let tcg_e = Guest::create("qemu", &format!("{ns}_tcg-e"));
    kube.apply(running_vmi(&ns, "tcg-e", pods.clone(), 107));
    let took = wait_series(&mut d, &ns, &[("kvm-a", "kvm"), ("tcg-e", "qemu-tcg")]).await;
    println!("measured: after the libvirtd restart, new guest's series in {took:?}");
    wait_stored(
        &db,
        &ns,
        &[
            ("kvm-a", Some("kvm")),
            ("no-domain-c", None),
            ("tcg-b", Some("qemu-tcg")),
            ("tcg-e", Some("qemu-tcg")),
        ],
    )
    .await;

    // The VMI stops: series removed, runtime columns cleared.
    let mut stopped = running_vmi(&ns, "kvm-a", pods.clone(), 107);
    stopped["status"]["phase"] = json!("Succeeded");
    kube.apply(stopped);
    wait_series(&mut d, &ns, &[("tcg-e", "qemu-tcg")]).await;
    wait_stored(
        &db,
        &ns,
        &[
            ("kvm-a", None),
            ("no-domain-c", None),
            ("tcg-b", Some("qemu-tcg")),
            ("tcg-e", Some("qemu-tcg")),
        ],
    )
    .await;
    assert_eq!(d.stop(), Some(0));
    drop((kvm, tcg_e));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubevirt_mode_finds_the_domain_through_this_nodes_launcher_socket() {
    let _lock = Libvirtd::read().await;
    let ns = unique("kv");
    let kvm = Guest::create("kvm", &format!("{ns}_kv-a"));
    let kubelet = tempfile::tempdir().unwrap();
    // This node's launcher pod: its socket leads to the test libvirtd. The other node's
    // pod has a socket here too (as if stale), leading nowhere: picking it would fail.
    let launcher = |uid: &str, target: &Path| {
        let dir = kubelet.path().join(format!(
            "pods/{uid}/volumes/kubernetes.io~empty-dir/libvirt-runtime"
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(target, dir.join("virtqemud-sock")).unwrap();
    };
    let here = format!("{ns}-pod-here-0000-0000-000000000000");
    let there = format!("{ns}-pod-there-000-0000-000000000000");
    launcher(&here, libvirtd::socket());
    launcher(&there, &kubelet.path().join("nothing"));

    let kube = FakeApiServer::start().await;
    kube.apply(node(NODE));
    let dir = tempfile::tempdir().unwrap();
    let cfg = hv_config(
        dir.path(),
        &kube.url(),
        &format!(
            "locator = \"kubevirt\"\nkubelet_root = \"{}\"",
            kubelet.path().display()
        ),
        "",
    );
    let mut d = DaemonProcess::start(dir.path(), "kv", &cfg);
    // No VMI runs yet and there is no host libvirt: the groups are unavailable.
    d.wait_for("available=false", WAIT).await;

    // Root launcher (runtimeUser 0 → system URI), pods on two nodes.
    let pods = json!({ there.clone(): "other-node", here.clone(): NODE });
    kube.apply(running_vmi(&ns, "kv-a", pods, 0));
    let took = wait_series(&mut d, &ns, &[("kv-a", "kvm")]).await;
    println!("measured: kubevirt mode, VMI listed -> series in {took:?}");
    // Discovery now asks that launcher's libvirt.
    d.wait_for("available=true", WAIT).await;
    assert_eq!(d.count("host capabilities changed"), 2, "{}", d.log());
    let text = d.scrape().await;
    for result in ["unavailable", "changed"] {
        let labels = format!(r#"result="{result}""#);
        let n =
            support::metrics::sample(&text, "virtsync_host_capabilities_refresh_total", &labels);
        assert!(n >= Some(1.0), "{result}: {n:?}\n{text}");
    }

    // Only this node's pod is used: with it gone from activePods, nothing is found.
    kube.apply(running_vmi(&ns, "kv-b", json!({ there.clone(): NODE }), 0));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let series = hypervisor_series(&d.scrape().await, &ns);
    assert_eq!(
        series,
        pairs(&[("kv-a", "kvm"), ("kv-b", "unknown")]),
        "a launcher socket leading nowhere is no answer"
    );
    assert!(
        d.log().contains("domain not found or not answering"),
        "{}",
        d.log()
    );
    assert_eq!(d.stop(), Some(0));
    drop(kvm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_onto_this_node_and_resume_look_at_the_domain_again() {
    let _lock = Libvirtd::read().await;
    let ns = unique("mig");
    let domain = format!("{ns}_vm");
    let mut guest = Guest::create("kvm", &domain);
    let kube = FakeApiServer::start().await;
    kube.apply(node(NODE));
    let pods = json!({"pod-1": NODE});
    kube.apply(running_vmi(&ns, "vm", pods.clone(), 107));
    let dir = tempfile::tempdir().unwrap();
    // No periodic look within the test: only the VMI's own changes trigger one.
    let cfg = hv_config(
        dir.path(),
        &kube.url(),
        &format!("uri = \"{}\"", libvirtd::uri()),
        "",
    )
    .replace(
        "domain_check_interval = \"300ms\"",
        "domain_check_interval = \"1h\"",
    );
    let mut d = DaemonProcess::start(dir.path(), "mig", &cfg);
    wait_series(&mut d, &ns, &[("vm", "kvm")]).await;

    // The domain is replaced by a TCG one of the same name (as after a migration to a
    // host without KVM); a VMI update that is no trigger changes nothing.
    guest.destroy();
    guest = Guest::create("qemu", &domain);
    let mut vmi = running_vmi(&ns, "vm", pods.clone(), 107);
    vmi["status"]["interfaces"][0]["ipAddress"] = json!("10.128.1.250");
    kube.apply(vmi.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        hypervisor_series(&d.scrape().await, &ns),
        pairs(&[("vm", "kvm")]),
        "looked again without a trigger"
    );

    // The migration onto this node ends: looked at again.
    vmi["status"]["migrationState"] = json!({
        "sourceNode": "other-node", "targetNode": NODE, "completed": true,
        "endTimestamp": "2026-11-23T10:00:00Z"
    });
    kube.apply(vmi.clone());
    let took = wait_series(&mut d, &ns, &[("vm", "qemu-tcg")]).await;
    println!("measured: migration end -> series updated in {took:?}");

    // Paused, the domain replaced again, resumed: looked at again on the resume only.
    guest.destroy();
    guest = Guest::create("kvm", &domain);
    let paused_condition = json!({"type": "Paused", "status": "True"});
    vmi["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(paused_condition);
    kube.apply(vmi.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        hypervisor_series(&d.scrape().await, &ns),
        pairs(&[("vm", "qemu-tcg")]),
        "pausing is no trigger"
    );
    vmi["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["type"] != "Paused");
    kube.apply(vmi);
    let took = wait_series(&mut d, &ns, &[("vm", "kvm")]).await;
    println!("measured: resume -> series updated in {took:?}");
    assert_eq!(d.stop(), Some(0));
    drop(guest);
}
