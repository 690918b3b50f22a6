//! Throw-away PostgreSQL clusters for integration tests.
//!
//! Each cluster lives in its own temp dir and is run by a tiny `sh` guardian
//! whose stdin is a pipe held by the test process. When that pipe closes (the
//! test process exits, panics or is SIGKILLed) the guardian stops postgres with
//! SIGQUIT and removes the temp dir, so no server outlives the tests.
//!
//! As root (CI), `initdb`, the guardian and `postgres` run as the `postgres`
//! user via setuid/setgid in the spawned child (not `runuser`: it stays as a
//! root parent process, so `kill $!` would hit runuser instead of postgres).
//! Missing server binaries make the tests FAIL, never skip. Env: PG_BIN (server bin dir),
//! PG_TMPDIR (parent of the cluster dirs; default std::env::temp_dir(); /dev/shm is ~10x faster).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The guardian: reads commands from stdin ("start PORT", "stop"), answers on
/// stdout; on EOF (test process gone) kills postgres and removes the temp dir.
const GUARDIAN: &str = r#"
exec 2>>"$PGT_LOG"
trap '' PIPE
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -QUIT "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  rm -rf "$PGT_DIR"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
while read -r cmd arg; do
  case "$cmd" in
    start)
      "$PGT_BIN/postgres" -D "$PGT_DATA" -p "$arg" </dev/null >>"$PGT_LOG" 2>&1 &
      pid=$!
      echo "started $pid" ;;
    stop)
      if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
      pid=
      echo stopped ;;
  esac
done
"#;

struct Guardian {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    server_pid: Option<u32>,
}

impl Guardian {
    fn send(&mut self, line: &str) -> String {
        let stdin = self.stdin.as_mut().expect("guardian already closed");
        writeln!(stdin, "{line}").expect("write to postgres guardian");
        stdin.flush().expect("flush postgres guardian");
        let mut reply = String::new();
        self.stdout
            .read_line(&mut reply)
            .expect("read from postgres guardian");
        assert!(
            !reply.is_empty(),
            "postgres guardian died (command {line:?})"
        );
        reply.trim().to_owned()
    }
}

pub struct PgCluster {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    guardian: Mutex<Guardian>,
}

impl PgCluster {
    /// One cluster per test process, started on first use.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<Result<PgCluster, String>> = OnceLock::new();
        // A failed start is remembered, so later tests fail fast with the same message.
        let res = SHARED.get_or_init(|| {
            std::panic::catch_unwind(PgCluster::start_new).map_err(|e| {
                let s = e.downcast_ref::<&str>().map(|s| (*s).to_owned());
                e.downcast_ref::<String>()
                    .cloned()
                    .or(s)
                    .unwrap_or_default()
            })
        });
        res.as_ref()
            .unwrap_or_else(|msg| panic!("shared PostgreSQL cluster failed to start: {msg}"))
    }

    /// A separate cluster owned by the caller; dropped = stopped and removed.
    pub fn start_new() -> PgCluster {
        Self::start_with(Durability::TestsOnly)
    }

    /// A separate cluster configured as in production where it matters for timings:
    /// fsync, synchronous commit and full-page writes on; commit timestamps tracked
    /// (`pg_xact_commit_timestamp`) so a benchmark can time each change to its commit.
    pub fn start_durable() -> PgCluster {
        Self::start_with(Durability::Production)
    }

    fn start_with(durability: Durability) -> PgCluster {
        let bin = find_bin_dir();
        let owner = postgres_owner();
        let dir = make_temp_dir(owner);
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(GUARDIAN)
            .env("PGT_LOG", dir.join("server.log"))
            .env("PGT_DIR", &dir)
            .env("PGT_DATA", dir.join("data"))
            .env("PGT_BIN", &bin)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Own process group: a terminal ^C must not kill the guardian first.
            .process_group(0);
        as_owner(&mut cmd, owner);
        let mut child = cmd.spawn().expect("spawn /bin/sh postgres guardian");
        let guardian = Guardian {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().expect("guardian stdout")),
            child,
            server_pid: None,
        };
        // From here on a panic drops `guardian`, closing its stdin => dir removed.
        initdb(&bin, &dir, owner, durability);
        let mut cluster = PgCluster {
            port: 0,
            dir,
            bin,
            guardian: Mutex::new(guardian),
        };
        for attempt in 1.. {
            cluster.port = free_port();
            if cluster.try_start(true) {
                break;
            }
            if attempt == 5 {
                cluster.fail("could not bind a free port");
            }
            cluster.stop(); // reaps the dead postmaster
        }
        cluster
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The temp dir holding `data/`, `sock/` and `server.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// PID of the postmaster while running.
    pub fn server_pid(&self) -> Option<u32> {
        self.lock().server_pid
    }

    pub fn guardian_pid(&self) -> u32 {
        self.lock().child.id()
    }

    /// Creates a fresh database (unique name) with pg_stat_statements; returns its URL.
    pub fn create_database(&self, prefix: &str) -> String {
        let clean = |c: char| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '_',
        };
        let mut prefix: String = prefix.chars().map(clean).take(40).collect();
        if !prefix.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
            prefix.insert_str(0, "db_"); // empty or starting with a digit
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}_{}_{n}", std::process::id()); // <= 63 bytes
        block_on_thread(async {
            let admin = connect(&self.url("postgres")).await;
            admin
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e:?}"));
            let db = connect(&self.url(&name)).await;
            db.batch_execute("CREATE EXTENSION pg_stat_statements")
                .await
                .unwrap_or_else(|e| panic!("CREATE EXTENSION pg_stat_statements in {name}: {e:?}"));
        });
        self.url(&name)
    }

    /// Fast shutdown (SIGINT); returns once the postmaster has exited.
    pub fn stop(&self) {
        let mut g = self.lock();
        let reply = g.send("stop");
        assert_eq!(reply, "stopped", "unexpected guardian reply");
        g.server_pid = None;
    }

    /// Starts again on the same port and data dir; waits until it accepts connections.
    pub fn start(&self) {
        self.try_start(false);
    }

    /// false: the port was taken (only when `may_retry`; else that panics too).
    fn try_start(&self, may_retry: bool) -> bool {
        let pid = {
            let mut g = self.lock();
            assert!(g.server_pid.is_none(), "postgres is already running");
            let reply = g.send(&format!("start {}", self.port));
            let pid: u32 = reply
                .strip_prefix("started ")
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("unexpected guardian reply {reply:?}"));
            g.server_pid = Some(pid);
            pid
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("{}?connect_timeout=2", self.url("postgres"));
        let mut last_err = String::new();
        loop {
            if !process_alive(pid) {
                let log = self.log_tail(20);
                if may_retry && log.contains("could not bind") {
                    return false;
                }
                self.fail("postgres exited during startup");
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                match block_on_thread(probe(url.clone())) {
                    Ok(()) => return true,
                    Err(e) => last_err = e,
                }
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "postgres not ready after {READY_TIMEOUT:?} (last error: {last_err})"
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The last `n` lines of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Guardian> {
        self.guardian.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what} (bin {}, port {}, dir {}); server log tail:\n{}",
            self.bin.display(),
            self.port,
            self.dir.display(),
            self.log_tail(30)
        )
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let g = self.guardian.get_mut().unwrap_or_else(|e| e.into_inner());
        drop(g.stdin.take()); // EOF => guardian kills postgres and removes the dir
        let _ = g.child.wait();
    }
}

/// Connects with NoTls and spawns the connection task on the current runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e:?}"));
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("postgres connection error: {e}");
        }
    });
    client
}

async fn probe(url: String) -> Result<(), String> {
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    let task = tokio::spawn(conn);
    let res = client.simple_query("SELECT 1").await.map(|_| ());
    drop(client);
    let _ = task.await;
    res.map_err(|e| e.to_string())
}

/// Runs a future on a private current-thread runtime in a separate thread, so
/// it works both from sync code and from inside a `#[tokio::test]`.
fn block_on_thread<F: std::future::Future + Send>(fut: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(fut)
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// `PG_BIN`, else the newest `/usr/lib/postgresql/<ver>/bin`.
fn find_bin_dir() -> PathBuf {
    let ok = |d: &Path| d.join("postgres").is_file() && d.join("initdb").is_file();
    let install = "install the `postgresql` package: apt-get install -y postgresql";
    if let Some(d) = std::env::var_os("PG_BIN").map(PathBuf::from) {
        assert!(
            ok(&d),
            "PG_BIN={} has no postgres/initdb; fix PG_BIN or {install}",
            d.display()
        );
        return d;
    }
    let entries = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten();
    let newest = entries
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version: Vec<u64> = name
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, d)| ok(d))
        .max_by(|a, b| a.0.cmp(&b.0));
    match newest {
        Some((_, d)) => d,
        None => {
            panic!("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: {install}")
        }
    }
}

