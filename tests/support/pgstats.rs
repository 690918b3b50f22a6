//! What a workload costs PostgreSQL, as snapshots and their differences: rows read
//! (`pg_stat_database`), statements and their rows (`pg_stat_statements`), client
//! backends (`pg_stat_activity`) and the CPU time of the postmaster and its children
//! (`/proc`).
//!
//! Read these from a monitoring connection to *another* database of the cluster (e.g.
//! `postgres`), so the monitor's own queries do not count in the measured database:
//! every function here names the measured database explicitly. The test clusters preload
//! `pg_stat_statements` (`tests/support/pg.rs`, `pg_stat_statements.track = all`); the
//! monitor's database needs the extension created ([`ensure_pg_stat_statements`]) to
//! read the view.
//!
//! Timing caveat: `pg_stat_database` counters reach the shared statistics when a backend
//! reports them: when it goes idle, at most once a second, postponed up to 10 s for a
//! backend that reported less than a second ago (PostgreSQL 15), and when it exits. A
//! delta over a window of seconds can miss the last seconds' reads of busy backends (and
//! include those of the window before): measure windows of tens of seconds.
//! `pg_stat_statements` is updated at the end of each statement and has no such lag.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::time::{Duration, Instant};

use tokio_postgres::Client;

/// Creates `pg_stat_statements` in the monitor's database if it is not there yet.
pub async fn ensure_pg_stat_statements(client: &Client) {
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .expect("CREATE EXTENSION pg_stat_statements (is it in shared_preload_libraries?)");
}

/// `pg_stat_database` of `db`: (tup_returned, tup_fetched, xact_commit + xact_rollback).
pub async fn database_counters(client: &Client, db: &str) -> (i64, i64, i64) {
    let row = client
        .query_one(
            "SELECT coalesce(tup_returned, 0)::int8, coalesce(tup_fetched, 0)::int8, \
                    (coalesce(xact_commit, 0) + coalesce(xact_rollback, 0))::int8 \
             FROM pg_stat_database WHERE datname = $1",
            &[&db],
        )
        .await
        .unwrap_or_else(|e| panic!("read pg_stat_database for {db}: {e:?}"));
    (row.get(0), row.get(1), row.get(2))
}

/// Rows read in `db`: `tup_returned + tup_fetched` of `pg_stat_database` (rows returned
/// by sequential scans plus rows fetched by index scans, catalog reads included).
pub async fn rows_read(client: &Client, db: &str) -> i64 {
    let (returned, fetched, _) = database_counters(client, db).await;
    returned + fetched
}

/// `pg_stat_statements` of `db`: (sum(calls), sum(rows)) over every statement.
pub async fn statements(client: &Client, db: &str) -> (i64, i64) {
    let row = client
        .query_one(
            "SELECT coalesce(sum(s.calls), 0)::int8, coalesce(sum(s.rows), 0)::int8 \
             FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
             WHERE d.datname = $1",
            &[&db],
        )
        .await
        .unwrap_or_else(|e| panic!("read pg_stat_statements for {db}: {e:?}"));
    (row.get(0), row.get(1))
}

/// Client backends connected to `db` (`None`: to any database), not counting the
/// monitor's own.
pub async fn server_connections(client: &Client, db: Option<&str>) -> i64 {
    client
        .query_one(
            "SELECT count(*)::int8 FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
               AND ($1::text IS NULL OR datname = $1)",
            &[&db],
        )
        .await
        .expect("read pg_stat_activity")
        .get(0)
}

/// Clock ticks per second of `/proc/*/stat` times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// The fields of `/proc/<pid>/stat` after the command name: index 0 is field 3 (state).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

// Indexes into `stat_fields` (field number - 3).
const PPID: usize = 1;
const UTIME: usize = 11;
const STIME: usize = 12;
const CUTIME: usize = 13;
const CSTIME: usize = 14;

/// utime + stime of one process, in seconds (0 when it is gone).
pub fn process_cpu_seconds(pid: u32) -> f64 {
    stat_fields(pid).map_or(0.0, |f| (f[UTIME] + f[STIME]) as f64 / clock_ticks())
}

/// CPU seconds of PostgreSQL: the postmaster's own and its reaped children's
/// (utime + stime + cutime + cstime), plus utime + stime of its live children (backends,
/// checkpointer, walwriter, ...).
pub fn postgres_cpu_seconds(postmaster: u32) -> f64 {
    let Some(own) = stat_fields(postmaster) else {
        return 0.0;
    };
    let mut ticks = own[UTIME] + own[STIME] + own[CUTIME] + own[CSTIME];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(f) = stat_fields(pid)
            && f.get(PPID) == Some(&u64::from(postmaster))
        {
            ticks += f[UTIME] + f[STIME];
        }
    }
    ticks as f64 / clock_ticks()
}

