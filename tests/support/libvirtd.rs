//! A real libvirtd (system mode, QEMU driver) for the libvirt tests, private to the test
//! process and gone when it ends. It changes nothing on the host:
//!
//! - It runs in its own mount namespace (`unshare --mount`), where tmpfs hides `/run`,
//!   `/var/lib`, `/var/cache` and `/var/log`, and directories of this process are
//!   bind-mounted over `/etc/libvirt`, `/run/libvirt`, `/var/lib/libvirt`,
//!   `/var/log/libvirt` and `/var/cache/libvirt`: system mode reads `qemu.conf` only
//!   from `/etc/libvirt`, and keeps its state in those fixed places. `/etc/passwd` and
//!   `/etc/group` are replaced there by copies with a `libvirt-qemu` user, which
//!   libvirtd looks up before it reads `qemu.conf` (where QEMU runs as root instead:
//!   `/dev/kvm` is root-only here).
//! - The directories are `$CARGO_TARGET_TMPDIR/libvirt/run-<pid>/` (config, state,
//!   logs, the pid file and the socket directory: [`socket`], [`uri`]), removed at the
//!   end, and `$CARGO_TARGET_TMPDIR/libvirt/cache/`, kept: the QEMU capabilities cache,
//!   so only the first start on a machine pays the ~8 s probe.
//! - `qemu.conf` has QEMU write its output to a file (no virtlogd), no cgroups and no
//!   security driver (no AppArmor profiles written to `/etc/apparmor.d`).
//!
//! A guardian shell in that namespace, in its own process group, starts and stops
//! libvirtd on request; its stdin is a pipe held by the test process. When that pipe
//! closes (the test process exits, fails, panics, is interrupted or SIGKILLed) it stops
//! libvirtd, kills the guests still running (named by their pid files in
//! `run-<pid>/run/qemu/`) and removes `run-<pid>/`. At a normal exit (also after failed
//! tests: the test harness ends with `process::exit`) an `atexit` handler waits for
//! that, so nothing runs once the test binary has ended. libvirtd gets SIGTERM when the
//! guardian dies (`setpriv --pdeathsig`), and a guardian cleans up after an earlier run
//! whose test process and guardian were both killed (a `run-<pid>/` of a process gone).
//!
//! Each test binary starts its own on first use ([`Libvirtd::shared`]); never skipped:
//! if it cannot start, the test FAILS with the tail of its log. Tests that only use the
//! daemon take [`Libvirtd::read`]; a test that stops and restarts it takes
//! [`Libvirtd::write`], so the others never see it down.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the exit handler waits for the guardian to stop everything.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// A stable host UUID, as SMBIOS gives a real host: without SMBIOS (a VM) libvirtd
/// makes up a new one at every start, and the capabilities change with it.
const HOST_UUID: &str = "6c7a1f0e-4b1d-4a51-9d6e-5a2f3c1b0e7d";

static COUNTER: AtomicU64 = AtomicU64::new(0);
static LOCK: RwLock<()> = RwLock::const_new(());
static GUARDIAN: Mutex<Option<Guardian>> = Mutex::new(None);

