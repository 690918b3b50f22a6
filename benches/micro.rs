//! Criterion micro-benchmarks of the per-event and per-refresh pure work:
//! - one VMI event: bytes → our structs → derived record → observation → column diff
//!   against the previous record (what the daemon does for every watch event), and the
//!   serde decode alone (the floor), and the watcher's own read of each object;
//! - Kubernetes quantity parsing;
//! - capabilities and domain-capabilities XML parsing (real captures from this host).
//!
//!   cargo bench --bench micro            (fixtures from tests/fixtures)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use virtsync::columns::diff;
use virtsync::derive::caps::domcaps::parse_domain_capabilities;
use virtsync::derive::caps::host::parse_capabilities;
use virtsync::derive::{VmInput, VmiInput, decode_vmi_slice, derive_vmi, observe, quantity};
use virtsync::source::kube::KubeObject;

fn fixture(rel: &str) -> Vec<u8> {
    let base = std::env::var_os("FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"));
    let path = base.join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn vmi_event(c: &mut Criterion) {
    let bytes = fixture("kubevirt/vmi-running-cnv.json");
    // The previous state differs in the IP, as for a typical guest-agent event.
    let mut before: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    before["status"]["interfaces"][0]["ipAddress"] = serde_json::json!("10.0.0.1");
    let before =
        derive_vmi(&decode_vmi_slice(&serde_json::to_vec(&before).unwrap()).unwrap()).unwrap();
    let previous = observe(
        &before.key,
        VmInput::Unknown,
        VmiInput::Present(&before),
        None,
    );

    c.bench_function("vmi event: decode + derive + observe + diff", |b| {
        b.iter(|| {
            let vmi = decode_vmi_slice(black_box(&bytes)).unwrap();
            let part = derive_vmi(&vmi).unwrap();
            let obs = observe(
                &part.key,
                VmInput::Unknown,
                VmiInput::Present(&part),
                Some(&previous),
            );
            black_box(diff(Some(&previous.record), &obs.record))
        })
    });
    c.bench_function("vmi event: serde decode alone (floor)", |b| {
        b.iter(|| black_box(decode_vmi_slice(black_box(&bytes)).unwrap()))
    });
    // What the watcher does first with each object: keep its JSON, read its metadata.
    c.bench_function("vmi event: watched object (raw JSON + metadata)", |b| {
        b.iter(|| black_box(serde_json::from_slice::<KubeObject>(black_box(&bytes)).unwrap()))
    });
}

fn quantities(c: &mut Criterion) {
    let inputs = [
        "8Gi",
        "1536Mi",
        "2.5G",
        "100m",
        "1e3",
        "312.5Ki",
        "0.5",
        "12345678901k",
    ];
    c.bench_function("quantity: parse 8 typical values", |b| {
        b.iter(|| {
            for q in inputs {
                black_box(quantity::parse(black_box(q)).unwrap());
            }
        })
    });
}

fn capabilities(c: &mut Criterion) {
    let caps = String::from_utf8(fixture("libvirt/real/capabilities.xml")).unwrap();
    let domcaps = String::from_utf8(fixture("libvirt/real/domcapabilities-kvm.xml")).unwrap();
    c.bench_function("capabilities XML: parse (real host)", |b| {
        b.iter(|| black_box(parse_capabilities(black_box(&caps)).unwrap()))
    });
    c.bench_function("domain capabilities XML: parse (real host, kvm)", |b| {
        b.iter(|| black_box(parse_domain_capabilities(black_box(&domcaps)).unwrap()))
    });
}

criterion_group!(benches, vmi_event, quantities, capabilities);
criterion_main!(benches);
