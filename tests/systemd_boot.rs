//! The .deb under a real systemd 252: `packaging/check` installs it into a Debian 12 root
//! and runs this test with `VIRTSYNC_BOOT_ROOT` set to that root; the test boots it with
//! `systemd-nspawn -b` and works the unit as an operator would. On the host: a
//! PostgreSQL that requires a password for virtsync's role, the fake Kubernetes API
//! server, and a private libvirtd with a KVM guest whose socket is bound into the
//! container as the host's `/run/libvirt/libvirt-sock`.
//!
//! Needs root, `systemd-nspawn` (systemd-container) and KVM; ignored by `scripts/test`
//! because only `packaging/check` has the root with the package installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::fake_kube::{FakeApiServer, Rng};
use support::libvirtd::{Guest, Libvirtd};
use support::nspawn::Container;
use support::pg::PgCluster;
use support::sync::Db;
use support::truth;
use virtsync::config::SchemaMode;

const NODE: &str = "boot-node";
const ROLE: &str = "virtsync_pw";
const PASSWORD: &str = "boot-secret";
/// The libvirt group's id, the same on the host socket and in the container.
const LIBVIRT_GID: u32 = 4242;
const UNIT: &str = "virtsync";
const START: Duration = Duration::from_secs(60);
const KUBELET_PODS: &str = "/var/lib/kubelet/pods";
const POD_UID: &str = "b0075000-0000-4000-8000-000000000001";

fn boot_root() -> PathBuf {
    let root = std::env::var_os("VIRTSYNC_BOOT_ROOT")
        .map(PathBuf::from)
        .expect("VIRTSYNC_BOOT_ROOT: the root packaging/check prepares (run packaging/check)");
    assert!(
        root.join("usr/bin/virtsync").exists(),
        "{}: virtsync is not installed there",
        root.display()
    );
    root
}

fn config(
    kube: &FakeApiServer,
    pg_port: u16,
    db: &str,
    metrics: u16,
    extra_postgres: &str,
) -> String {
    format!(
        r#"node_name = "{NODE}"
role = "all"
[kubernetes]
url = "{kube}"
[libvirt]
uri = "qemu:///system"
domain_check_interval = "1s"
[postgres]
{extra_postgres}url = "postgres://{ROLE}@127.0.0.1:{pg_port}/{db}"
schema = "extended"
flush_interval = "50ms"
[metrics]
listen = "127.0.0.1:{metrics}"
"#,
        kube = kube.url(),
    )
}

/// `systemctl show -p MainPID`, once it is a running process.
fn main_pid(c: &Container) -> u32 {
    c.property(UNIT, "MainPID").parse().unwrap()
}

fn wait_active(c: &Container, not_pid: u32) -> u32 {
    c.wait_until("virtsync active with a new main PID", START, |c| {
        let pid = main_pid(c);
        (c.property(UNIT, "ActiveState") == "active" && pid != 0 && pid != not_pid).then_some(pid)
    })
}

fn status(c: &Container) -> Value {
    serde_json::from_str(&c.ok("virtsync status --output json")).unwrap()
}

fn print_journal(what: &str, lines: &str) {
    println!("--- journal: {what}");
    print!("{lines}");
}

