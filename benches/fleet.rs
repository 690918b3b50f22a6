//! The fleet benchmark (docs/ARCHITECTURE.md, "Performance targets", fleet scale): N
//! hosts, each running the library's own PostgreSQL sink, all writing one `vms` table;
//! what each host costs PostgreSQL must not grow with N.
//!
//! One process simulates the fleet: per host a `virtsync::state::Store` on its own redb
//! file (256 KiB cache; on /dev/shm unless `--state-dir`: one disk cannot take the
//! syncs of 2,000 hosts, each real host has its own), 50 VMs of its own (runtime columns, the runtime node name = the
//! host) and a `PgSink` built by `SinkSettings::from_config` (node role, its own
//! `node_name`, the configuration's intervals unless overridden), run by `PgSink::run`
//! as a tokio task (2 worker threads). One more instance holds the cluster role
//! (`PgSink::with_cluster_role`): a store with the status columns of all N×50 VMs. The
//! `vms` table has a row per VM before anything starts. PostgreSQL is durable (fsync
//! and synchronous commit on, like the load harness), `max_connections` = N + 100.
//!
//! Per N and per mode (`direct`: every sink connects to PostgreSQL; `pgbouncer`: through
//! a real PgBouncer in transaction mode, `default_pool_size` 20, `max_client_conn`
//! N + 100), the phases:
//! - first start: every sink started at once, until all are connected, know their rows
//!   and have flushed everything (the first sync);
//! - idle: `--seconds` with nothing changing;
//! - changes: `--seconds` with one change per host and second (a random VM of its own
//!   gets a new runtime primary IP), spread evenly over each second; then the rows are
//!   checked against the last values (exit ≠ 0 when they differ);
//! - restart: every sink stopped (shutdown watch, awaited), new sinks started on the
//!   same stores, until all are connected and settled; the window ends 11 s later so the
//!   backends' table statistics have arrived.
//!
//! Reported per phase: rows read per host and minute (`pg_stat_database` tup_returned +
//! tup_fetched of the database, catalog reads included, index-fetched rows counted
//! twice), rows of the VM tables read per host and minute (`vms` and `vm_fence`,
//! `pg_stat_all_tables` seq_tup_read + idx_tup_fetch: each row read once), rows returned
//! to clients per host and minute (`pg_stat_statements` rows), statements and transactions per host and second, server
//! connections (client backends of the database, the most seen in 1 s samples; one of
//! them is the harness's own),
//! PostgreSQL CPU (postmaster and children, % of one core), PgBouncer's and this
//! process's CPU, the time to settle, and for the starts the rows read as a multiple of
//! the table size (all rows read, raw and net of the idle phase's rate over the same
//! window; and the VM tables' rows alone).
//!
//!   cargo bench --bench fleet -- [--hosts 100,500,1000,2000] [--pooler direct|pgbouncer|both]
//!       [--seconds 60] [--vms 50] [--pool-size 20] [--refresh-interval 30s]
//!       [--resync-interval 1h] [--flush-interval 50ms] [--settle-timeout 600s]
//!       [--state-dir /dev/shm] [--no-fsync] [--seed S]
//!
//! The cluster's directory follows `PG_TMPDIR` as in the tests (e.g. /dev/shm).
//!
//! Statistics caveat (tests/support/pgstats.rs): `pg_stat_database` counters arrive
//! when backends report them (up to ~10 s late); windows of a minute keep that small.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::fake_kube::Rng;
use support::measure;
use support::pg::{self, PgCluster};
use support::pgbouncer::{PgBouncer, database_of};
use support::pgstats::{self, Delta, Snapshot, TableReads};
use support::truth::insert_rows;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use virtsync::columns::ColumnSet;
use virtsync::config::{Config, Env, Owns, Role, SchemaMode};
use virtsync::health::{Health, POSTGRES_CONNECTED};
use virtsync::metrics::Metrics;
use virtsync::model::{
    LegacyOrigin, Observation, RuntimeDetails, SourceVersions, Timestamp, VmKey, VmRecord, VmStatus,
};
use virtsync::sink::postgres::{PgSink, SinkError, SinkSettings};
use virtsync::state::{OwnerSettings, StateHandle};
use virtsync::state::{Store, StoreOptions};

