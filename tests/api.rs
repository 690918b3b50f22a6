//! The operator surface of a running daemon (the built binary): the socket API through
//! the `virtsync` CLI and as raw HTTP (every error path, a non-admin peer, garbage), the
//! systemd notification protocol under a fake NOTIFY_SOCKET, and SIGTERM under load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::{DaemonProcess, raw, request};
use support::fake_kube::{FakeApiServer, node};
use support::fixtures::{CNV_NAME as NAME, CNV_NS as NS};
use support::pg::PgCluster;
use support::ssvirt;
use support::sync::Db;
use virtsync::config::SchemaMode;

const NODE: &str = "sno-0-0";
const WAIT: Duration = Duration::from_secs(30);

/// `virtsync --socket S ARGS…` → (exit code, stdout, stderr).
fn cli(socket: &Path, args: &[&str]) -> (i32, String, String) {
    cli_as(socket, args, None)
}

fn cli_as(socket: &Path, args: &[&str], uid: Option<u32>) -> (i32, String, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_virtsync"));
    cmd.arg("--socket").arg(socket).args(args);
    cmd.env_remove("VIRTSYNC_CONFIG").env("RUST_LOG", "warn");
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli_json(socket: &Path, args: &[&str]) -> Value {
    let (code, out, err) = cli(socket, args);
    assert_eq!(code, 0, "virtsync {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn config(dir: &Path, extra: &str) -> String {
    format!(
        "node_name = \"{NODE}\"\n{extra}\n[cache]\npath = \"{}\"\n",
        dir.join("state.redb").display()
    )
}

fn vmi(name: &str, ip: &str) -> Value {
    let mut v = support::fixtures::cnv_vmi();
    let meta = v["metadata"].as_object_mut().unwrap();
    meta.remove("resourceVersion");
    meta.insert("name".into(), json!(name));
    meta.insert("uid".into(), json!(format!("uid-{name}")));
    v["status"]["interfaces"][0]["ipAddress"] = json!(ip);
    v["status"]["interfaces"][0]["ipAddresses"] = json!([ip]);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_and_operates_a_running_daemon() {
    let db = Db::new(PgCluster::shared(), "api", SchemaMode::Extended).await;
    for name in [NAME, "refused"] {
        ssvirt::insert_vm(&db.client, NS, name).await;
    }
    // A rule virtsync cannot know: PostgreSQL refuses this one VM's IP.
    db.client
        .batch_execute(
            "ALTER TABLE vms ADD CONSTRAINT no_bad_ip CHECK (runtime_primary_ip IS DISTINCT FROM '10.9.9.9')",
        )
        .await
        .unwrap();
    let kube = FakeApiServer::start().await;
    kube.apply(node(NODE));
    kube.apply(vmi(NAME, "10.128.1.193"));
    kube.apply(vmi("refused", "10.9.9.9"));
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "role = \"node\"\n[kubernetes]\nurl = \"{}\"\n[postgres]\nurl = \"{}\"\nschema = \"extended\"\nflush_interval = \"10ms\"\nmanaged_refresh_interval = \"1s\"",
        kube.url(),
        db.url
    );
    let mut d = DaemonProcess::start(dir.path(), "ops", &config(dir.path(), &extra));
    d.wait_for("vmi list complete", WAIT).await;
    let sock = d.socket();
    let mode = std::fs::metadata(&sock).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o660);

    // The refused delta is parked with PostgreSQL's reason.
    let start = Instant::now();
    // The other VM's delta may still be pending in the first listings: wait
    // until it is written and only the parked one is left.
    let item = loop {
        let o = cli_json(&sock, &["outbox", "list", "--output", "json"]);
        if let Some([item]) = o["items"].as_array().map(Vec::as_slice) {
            if item["state"] == json!("Parked") {
                break item.clone();
            }
        }
        assert!(start.elapsed() < WAIT, "nothing parked: {o}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let item = &item;
    assert_eq!(item["vm"], json!(format!("{NS}/refused")));
    assert_eq!(item["state"], json!("Parked"));
    assert!(
        item["message"].as_str().unwrap().contains("23514"),
        "{item}"
    );

    let status = cli_json(&sock, &["status", "--output", "json"]);
    assert_eq!(status["node"], json!(NODE));
    assert_eq!(status["role"], json!("node"));
    assert_eq!(status["outbox"]["parked"], json!(1));
    assert_eq!(status["ready"], json!(true), "{status}");
    let conditions: Vec<(String, String)> = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().into(),
                c["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    for want in ["CacheReady", "KubernetesConnected", "PostgresConnected"] {
        assert!(
            conditions.contains(&(want.into(), "True".into())),
            "{conditions:?}"
        );
    }
    let (code, table, _) = cli(&sock, &["status"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("cluster role:  not taken (role = node)"),
        "{table}"
    );
    assert!(
        table.contains("outbox:        0 pending, 1 parked"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("PostgresConnected ") && l.contains(" True ")),
        "{table}"
    );

    // VMs: list, filters, one, unknown.
    let all = cli_json(&sock, &["vms", "--output", "json"]);
    assert_eq!(all["items"].as_array().unwrap().len(), 2, "{all}");
    let none = cli_json(&sock, &["vms", "--namespace", "other", "--output", "json"]);
    assert_eq!(none["items"], json!([]));
    let here = cli_json(&sock, &["vms", "--node", NODE, "--output", "json"]);
    assert_eq!(here["items"].as_array().unwrap().len(), 2);
    let one = cli_json(
        &sock,
        &["vms", "get", &format!("{NS}/{NAME}"), "--output", "json"],
    );
    assert_eq!(
        one["runtimeDetails"]["primaryIPAddress"],
        json!("10.128.1.193")
    );
    assert_eq!(one["sync"]["state"], json!("Synced"));
    let (code, table, _) = cli(&sock, &["vms"]);
    assert_eq!(code, 0);
    assert!(table.starts_with("NAMESPACE"), "{table}");
    assert!(
        table.contains("Parked") && table.contains("Synced"),
        "{table}"
    );
    let (code, _, err) = cli(&sock, &["vms", "get", &format!("{NS}/nope")]);
    assert_eq!(code, 1);
    assert!(err.contains("404") && err.contains("no VM"), "{err}");
    let (code, _, err) = cli(&sock, &["vms", "get", "no-slash"]);
    assert_eq!(code, 2, "{err}");

    // The rule goes; the operator retries: written.
    db.client
        .batch_execute("ALTER TABLE vms DROP CONSTRAINT no_bad_ip")
        .await
        .unwrap();
    let (code, out, err) = cli(&sock, &["outbox", "retry", &format!("{NS}/refused")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("retry done"), "{out}");
    let start = Instant::now();
    loop {
        let rows = db.rows(&["runtime_primary_ip"]).await;
        if rows["refused"][0].as_deref() == Some("10.9.9.9") {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "retried delta not written: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _, err) = cli(&sock, &["outbox", "drop", &format!("{NS}/refused")]);
    assert_eq!(code, 1);
    assert!(err.contains("no outbox entry"), "{err}");

    // Anti-entropy on request, with the answer once the pass is done.
    db.client
        .execute(
            "UPDATE vms SET runtime_primary_ip = '1.2.3.4' WHERE vm_name = $1",
            &[&NAME],
        )
        .await
        .unwrap();
    let (code, out, err) = cli(&sock, &["resync"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("anti-entropy pass done") && out.contains(": 1 rows differed"),
        "{out}"
    );
    let start = Instant::now();
    while db.rows(&["runtime_primary_ip"]).await[NAME][0].as_deref() != Some("10.128.1.193") {
        assert!(start.elapsed() < WAIT, "drift not corrected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // No libvirt here: said plainly.
    let (code, _, err) = cli(&sock, &["host", "capabilities"]);
    assert_eq!(code, 1);
    assert!(err.contains("no libvirt configured"), "{err}");
    assert_eq!(d.stop(), Some(0));

    // The daemon gone: the CLI says so and what to do.
    let (code, _, err) = cli(&sock, &["status"]);
    assert_eq!(code, 1);
    assert!(err.contains("the daemon is not running"), "{err}");
}

/// RSS (kB) and open file descriptors of a process.
fn usage(pid: i32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (rss, fds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_a_json_error_and_garbage_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = DaemonProcess::start(dir.path(), "raw", &config(dir.path(), ""));
    d.wait_for("virtsync running", WAIT).await;
    let sock = d.socket();

    let (code, body) = request(&sock, "GET", "/v1/status", "", "");
    assert_eq!(code, 200);
    assert_eq!(body["ready"], json!(true));
    let (code, body) = request(&sock, "GET", "/v1/vms", "", "");
    assert_eq!((code, body), (200, json!({"items": []})));
    let (code, body) = request(&sock, "GET", "/v1/outbox", "", "");
    assert_eq!((code, body), (200, json!({"items": []})));

    let big = "x".repeat(70_000);
    for (method, path, extra, body, want, says) in [
        ("GET", "/v2/nothing", "", "", 404, "no such endpoint"),
        ("GET", "/", "", "", 404, "no such endpoint"),
        ("DELETE", "/v1/status", "", "", 405, "only GET"),
        ("GET", "/v1/resync", "", "", 405, "only POST"),
        ("POST", "/v1/resync", "", "{not json", 400, "malformed body"),
        ("POST", "/v1/resync", "", big.as_str(), 413, "over 65536"),
        (
            "GET",
            "/v1/vms?colour=red",
            "",
            "",
            400,
            "unknown query parameter \"colour\"",
        ),
        (
            "GET",
            "/v1/vms?namespace=%zz",
            "",
            "",
            400,
            "bad percent-encoding",
        ),
        (
            "GET",
            "/v1/status?x=1",
            "",
            "",
            400,
            "unknown query parameter",
        ),
        ("GET", "/v1/vms/ns/none", "", "", 404, "no VM ns/none"),
        (
            "POST",
            "/v1/resync",
            "",
            "",
            409,
            "no PostgreSQL configured",
        ),
        (
            "POST",
            "/v1/host/capabilities/refresh",
            "",
            "",
            409,
            "no libvirt configured",
        ),
        (
            "GET",
            "/v1/host/capabilities",
            "",
            "",
            404,
            "no libvirt configured",
        ),
        (
            "POST",
            "/v1/outbox/ns/vm/drop",
            "",
            "",
            404,
            "no outbox entry for ns/vm",
        ),
        (
            "POST",
            "/v1/outbox/ns/vm/explode",
            "",
            "",
            404,
            "no such endpoint",
        ),
    ] {
        let (code, json) = request(&sock, method, path, extra, body);
        assert_eq!(code, want, "{method} {path}: {json}");
        assert_eq!(
            json["error"]["code"],
            json!(want),
            "{method} {path}: {json}"
        );
        let message = json["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{method} {path}: {message}");
    }
    // A head over the bound is cut off, not read forever.
    let huge_head = format!(
        "GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "y".repeat(64 * 1024)
    );
    let answer = raw(&sock, huge_head.as_bytes());
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer:.200}"
    );

    // A peer that is neither root nor in the admin group may read, not change.
    std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let (code, _, err) = cli_as(&sock, &["status", "--output", "json"], Some(65534));
    assert_eq!(code, 0, "nobody may read: {err}");
    let (code, _, err) = cli_as(&sock, &["resync"], Some(65534));
    assert_eq!(code, 1);
    assert!(err.contains("403") && err.contains("admin group"), "{err}");
    let (code, _, err) = cli_as(&sock, &["outbox", "drop", "ns/vm"], Some(65534));
    assert_eq!(code, 1);
    assert!(err.contains("403"), "{err}");

    // 1,000 garbage requests: no crash, memory and descriptors back to their baseline.
    let garbage = |i: usize| -> Vec<u8> {
        let mut seed = (i as u64).wrapping_mul(6364136223846793005) ^ 1442695040888963407;
        let mut bytes: Vec<u8> = (0..(i % 300) + 1)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                (seed >> 33) as u8
            })
            .collect();
        match i % 4 {
            0 => bytes,
            1 => {
                let mut v =
                    b"GET /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n"
                        .to_vec();
                v.append(&mut bytes);
                v
            }
            2 => b"POST /v1/outbox/%%%/../retry HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            _ => b"GET /v1/vms HTTP/1.1\r\nHost: x\r\n".to_vec(), // head never finished
        }
    };
    let pid = d.pid();
    for i in 0..200 {
        let _ = raw_quick(&sock, &garbage(i));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss0, fds0) = usage(pid);
    let started = Instant::now();
    for i in 200..1200 {
        let _ = raw_quick(&sock, &garbage(i));
    }
    println!(
        "measured: 1,000 garbage requests in {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss1, fds1) = usage(pid);
    println!("measured: RSS {rss0} kB -> {rss1} kB, fds {fds0} -> {fds1}");
    assert!(
        rss1 * 10 <= rss0 * 11 && rss1 * 10 >= rss0 * 9,
        "RSS {rss0} -> {rss1} kB"
    );
    assert!(
        fds1 <= fds0 + fds0 / 10 && fds1 + fds0 / 10 >= fds0,
        "fds {fds0} -> {fds1}"
    );
    let (code, body) = request(&sock, "GET", "/v1/status", "", "");
    assert_eq!(code, 200, "still answering: {body}");
    assert_eq!(d.stop(), Some(0));
}

/// Sends and closes without waiting long (a head that never ends is the daemon's to
/// time out, not ours).
fn raw_quick(socket: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    s.write_all(bytes)?;
    let mut buf = [0u8; 512];
    let _ = s.read(&mut buf);
    Ok(())
}

/// Datagrams received on the fake notify socket, with their arrival time.
fn drain(rx: &UnixDatagram, into: &mut Vec<(Instant, String)>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = rx.recv(&mut buf) {
        into.push((
            Instant::now(),
            String::from_utf8_lossy(&buf[..n]).into_owned(),
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_after_the_socket_and_watchdog_pings_only_while_alive() {
    // The stuck loop is the failpoint stall:kube_event.
    support::failpoints::require();
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify");
    let rx = UnixDatagram::bind(&notify).unwrap();
    rx.set_nonblocking(true).unwrap();
    let kube = FakeApiServer::start().await;
    kube.apply(node(NODE));
    // PostgreSQL unreachable for the whole test: an outage is no hang.
    let extra = format!(
        "role = \"node\"\n[kubernetes]\nurl = \"{}\"\n[postgres]\nurl = \"postgres://virtsync@127.0.0.1:1/none\"\nconnect_timeout = \"1s\"",
        kube.url()
    );
    let mut d = DaemonProcess::start_with_env(
        dir.path(),
        "sd",
        &config(dir.path(), &extra),
        &[
            ("NOTIFY_SOCKET", notify.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
            ("VIRTSYNC_FAILPOINT", "stall:kube_event"),
        ],
    );
    let sock = d.socket();
    let mut got: Vec<(Instant, String)> = Vec::new();
    let start = Instant::now();
    let ready_at = loop {
        drain(&rx, &mut got);
        if let Some((_, m)) = got.iter().find(|(_, m)| m.contains("READY=1")) {
            assert!(sock.exists(), "READY before the socket exists");
            assert!(m.contains("STATUS=running as sno-0-0"), "{m}");
            break Instant::now();
        }
        assert!(start.elapsed() < WAIT, "no READY=1: {got:?}\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        got.iter()
            .any(|(_, m)| m.starts_with("STATUS=opening the state file")),
        "{got:?}"
    );

    // Idle (no VMI events) and no PostgreSQL for 25 s: pings keep coming. (Drained
    // often: a datagram socket queues only a few messages.)
    while ready_at.elapsed() < Duration::from_secs(25) {
        drain(&rx, &mut got);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pings = |got: &[(Instant, String)], after: Instant| {
        got.iter()
            .filter(|(t, m)| *t > after && m == "WATCHDOG=1")
            .count()
    };
    let idle_pings = pings(&got, ready_at);
    assert!(
        idle_pings >= 20,
        "{idle_pings} pings in 25 s idle:\n{}",
        d.log()
    );
    let last = got.iter().rev().find(|(_, m)| m == "WATCHDOG=1").unwrap().0;
    assert!(
        last.elapsed() < Duration::from_secs(2),
        "pings stopped while idle"
    );

    // A VMI event: the KubeVirt loop hangs (failpoint), so the pings stop.
    kube.apply(vmi("stuck", "10.0.0.9"));
    d.wait_for("this task hangs from now on", WAIT).await;
    let hung_at = Instant::now();
    d.wait_for("internal loop not alive; watchdog pings stopped", WAIT)
        .await;
    let noticed = hung_at.elapsed();
    drain(&rx, &mut got);
    let silent_since = Instant::now();
    while silent_since.elapsed() < Duration::from_secs(3) {
        drain(&rx, &mut got);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pings(&got, silent_since), 0, "pings despite a stuck loop");
    assert!(d.log().contains("loops=[\"kubernetes\"]"), "{}", d.log());
    println!("measured: stuck loop noticed after {noticed:?}");
    d.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_leaves_nothing_postgres_could_take() {
    let db = Db::new(PgCluster::shared(), "term", SchemaMode::Compat).await;
    let kube = FakeApiServer::start().await;
    kube.apply(node(NODE));
    let n = kube.load_synthetic(300, &[NODE.to_owned()], 7);
    let vmis = kube.list("VirtualMachineInstance");
    for v in &vmis {
        let (ns, name) = (
            v["metadata"]["namespace"].as_str().unwrap(),
            v["metadata"]["name"].as_str().unwrap(),
        );
        ssvirt::insert_vm(&db.client, ns, name).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "role = \"node\"\n[kubernetes]\nurl = \"{}\"\n[postgres]\nurl = \"{}\"\nflush_interval = \"200ms\"\nmanaged_refresh_interval = \"1s\"",
        kube.url(),
        db.url
    );
    let mut d = DaemonProcess::start(dir.path(), "term", &config(dir.path(), &extra));
    d.wait_for("connected to PostgreSQL", WAIT).await;
    d.wait_for("vmi list complete", WAIT).await;
    // Changes keep arriving (memory of every VMI, round after round) when SIGTERM comes.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let last = std::thread::scope(|scope| {
        let churn = scope.spawn(|| {
            let mut round = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && round < 200 {
                for v in &vmis {
                    let mut v = v.clone();
                    v["metadata"]
                        .as_object_mut()
                        .unwrap()
                        .remove("resourceVersion");
                    v["status"]["memory"]["guestCurrent"] = json!(format!("{}Mi", 1024 + round));
                    kube.apply(v);
                }
                round += 1;
            }
            round
        });
        std::thread::sleep(Duration::from_millis(700));
        let code = d.stop();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let rounds = churn.join().unwrap();
        assert_eq!(code, Some(0), "{}", d.log());
        assert!(rounds >= 2, "too little load: {rounds} rounds");
        let log = d.log();
        log.lines()
            .rev()
            .find(|l| l.contains("stopped; pending changes are kept"))
            .unwrap()
            .to_owned()
    });
    assert!(
        last.contains("pending=0") && last.contains("parked=0"),
        "{last}"
    );
    println!("measured: {n} VMs churning; stopped with: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_config_and_names_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let mut d = DaemonProcess::start(dir.path(), "hup", &cfg);
    d.wait_for("virtsync running", WAIT).await;
    d.signal(libc::SIGHUP);
    d.wait_for("SIGHUP: configuration re-read; nothing changed", WAIT)
        .await;
    std::fs::write(
        &d.config,
        format!("{cfg}[capabilities]\nrefresh_interval = \"2h\"\n"),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.wait_for("capabilities.refresh_interval", WAIT).await;
    std::fs::write(
        &d.config,
        format!("{cfg}[capabilities]\nrefresh_interval = \"soon\"\n"),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.wait_for("the configuration does not load; still running", WAIT)
        .await;
    assert!(
        d.log().contains("capabilities.refresh_interval"),
        "{}",
        d.log()
    );
    let (code, _) = request(&d.socket(), "GET", "/v1/status", "", "");
    assert_eq!(code, 200, "still serving after a bad reload");
    assert_eq!(d.stop(), Some(0));
}