/// The journal lines (short-iso) containing `needle`, waiting up to `limit` for one.
fn wait_journal(c: &Container, needle: &str, args: &str, limit: Duration) -> String {
    c.wait_until(&format!("{needle:?} in the journal"), limit, |c| {
        let text = c.journal(UNIT, &format!("-o short-iso {args}"));
        let hits: String = text
            .lines()
            .filter(|l| l.contains(needle))
            .map(|l| format!("{l}\n"))
            .collect();
        (!hits.is_empty()).then_some(hits)
    })
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The configuration as the package keeps it: root:virtsync, 0640.
fn write_config(root: &Path, text: &str) {
    let path = root.join("etc/virtsync/virtsync.toml");
    write(&path, text, 0o640);
    let groups = std::fs::read_to_string(root.join("etc/group")).unwrap();
    let gid = groups
        .lines()
        .find_map(|l| {
            l.strip_prefix("virtsync:x:")?
                .split(':')
                .next()?
                .parse()
                .ok()
        })
        .expect("group virtsync in the root (created by the package)");
    std::os::unix::fs::chown(&path, Some(0), Some(gid)).unwrap();
}

/// Lets `ROLE` in only with its password (scram), everyone else as before.
async fn require_password(cluster: &PgCluster, db: &Db) {
    db.client
        .batch_execute(&format!(
            "CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'"
        ))
        .await
        .unwrap();
    let hba = cluster.dir().join("data/pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host all {ROLE} 127.0.0.1/32 scram-sha-256\n{old}"),
    )
    .unwrap();
    db.client
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    let without = db.url.replace("postgres@", &format!("{ROLE}@"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = tokio_postgres::connect(&without, tokio_postgres::NoTls).await;
    assert!(refused.is_err(), "{ROLE} must need its password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by packaging/check, which prepares VIRTSYNC_BOOT_ROOT"]
async fn the_package_under_systemd() {
    let root = boot_root();
    let work = tempfile::tempdir().unwrap();

    // The host's libvirt: a private libvirtd with one KVM guest; its sockets in group
    // libvirt (the container's group of the same id), mode 0770 (the read-only one too,
    // as on hosts that restrict it).
    Libvirtd::shared();
    let sock = support::libvirtd::socket();
    let sock_ro = sock.with_file_name("libvirt-sock-ro");
    for s in [sock, sock_ro.as_path()] {
        std::os::unix::fs::chown(s, Some(0), Some(LIBVIRT_GID)).unwrap();
        std::fs::set_permissions(s, std::fs::Permissions::from_mode(0o770)).unwrap();
    }

    let kube = FakeApiServer::start().await;
    kube.load_synthetic(6, &[NODE.to_owned()], 18);
    let (ns, name) = kube.vmi_keys().into_iter().next().unwrap();
    let guest = Guest::create("kvm", &format!("{ns}_{name}"));

    let cluster = PgCluster::start_new();
    let db = Db::new(&cluster, "boot", SchemaMode::Extended).await;
    truth::insert_rows(&db.client, &truth::vm_keys(&kube)).await;
    require_password(&cluster, &db).await;
    let db_name = db.url.rsplit('/').next().unwrap().to_owned();
    // The container shares the host's network: not the default port, which a daemon
    // on the host may hold.
    let metrics = support::pg::free_port();

    write_config(&root, &config(&kube, cluster.port(), &db_name, metrics, ""));
    let credstore = root.join("etc/credstore/virtsync.postgres-password");
    let _ = std::fs::remove_file(&credstore);

    // The same socket as the launcher pod's on a KubeVirt node (step 8).
    let launcher = format!(
        "{KUBELET_PODS}/{POD_UID}/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock"
    );
    let c = Container::boot(
        &root,
        &[
            (sock, "/run/libvirt/libvirt-sock"),
            (&sock_ro, "/run/libvirt/libvirt-sock-ro"),
            (sock, &launcher),
        ],
        &work.path().join("nspawn.log"),
    );
    println!("booted: {}", c.ok("systemctl --version | head -1").trim());

    // 1. Enabled and started on a host with no libvirt group and no password file.
    assert!(!c.sh("getent group libvirt").status.success());
    c.ok("systemctl enable --now virtsync");
    let pid = wait_active(&c, 0);
    let s = status(&c);
    println!("1. active without group libvirt and password (PID {pid}); status: {s}");
    // What is missing is said at warning priority, in one line each.
    let warnings = wait_journal(&c, "password", "-p warning", START);
    print_journal("-p warning, no password", &warnings);
    let all = c.journal(UNIT, "-p warning -o cat");
    assert!(
        !all.contains("virtsync running"),
        "an info line at warning priority:\n{all}"
    );
    // journald's timestamp only: the message does not start with one of its own.
    let running = c.journal(UNIT, "-o cat");
    let line = running
        .lines()
        .find(|l| l.contains("virtsync running"))
        .unwrap_or_else(|| panic!("no start line:\n{running}"));
    assert!(!line.starts_with("20"), "a second timestamp: {line}");
    print_journal("start", &wait_journal(&c, "virtsync running", "", START));
    // Native journal fields: the VM and the component of a warning about one VM.
    let entry: Value = c.wait_until("a warning with a VM field", START, |c| {
        c.journal(UNIT, "-p warning -o json")
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["VM"].is_string())
    });
    assert_eq!(entry["PRIORITY"], "4", "{entry:#}");
    assert_eq!(entry["SYSLOG_IDENTIFIER"], "virtsync", "{entry:#}");
    assert!(
        entry["COMPONENT"]
            .as_str()
            .is_some_and(|c| c.starts_with("virtsync::")),
        "{entry:#}"
    );
    println!(
        "   journal fields: VM={} COMPONENT={} PRIORITY={}",
        entry["VM"], entry["COMPONENT"], entry["PRIORITY"]
    );

    // 2. The password as a credential; group libvirt: PostgreSQL reaches the truth, the
    // hardened unit reads the host's libvirt (capabilities and the guest's domain type).
    write(&credstore, &format!("{PASSWORD}\n"), 0o600);
    c.ok(&format!(
        "groupadd -g {LIBVIRT_GID} libvirt && usermod -aG libvirt virtsync && systemctl restart virtsync"
    ));
    let pid = wait_active(&c, pid);
    let took = truth::wait_converged(&kube, &db, START).await;
    println!("2. password credential: PostgreSQL holds the truth after {took:?}");
    print_journal(
        "start with the credential",
        &c.ok(&format!(
            "journalctl -b -q --no-pager -o short-iso _PID={pid} | head -9"
        )),
    );
    let started = std::time::Instant::now();
    loop {
        let row = db
            .client
            .query_opt(
                "SELECT runtime_hypervisor_type FROM vms WHERE vm_name = $1",
                &[&name],
            )
            .await
            .unwrap();
        let hv: Option<String> = row.and_then(|r| r.get(0));
        if hv.as_deref() == Some("kvm") {
            break;
        }
        assert!(started.elapsed() < START, "runtime_hypervisor_type: {hv:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("   {ns}/{name}: runtime_hypervisor_type = \"kvm\"");
    let caps = capabilities(&c);
    assert_eq!(caps["available"], true, "{caps:#}");
    assert_eq!(
        caps["capabilities"]["cpu_info"]["arch"], "x86_64",
        "{caps:#}"
    );
    println!("   host capabilities discovered under the hardened unit");

    // 3. reload: the changed key is logged.
    write_config(
        &root,
        &config(
            &kube,
            cluster.port(),
            &db_name,
            metrics,
            "batch_size = 77\n",
        ),
    );
    c.ok("systemctl reload virtsync");
    let reload = wait_journal(&c, "postgres.batch_size", "", START);
    assert_eq!(main_pid(&c), pid, "reload must not restart");
    print_journal("reload", &c.journal(UNIT, "-o short-iso -n 3"));
    assert!(reload.contains("SIGHUP"), "{reload}");

    // 4. restart: not one row written (any UPDATE, even of equal values, makes a new
    // row version with a new xmin).
    let before = row_versions(&db).await;
    c.ok("systemctl restart virtsync");
    let pid = wait_active(&c, pid);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(status(&c)["outbox"]["pending"], 0);
    let after = row_versions(&db).await;
    assert_eq!(after, before, "a restart wrote rows");
    println!(
        "4. restart: the {} row versions of vms and virtsync.vm_fence unchanged",
        after.len()
    );

    // 5. kill -9: systemd starts it again.
    let restarts: u32 = c.property(UNIT, "NRestarts").parse().unwrap();
    c.ok(&format!("kill -9 {pid}"));
    let pid = wait_active(&c, pid);
    assert_eq!(
        c.property(UNIT, "NRestarts").parse::<u32>().unwrap(),
        restarts + 1
    );
    print_journal("kill -9", &wait_journal(&c, "status=9/KILL", "", START));

    // 6. A hung daemon: the watchdog pings stop and systemd restarts it. The package has
    // no failpoints (cargo feature `failpoints`), so the main process is frozen with
    // SIGSTOP: a stopped process cannot ping, and systemd's SIGABRT (followed by its
    // SIGCONT) ends it. A stuck internal loop stopping the pings is tests/api.rs's, with
    // the failpoint.
    let dropin = root.join("etc/systemd/system/virtsync.service.d/watchdog.conf");
    write(&dropin, "[Service]\nWatchdogSec=5s\n", 0o644);
    c.ok("systemctl daemon-reload && systemctl restart virtsync");
    let stalled = wait_active(&c, pid);
    let restarts: u32 = c.property(UNIT, "NRestarts").parse().unwrap();
    c.ok(&format!("kill -STOP {stalled}"));
    // A change while it is frozen: written after the restart (converged below).
    let mut rng = Rng::new(6);
    assert!(kube.churn_named(&ns, &name, &mut rng));
    let timeout = wait_journal(&c, "Watchdog timeout", "", Duration::from_secs(90));
    let pid = wait_active(&c, stalled);
    assert!(c.property(UNIT, "NRestarts").parse::<u32>().unwrap() > restarts);
    print_journal("watchdog", &timeout);
    let text = c.journal(UNIT, "-o short-iso");
    let at = text.rfind("Watchdog timeout").unwrap();
    let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let restart: Vec<&str> = text[from..].lines().take(7).collect();
    print_journal("watchdog restart", &(restart.join("\n") + "\n"));
    std::fs::remove_file(&dropin).unwrap();
    c.ok("systemctl daemon-reload && systemctl restart virtsync");
    let pid = wait_active(&c, pid);
    truth::wait_converged(&kube, &db, START).await;

    // 7. stop with changes waiting for PostgreSQL: a clean exit, the outbox kept.
    cluster.stop();
    assert!(kube.churn_named(&ns, &name, &mut rng));
    c.wait_until("a pending change", START, |c| {
        (status(c)["outbox"]["pending"].as_u64() >= Some(1)).then_some(())
    });
    c.ok("systemctl stop virtsync");
    assert_eq!(c.property(UNIT, "Result"), "success");
    assert_eq!(c.property(UNIT, "ExecMainStatus"), "0");
    print_journal("stop", &c.journal(UNIT, "-o short-iso -n 4"));
    c.ok("systemctl start virtsync");
    wait_active(&c, pid);
    // The record was stored with the change: only the kept outbox can still write it.
    let pending = status(&c)["outbox"]["pending"].as_u64();
    assert!(pending >= Some(1), "outbox after the restart: {pending:?}");
    cluster.start();
    let took = truth::wait_converged(&kube, &db, START).await;
    println!("7. stopped with {pending:?} pending; written {took:?} after PostgreSQL came back");

    // 8. A KubeVirt node: libvirt only in the launcher pod, its socket root's (uid 107
    // with KubeVirt's non-root launchers), mode 0600. The default unit cannot open it;
    // with the documented drop-in it can. No host libvirt there: its sockets go.
    c.ok("umount /run/libvirt/libvirt-sock /run/libvirt/libvirt-sock-ro && rm -f /run/libvirt/*");
    std::os::unix::fs::chown(sock, Some(107), Some(107)).unwrap();
    std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut vmi = kube.get("VirtualMachineInstance", &ns, &name).unwrap();
    vmi["status"]["activePods"] = serde_json::json!({ POD_UID: NODE });
    vmi["status"]["runtimeUser"] = serde_json::json!(0);
    kube.apply(vmi);
    let kubevirt = config(&kube, cluster.port(), &db_name, metrics, "")
        .replace("uri = \"qemu:///system\"", "locator = \"kubevirt\"");
    write_config(&root, &kubevirt);
    c.ok("systemctl restart virtsync");
    let pid = wait_active(&c, pid);
    let hv = |want: &'static str| {
        let addr = format!("127.0.0.1:{metrics}");
        let (ns, name) = (ns.clone(), name.clone());
        move |_: &Container| {
            let text = support::metrics::scrape(&addr);
            let series = text.lines().find(|l| {
                l.starts_with("kubevirt_vmi_hypervisor_info{")
                    && l.contains(&format!("name=\"{name}\""))
                    && l.contains(&format!("namespace=\"{ns}\""))
            })?;
            series
                .contains(&format!("hypervisor_type=\"{want}\""))
                .then(|| series.to_owned())
        }
    };
    let refused = c.wait_until("no domain type through the launcher", START, hv("unknown"));
    print_journal(
        "KubeVirt node, default unit",
        &wait_journal(
            &c,
            "ermission denied",
            &format!("-p warning _PID={pid}"),
            START,
        ),
    );
    println!("   {refused}");
    c.ok("mkdir -p /etc/systemd/system/virtsync.service.d && \
          cp /usr/share/doc/virtsync/kubevirt-node.conf /etc/systemd/system/virtsync.service.d/ && \
          systemctl daemon-reload && systemctl restart virtsync");
    let pid = wait_active(&c, pid);
    let uid = c.ok(&format!("stat -c %u /proc/{pid}"));
    assert_eq!(uid.trim(), "0", "the drop-in runs it as root");
    let found = c.wait_until("the domain type through the launcher", START, hv("kvm"));
    println!("8. KubeVirt-node drop-in (root, CAP_DAC_OVERRIDE only): {found}");
    c.wait_until("the outbox drained", START, |c| {
        (status(c)["outbox"]["pending"] == 0).then_some(())
    });
    let exposure = c.ok("systemd-analyze security virtsync 2>&1 | tail -1");
    println!("   {}", exposure.trim());

    // 9. A configuration error: the start fails, says which key at error priority in
    // one line, and systemd does not restart it in a loop (exit status 2).
    let bad = config(
        &kube,
        cluster.port(),
        &db_name,
        metrics,
        "batch_size = \"many\"\n",
    );
    write_config(&root, &bad);
    let restarts: u32 = c.property(UNIT, "NRestarts").parse().unwrap();
    assert!(!c.sh("systemctl restart virtsync").status.success());
    let said = wait_journal(&c, "postgres.batch_size", "-p err", START);
    print_journal("configuration error", &said);
    std::thread::sleep(Duration::from_secs(7)); // RestartSec=5s
    assert_eq!(c.property(UNIT, "ActiveState"), "failed");
    assert_eq!(c.property(UNIT, "ExecMainStatus"), "2");
    assert_eq!(
        c.property(UNIT, "NRestarts").parse::<u32>().unwrap(),
        restarts,
        "restarted after a configuration error"
    );

    drop(c);
    drop(guest);
}

/// `table:key` → xmin of every row of `vms` and `virtsync.vm_fence`.
async fn row_versions(db: &Db) -> Vec<(String, String)> {
    let rows = db
        .client
        .query(
            "SELECT 'vms:' || namespace || '/' || vm_name, xmin::text FROM vms \
             UNION ALL SELECT 'fence:' || f::text, f.xmin::text FROM virtsync.vm_fence f \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// The capabilities the daemon discovers now (`host capabilities --refresh`).
fn capabilities(c: &Container) -> Value {
    let script = "virtsync host capabilities --refresh --output json >/dev/null && \
                  virtsync host capabilities --output json";
    serde_json::from_str(&c.ok(script)).unwrap()
}