const NAMESPACE: &str = "ns";
/// Each host's redb cache.
const HOST_CACHE: u64 = 256 << 10;
/// The holder's redb cache (it keeps every VM).
const HOLDER_CACHE: u64 = 4 << 20;
/// How long after a start the window stays open, for the backends' statistics.
const STATS_GRACE: Duration = Duration::from_secs(11);
/// Ticks per second of the change generator (each tick changes 1/TICKS of the hosts).
const TICKS: u64 = 100;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Direct,
    PgBouncer,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::PgBouncer => "pgbouncer",
        }
    }
}

struct Settings {
    hosts: Vec<usize>,
    modes: Vec<Mode>,
    seconds: u64,
    vms: usize,
    pool_size: u32,
    refresh_interval: Duration,
    resync_interval: Duration,
    flush_interval: Duration,
    settle_timeout: Duration,
    /// Where the hosts' redb files go: tmpfs by default, so 2,000 hosts' syncs do not
    /// queue on one disk (each real host has its own).
    state_dir: std::path::PathBuf,
    durable: bool,
    seed: u64,
}

impl Settings {
    fn from_args() -> Settings {
        let args: Vec<String> = std::env::args().collect();
        let arg = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1).cloned())
        };
        let num = |name: &str, default: u64| {
            arg(name).map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} {v}: not a number"))
            })
        };
        // The sink's own defaults unless overridden.
        let defaults = Config::defaults(&Env {
            hostname: "fleet".into(),
            vars: Vec::new(),
        })
        .postgres;
        let duration = |name: &str, default: Duration| {
            arg(name).map_or(default, |v| {
                humantime::parse_duration(&v)
                    .unwrap_or_else(|e| panic!("{name} {v}: not a duration: {e}"))
            })
        };
        let hosts = arg("--hosts")
            .unwrap_or_else(|| "100".into())
            .split(',')
            .map(|h| {
                h.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("--hosts {h}: not a number"))
            })
            .collect();
        let modes = match arg("--pooler").as_deref().unwrap_or("both") {
            "direct" | "none" => vec![Mode::Direct],
            "pgbouncer" | "transaction" => vec![Mode::PgBouncer],
            "both" => vec![Mode::Direct, Mode::PgBouncer],
            other => panic!("--pooler {other}: direct, pgbouncer or both"),
        };
        let clock = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        Settings {
            hosts,
            modes,
            seconds: num("--seconds", 60),
            vms: num("--vms", 50) as usize,
            pool_size: num("--pool-size", 20) as u32,
            refresh_interval: duration("--refresh-interval", defaults.managed_refresh_interval),
            resync_interval: duration("--resync-interval", defaults.resync_interval),
            flush_interval: duration("--flush-interval", defaults.flush_interval),
            settle_timeout: duration("--settle-timeout", Duration::from_secs(600)),
            state_dir: arg("--state-dir").map_or_else(
                || {
                    let shm = std::path::PathBuf::from("/dev/shm");
                    if shm.is_dir() {
                        shm
                    } else {
                        std::env::temp_dir()
                    }
                },
                std::path::PathBuf::from,
            ),
            durable: !args.iter().any(|a| a == "--no-fsync"),
            seed: num("--seed", clock.as_nanos() as u64),
        }
    }
}

/// One line of the result table.
#[derive(Clone, Debug)]
struct Row {
    hosts: usize,
    mode: Mode,
    phase: &'static str,
    delta: Delta,
    max_connections: i64,
    bouncer_cpu: Option<f64>,
    fleet_cpu: f64,
    /// Settle time (starts only).
    time: Option<Duration>,
    /// Rows read as a multiple of the table, raw and net of the idle rate (starts only).
    table_multiple: Option<(f64, f64)>,
    /// Rows read per table: `[seq_tup_read, idx_tup_read, idx_tup_fetch]`, most first.
    tables: Vec<(String, [i64; 3])>,
    note: String,
}

