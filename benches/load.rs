//! The load harness (docs/ARCHITECTURE.md, "Performance targets"): the built daemon
//! against the fake API server with N synthetic VM+VMI pairs on its node and a real,
//! durable PostgreSQL (fsync and synchronous commit on). One run reports:
//! - event → commit latency p50/p99/max from the daemon's histogram, cross-checked by
//!   the IP each change carries: the harness notes when it sent it, PostgreSQL when the
//!   row with that IP committed (`track_commit_timestamp`);
//! - the daemon's CPU time per event against serde-decoding the same events into our
//!   structs, in this process, on one thread (the floor), and the daemon's own work
//!   (decode + derive + diff + state write) measured the same way (`pipeline.rs`), and
//!   a bare watch reader's on the same events at the same time (`reader.rs`);
//! - PostgreSQL statements and transactions per flushed batch and per real change
//!   (`pg_stat_statements`), and the statements on `vms` caused by no-op events;
//! - a restart with N unchanged VMs: writes to `vms` and the time until `CacheReady`;
//! - peak RSS.
//!
//! It fails (exit ≠ 0) when the database does not end at the truth, a no-op event or an
//! unchanged restart writes to `vms`; the speed targets are reported, not asserted.
//!
//!   cargo bench --bench load -- [--vms 10000] [--rate 500] [--seconds 60]
//!       [--flush-interval 50ms] [--cache-size 4MiB] [--sync-interval 1s] [--seed S]
//!   scripts/bench   (this at 10k VMIs, 500 changes/s, the N sweep, discovery; BENCHMARKS.md)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "load/pipeline.rs"]
mod pipeline;
#[path = "load/reader.rs"]
mod reader;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::daemon::DaemonProcess;
use support::fake_kube::{FakeApiServer, Rng};
use support::measure::{
    buckets, cpu_seconds, histogram_quantile, peak_rss_kib, quantile, rss_kib, rss_split_kib,
    settle, vmi_events,
};
use support::metrics::sample;
use support::pg::PgCluster;
use support::ssvirt;
use support::sync::Db;
use support::truth::{insert_rows, vm_keys, wait_converged};
use tokio_postgres::Client;
use virtsync::config::SchemaMode;
use virtsync::derive::decode_vmi_slice;

const NODE: &str = "bench-node";
const LIMIT: Duration = Duration::from_secs(900);
const LATENCY: &str = "virtsync_event_to_commit_seconds";

struct Settings {
    vms: usize,
    rate: u64,
    seconds: u64,
    flush_interval: String,
    /// `[cache] cache_size` for the daemon (its default when absent).
    cache_size: Option<String>,
    /// `[cache] sync_interval` for the daemon (its default when absent).
    sync_interval: Option<String>,
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
        let clock = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        Settings {
            vms: num("--vms", 10_000) as usize,
            rate: num("--rate", 500),
            seconds: num("--seconds", 60),
            flush_interval: arg("--flush-interval").unwrap_or_else(|| "50ms".into()),
            cache_size: arg("--cache-size"),
            sync_interval: arg("--sync-interval"),
            seed: num("--seed", clock.as_nanos() as u64),
        }
    }
}

/// Records the commit time of every new `runtime_primary_ip` (the bench's changes carry
/// a unique IP each); a real SSVirt database has no such trigger.
const COMMIT_LOG: &str = r#"
DROP TRIGGER vms_column_log_trg ON vms;
CREATE TABLE bench_commit_log (ip text);
CREATE FUNCTION bench_commit_log_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO bench_commit_log VALUES (NEW.runtime_primary_ip);
    RETURN NULL;
END
$fn$;
CREATE TRIGGER bench_commit_log_trg AFTER UPDATE OF runtime_primary_ip ON vms
    FOR EACH ROW WHEN (OLD.runtime_primary_ip IS DISTINCT FROM NEW.runtime_primary_ip)
    EXECUTE FUNCTION bench_commit_log_fn();
"#;

