//! A throw-away PgBouncer in front of a test [`PgCluster`]: Debian's real `pgbouncer`
//! (`/usr/sbin/pgbouncer`, or `$PGBOUNCER`), never the system service the package
//! enables.
//!
//! Run like the clusters of `pg.rs`: in its own temp dir (config, `userlist.txt`, log),
//! by a tiny `sh` guardian whose stdin is a pipe held by the test process. When that pipe
//! closes (the [`PgBouncer`] is dropped, the test process exits, panics or is SIGKILLed)
//! the guardian stops pgbouncer (SIGTERM: immediate shutdown) and removes the temp dir.
//! As root (CI) the guardian and pgbouncer run as the `postgres` user (pgbouncer refuses
//! to run as root). A missing binary or a pgbouncer that does not come up makes the test
//! FAIL with the pgbouncer log tail, never skip.
//!
//! Configuration: `auth_type = trust` (the test clusters are trust-auth; pgbouncer still
//! wants the user in its `auth_file`), every database (`*`) forwarded to the cluster's
//! TCP port, listening on 127.0.0.1 on a free port only (no unix socket), the given
//! `pool_mode`, `default_pool_size` and `max_client_conn`. Only `extra_float_digits` is
//! ignored as a startup parameter: a client that sends `options` is refused (08P01), as
//! a production PgBouncer would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::pg::{PgCluster, process_alive};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const DEFAULT_BIN: &str = "/usr/sbin/pgbouncer";
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The guardian: reads commands from stdin ("start", "stop"), answers on stdout; on EOF
/// (test process gone) stops pgbouncer and removes the temp dir.
const GUARDIAN: &str = r#"
exec 2>>"$PGB_OUT"
trap '' PIPE
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  rm -rf "$PGB_DIR"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM
# As many descriptors as allowed: one per client and one per server connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
while read -r cmd; do
  case "$cmd" in
    start)
      "$PGB_BIN" "$PGB_CONF" </dev/null >>"$PGB_OUT" 2>&1 &
      pid=$!
      echo "started $pid" ;;
    stop)
      if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
      pid=
      echo stopped ;;
  esac
done
"#;

struct Guardian {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pid: Option<u32>,
}

impl Guardian {
    fn send(&mut self, line: &str) -> String {
        let stdin = self.stdin.as_mut().expect("guardian already closed");
        writeln!(stdin, "{line}").expect("write to pgbouncer guardian");
        stdin.flush().expect("flush pgbouncer guardian");
        let mut reply = String::new();
        self.stdout
            .read_line(&mut reply)
            .expect("read from pgbouncer guardian");
        assert!(
            !reply.is_empty(),
            "pgbouncer guardian died (command {line:?})"
        );
        reply.trim().to_owned()
    }
}

/// What the pooler is configured with (see [`PgBouncer::start`]).
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// `session`, `transaction` or `statement`.
    pub pool_mode: String,
    /// Server connections per (database, user) pair.
    pub default_pool_size: u32,
    pub max_client_conn: u32,
}

/// Counts from the admin console's `SHOW POOLS`, summed over the pools of every database
/// but the console's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pools {
    pub cl_active: i64,
    pub cl_waiting: i64,
    pub sv_active: i64,
    pub sv_idle: i64,
    pub sv_used: i64,
    pub sv_tested: i64,
    pub sv_login: i64,
}

impl Pools {
    /// Server connections PgBouncer holds open to PostgreSQL.
    pub fn server_connections(&self) -> i64 {
        self.sv_active + self.sv_idle + self.sv_used + self.sv_tested + self.sv_login
    }
}

pub struct PgBouncer {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    settings: PoolSettings,
    guardian: Mutex<Guardian>,
}

