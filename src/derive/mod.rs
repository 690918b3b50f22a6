//! Derivation (docs/ARCHITECTURE.md, "Field rules"): KubeVirt objects → records. Pure:
//! no I/O; values and the current time come in as arguments. The daemon and
//! `virtsync inspect` share it.
//!
//! - [`objects`]: our serde structs for the VM/VMI fields we read, and their decoding;
//! - [`quantity`]: Kubernetes quantities;
//! - [`status`]: printableStatus → the cloud API's power status;
//! - [`vmi`], [`vm`]: one object → its part of a record;
//! - [`combine`]: the parts → one [`Observation`](crate::model::Observation);
//! - [`condition`]: Kubernetes-style conditions for the socket API;
//! - [`domain_target`]: when a running VMI's libvirt domain is looked at.
//!
//! Choices the field rules leave open:
//! - cpu_count: a product above i32::MAX (INTEGER column) is dropped with a warning;
//!   no topology at all counts as 1×1×1 (KubeVirt's default) except for a VM with
//!   `spec.instancetype`, whose count is then not written.
//! - memory_mb: a source that is invalid or ≤ 0 MiB is skipped (warning for invalid) and
//!   the next source is used.
//! - guest_os: candidates that are empty or "Unknown" (any case) are skipped; the stopped
//!   VM's `vm.kubevirt.io/os` comes from the VM's annotations, else its template's.
//! - runtime text fields: an empty string counts as not reported (`None`).
//! - agent_connected: `Some(false)` when the VMI has no AgentConnected condition
//!   (KubeVirt removes it when the agent disconnects).
//! - JSON arrays: every key always present, `null` when absent; no elements → `None`.
//!   `ipAddresses` falls back to `[ipAddress]`; a volume's claim falls back to the spec
//!   volume's PVC or DataVolume name.
//! - primary IP: loopback and unspecified addresses are skipped too; `/prefix` and
//!   `%zone` are ignored; printed in the standard (compressed) form.
//! - runStrategy is compared ignoring ASCII case; has_running_vmi ignores deletion.

pub mod caps;
pub mod combine;
pub mod condition;
mod decode;
mod details;
pub mod domain_target;
pub mod objects;
pub mod quantity;
pub mod status;
pub mod vm;
pub mod vmi;

#[cfg(test)]
mod tests;

pub use combine::{VmInput, VmiInput, observe};
pub use condition::{Condition, ConditionStatus, SyncState, set_condition, vm_conditions};
pub use decode::{decode_vm, decode_vm_slice, decode_vmi, decode_vmi_slice};
pub use details::{interfaces_json, primary_ip, usable_ip, volumes_json};
pub use domain_target::{DomainFacts, DomainTarget, domain_target, needs_probe};
pub use objects::{Vm, Vmi};
pub use quantity::{Quantity, QuantityError};
pub use status::{StatusMapping, should_run, vm_status};
pub use vm::{VmPart, derive_vm};
pub use vmi::{VmiPart, derive_vmi};

/// An object that cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A field of the wrong type; `path` names it, e.g. `status.currentCPUTopology.cores`.
    #[error("{kind} {object}: {path}: {source}")]
    Field {
        kind: &'static str,
        object: String,
        path: String,
        source: serde_json::Error,
    },
    #[error("{kind}: not JSON: not a JSON object")]
    NotObject { kind: &'static str },
    #[error("{kind}: not JSON: {source}")]
    Json {
        kind: &'static str,
        source: serde_json::Error,
    },
    #[error("{object}: kind {found:?} is not {expected}")]
    Kind {
        expected: &'static str,
        found: String,
        object: String,
    },
}

/// A decoded object that cannot become a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeriveError {
    #[error("{0} is missing or empty")]
    Missing(&'static str),
    #[error("invalid key {key:?}: {problem}")]
    InvalidKey { key: String, problem: &'static str },
}