impl Row {
    /// Rows of the VM tables (`public.vms`, `virtsync.vm_fence`) read in the window:
    /// sequential-scan rows plus rows fetched through an index (each row once; catalog
    /// reads and index entries not counted).
    fn vm_table_rows(&self) -> i64 {
        self.tables
            .iter()
            .filter(|(t, _)| VM_TABLES.contains(&t.as_str()))
            .map(|(_, [seq, _, fetch])| seq + fetch)
            .sum()
    }
}

/// The tables that grow with the fleet.
const VM_TABLES: [&str; 2] = ["public.vms", "virtsync.vm_fence"];

fn host_name(h: usize) -> String {
    format!("h{h:04}")
}

fn vm_name(h: usize, v: usize) -> String {
    format!("h{h:04}-vm{v:02}")
}

/// The first IP of each VM, and a unique one for each later change.
fn first_ip(h: usize, v: usize) -> String {
    format!("10.{}.{}.{}", h / 256, h % 256, v)
}

fn change_ip(c: u64) -> String {
    format!("172.{}.{}.{}", 16 + c / 65536, (c / 256) % 256, c % 256)
}

/// What a node-role daemon knows of a VM running on its host: the runtime columns,
/// fenced by the VMI's resourceVersion.
fn host_observation(host: &str, vm: &str, ip: &str, rv: i64) -> Observation {
    let mut r = VmRecord::new(&VmKey::new(NAMESPACE, vm));
    r.runtime_details = Some(Arc::new(RuntimeDetails {
        cpu_cores: Some(2),
        cpu_sockets: Some(1),
        cpu_threads: Some(1),
        primary_ip: Some(ip.into()),
        phase: Some("Running".into()),
        node_name: Some(host.into()),
        agent_connected: Some(true),
        ..RuntimeDetails::default()
    }));
    Observation {
        record: r,
        versions: SourceVersions {
            vm_resource_version: None,
            vmi_uid: Some(format!("uid-{vm}")),
            vmi_resource_version: Some(rv),
            legacy_origin: LegacyOrigin::Vmi,
            runtime_unknown: false,
        },
    }
}

/// What the cluster-role holder knows of every VM: status and spec values, fenced by the
/// VM's resourceVersion; the runtime columns are another host's.
fn holder_observation(vm: &str) -> Observation {
    let mut r = VmRecord::new(&VmKey::new(NAMESPACE, vm));
    r.status = Some(VmStatus::PoweredOn);
    r.cpu_count = Some(2);
    r.memory_mb = Some(2048);
    r.guest_os = Some("Fedora Linux 40".into());
    Observation {
        record: r,
        versions: SourceVersions {
            vm_resource_version: Some(1),
            vmi_uid: None,
            vmi_resource_version: None,
            legacy_origin: LegacyOrigin::Vm,
            runtime_unknown: true,
        },
    }
}

fn open_store(path: std::path::PathBuf, cache_size: u64, mode: SchemaMode) -> StateHandle {
    let options = StoreOptions {
        path,
        cache_size,
        sync_interval: Duration::from_secs(1),
        writable: ColumnSet::writable(&Owns::default(), mode),
    };
    let (store, _) = Store::open(options, Timestamp::now()).unwrap();
    // Each simulated daemon has its own state owner (a thread), as on a real host.
    let settings = OwnerSettings::new(Metrics::new().unwrap(), Health::default());
    virtsync::state::spawn(store, tokio::sync::mpsc::channel(1).1, settings).unwrap()
}

/// A sink task and what controls it.
struct Running {
    enqueued: Arc<Notify>,
    stop: tokio_util::sync::CancellationToken,
    health: Health,
    task: Option<JoinHandle<Result<(), SinkError>>>,
}

/// One simulated daemon: a host (node role) or the cluster-role holder.
struct Instance {
    name: String,
    store: StateHandle,
    /// Rows it must know before it is settled (its own VMs; all for the holder).
    own: usize,
    holder: bool,
    running: Option<Running>,
}

