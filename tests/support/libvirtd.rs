//! A real libvirtd (system mode, QEMU driver) for the libvirt tests, started as
//! follows: virtlogd and libvirtd daemonised, `qemu.conf`
//! with `user = "root"`, the `libvirt-qemu` user present. Started once per test binary
//! ([`Libvirtd::shared`]) or reused when one already runs; never skipped: if it cannot
//! start the test FAILS with the tail of its log.
//!
//! Tests that only use the daemon take [`Libvirtd::read`]; a test that kills and
//! restarts it takes [`Libvirtd::write`], so the others never see it down.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::{Duration, Instant};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

pub const URI: &str = "qemu:///system";
/// The read-write socket libvirtd (monolithic) creates.
pub const SOCKET: &str = "/run/libvirt/libvirt-sock";
const PID_FILE: &str = "/run/libvirtd.pid";
const VIRTLOGD_PID_FILE: &str = "/run/virtlogd.pid";
const LOG: &str = "/var/log/libvirt/libvirtd.log";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

static COUNTER: AtomicU64 = AtomicU64::new(0);
static LOCK: RwLock<()> = RwLock::const_new(());

pub struct Libvirtd {
    /// How long the start (or the check of a running one) and the first QEMU probe took.
    pub start_time: Duration,
    pub probe_time: Duration,
    pub reused: bool,
}