impl PgBouncer {
    /// Starts a PgBouncer forwarding every database to `cluster`; returns once it answers
    /// a query through to PostgreSQL. Dropped = stopped and its temp dir removed.
    pub fn start(
        cluster: &PgCluster,
        pool_mode: &str,
        default_pool_size: u32,
        max_client_conn: u32,
    ) -> PgBouncer {
        let settings = PoolSettings {
            pool_mode: pool_mode.to_owned(),
            default_pool_size,
            max_client_conn,
        };
        let bin = find_bin();
        let owner = postgres_owner();
        let dir = make_temp_dir(owner);
        let out = dir.join("pgbouncer.out");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(GUARDIAN)
            .env("PGB_OUT", &out)
            .env("PGB_DIR", &dir)
            .env("PGB_CONF", dir.join("pgbouncer.ini"))
            .env("PGB_BIN", &bin)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Own process group: a terminal ^C must not kill the guardian first.
            .process_group(0);
        as_owner(&mut cmd, owner);
        let mut child = cmd.spawn().expect("spawn /bin/sh pgbouncer guardian");
        let guardian = Guardian {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().expect("guardian stdout")),
            child,
            pid: None,
        };
        // From here on a panic drops `guardian`, closing its stdin => dir removed.
        std::fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n")
            .unwrap_or_else(|e| panic!("write {}/userlist.txt: {e}", dir.display()));
        let mut bouncer = PgBouncer {
            port: 0,
            dir,
            bin,
            settings,
            guardian: Mutex::new(guardian),
        };
        for attempt in 1.. {
            bouncer.port = super::pg::free_port();
            bouncer.write_config(cluster.port());
            if bouncer.try_start(true) {
                break;
            }
            if attempt == 5 {
                bouncer.fail("could not bind a free port");
            }
            bouncer.stop(); // reaps the dead process
        }
        bouncer
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL through the pooler (user `postgres`, like [`PgCluster::url`]).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The same database as `cluster_url` (a URL of [`PgCluster::url`] or
    /// [`PgCluster::create_database`]), through the pooler.
    pub fn url_for(&self, cluster_url: &str) -> String {
        self.url(database_of(cluster_url))
    }

    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// The temp dir holding `pgbouncer.ini`, `userlist.txt` and the logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// PID of the pgbouncer process while running.
    pub fn pid(&self) -> Option<u32> {
        self.lock().pid
    }

    /// `SHOW POOLS` on the admin console: the pool of `db`, or (`None`) the pools of
    /// every forwarded database summed.
    pub async fn pools(&self, db: Option<&str>) -> Pools {
        let client = super::pg::connect(&self.url("pgbouncer")).await;
        let msgs = client
            .simple_query("SHOW POOLS")
            .await
            .unwrap_or_else(|e| panic!("SHOW POOLS on the pgbouncer console: {e:?}"));
        let mut p = Pools::default();
        for m in msgs {
            let tokio_postgres::SimpleQueryMessage::Row(row) = m else {
                continue;
            };
            let name = row.get("database");
            if name == Some("pgbouncer") || db.is_some_and(|db| name != Some(db)) {
                continue;
            }
            let n = |col: &str| -> i64 {
                row.try_get(col)
                    .ok()
                    .flatten()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            p.cl_active += n("cl_active");
            p.cl_waiting += n("cl_waiting");
            p.sv_active += n("sv_active");
            p.sv_idle += n("sv_idle");
            p.sv_used += n("sv_used");
            p.sv_tested += n("sv_tested");
            p.sv_login += n("sv_login");
        }
        p
    }

    /// Server connections the pooler holds open to PostgreSQL for `db` (`None`: for
    /// every database), from `SHOW POOLS`.
    pub async fn server_connections(&self, db: Option<&str>) -> i64 {
        self.pools(db).await.server_connections()
    }

    /// Immediate shutdown (SIGTERM); returns once pgbouncer has exited. Clients lose
    /// their connections, as with a pooler restart.
    pub fn stop(&self) {
        let mut g = self.lock();
        let reply = g.send("stop");
        assert_eq!(reply, "stopped", "unexpected guardian reply");
        g.pid = None;
    }

    /// Starts again on the same port; waits until it answers through to PostgreSQL.
    pub fn start_again(&self) {
        self.try_start(false);
    }

    /// The last `n` lines of pgbouncer's output (in the foreground it logs to stderr as
    /// well as to its log file; the log file when stderr has nothing).
    pub fn log_tail(&self, n: usize) -> String {
        let tail = |name: &str| {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        let out = tail("pgbouncer.out");
        if out.trim().is_empty() {
            tail("pgbouncer.log")
        } else {
            out
        }
    }

    fn write_config(&self, pg_port: u16) {
        let s = &self.settings;
        let conf = format!(
            "[databases]\n\
             * = host=127.0.0.1 port={pg_port}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/userlist.txt\n\
             admin_users = postgres\n\
             stats_users = postgres\n\
             pool_mode = {mode}\n\
             default_pool_size = {pool}\n\
             max_client_conn = {max}\n\
             ignore_startup_parameters = extra_float_digits\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile =\n\
             log_connections = 0\n\
             log_disconnections = 0\n",
            port = self.port,
            dir = self.dir.display(),
            mode = s.pool_mode,
            pool = s.default_pool_size,
            max = s.max_client_conn,
        );
        std::fs::write(self.dir.join("pgbouncer.ini"), conf)
            .unwrap_or_else(|e| panic!("write {}/pgbouncer.ini: {e}", self.dir.display()));
    }

    /// false: the port was taken (only when `may_retry`; else that panics too).
    fn try_start(&self, may_retry: bool) -> bool {
        let pid = {
            let mut g = self.lock();
            assert!(g.pid.is_none(), "pgbouncer is already running");
            let reply = g.send("start");
            let pid: u32 = reply
                .strip_prefix("started ")
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("unexpected guardian reply {reply:?}"));
            g.pid = Some(pid);
            pid
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("{}?connect_timeout=2", self.url("postgres"));
        let mut last_err = String::new();
        loop {
            if !process_alive(pid) {
                let log = self.log_tail(20);
                if may_retry && (log.contains("Address already in use") || log.contains("bind")) {
                    return false;
                }
                self.fail("pgbouncer exited during startup");
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                match block_on_thread(probe(url.clone())) {
                    Ok(()) => return true,
                    Err(e) => last_err = e,
                }
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "pgbouncer not ready after {READY_TIMEOUT:?} (last error: {last_err})"
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Guardian> {
        self.guardian.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what} (bin {}, port {}, dir {}); log tail:\n{}",
            self.bin.display(),
            self.port,
            self.dir.display(),
            self.log_tail(30)
        )
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let g = self.guardian.get_mut().unwrap_or_else(|e| e.into_inner());
        drop(g.stdin.take()); // EOF => guardian stops pgbouncer and removes the dir
        let _ = g.child.wait();
    }
}

/// The database name of a `postgres://…/db[?…]` URL.
pub fn database_of(url: &str) -> &str {
    url.rsplit_once('/')
        .map(|(_, db)| db.split('?').next().unwrap_or(db))
        .filter(|db| !db.is_empty())
        .unwrap_or_else(|| panic!("no database in {url:?}"))
}

async fn probe(url: String) -> Result<(), String> {
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    let task = tokio::spawn(conn);
    let res = client.simple_query("SELECT 1").await.map(|_| ());
    drop(client);
    let _ = task.await;
    res.map_err(|e| format!("{e:?}"))
}

/// Runs a future on a private current-thread runtime in a separate thread, so it works
/// both from sync code and from inside a `#[tokio::test]`.
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

/// `$PGBOUNCER`, else Debian's `/usr/sbin/pgbouncer`.
fn find_bin() -> PathBuf {
    let bin =
        std::env::var_os("PGBOUNCER").map_or_else(|| PathBuf::from(DEFAULT_BIN), PathBuf::from);
    assert!(
        bin.is_file(),
        "pgbouncer not found at {}: install the `pgbouncer` package (scripts/install-deps, \
         or apt-get install -y pgbouncer) or set PGBOUNCER",
        bin.display()
    );
    bin
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
        "running as root but there is no `postgres` user to run pgbouncer as \
         (install the `postgresql` package)"
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
    let base = std::env::var_os("PG_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = base.join(format!("pgbouncer-{}-{n}-{nanos:08x}", std::process::id()));
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", dir.display()));
    }
    dir
}