impl Instance {
    fn start(&mut self, url: &str, s: &Settings, schema: SchemaMode) {
        let mut cfg = Config::defaults(&Env {
            hostname: self.name.clone(),
            vars: Vec::new(),
        });
        cfg.node_name = self.name.clone();
        cfg.role = if self.holder {
            Role::Cluster
        } else {
            Role::Node
        };
        cfg.postgres.url = Some(url.to_owned());
        cfg.postgres.schema = schema;
        cfg.postgres.managed_refresh_interval = s.refresh_interval;
        cfg.postgres.resync_interval = s.resync_interval;
        cfg.postgres.flush_interval = s.flush_interval;
        let settings = SinkSettings::from_config(&cfg, None)
            .unwrap_or_else(|e| panic!("{}: sink settings: {e}", self.name));
        let health = Health::default();
        health.expect(POSTGRES_CONNECTED, "starting");
        let mut sink = PgSink::new(
            settings,
            self.store.clone(),
            Metrics::new().unwrap(),
            Timestamp::now,
        )
        .with_health(health.clone());
        if self.holder {
            // The sender is dropped: the receiver keeps reading true (held for good).
            sink = sink.with_cluster_role(watch::channel(true).1);
        }
        let enqueued = Arc::new(Notify::new());
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(sink.run(enqueued.clone(), stop.clone()));
        self.running = Some(Running {
            enqueued,
            stop,
            health,
            task: Some(task),
        });
    }

    /// None when connected, knowing its rows and with nothing left to write; else why not.
    fn unsettled(&self) -> Option<&'static str> {
        let r = self.running.as_ref()?;
        if r.health.ready().is_err() {
            return Some("not connected");
        }
        let store = self.store.snapshot();
        if store.managed.len() < self.own {
            return Some("rows not known");
        }
        if store.unchecked > 0 {
            return Some("rows not looked up");
        }
        if store.stats.pending > 0 {
            return Some("outbox not empty");
        }
        None
    }
}

