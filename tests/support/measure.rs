//! Measuring a running daemon from outside: memory and CPU from /proc, catching up
//! by its own counters, and quantiles of its Prometheus histograms.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::time::{Duration, Instant};

use super::daemon::DaemonProcess;
use super::metrics::sample;

fn status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resident set size of a process, in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Resident memory split into anonymous (heap, stacks) and file-backed (the binary and
/// its shared libraries, shareable and reclaimable) pages, in KiB.
pub fn rss_split_kib(pid: i32) -> (u64, u64) {
    (status_kib(pid, "RssAnon:"), status_kib(pid, "RssFile:"))
}

/// The process's peak resident set size so far (high-water mark), in KiB.
pub fn peak_rss_kib(pid: i32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// CPU time (user + system) the process has used, in seconds.
pub fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces): state is field 3, utime 14.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// The daemon's count of VMI events from Kubernetes.
pub fn vmi_events(scrape: &str) -> f64 {
    sample(
        scrape,
        "virtsync_events_total",
        r#"kind="vmi",source="kubernetes""#,
    )
    .unwrap_or(0.0)
}

/// Waits until the daemon has received `events` VMI events and written everything.
/// (Count events by the fake API server's resourceVersion: a churn that happens to
/// produce identical content is no change and sends no event.)
pub async fn settle(d: &mut DaemonProcess, events: f64, limit: Duration) -> Duration {
    let start = Instant::now();
    // Twice in a row: an event counted on arrival reaches the outbox a few ms later.
    let mut quiet = 0;
    loop {
        let text = d.scrape().await;
        let seen = vmi_events(&text);
        let pending = sample(&text, "virtsync_outbox_pending", "").unwrap_or(1.0);
        quiet = if seen >= events && pending == 0.0 {
            quiet + 1
        } else {
            0
        };
        if quiet == 2 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "the daemon did not catch up: {seen} of {events} events, {pending} pending"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The cumulative buckets `(le, count)` of histogram `name` (without `+Inf`).
pub fn buckets(scrape: &str, name: &str) -> Vec<(f64, f64)> {
    let head = format!("{name}_bucket{{le=\"");
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix(head.as_str()))
        .filter_map(|rest| {
            let (le, value) = rest.split_once("\"} ")?;
            Some((le.parse().ok()?, value.trim().parse().ok()?))
        })
        .collect()
}

/// The `q` quantile of the observations between two scrapes of the same histogram,
/// interpolated linearly inside the bucket as Prometheus' `histogram_quantile` does;
/// `None` without observations, `f64::INFINITY` beyond the last bucket.
pub fn histogram_quantile(
    before: &[(f64, f64)],
    after: &[(f64, f64)],
    total: f64,
    q: f64,
) -> Option<f64> {
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for (i, &(le, count)) in after.iter().enumerate() {
        let count = count - before.get(i).map_or(0.0, |b| b.1);
        if count >= rank {
            let (lo_le, lo_count) = lower;
            let width = count - lo_count;
            let frac = if width > 0.0 {
                (rank - lo_count) / width
            } else {
                1.0
            };
            return Some(lo_le + (le - lo_le) * frac);
        }
        lower = (le, count);
    }
    Some(f64::INFINITY)
}

/// The `q` quantile of `sorted` (nearest rank).
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> T {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