fn pid_alive(file: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
    // SAFETY: kill with signal 0 only checks that the process exists.
    (pid > 0 && unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

fn virsh(args: &[&str]) -> std::process::Output {
    Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .output()
        .expect("run virsh (install libvirt-clients: scripts/install-deps)")
}

fn log_tail() -> String {
    let log = std::fs::read_to_string(LOG).unwrap_or_else(|e| format!("(no {LOG}: {e})"));
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn ready() -> bool {
    virsh(&["uri"]).status.success()
}

/// Returns whether libvirtd's own configuration was changed (a running one must restart).
fn prepare_host() -> bool {
    for bin in [
        "/usr/sbin/libvirtd",
        "/usr/sbin/virtlogd",
        "/usr/bin/qemu-system-x86_64",
    ] {
        assert!(
            Path::new(bin).exists(),
            "{bin} missing: run scripts/install-deps (libvirt-daemon, libvirt-daemon-driver-qemu, qemu-system-x86)"
        );
    }
    let sh = |script: &str| {
        let st = Command::new("sh").arg("-c").arg(script).status().unwrap();
        assert!(st.success(), "{script}: {st}");
    };
    sh("getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu");
    sh(
        "getent passwd libvirt-qemu >/dev/null || useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu",
    );
    std::fs::create_dir_all("/var/log/libvirt").unwrap();
    std::fs::create_dir_all("/etc/libvirt").unwrap();
    // A stable host UUID, as SMBIOS gives a real host: without SMBIOS (this VM) libvirtd
    // makes up a new one at every start, and the capabilities change with it.
    let daemon_conf = Path::new("/etc/libvirt/libvirtd.conf");
    let daemon_text = std::fs::read_to_string(daemon_conf).unwrap_or_default();
    let daemon_conf_changed = !daemon_text.contains("host_uuid");
    if daemon_conf_changed {
        std::fs::write(
            daemon_conf,
            format!("{daemon_text}host_uuid = \"6c7a1f0e-4b1d-4a51-9d6e-5a2f3c1b0e7d\"\n"),
        )
        .unwrap();
    }
    // /dev/kvm is root-only here: QEMU must run as root.
    let conf = Path::new("/etc/libvirt/qemu.conf");
    let current = std::fs::read_to_string(conf).unwrap_or_default();
    let has_user = current
        .lines()
        .any(|l| l.trim_start().starts_with("user") && l.contains('='));
    if !has_user {
        let mut text = current;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("user = \"root\"\ngroup = \"root\"\n");
        std::fs::write(conf, text).unwrap();
    }
    daemon_conf_changed
}

fn start_daemons() {
    if pid_alive(VIRTLOGD_PID_FILE).is_none() {
        let st = Command::new("/usr/sbin/virtlogd")
            .arg("-d")
            .status()
            .unwrap();
        assert!(st.success(), "virtlogd -d: {st}");
    }
    let st = Command::new("/usr/sbin/libvirtd")
        .arg("-d")
        .env("LIBVIRT_LOG_OUTPUTS", format!("3:file:{LOG}"))
        .status()
        .unwrap();
    assert!(st.success(), "libvirtd -d: {st}\n{}", log_tail());
    wait_ready();
}

fn wait_ready() {
    let t = Instant::now();
    while !ready() {
        assert!(
            t.elapsed() < READY_TIMEOUT,
            "libvirtd not answering on {URI} after {READY_TIMEOUT:?}; log tail:\n{}",
            log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Libvirtd {
    /// The daemon for this test binary (started on first use, or reused).
    pub fn shared() -> &'static Libvirtd {
        static SHARED: OnceLock<Libvirtd> = OnceLock::new();
        SHARED.get_or_init(|| {
            let t = Instant::now();
            let conf_changed = prepare_host();
            let mut reused = pid_alive(PID_FILE).is_some() && ready();
            if reused && conf_changed {
                Libvirtd::kill();
                reused = false;
            }
            if !reused {
                start_daemons();
            }
            let start_time = t.elapsed();
            let t = Instant::now();
            let out = virsh(&["version"]);
            assert!(
                out.status.success(),
                "virsh version: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                log_tail()
            );
            let probe_time = t.elapsed();
            eprintln!(
                "libvirtd: {} in {start_time:?}, first QEMU probe {probe_time:?}",
                if reused { "reused" } else { "started" }
            );
            Libvirtd {
                start_time,
                probe_time,
                reused,
            }
        })
    }

    /// For tests that need the daemon up for their whole run.
    pub async fn read() -> RwLockReadGuard<'static, ()> {
        let g = LOCK.read().await;
        Self::shared();
        g
    }

    /// For tests that kill and restart the daemon.
    pub async fn write() -> RwLockWriteGuard<'static, ()> {
        let g = LOCK.write().await;
        Self::shared();
        g
    }

    /// Kills libvirtd (by its PID file) and waits until it is gone.
    pub fn kill() {
        let pid = pid_alive(PID_FILE).expect("libvirtd not running");
        // SAFETY: signals the libvirtd process named by its PID file.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let t = Instant::now();
        // SAFETY: existence check only.
        while unsafe { libc::kill(pid, 0) } == 0 {
            assert!(t.elapsed() < READY_TIMEOUT, "libvirtd {pid} did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts libvirtd again after [`Self::kill`] and waits until it answers.
    pub fn start() {
        start_daemons();
    }
}

/// A transient guest of the notes: 64 MiB, 1 vCPU, no disk, pty serial console.
/// Destroyed on drop.
pub struct Guest {
    pub name: String,
    destroyed: bool,
}

/// A unique name fragment for this process.
pub fn unique(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn guest_xml(virt_type: &str, name: &str) -> String {
    format!(
        "<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='pty'/>
    <console type='pty'/>
  </devices>
</domain>
"
    )
}

impl Guest {
    /// Creates and starts `name` with `<domain type='virt_type'>` (`kvm` or `qemu`).
    pub fn create(virt_type: &str, name: &str) -> Guest {
        let dir = tempfile::tempdir().unwrap();
        let file: PathBuf = dir.path().join("guest.xml");
        std::fs::write(&file, guest_xml(virt_type, name)).unwrap();
        let out = virsh(&["create", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "virsh create {name} ({virt_type}): {}\nlog tail:\n{}",
            String::from_utf8_lossy(&out.stderr),
            log_tail()
        );
        Guest {
            name: name.to_owned(),
            destroyed: false,
        }
    }

    pub fn destroy(&mut self) {
        if !self.destroyed {
            self.destroyed = true;
            let out = virsh(&["destroy", &self.name]);
            assert!(
                out.status.success(),
                "virsh destroy {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if !self.destroyed {
            self.destroyed = true;
            let _ = virsh(&["destroy", &self.name]);
        }
    }
}