/// Waits until every instance is settled; panics after `limit` with what is missing or
/// when a sink task ended.
async fn settle(fleet: &mut [Instance], limit: Duration, what: &str) -> (Duration, Duration) {
    let start = Instant::now();
    let mut connected_at = None;
    loop {
        let mut reasons: HashMap<&'static str, usize> = HashMap::new();
        let mut not_connected = 0;
        for inst in fleet.iter_mut() {
            if let Some(r) = inst.running.as_mut()
                && r.task.as_ref().is_some_and(|t| t.is_finished())
            {
                let result = r.task.take().unwrap().await;
                panic!("{}: the sink ended during {what}: {result:?}", inst.name);
            }
            if let Some(reason) = inst.unsettled() {
                *reasons.entry(reason).or_default() += 1;
                if reason == "not connected" {
                    not_connected += 1;
                }
            }
        }
        if not_connected == 0 && connected_at.is_none() {
            connected_at = Some(start.elapsed());
        }
        if reasons.is_empty() {
            return (connected_at.unwrap_or_default(), start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not settled after {limit:?}: {reasons:?} (of {} instances)",
            fleet.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops every sink (shutdown watch) and waits for all; returns how long that took.
async fn stop_all(fleet: &mut [Instance]) -> Duration {
    let start = Instant::now();
    for inst in fleet.iter() {
        if let Some(r) = &inst.running {
            r.stop.cancel();
        }
    }
    for inst in fleet.iter_mut() {
        if let Some(mut r) = inst.running.take()
            && let Some(task) = r.task.take()
        {
            match task.await {
                Ok(Ok(())) => {}
                other => eprintln!("{}: sink ended with {other:?}", inst.name),
            }
        }
    }
    start.elapsed()
}

/// Samples the server connections of the database every second; keeps the maximum.
struct Sampler {
    max: Arc<AtomicI64>,
    task: JoinHandle<()>,
}

impl Sampler {
    async fn start(url: &str, db: &str) -> Sampler {
        let client = pg::connect(url).await;
        let max = Arc::new(AtomicI64::new(0));
        let (m, db) = (max.clone(), db.to_owned());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let n = pgstats::server_connections(&client, Some(&db)).await;
                m.fetch_max(n, Ordering::Relaxed);
            }
        });
        Sampler { max, task }
    }

    /// The maximum since the last call.
    fn take_max(&self) -> i64 {
        self.max.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The measured database and who watches it.
struct Watch<'a> {
    cluster: &'a PgCluster,
    monitor: Client,
    /// A connection to the measured database (per-table reads, the final check).
    measured: &'a Client,
    db: String,
    bouncer: Option<PgBouncer>,
    sampler: Sampler,
}

/// The counters at the start of a window.
struct Window {
    tables: TableReads,
    snap: Snapshot,
    bouncer_cpu: f64,
    fleet_cpu: f64,
}

impl Watch<'_> {
    async fn begin(&self) -> Window {
        self.sampler.take_max();
        // Before the window: the per-table read reads catalogs itself.
        let tables = pgstats::table_reads(self.measured).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        Window {
            tables,
            snap: Snapshot::take(&self.monitor, &self.db, self.cluster.server_pid()).await,
            bouncer_cpu: self.bouncer_cpu(),
            fleet_cpu: measure::cpu_seconds(std::process::id() as i32),
        }
    }

    fn bouncer_cpu(&self) -> f64 {
        self.bouncer
            .as_ref()
            .and_then(PgBouncer::pid)
            .map_or(0.0, pgstats::process_cpu_seconds)
    }

    async fn end(&self, w: &Window, hosts: usize, mode: Mode, phase: &'static str) -> Row {
        let snap = Snapshot::take(&self.monitor, &self.db, self.cluster.server_pid()).await;
        let delta = snap.since(&w.snap);
        let tables = pgstats::table_reads(self.measured).await.since(&w.tables);
        let secs = delta.elapsed.as_secs_f64().max(1e-9);
        Row {
            hosts,
            mode,
            phase,
            max_connections: self.sampler.take_max().max(snap.server_connections),
            bouncer_cpu: self
                .bouncer
                .as_ref()
                .map(|_| 100.0 * (self.bouncer_cpu() - w.bouncer_cpu) / secs),
            fleet_cpu: 100.0 * (measure::cpu_seconds(std::process::id() as i32) - w.fleet_cpu)
                / secs,
            delta,
            time: None,
            table_multiple: None,
            tables,
            note: String::new(),
        }
    }
}

/// Drives the change phase: each host changes one random VM of its own per second, for
/// `seconds` of wall time; returns the number of changes. A generator that falls behind
/// (the machine is saturated) skips ticks rather than bursting: the rate achieved is
/// reported. `last_ip` is updated with every change.
async fn changes(
    fleet: &[Instance],
    hosts: usize,
    vms: usize,
    seconds: u64,
    rng: &mut Rng,
    counter: &mut u64,
    last_ip: &mut [String],
) -> u64 {
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / TICKS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut made = 0;
    let mut slot = 0;
    while Instant::now() < deadline {
        tick.tick().await;
        for h in (slot..hosts).step_by(TICKS as usize) {
            let v = rng.below(vms as u64) as usize;
            *counter += 1;
            let ip = change_ip(*counter);
            let obs = host_observation(&host_name(h), &vm_name(h, v), &ip, 1 + *counter as i64);
            let inst = &fleet[h];
            let report = inst.store.ingest(vec![obs]).await.unwrap();
            assert_eq!(report.changed, 1, "{}: change not stored", inst.name);
            if let Some(r) = &inst.running {
                r.enqueued.notify_one();
            }
            last_ip[h * vms + v] = ip;
            made += 1;
        }
        slot = (slot + 1) % TICKS as usize;
    }
    made
}

/// Every VM's `runtime_primary_ip` equals its last value; returns the differences.
async fn check_rows(client: &Client, hosts: usize, vms: usize, last_ip: &[String]) -> Vec<String> {
    let rows = client
        .query(
            "SELECT vm_name::text, runtime_primary_ip::text FROM vms \
             WHERE deleted_at IS NULL AND namespace = $1",
            &[&NAMESPACE],
        )
        .await
        .unwrap();
    let actual: HashMap<String, Option<String>> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut diff = Vec::new();
    for h in 0..hosts {
        for v in 0..vms {
            let name = vm_name(h, v);
            let want = &last_ip[h * vms + v];
            match actual.get(&name) {
                Some(Some(got)) if got == want => {}
                got => diff.push(format!("{name}: want {want}, got {got:?}")),
            }
        }
    }
    diff
}

/// One mode at one fleet size: every phase.
async fn run_mode(cluster: &PgCluster, hosts: usize, mode: Mode, s: &Settings) -> Vec<Row> {
    // Extended: the runtime columns the hosts write exist only there.
    let schema = SchemaMode::Extended;
    let vms = s.vms;
    let table = (hosts * vms) as f64;
    let mut rng = Rng::new(s.seed ^ hosts as u64);
    eprintln!("== {hosts} hosts, {}: preparing", mode.name());

    // The table, a row per VM, without the test-only column log (its trigger would add
    // its own writes to every UPDATE).
    let db =
        support::sync::Db::new(cluster, &format!("fleet_{}_{hosts}", mode.name()), schema).await;
    db.client
        .batch_execute("DROP TRIGGER vms_column_log_trg ON vms")
        .await
        .unwrap();
    let keys: Vec<String> = (0..hosts)
        .flat_map(|h| (0..vms).map(move |v| format!("{NAMESPACE}/{}", vm_name(h, v))))
        .collect();
    insert_rows(&db.client, &keys).await;
    db.client.batch_execute("ANALYZE vms").await.unwrap();
    let dbname = database_of(&db.url).to_owned();

    let bouncer = (mode == Mode::PgBouncer).then(|| {
        PgBouncer::start(
            cluster,
            "transaction",
            s.pool_size,
            u32::try_from(hosts + 100).unwrap(),
        )
    });
    let url = bouncer
        .as_ref()
        .map_or_else(|| db.url.clone(), |b| b.url_for(&db.url));

    // The stores: each host's own VMs; the holder's status columns of all.
    let state = tempfile::Builder::new()
        .prefix("virtsync-fleet-")
        .tempdir_in(&s.state_dir)
        .unwrap_or_else(|e| panic!("a temp dir in {}: {e}", s.state_dir.display()));
    let started = Instant::now();
    let mut fleet: Vec<Instance> = Vec::with_capacity(hosts + 1);
    for h in 0..hosts {
        let name = host_name(h);
        let store = open_store(
            state.path().join(format!("{name}.redb")),
            HOST_CACHE,
            schema,
        );
        let batch: Vec<_> = (0..vms)
            .map(|v| host_observation(&name, &vm_name(h, v), &first_ip(h, v), 1))
            .collect();
        store.ingest(batch).await.unwrap();
        fleet.push(Instance {
            name,
            store,
            own: vms,
            holder: false,
            running: None,
        });
    }
    let holder_store = open_store(state.path().join("holder.redb"), HOLDER_CACHE, schema);
    let all: Vec<_> = (0..hosts)
        .flat_map(|h| (0..vms).map(move |v| holder_observation(&vm_name(h, v))))
        .collect();
    for chunk in all.chunks(5000) {
        holder_store.ingest(chunk.to_vec()).await.unwrap();
    }
    drop(all);
    fleet.push(Instance {
        name: "holder".into(),
        store: holder_store,
        own: hosts * vms,
        holder: true,
        running: None,
    });
    eprintln!(
        "   {} stores ready in {:.1} s",
        fleet.len(),
        started.elapsed().as_secs_f64()
    );

    let monitor = pg::connect(&cluster.url("postgres")).await;
    pgstats::ensure_pg_stat_statements(&monitor).await;
    let sampler = Sampler::start(&cluster.url("postgres"), &dbname).await;
    let watch = Watch {
        cluster,
        monitor,
        measured: &db.client,
        db: dbname,
        bouncer,
        sampler,
    };
    let mut rows = Vec::new();

    // First start.
    let w = watch.begin().await;
    for inst in &mut fleet {
        inst.start(&url, s, schema);
    }
    let (connected, settled) = settle(&mut fleet, s.settle_timeout, "the first start").await;
    eprintln!(
        "   first start: all connected after {:.1} s, settled after {:.1} s",
        connected.as_secs_f64(),
        settled.as_secs_f64()
    );
    tokio::time::sleep(STATS_GRACE).await;
    let mut first = watch.end(&w, hosts, mode, "first start").await;
    first.time = Some(settled);
    first.note = format!(
        "{:.0} rows read per host; connected {:.1} s; fleet RSS {} MiB",
        first.delta.rows_read() as f64 / hosts as f64,
        connected.as_secs_f64(),
        measure::rss_kib(std::process::id() as i32) / 1024
    );

    // Idle.
    eprintln!("   idle {} s", s.seconds);
    let w = watch.begin().await;
    tokio::time::sleep(Duration::from_secs(s.seconds)).await;
    let idle = watch.end(&w, hosts, mode, "idle").await;
    let idle_rows_per_s = idle.delta.rows_read() as f64 / idle.delta.elapsed.as_secs_f64();
    let multiples = |d: &Delta| {
        let raw = d.rows_read() as f64;
        let net = (raw - idle_rows_per_s * d.elapsed.as_secs_f64()).max(0.0);
        (raw / table, net / table)
    };
    first.table_multiple = Some(multiples(&first.delta));
    rows.push(first);
    rows.push(idle);

    // One change per host and second.
    eprintln!("   1 change/s per host, {} s", s.seconds);
    let mut last_ip: Vec<String> = (0..hosts)
        .flat_map(|h| (0..vms).map(move |v| first_ip(h, v)))
        .collect();
    let mut counter = 0;
    let w = watch.begin().await;
    let made = changes(
        &fleet,
        hosts,
        vms,
        s.seconds,
        &mut rng,
        &mut counter,
        &mut last_ip,
    )
    .await;
    let generated = w.snap.at.elapsed();
    let mut changed = watch.end(&w, hosts, mode, "1 change/s/host").await;
    eprintln!(
        "   changes generated for {:.1} s, window closed after {:.1} s",
        generated.as_secs_f64(),
        changed.delta.elapsed.as_secs_f64()
    );
    let (_, caught_up) = settle(&mut fleet, s.settle_timeout, "the change phase").await;
    let diff = check_rows(&db.client, hosts, vms, &last_ip).await;
    changed.note = format!(
        "{made} changes ({:.2}/s/host achieved), per change {:.2} statements and {:.0} rows \
         read; caught up {:.1} s after the window; {} rows wrong",
        made as f64 / hosts as f64 / changed.delta.elapsed.as_secs_f64(),
        changed.delta.statement_calls as f64 / made.max(1) as f64,
        changed.delta.rows_read() as f64 / made.max(1) as f64,
        caught_up.as_secs_f64(),
        diff.len()
    );
    rows.push(changed);
    assert!(
        diff.is_empty(),
        "{hosts} hosts, {}: rows differ from the last changes: {} rows, first: {:#?}",
        mode.name(),
        diff.len(),
        &diff[..diff.len().min(8)]
    );

    // Restart of the whole fleet, once the catch-up's statistics have arrived (a busy
    // backend reports them up to 10 s late; they would count as the restart's).
    eprintln!("   restart");
    tokio::time::sleep(STATS_GRACE).await;
    let w = watch.begin().await;
    let stopping = stop_all(&mut fleet).await;
    for inst in &mut fleet {
        inst.start(&url, s, schema);
    }
    let (connected, settled) = settle(&mut fleet, s.settle_timeout, "the restart").await;
    eprintln!(
        "   restart: stopped in {:.1} s; all connected after {:.1} s, settled after {:.1} s",
        stopping.as_secs_f64(),
        connected.as_secs_f64(),
        settled.as_secs_f64()
    );
    tokio::time::sleep(STATS_GRACE).await;
    let mut restart = watch.end(&w, hosts, mode, "restart").await;
    restart.time = Some(settled);
    restart.table_multiple = Some(multiples(&restart.delta));
    restart.note = format!(
        "{:.0} rows read per host; stopped in {:.1} s, connected {:.1} s",
        restart.delta.rows_read() as f64 / hosts as f64,
        stopping.as_secs_f64(),
        connected.as_secs_f64()
    );
    rows.push(restart);

    stop_all(&mut fleet).await;
    drop(fleet);
    drop(watch);
    rows
}

fn table(rows: &[Row], s: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fleet benchmark: {} VMs per host, phases of {} s, managed_refresh_interval {}, \
         resync_interval {}, flush_interval {}, PgBouncer default_pool_size {}, {}, seed {}\n",
        s.vms,
        s.seconds,
        humantime::format_duration(s.refresh_interval),
        humantime::format_duration(s.resync_interval),
        humantime::format_duration(s.flush_interval),
        s.pool_size,
        if s.durable { "fsync on" } else { "fsync off" },
        s.seed
    );
    let _ = writeln!(
        out,
        "| hosts | mode | phase | window s | rows read /host/min | rows returned /host/min | \
         VM-table rows read /host/min | statements /host/s | transactions /host/s | \
         server conns (max) | PostgreSQL CPU % | PgBouncer CPU % | fleet process CPU % | \
         settled s | rows read × table (net of idle) | VM-table rows read × table | notes |"
    );
    let _ = writeln!(
        out,
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"
    );
    for r in rows {
        let d = &r.delta;
        let secs = d.elapsed.as_secs_f64().max(1e-9);
        let per_host = |v: i64| v as f64 / r.hosts as f64;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.3} | {:.3} | {} | {:.1} | {} | {:.1} | {} | {} | {} | {} |",
            r.hosts,
            r.mode.name(),
            r.phase,
            secs,
            d.rows_read_per_host_minute(r.hosts),
            per_host(d.statement_rows) / (secs / 60.0),
            per_host(r.vm_table_rows()) / (secs / 60.0),
            d.statements_per_host_second(r.hosts),
            per_host(d.transactions) / secs,
            r.max_connections,
            d.cpu_percent(),
            r.bouncer_cpu.map_or("–".into(), |c| format!("{c:.1}")),
            r.fleet_cpu,
            r.time
                .map_or("–".into(), |t| format!("{:.1}", t.as_secs_f64())),
            r.table_multiple
                .map_or("–".into(), |(raw, net)| format!("{raw:.2} ({net:.2})")),
            r.table_multiple.map_or("–".into(), |_| format!(
                "{:.2}",
                r.vm_table_rows() as f64 / (r.hosts * s.vms) as f64
            )),
            r.note
        );
    }
    let _ = writeln!(
        out,
        "\nWhere the rows were read, per host (pg_stat_all_tables: sequential scan rows + \
         index entries + index-fetched rows; the tables with the most):\n"
    );
    let _ = writeln!(out, "| hosts | mode | phase | tables |");
    let _ = writeln!(out, "|---:|---|---|---|");
    let k = |v: f64| {
        if v.abs() >= 10_000.0 {
            format!("{:.1}k", v / 1000.0)
        } else {
            format!("{v:.0}")
        }
    };
    for r in rows {
        let n = r.hosts as f64;
        let tables: Vec<String> = r
            .tables
            .iter()
            .take(5)
            .map(|(t, [seq, idx, fetch])| {
                format!(
                    "{t} {} seq + {} idx + {} fetch",
                    k(*seq as f64 / n),
                    k(*idx as f64 / n),
                    k(*fetch as f64 / n)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            r.hosts,
            r.mode.name(),
            r.phase,
            tables.join("; ")
        );
    }
    out
}

/// As many file descriptors as allowed: a socket and a redb file per host.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() {
    let s = Settings::from_args();
    raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for &hosts in &s.hosts {
        let cluster = if s.durable {
            PgCluster::start_durable()
        } else {
            PgCluster::start_new()
        };
        // Direct mode needs a backend per sink, the holder, the monitors and some margin.
        rt.block_on(async {
            let admin = pg::connect(&cluster.url("postgres")).await;
            admin
                .batch_execute(&format!(
                    "ALTER SYSTEM SET max_connections = {}",
                    hosts + 100
                ))
                .await
                .unwrap();
        });
        cluster.stop();
        cluster.start();
        for &mode in &s.modes {
            let got = rt.block_on(run_mode(&cluster, hosts, mode, &s));
            eprint!("{}", table(&got, &s));
            rows.extend(got);
        }
    }
    println!("{}", table(&rows, &s));
}
