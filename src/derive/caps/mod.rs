//! Host capabilities in seven groups (docs/ARCHITECTURE.md, "Sources") and the hypervisor
//! type of a domain. Pure: the libvirt source fetches the documents; here they are parsed
//! with a bounded reader ([`xml`]) and combined into [`HostCapabilities`].
//!
//! - [`xml`]: size/depth/DTD-bounded reader → small element tree;
//! - [`host`]: `virsh capabilities`; [`domcaps`]: `virsh domcapabilities` (kvm, qemu);
//! - [`nodeinfo`]: `virNodeGetInfo` / `virsh nodeinfo`;
//! - [`resources`]: storage pool, network and node device XML;
//! - [`build`]: [`DiscoveryInput`] → [`HostCapabilities`], canonical JSON, fingerprint;
//! - [`domain`]: `<domain type>` → [`HypervisorType`].
//!
//! Choices made here:
//! - Group status: every libvirt answer a group reads is one input; an input that is
//!   `Err` (the driver's reason) or does not parse makes the group `partial` with
//!   `"<input>: <reason>"`; all of its inputs missing → `unavailable`. One unreadable
//!   pool/network/device is skipped with a reason (group `partial`).
//! - "The" domain capabilities for memory, security, storage and network enums is the
//!   kvm document; without it, the qemu (TCG) one, with a reason. The host-model CPU,
//!   usable CPU models and nested virtualization come from the kvm document only (TCG's
//!   host-model is an emulated CPU, not the host's).
//! - Disk formats: domain capabilities list disk devices, buses and models, not image
//!   formats; volume formats would need `virConnectGetStoragePoolCapabilities`, so
//!   `storage_info` reports `disk_devices`/`disk_buses`/`disk_models` and pool types.
//! - vmx/svm: named in the host CPU's features (capabilities) or required by the kvm
//!   host-model CPU. A CPU model can imply them without naming them (AMD EPYC models
//!   include svm), so `false` means "not named", and `nested_virt` is `true` when the kvm
//!   host-model requires vmx/svm, else `null`: the kvm module's `nested` parameter is in
//!   sysfs, not in libvirt XML.
//! - Not derivable from libvirt XML: KSM (sysfs `/sys/kernel/mm/ksm`) → `ksm: null`;
//!   the memory balloon is `null` unless domain capabilities list `<memballoon>` (none
//!   of libvirt 9–11's do).
//! - SEV-ES = SEV supported and `maxESGuests` > 0; SEV-SNP and TDX = `sev-snp` / `tdx`
//!   among the launchSecurity sectypes (TDX also from a `<tdx supported='yes'>` feature).
//! - Secure boot = the loader's `secure` enum contains `yes`; `null` without an `<os>`.
//! - Versions from `virConnectGetVersion`/`GetLibVersion` print as `major.minor.release`.
//! - Fingerprint: 64-bit FNV-1a of the canonical JSON (keys sorted at every level, no
//!   whitespace), as 16 lowercase hex digits — stable across builds and platforms.

pub mod build;
pub mod domain;
pub mod domcaps;
pub mod host;
pub mod model;
pub mod nodeinfo;
pub mod resources;
mod values;
pub mod xml;

#[cfg(test)]
mod tests;

pub use build::{DiscoveryInput, build_capabilities, fingerprint_of, fnv1a64};
pub use domain::{HypervisorType, hypervisor_type};
pub use domcaps::{DomCapsDoc, parse_domain_capabilities};
pub use host::{CapsDoc, parse_capabilities};
pub use model::*;
pub use nodeinfo::{NodeInfo, parse_nodeinfo};
pub use resources::{
    Fetched, Network, PhysicalFunction, SriovRole, StoragePool, parse_network, parse_node_device,
    parse_storage_pool,
};
pub use xml::{Element, XmlError};

/// A libvirt document that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("root element is <{found}>, expected <{expected}>")]
    Root {
        expected: &'static str,
        found: String,
    },
    #[error("{what}: {value:?} is not a valid value")]
    Value { what: String, value: String },
    #[error("{0} is missing")]
    Missing(&'static str),
}