/// (uid, gid) of the `postgres` user when running as root; None otherwise.
fn postgres_owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    // SAFETY: NUL-terminated name; the returned record is read immediately.
    let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root but there is no `postgres` user (install the `postgresql` package)"
    );
    // SAFETY: pw is non-null and points at a valid passwd record.
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid).env("HOME", "/var/lib/postgresql");
        cmd.env("USER", "postgres").env("LOGNAME", "postgres");
    }
}

fn make_temp_dir(owner: Option<(u32, u32)>) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // PG_TMPDIR (e.g. /dev/shm: CREATE DATABASE ~20 ms there vs ~250 ms on ext4) else temp_dir().
    let base = std::env::var_os("PG_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = base.join(format!("pgtest-{}-{n}-{nanos:08x}", std::process::id()));
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    std::fs::create_dir(dir.join("sock")).expect("create socket dir");
    if let Some((uid, gid)) = owner {
        for d in [dir.join("sock"), dir.clone()] {
            std::os::unix::fs::chown(&d, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", d.display()));
        }
    }
    dir
}

/// How the throw-away cluster trades safety for speed.
#[derive(Clone, Copy, PartialEq)]
enum Durability {
    /// fsync and synchronous commit off: tests only need the semantics.
    TestsOnly,
    /// The server defaults (durable) plus commit timestamps.
    Production,
}

fn initdb(bin: &Path, dir: &Path, owner: Option<(u32, u32)>, durability: Durability) {
    let data = dir.join("data");
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.arg("-D")
        .arg(&data)
        .args("-A trust -E UTF8 --locale=C --no-sync -U postgres".split(' '))
        .current_dir(dir);
    as_owner(&mut cmd, owner);
    let out = cmd.output().expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let safety = match durability {
        Durability::TestsOnly => "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
        Durability::Production => "track_commit_timestamp = on\n",
    };
    let conf = format!(
        "\n# pgtest harness\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
         {safety}shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n\
         max_connections = 200\n",
        dir.join("sock").display()
    );
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .expect("open postgresql.conf");
    f.write_all(conf.as_bytes()).expect("write postgresql.conf");
}

/// A loopback port nobody listens on now (the test's servers bind it next).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Alive and not a zombie (the guardian reaps postgres only on `wait`).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
