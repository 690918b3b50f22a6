//! Host capability discovery against the same libvirt calls alone:
//! on one warm connection, in-process, N interleaved runs of
//!   (a) discovery as the daemon does it: the calls + parsing into `HostCapabilities`,
//!       fingerprint and canonical JSON;
//!   (b) the libvirt calls alone (`discover`, which only asks and keeps the answers),
//! and the ratio of the medians (target ≤ 1.2).
//!
//!   cargo bench --bench caps_discovery -- [--uri URI] [--runs 30]
//!   scripts/bench-discovery   (the above, 100 runs)
//!
//! Without `--uri` it starts a private libvirtd as the libvirt tests do
//! (`tests/support/libvirtd.rs`: root, nothing changed on the host, stopped at exit).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/libvirtd.rs"]
mod libvirtd;

use std::time::{Duration, Instant};

use virtsync::derive::caps::{build_capabilities, fingerprint_of};
use virtsync::source::libvirt::{LibvirtConnection, discover};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn main() {
    let uri = arg("--uri").unwrap_or_else(|| {
        libvirtd::Libvirtd::shared();
        libvirtd::uri().to_owned()
    });
    let runs: usize = arg("--runs").and_then(|r| r.parse().ok()).unwrap_or(30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = LibvirtConnection::new(uri.clone());
        // Warm: the connection is open and the driver's caches are filled.
        let warm = discover(&conn)
            .await
            .unwrap_or_else(|e| panic!("{uri}: {e} (is libvirtd running there?)"));
        let caps = build_capabilities(&warm.into_input());
        let groups = caps.to_canonical_json();
        let (mut full, mut calls, mut parse) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs * 2 {
            // Interleaved, alternating which goes first, so drift hits both alike.
            let full_first = i % 2 == 0;
            for which in [full_first, !full_first] {
                let t = Instant::now();
                let raw = discover(&conn).await.unwrap();
                if which {
                    let p = Instant::now();
                    // As the daemon does it (host::refresh): the canonical JSON once, its
                    // fingerprint from it.
                    let caps = build_capabilities(&raw.into_input());
                    let json = caps.to_canonical_json();
                    let fingerprint = fingerprint_of(&json);
                    std::hint::black_box((fingerprint, json));
                    parse.push(p.elapsed());
                    full.push(t.elapsed());
                } else {
                    std::hint::black_box(&raw);
                    calls.push(t.elapsed());
                }
            }
            if full.len() >= runs && calls.len() >= runs {
                break;
            }
        }
        for v in [&mut full, &mut calls, &mut parse] {
            v.sort();
        }
        let ratio = ms(quantile(&full, 0.5)) / ms(quantile(&calls, 0.5));
        println!(
            "host capability discovery on {uri}, {} runs each, warm connection",
            full.len()
        );
        println!("{:<34} {:>10} {:>10}", "", "median ms", "p90 ms");
        for (name, v) in [
            ("(a) discovery (calls + parsing)", &full),
            ("(b) the libvirt calls alone", &calls),
            ("    parsing alone (part of a)", &parse),
        ] {
            println!(
                "{name:<34} {:>10.3} {:>10.3}",
                ms(quantile(v, 0.5)),
                ms(quantile(v, 0.9))
            );
        }
        println!(
            "ratio of medians (a)/(b): {ratio:.3}  target <= 1.2: {}",
            if ratio <= 1.2 { "PASS" } else { "FAIL" }
        );
        println!("canonical JSON: {} bytes", groups.len());
        let _ = conn.close().await;
    });
}