/// The counters at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    pub at: Instant,
    pub tup_returned: i64,
    pub tup_fetched: i64,
    pub transactions: i64,
    pub statement_calls: i64,
    pub statement_rows: i64,
    pub server_connections: i64,
    pub cpu_seconds: f64,
}

impl Snapshot {
    /// Reads every counter of `db` through the monitor `client`; `postmaster`: the
    /// server's PID (`PgCluster::server_pid`) for the CPU time.
    pub async fn take(client: &Client, db: &str, postmaster: Option<u32>) -> Snapshot {
        // This connection's own pending counts (other backends report on their own).
        let _ = client
            .batch_execute("SELECT pg_stat_force_next_flush()")
            .await;
        let (tup_returned, tup_fetched, transactions) = database_counters(client, db).await;
        let (statement_calls, statement_rows) = statements(client, db).await;
        let server_connections = server_connections(client, Some(db)).await;
        Snapshot {
            at: Instant::now(),
            tup_returned,
            tup_fetched,
            transactions,
            statement_calls,
            statement_rows,
            server_connections,
            cpu_seconds: postmaster.map_or(0.0, postgres_cpu_seconds),
        }
    }

    pub fn rows_read(&self) -> i64 {
        self.tup_returned + self.tup_fetched
    }

    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Snapshot) -> Delta {
        Delta {
            elapsed: self.at.saturating_duration_since(earlier.at),
            tup_returned: self.tup_returned - earlier.tup_returned,
            tup_fetched: self.tup_fetched - earlier.tup_fetched,
            transactions: self.transactions - earlier.transactions,
            statement_calls: self.statement_calls - earlier.statement_calls,
            statement_rows: self.statement_rows - earlier.statement_rows,
            cpu_seconds: self.cpu_seconds - earlier.cpu_seconds,
        }
    }
}

/// The difference between two snapshots.
#[derive(Clone, Copy, Debug, Default)]
pub struct Delta {
    pub elapsed: Duration,
    pub tup_returned: i64,
    pub tup_fetched: i64,
    pub transactions: i64,
    pub statement_calls: i64,
    pub statement_rows: i64,
    pub cpu_seconds: f64,
}

impl Delta {
    pub fn rows_read(&self) -> i64 {
        self.tup_returned + self.tup_fetched
    }

    fn minutes(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9) / 60.0
    }

    /// Rows read per host and minute, for `hosts` hosts.
    pub fn rows_read_per_host_minute(&self, hosts: usize) -> f64 {
        self.rows_read() as f64 / hosts.max(1) as f64 / self.minutes()
    }

    /// Statements per host and second (`pg_stat_statements` calls).
    pub fn statements_per_host_second(&self, hosts: usize) -> f64 {
        self.statement_calls as f64 / hosts.max(1) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// PostgreSQL CPU as a percentage of one core.
    pub fn cpu_percent(&self) -> f64 {
        100.0 * self.cpu_seconds / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Rows read per table of the *connected* database (`pg_stat_all_tables`, catalogs
/// included): `[seq_tup_read, idx_tup_read (its indexes), idx_tup_fetch]` by
/// `schema.table`. Run it on a connection to the measured database, outside the measured
/// window (it reads catalogs itself); it asks for its own counts to be reported at once.
pub async fn table_reads(client: &Client) -> TableReads {
    let rows = client
        .query(
            "SELECT t.schemaname || '.' || t.relname, coalesce(t.seq_tup_read, 0)::int8, \
                    coalesce(i.idx_tup_read, 0)::int8, coalesce(t.idx_tup_fetch, 0)::int8 \
             FROM pg_stat_all_tables t \
             LEFT JOIN (SELECT relid, sum(idx_tup_read) AS idx_tup_read \
                        FROM pg_stat_all_indexes GROUP BY relid) i ON i.relid = t.relid",
            &[],
        )
        .await
        .expect("read pg_stat_all_tables");
    let _ = client
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await;
    TableReads(
        rows.iter()
            .map(|r| (r.get(0), [r.get(1), r.get(2), r.get(3)]))
            .collect(),
    )
}

/// See [`table_reads`].
#[derive(Clone, Debug, Default)]
pub struct TableReads(pub std::collections::BTreeMap<String, [i64; 3]>);

impl TableReads {
    /// Tables with reads since `earlier`, most rows read first.
    pub fn since(&self, earlier: &TableReads) -> Vec<(String, [i64; 3])> {
        let mut out: Vec<(String, [i64; 3])> = self
            .0
            .iter()
            .map(|(name, now)| {
                let before = earlier.0.get(name).copied().unwrap_or_default();
                let d = [now[0] - before[0], now[1] - before[1], now[2] - before[2]];
                (name.clone(), d)
            })
            .filter(|(_, d)| d.iter().any(|v| *v != 0))
            .collect();
        out.sort_by_key(|(_, d)| std::cmp::Reverse(d.iter().sum::<i64>()));
        out
    }
}
