//! The fixtures under `tests/fixtures/` as tests use them: a missing or unreadable file
//! fails the test with its full path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::PathBuf;

use serde_json::{Value, json};

/// Namespace and name of the real CNV VMI (running on node `sno-0-0`).
pub const CNV_NS: &str = "openshift-cnv";
pub const CNV_NAME: &str = "centos7-gray-owl-35";

/// The path of a fixture, relative to `tests/fixtures/`.
pub fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// A fixture's path after checking that it exists (for tests that hand it to a process).
pub fn existing(rel: &str) -> PathBuf {
    let p = path(rel);
    assert!(p.exists(), "fixture {} is missing", p.display());
    p
}

/// A fixture's text.
pub fn text(rel: &str) -> String {
    let p = path(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// One KubeVirt fixture file as JSON.
pub fn kubevirt(name: &str) -> Value {
    let rel = format!("kubevirt/{name}");
    serde_json::from_str(&text(&rel))
        .unwrap_or_else(|e| panic!("fixture {}: not JSON: {e}", path(&rel).display()))
}

/// The real CNV VMI, unchanged.
pub fn cnv_vmi() -> Value {
    kubevirt("vmi-running-cnv.json")
}

/// The real CNV VM, renamed to own that VMI.
pub fn cnv_vm() -> Value {
    let mut v = kubevirt("vm-running-cnv.json");
    v["metadata"]["name"] = json!(CNV_NAME);
    v["metadata"]["namespace"] = json!(CNV_NS);
    v
}