fn config(dir: &Path, kube: &FakeApiServer, db: &Db, s: &Settings) -> String {
    format!(
        r#"
node_name = "{NODE}"
role = "all"
[kubernetes]
url = "{kube}"
[postgres]
url = "{url}"
schema = "extended"
flush_interval = "{flush}"
[cache]
path = "{state}"
{cache_size}
{sync_interval}
"#,
        cache_size = s
            .cache_size
            .as_ref()
            .map_or(String::new(), |c| format!("cache_size = \"{c}\"")),
        sync_interval = s
            .sync_interval
            .as_ref()
            .map_or(String::new(), |c| format!("sync_interval = \"{c}\"")),
        kube = kube.url(),
        url = db.url,
        flush = s.flush_interval,
        state = dir.join("state.redb").display(),
    )
}

/// The `seq`-th change's IP: unique over 4M changes, outside the synthetic range.
fn carried_ip(seq: u64) -> String {
    format!(
        "100.{}.{}.{}",
        64 + (seq >> 16) % 64,
        (seq >> 8) % 256,
        seq % 256
    )
}

/// What a phase of changes sent: per carried IP the wall-clock time it was sent, and
/// a sample of the objects as sent (for the decode floor).
#[derive(Default)]
struct Sent {
    at: HashMap<String, f64>,
    samples: Vec<Vec<u8>>,
    count: u64,
}

/// Sends `n` changes at `rate`/s to random VMIs: a new IP each (`noop` = false), or a
/// new annotation, which the daemon must recognise as no change (`noop` = true).
async fn drive(
    kube: &FakeApiServer,
    keys: &[(String, String)],
    n: u64,
    rate: u64,
    noop: bool,
    rng: &mut Rng,
    seq: &mut u64,
) -> Sent {
    let sample_every = (n / 5_000).max(1);
    let mut sent = Sent::default();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    while sent.count < n {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(n);
        while sent.count < due {
            let (ns, name) = &keys[rng.below(keys.len() as u64) as usize];
            let mut vmi = kube.get("VirtualMachineInstance", ns, name).unwrap();
            *seq += 1;
            let ip = carried_ip(*seq);
            if noop {
                vmi["metadata"]["annotations"] = json!({"bench.virtsync.io/seq": seq.to_string()});
            } else {
                let ifc = &mut vmi["status"]["interfaces"][0];
                ifc["ipAddress"] = json!(ip);
                ifc["ipAddresses"][0] = json!(ip);
            }
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            kube.apply(vmi.clone());
            sent.at.insert(ip, now.as_secs_f64());
            if sent.count % sample_every == 0 {
                sent.samples.push(serde_json::to_vec(&vmi).unwrap());
            }
            sent.count += 1;
        }
    }
    sent
}

/// Seconds per event of serde-decoding `samples` into our `Vmi`, on this thread (the
/// best of 5 passes).
fn decode_floor(samples: &[Vec<u8>]) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for s in samples {
                std::hint::black_box(decode_vmi_slice(std::hint::black_box(s)).unwrap());
            }
            start.elapsed().as_secs_f64() / samples.len() as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// (query, calls, rows) of every statement the daemon ran in this database since the