/// The guardian, run by `sh` inside the private mount namespace, its arguments the base
/// directory and the run directory. First cleans up after test processes that are gone,
/// then sets up the namespace, then reads commands on stdin (`start`, `stop`) and
/// answers each with one line; on EOF (or HUP/INT/TERM) stops libvirtd, kills the
/// guests and removes the run directory.
const GUARDIAN_SH: &str = r#"
set -u
base=$1 run=$2
pid=
trap '' PIPE
# Gone: exited (a zombie has) or never there.
gone() { ! grep -qs '^State:[[:space:]]*[^Z]' "/proc/$1/status"; }
# Waits up to $2 tenths of a second for process $1 to go, then SIGKILLs it.
reap() {
  n=0
  while ! gone "$1" && [ "$n" -lt "$2" ]; do sleep 0.1; n=$((n + 1)); done
  kill -KILL "$1" 2>/dev/null || true
}
# The pid in file $1 if that process runs and its command line contains $2 (not some
# other process that got the number since).
listed() {
  p=$(cat "$1" 2>/dev/null) && ! gone "$p" &&
    tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$2" && echo "$p"
  return 0
}
stop_libvirtd() {
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null
  reap "$pid" 300
  wait "$pid" 2>/dev/null
  pid=
}
# What a run directory leaves: its libvirtd (when another run's is left), the guests
# it started, the directory.
clean() {
  p=$(listed "$1/libvirtd.pid" "$1/libvirtd.pid")
  [ -z "$p" ] || { kill -TERM "$p"; reap "$p" 300; }
  pids=
  for f in "$1"/run/qemu/*.pid; do
    [ -f "$f" ] || continue
    name=${f##*/}
    p=$(listed "$f" "guest=${name%.pid},")
    [ -z "$p" ] || { kill -TERM "$p"; pids="$pids $p"; }
  done
  for p in $pids; do reap "$p" 100; done
  rm -rf "$1"
}
# Run directories of test processes that are gone, and whose guardian is gone too.
for d in "$base"/run-*; do
  [ -d "$d" ] && [ "$d" != "$run" ] || continue
  kill -0 "${d##*/run-}" 2>/dev/null && continue
  [ -z "$(listed "$d/guardian.pid" libvirtd-guardian)" ] || continue
  echo "cleaning up after test process ${d##*/run-} (gone): $d" >&2
  clean "$d"
done
echo $$ >"$run/guardian.pid"
trap 'stop_libvirtd; clean "$run"' EXIT
trap 'exit 1' HUP INT TERM
(
  set -e
  cp /etc/passwd "$run/passwd"
  cp /etc/group "$run/group"
  grep -q '^libvirt-qemu:' /etc/passwd ||
    echo 'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin' >>"$run/passwd"
  grep -q '^libvirt-qemu:' /etc/group || echo 'libvirt-qemu:x:64055:' >>"$run/group"
  for d in /run /var/lib /var/cache /var/log; do
    mount -t tmpfs -o mode=0755 virtsync-test "$d"
  done
  mkdir /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
  mount --bind "$run/passwd" /etc/passwd
  mount --bind "$run/group" /etc/group
  mount --bind "$run/etc" /etc/libvirt
  mount --bind "$run/run" /run/libvirt
  mount --bind "$run/lib" /var/lib/libvirt
  mount --bind "$run/log" /var/log/libvirt
  mount --bind "$base/cache" /var/cache/libvirt
) || exit 1
echo ready
while read -r cmd; do
  case $cmd in
    start)
      if [ -z "$pid" ] || gone "$pid"; then
        [ -z "$pid" ] || wait "$pid" 2>/dev/null
        setpriv --pdeathsig TERM /usr/sbin/libvirtd --config "$run/etc/libvirtd.conf" \
          --pid-file "$run/libvirtd.pid" </dev/null >>"$run/log/libvirtd.out" 2>&1 &
        pid=$!
      fi
      echo "started $pid" ;;
    stop) stop_libvirtd; echo stopped ;;
    *) echo "unknown command $cmd" ;;
  esac
done
"#;

struct Paths {
    base: PathBuf,
    run: PathBuf,
    socket: PathBuf,
    uri: String,
}

fn paths() -> &'static Paths {
    static PATHS: OnceLock<Paths> = OnceLock::new();
    PATHS.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libvirt");
        let run = base.join(format!("run-{}", std::process::id()));
        let socket = run.join("sock/libvirt-sock");
        // A unix socket address holds 107 bytes; libvirt-admin-sock is one longer.
        assert!(
            socket.as_os_str().len() < 100,
            "{} is too long for a unix socket: use a shorter CARGO_TARGET_DIR",
            socket.display()
        );
        let uri = format!("qemu:///system?socket={}", socket.display());
        Paths {
            base,
            run,
            socket,
            uri,
        }
    })
}

