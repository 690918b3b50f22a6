//! The real KubeVirt objects of `../shared/fixtures/kubevirt/` as tests use them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use serde_json::{Value, json};

/// Namespace and name of the real CNV VMI (running on node `sno-0-0`).
pub const CNV_NS: &str = "openshift-cnv";
pub const CNV_NAME: &str = "centos7-gray-owl-35";

/// One fixture file as JSON.
pub fn kubevirt(name: &str) -> Value {
    let path = format!(
        "{}/../shared/fixtures/kubevirt/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
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