/// last reset, most called first.
async fn statements(client: &Client) -> Vec<(String, i64, i64)> {
    client
        .query(
            "SELECT regexp_replace(query, '\\s+', ' ', 'g'), calls, rows FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND query NOT ILIKE '%pg_stat_statements%' AND query NOT ILIKE '%bench_commit_log%' \
             ORDER BY calls DESC",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn calls(stats: &[(String, i64, i64)], pred: impl Fn(&str) -> bool) -> (i64, i64) {
    stats
        .iter()
        .filter(|(q, _, _)| pred(q))
        .fold((0, 0), |(c, r), (_, calls, rows)| (c + calls, r + rows))
}

/// A statement that writes `vms` (the flush is one `WITH … UPDATE "public"."vms" …`).
fn is_vms_write(q: &str) -> bool {
    let q = q.to_ascii_uppercase();
    [
        "UPDATE \"PUBLIC\".\"VMS\"",
        "INSERT INTO \"PUBLIC\".\"VMS\"",
        "DELETE FROM \"PUBLIC\".\"VMS\"",
    ]
    .iter()
    .any(|w| q.contains(w))
}

fn is_begin(q: &str) -> bool {
    let q = q.to_ascii_uppercase();
    q.starts_with("BEGIN") || q.starts_with("START TRANSACTION")
}

/// Commit time minus send time of every carried IP that reached `vms`, in seconds,
/// sorted; and how many IPs never did (a later change to the same VMI came first).
async fn commit_latencies(client: &Client, sent: &Sent) -> (Vec<f64>, usize) {
    let rows = client
        .query(
            "SELECT ip, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 \
             FROM bench_commit_log",
            &[],
        )
        .await
        .unwrap();
    let mut latencies: Vec<f64> = rows
        .iter()
        .filter_map(|r| {
            let ip: String = r.get(0);
            Some(r.get::<_, f64>(1) - sent.at.get(&ip)?)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let coalesced = sent.at.len() - latencies.len();
    (latencies, coalesced)
}

fn ms(s: f64) -> String {
    format!("{:.1} ms", s * 1000.0)
}

async fn run(s: Settings) -> bool {
    println!(
        "load: {} VMIs on one node, {} changes/s for {} s, flush_interval {}, seed {}",
        s.vms, s.rate, s.seconds, s.flush_interval, s.seed
    );
    let cluster = PgCluster::start_durable();
    let kube = FakeApiServer::start().await;
    kube.load_synthetic(s.vms, &[NODE.to_owned()], s.seed);
    let db = Db::new(&cluster, "bench", SchemaMode::Extended).await;
    db.client.batch_execute(COMMIT_LOG).await.unwrap();
    insert_rows(&db.client, &vm_keys(&kube)).await;
    let keys = kube.vmi_keys();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut d = DaemonProcess::start_with_env(
        dir.path(),
        "bench",
        &config(dir.path(), &kube, &db, &s),
        &[("RUST_LOG", "info")],
    );
    d.wait_for("vmi list complete", LIMIT).await;
    let first_ready = started.elapsed();
    wait_converged(&kube, &db, LIMIT).await;
    let first_sync = started.elapsed();
    let pid = d.pid();
    let rss_listed = rss_kib(pid);
    println!(
        "initial sync: CacheReady {first_ready:?}, all {} rows written {first_sync:?}; RSS {rss_listed} KiB",
        s.vms
    );

    // Idle: what the daemon costs without events (timers, metrics, the managed refresh).
    let idle_cpu = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_per_s = (cpu_seconds(pid) - idle_cpu) / 5.0;

    // Real changes.
    let mut rng = Rng::new(s.seed);
    let mut seq = 0;
    let before = d.scrape().await;
    let cpu_before = cpu_seconds(pid);
    ssvirt::reset_statements(&db.client).await;
    let rv0 = kube.resource_version();
    // Beside the daemon, on the same events: what receiving them costs by itself.
    let reader = reader::Reader::start(kube.addr(), rv0);
    let sent = drive(
        &kube,
        &keys,
        s.rate * s.seconds,
        s.rate,
        false,
        &mut rng,
        &mut seq,
    )
    .await;
    let events = (kube.resource_version() - rv0) as f64;
    settle(&mut d, vmi_events(&before) + events, LIMIT).await;
    let after = d.scrape().await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let (read_events, reader_cpu) = reader.finish();
    let stats = statements(&db.client).await;
    let (latencies, coalesced) = commit_latencies(&db.client, &sent).await;

    let received = vmi_events(&after) - vmi_events(&before);
    let delta = |name: &str| {
        sample(&after, name, "").unwrap_or(0.0) - sample(&before, name, "").unwrap_or(0.0)
    };
    let batches = delta("virtsync_flush_duration_seconds_count");
    let rows_flushed = delta("virtsync_flush_rows_total");
    let committed = delta(&format!("{LATENCY}_count"));
    let (b, a) = (buckets(&before, LATENCY), buckets(&after, LATENCY));
    let hq = |q| histogram_quantile(&b, &a, committed, q).map_or("-".into(), ms);
    let (updates, updated_rows) = calls(&stats, is_vms_write);
    let (begins, _) = calls(&stats, is_begin);
    let (commits, _) = calls(&stats, |q| q.eq_ignore_ascii_case("COMMIT"));
    let (all, _) = calls(&stats, |_| true);
    let floor = decode_floor(&sent.samples);
    let per_event = cpu / received;
    let net_per_event = (cpu - idle_per_s * s.seconds as f64) / received;

    println!(
        "\nreal changes: {} sent, {received} VMI events received, {coalesced} superseded before their flush",
        sent.count
    );
    println!("| measure | value |\n|---|---|");
    println!(
        "| event → commit (daemon histogram) p50 / p99 | {} / {} |",
        hq(0.5),
        hq(0.99)
    );
    if !latencies.is_empty() {
        println!(
            "| change sent → row committed (commit timestamps, {} changes) p50 / p99 / max | {} / {} / {} |",
            latencies.len(),
            ms(quantile(&latencies, 0.5)),
            ms(quantile(&latencies, 0.99)),
            ms(*latencies.last().unwrap())
        );
    }
    println!("| flush interval | {} |", s.flush_interval);
    println!(
        "| daemon CPU per event / serde floor (one thread, {} samples) | {:.1} µs / {:.1} µs = {:.2}× |",
        sent.samples.len(),
        per_event * 1e6,
        floor * 1e6,
        per_event / floor
    );
    println!(
        "| the same without the idle cost ({:.1} ms CPU/s idle) | {:.1} µs = {:.2}× |",
        idle_per_s * 1000.0,
        net_per_event * 1e6,
        net_per_event / floor
    );
    let group = (rows_flushed / batches.max(1.0)).round().max(1.0) as usize;
    // The daemon writes its state file once per `cache.sync_interval` (1 s by default).
    let per_write = s.rate.max(1) as usize;
    for group in [1, group] {
        let cost = pipeline::cost(&sent.samples, NODE, group, per_write, None);
        println!(
            "| decode + derive + diff + state write, in-process, one thread, {group} event(s) per group, the file written every {per_write} | {:.1} µs = {:.2}× the floor |",
            cost * 1e6,
            cost / floor
        );
    }
    // The same work handed over at the daemon's pace: what it costs out of the caches.
    let gap = Duration::from_secs_f64(1.0 / s.rate.max(1) as f64);
    let paced = pipeline::cost(&sent.samples, NODE, group, per_write, Some(gap));
    let (wake, paced_floor) = pipeline::paced_floor(&sent.samples, gap);
    println!(
        "| the same, {group} per group, one event every {gap:?} as the daemon receives them (thread CPU time) | {:.1} µs = {:.2}× the floor; the daemon is {:.2}× this |",
        paced * 1e6,
        paced / floor,
        per_event / paced
    );
    println!(
        "| at that pace: the floor's decode / sleeping and being woken, per event | {:.1} µs ({:.2}× the hot loop) / {:.1} µs |",
        paced_floor * 1e6,
        paced_floor / floor,
        wake * 1e6
    );
    println!(
        "| a bare watch reader beside the daemon (one thread, HTTP/1.1, each event decoded as the floor; {read_events} events) | {:.1} µs per event |",
        reader_cpu * 1e6
    );
    // The pipeline's work beyond the decode and the wake-up, which the reader has too.
    let least = reader_cpu + (paced - paced_floor - wake).max(0.0);
    println!(
        "| the least a daemon can spend: that reader + the paced pipeline beyond its decode and wake-up | {:.1} µs; the daemon is {:.2}× this |",
        least * 1e6,
        per_event / least
    );
    println!(
        "| flushed batches / rows / rows per batch | {batches} / {rows_flushed} / {:.1} |",
        rows_flushed / batches.max(1.0)
    );
    println!(
        "| statements per batch: writes to vms / BEGIN / COMMIT / all | {:.2} / {:.2} / {:.2} / {:.2} |",
        updates as f64 / batches.max(1.0),
        begins as f64 / batches.max(1.0),
        commits as f64 / batches.max(1.0),
        all as f64 / batches.max(1.0)
    );
    println!(
        "| statements per real change (all / writes to vms; {updated_rows} rows updated) | {:.3} / {:.3} |",
        all as f64 / updated_rows.max(1) as f64,
        updates as f64 / updated_rows.max(1) as f64
    );
    println!("\nstatements in this phase:");
    for (q, c, r) in &stats {
        println!(
            "  {c:>8} calls {r:>8} rows  {}",
            q.chars().take(110).collect::<String>()
        );
    }

    // No-op events: a new annotation changes no column.
    let noops = (s.rate * 10).min(5_000);
    let before = d.scrape().await;
    ssvirt::reset_statements(&db.client).await;
    let rv0 = kube.resource_version();
    drive(&kube, &keys, noops, s.rate, true, &mut rng, &mut seq).await;
    let events = (kube.resource_version() - rv0) as f64;
    settle(&mut d, vmi_events(&before) + events, LIMIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = d.scrape().await;
    let noop_counted = sample(
        &after,
        "virtsync_noop_events_total",
        r#"source="kubernetes""#,
    )
    .unwrap_or(0.0)
        - sample(
            &before,
            "virtsync_noop_events_total",
            r#"source="kubernetes""#,
        )
        .unwrap_or(0.0);
    let noop_stats = statements(&db.client).await;
    let (noop_writes, noop_rows) = calls(&noop_stats, is_vms_write);
    println!(
        "\nno-op events: {events} sent, {noop_counted} counted as no-op, {noop_writes} statements writing vms (target 0)"
    );
    if noop_writes > 0 {
        // What was written, to tell a late flush from a real no-op write.
        println!("  {noop_rows} rows written by:");
        for (q, c, r) in noop_stats.iter().filter(|(q, _, _)| is_vms_write(q)) {
            println!("  {c:>8} calls {r:>8} rows  {q}");
        }
    }

    let converged = wait_converged(&kube, &db, LIMIT).await;
    println!("database equals the truth ({converged:?} after the last change)");
    let peak = peak_rss_kib(pid);
    let rss_end = rss_kib(pid);
    let (anon_end, file_end) = rss_split_kib(pid);

    // Restart with nothing changed.
    assert_eq!(d.stop(), Some(0), "daemon exit code; log:\n{}", d.log());
    ssvirt::reset_statements(&db.client).await;
    let restarted = Instant::now();
    d.restart();
    d.wait_for_n("vmi list complete", 2, LIMIT).await;
    let ready = restarted.elapsed();
    settle(&mut d, s.vms as f64, LIMIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (restart_writes, _) = calls(&statements(&db.client).await, is_vms_write);
    let restart_peak = peak_rss_kib(d.pid());
    assert_eq!(d.stop(), Some(0), "daemon exit code; log:\n{}", d.log());
    println!(
        "restart with {} unchanged VMs: CacheReady after {ready:?}, {restart_writes} statements writing vms (target 0); peak RSS {restart_peak} KiB",
        s.vms
    );
    println!(
        "memory: RSS {rss_listed} KiB after the first list, {rss_end} KiB at the end ({anon_end} anonymous + {file_end} file-backed), peak {peak} KiB"
    );
    let state = std::fs::metadata(dir.path().join("state.redb")).map_or(0, |m| m.len() / 1024);
    println!("state file: {state} KiB");

    let ok = noop_writes == 0 && restart_writes == 0;
    if !ok {
        println!("FAILED: writes to vms without a change");
    }
    ok
}

fn main() {
    let settings = Settings::from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if !rt.block_on(run(settings)) {
        std::process::exit(1);
    }
}