/// The URI of this process's libvirtd (`qemu:///system` on its private socket).
pub fn uri() -> &'static str {
    &paths().uri
}

/// The read-write socket of this process's libvirtd.
pub fn socket() -> &'static Path {
    &paths().socket
}

pub struct Libvirtd {
    /// How long the start took (the guardian included) and the first QEMU probe.
    pub start_time: Duration,
    pub probe_time: Duration,
}

struct Guardian {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
}

impl Guardian {
    fn spawn() -> Guardian {
        for bin in [
            "/usr/sbin/libvirtd",
            "/usr/bin/qemu-system-x86_64",
            "/usr/bin/unshare",
            "/usr/bin/setpriv",
        ] {
            assert!(
                Path::new(bin).exists(),
                "{bin} missing: run scripts/install-deps (libvirt-daemon, libvirt-daemon-driver-qemu, qemu-system-x86, util-linux)"
            );
        }
        let p = paths();
        // A directory of an earlier process with the same pid: nothing of it can run.
        let _ = std::fs::remove_dir_all(&p.run);
        for dir in ["etc", "run", "lib", "log", "sock"] {
            std::fs::create_dir_all(p.run.join(dir)).unwrap();
        }
        std::fs::create_dir_all(p.base.join("cache")).unwrap();
        // Only root may connect (the sockets ask for no authentication).
        std::fs::set_permissions(
            p.socket.parent().unwrap(),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::fs::write(
            p.run.join("etc/libvirtd.conf"),
            format!(
                "unix_sock_dir = \"{}\"\n\
                 auth_unix_rw = \"none\"\n\
                 auth_unix_ro = \"none\"\n\
                 unix_sock_rw_perms = \"0700\"\n\
                 unix_sock_ro_perms = \"0700\"\n\
                 host_uuid = \"{HOST_UUID}\"\n\
                 log_outputs = \"3:file:/var/log/libvirt/libvirtd.log\"\n",
                p.socket.parent().unwrap().display()
            ),
        )
        .unwrap();
        std::fs::write(
            p.run.join("etc/qemu.conf"),
            "user = \"root\"\n\
             group = \"root\"\n\
             stdio_handler = \"file\"\n\
             cgroup_controllers = [ ]\n\
             security_driver = \"none\"\n",
        )
        .unwrap();
        let mut child = Command::new("/usr/bin/unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .args(["/bin/sh", "-c", GUARDIAN_SH, "libvirtd-guardian"])
            .arg(&p.base)
            .arg(&p.run)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: a terminal ^C must not reach it before the pipe closes.
            .process_group(0)
            .spawn()
            .expect("spawn unshare for the libvirtd guardian");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = BufReader::new(child.stderr.take().unwrap());
        let sink = stderr.clone();
        // Kept for failure messages, and shown at once (not captured by the test harness).
        std::thread::spawn(move || {
            for line in pipe.lines().map_while(Result::ok) {
                let line = format!("libvirtd guardian: {line}\n");
                let _ = std::io::stderr().write_all(line.as_bytes());
                lock(&sink).push_str(&line);
            }
        });
        let mut g = Guardian {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
            stderr,
        };
        let mut line = String::new();
        let _ = g.stdout.read_line(&mut line);
        if line.trim() != "ready" {
            let _ = g.child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "the libvirtd guardian did not set up its mount namespace (root needed):\n{}",
                lock(&g.stderr)
            );
        }
        g
    }

    fn send(&mut self, command: &str) -> String {
        let stdin = self.stdin.as_mut().expect("guardian already closed");
        writeln!(stdin, "{command}").expect("write to the libvirtd guardian");
        stdin.flush().expect("flush the libvirtd guardian");
        let mut reply = String::new();
        let _ = self.stdout.read_line(&mut reply);
        assert!(
            !reply.is_empty(),
            "the libvirtd guardian died ({command}):\n{}\n{}",
            lock(&self.stderr),
            log_tail()
        );
        reply.trim().to_owned()
    }

    /// Starts libvirtd (unless it runs) and waits until it answers.
    fn start_libvirtd(&mut self) {
        let reply = self.send("start");
        let pid: u32 = reply
            .strip_prefix("started ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("libvirtd guardian: {reply}"));
        let t = Instant::now();
        while !ready() {
            assert!(
                process_alive(pid),
                "libvirtd exited during startup; log tail:\n{}",
                log_tail()
            );
            assert!(
                t.elapsed() < READY_TIMEOUT,
                "libvirtd not answering on {} after {READY_TIMEOUT:?}; log tail:\n{}",
                uri(),
                log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The guardian, started on first use.
fn guardian() -> MutexGuard<'static, Option<Guardian>> {
    let mut g = lock(&GUARDIAN);
    if g.is_none() {
        *g = Some(Guardian::spawn());
        static AT_EXIT: Once = Once::new();
        // SAFETY: registers a function without arguments, run once at process exit.
        AT_EXIT.call_once(|| assert_eq!(unsafe { libc::atexit(stop_at_exit) }, 0));
    }
    g
}

/// At exit: closes the guardian's stdin and waits until it has stopped libvirtd, the
/// guests and removed the run directory.
extern "C" fn stop_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let Some(mut g) = lock(&GUARDIAN).take() else {
            return;
        };
        let t = Instant::now();
        drop(g.stdin.take());
        while let Ok(None) = g.child.try_wait() {
            if t.elapsed() > EXIT_TIMEOUT {
                eprintln!("libvirtd guardian still busy after {EXIT_TIMEOUT:?}: killed");
                let _ = g.child.kill();
                let _ = g.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "test libvirtd stopped, its guests and files removed in {:?}",
            t.elapsed()
        );
    });
}

fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn virsh(args: &[&str]) -> std::process::Output {
    Command::new("virsh")
        .arg("-c")
        .arg(uri())
        .args(args)
        .output()
        .expect("run virsh (install libvirt-clients: scripts/install-deps)")
}

fn tail(file: &Path, n: usize) -> String {
    let text =
        std::fs::read_to_string(file).unwrap_or_else(|e| format!("(no {}: {e})", file.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn log_tail() -> String {
    let log = paths().run.join("log");
    format!(
        "{}\n(libvirtd's stdout/stderr:)\n{}",
        tail(&log.join("libvirtd.log"), 40),
        tail(&log.join("libvirtd.out"), 10)
    )
}

fn ready() -> bool {
    virsh(&["uri"]).status.success()
}

impl Libvirtd {
    /// The daemon of this test binary (started on first use).
    pub fn shared() -> &'static Libvirtd {
        static SHARED: OnceLock<Libvirtd> = OnceLock::new();
        SHARED.get_or_init(|| {
            let t = Instant::now();
            guardian().as_mut().unwrap().start_libvirtd();
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
                "libvirtd: started in {start_time:?} on {}, first QEMU probe {probe_time:?}",
                uri()
            );
            Libvirtd {
                start_time,
                probe_time,
            }
        })
    }

    /// For tests that need the daemon up for their whole run.
    pub async fn read() -> RwLockReadGuard<'static, ()> {
        let g = LOCK.read().await;
        Self::shared();
        g
    }

    /// For tests that stop and restart the daemon.
    pub async fn write() -> RwLockWriteGuard<'static, ()> {
        let g = LOCK.write().await;
        Self::shared();
        g
    }

    /// Stops libvirtd (SIGTERM) and waits until it is gone; its guests keep running.
    pub fn kill() {
        let reply = guardian().as_mut().unwrap().send("stop");
        assert_eq!(reply, "stopped", "libvirtd guardian");
    }

    /// Starts libvirtd again after [`Self::kill`] and waits until it answers.
    pub fn start() {
        guardian().as_mut().unwrap().start_libvirtd();
    }
}

/// A transient guest: 64 MiB, 1 vCPU, no disk, pty serial console. Destroyed on drop
/// (and killed with the daemon's other guests when the test process ends).
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
