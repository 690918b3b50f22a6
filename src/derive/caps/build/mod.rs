//! [`DiscoveryInput`] (one answer per libvirt call) → [`HostCapabilities`].
//!
//! - `machines`: the domain-capabilities answers read and checked, and the ones that
//!   describe the guests' machine;
//! - `groups`: one function per group, each counting its own inputs (`Deps`);
//! - `cpu_facts`: the tri-states (vmx/svm, nested virt, KSM) and the free pages;
//! - `fingerprint`: canonical JSON and its FNV-1a fingerprint.

mod cpu_facts;
mod fingerprint;
mod groups;
mod machines;

use super::domcaps::DomCapsDoc;
use super::host::parse_capabilities;
use super::model::*;
use super::nodeinfo::NodeInfo;
use super::resources::Fetched;
use machines::{Pick, choose, entries};

// The rules' tests check the cpu_map table directly.
#[cfg(test)]
pub(super) use cpu_facts::model_includes;
pub use fingerprint::{fingerprint_of, fnv1a64};

/// One `virConnectGetDomainCapabilities` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomCapsAnswer {
    /// The virttype asked for: "kvm" or "qemu".
    pub virttype: String,
    /// The machine asked for, as configured or seen on a VMI (e.g. "q35"); `None`:
    /// libvirt's default machine for the arch.
    pub machine: Option<String>,
    pub answer: Result<String, String>,
}

/// `virNodeGetFreePages` for one NUMA cell: each page size asked (KiB) with its free
/// pages, as the driver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellFreePages {
    /// The cell's id (`<cell id>` in the capabilities).
    pub cell: u32,
    /// (page size in KiB, free pages).
    pub pages: Vec<(u64, u64)>,
}

/// What the libvirt source got from each call; `Err` holds the driver's reason
/// (e.g. "this function is not supported by the connection driver").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryInput {
    pub hostname: Result<String, String>,
    /// `virConnectGetCapabilities`.
    pub capabilities: Result<String, String>,
    /// Every domain-capabilities answer, in preference order: the machines the guests
    /// use first (each machine asked for kvm, then qemu).
    pub domcaps: Vec<DomCapsAnswer>,
    /// The machine the guests on this host use; the host-level values describe it.
    /// `None`: the first answered machine.
    pub guest_machine: Option<String>,
    /// `virNodeGetInfo`.
    pub node_info: Result<NodeInfo, String>,
    /// `virNodeGetFreePages` for the NUMA cells of the capabilities and their page
    /// sizes; `Err` when not asked (no cells) or refused.
    pub free_pages: Result<Vec<CellFreePages>, String>,
    /// `virConnectGetType`.
    pub hypervisor_type: Result<String, String>,
    /// `virConnectGetVersion` (major·10⁶ + minor·10³ + release).
    pub hypervisor_version: Result<u64, String>,
    /// `virConnectGetLibVersion`.
    pub libvirt_version: Result<u64, String>,
    /// Every storage pool's XML with its active flag.
    pub storage_pools: Result<Vec<Fetched>, String>,
    /// Every network's XML with its active flag.
    pub networks: Result<Vec<Fetched>, String>,
    /// Node device XML (PCI devices; others are ignored).
    pub node_devices: Result<Vec<String>, String>,
    /// `/sys/module/kvm_intel/parameters/nested` as read (`"Y\n"`), when the daemon runs
    /// on the host.
    pub kvm_intel_nested: Result<String, String>,
    /// `/sys/module/kvm_amd/parameters/nested` as read (`"1\n"`).
    pub kvm_amd_nested: Result<String, String>,
    /// `/sys/kernel/mm/ksm/run` as read.
    pub ksm_run: Result<String, String>,
}

impl DiscoveryInput {
    /// Every call unanswered for the same reason (e.g. no libvirt reachable).
    pub fn unavailable(reason: &str) -> Self {
        let r = reason.to_string();
        DiscoveryInput {
            hostname: Err(r.clone()),
            capabilities: Err(r.clone()),
            domcaps: Vec::new(),
            guest_machine: None,
            node_info: Err(r.clone()),
            free_pages: Err(r.clone()),
            hypervisor_type: Err(r.clone()),
            hypervisor_version: Err(r.clone()),
            libvirt_version: Err(r.clone()),
            storage_pools: Err(r.clone()),
            networks: Err(r.clone()),
            node_devices: Err(r.clone()),
            kvm_intel_nested: Err(r.clone()),
            kvm_amd_nested: Err(r.clone()),
            ksm_run: Err(r),
        }
    }
}

/// The inputs of one group and what was wrong with them.
#[derive(Default)]
struct Deps {
    needed: usize,
    failed: usize,
    reasons: Vec<String>,
}

impl Deps {
    fn use_<'a, T>(&mut self, label: &str, r: &'a Result<T, String>) -> Option<&'a T> {
        self.needed += 1;
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.failed += 1;
                self.reasons.push(format!("{label}: {e}"));
                None
            }
        }
    }

    /// A chosen domain-capabilities document, with what was wrong on the way to it.
    fn take<'a>(&mut self, pick: &Pick<'a>) -> Option<&'a DomCapsDoc> {
        self.needed += 1;
        self.reasons.extend(pick.reasons.iter().cloned());
        if pick.doc.is_none() {
            self.failed += 1;
        }
        pick.doc
    }

    fn note(&mut self, reason: String) {
        self.reasons.push(reason);
    }

    fn status(self) -> GroupStatus {
        let state = if self.reasons.is_empty() {
            GroupState::Complete
        } else if self.needed > 0 && self.failed == self.needed {
            GroupState::Unavailable
        } else {
            GroupState::Partial
        };
        GroupStatus {
            state,
            reasons: self.reasons,
        }
    }
}

fn parsed<T, E: std::fmt::Display>(
    r: &Result<String, String>,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, String> {
    match r {
        Ok(text) => parse(text).map_err(|e| e.to_string()),
        Err(e) => Err(e.clone()),
    }
}

/// Combines the answers into the seven groups. Never fails: whatever is missing or
/// unreadable is a reason in the group that needed it.
pub fn build_capabilities(input: &DiscoveryInput) -> HostCapabilities {
    let caps = parsed(&input.capabilities, parse_capabilities);
    let entries = entries(input, caps.as_ref().ok());
    let none_reason = match &input.capabilities {
        Err(e) => e.clone(),
        Ok(_) => "none asked".to_string(),
    };
    let chosen = choose(&entries, input.guest_machine.as_deref(), &none_reason);

    // Nested virt reads the cpu group's inputs but is reported in virt_info.
    let (cpu_info, nested) = groups::cpu_info(input, &caps, &chosen);
    HostCapabilities {
        host_info: groups::host_info(input, &caps),
        cpu_info,
        memory_info: groups::memory_info(input, &caps, &chosen),
        security_info: groups::security_info(&caps, &chosen),
        storage_info: groups::storage_info(input, &chosen),
        network_info: groups::network_info(input, &chosen),
        virt_info: groups::virt_info(input, &caps, &entries, &chosen, nested),
    }
}
