//! Host capabilities in seven groups (docs/ARCHITECTURE.md, "Sources") and the hypervisor
//! type of a domain. Pure: the libvirt source fetches the documents; here they are parsed
//! with a bounded reader ([`xml`]) and combined into [`HostCapabilities`].
//!
//! - [`xml`]: size/depth/DTD-bounded reader → small element tree;
//! - [`host`]: `virsh capabilities`; [`domcaps`]: `virsh domcapabilities` (per machine,
//!   kvm and qemu);
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
//! - Machines: discovery asks domain capabilities per machine (the guests' machine
//!   first) and virttype. Every answer is listed in `virt_info.machines` (machine asked,
//!   canonical machine, virttype, arch, max vCPUs, secure boot, firmware, disk buses,
//!   status). The host-level values (secure boot, firmware, max vCPUs, disk buses,
//!   memory backing, TPM, SEV/SGX/TDX, interface backends) describe the guests' machine
//!   (`DiscoveryInput::guest_machine`, else the first answered machine), named in
//!   `virt_info.guest_machine`: its kvm document, else its qemu (TCG) one with a reason.
//!   A kvm document that is silent stays silent: no `<vcpu>` → `max_vcpus: null`, never
//!   the TCG document's value.
//! - The host-model CPU, the CPU model lists (usable / unusable / unknown) and nested
//!   virtualization come from a kvm document only (TCG's host-model is an emulated CPU):
//!   the guests' machine's, else any other machine's (the host CPU is the same).
//! - Consistency: a domain-capabilities document whose `<arch>` is not the host's is
//!   kept apart (listed with status `unavailable` and the reason, values `null`, never
//!   used for host-level values); a document of another driver (`<domain>` not kvm/qemu,
//!   or a hypervisor type other than QEMU) likewise, with "driver X is not supported".
//!   `vcpu max` of 2^31-1 or more (ppc64's INT_MAX) means "no limit stated": `null` with
//!   a reason.
//! - Disk formats: domain capabilities list disk devices, buses and models, not image
//!   formats; volume formats would need `virConnectGetStoragePoolCapabilities`, so
//!   `storage_info` reports `disk_devices`/`disk_buses`/`disk_models` and pool types.
//! - Tri-states (`yes`/`no`/`unknown` with the source): no field says "no" when its
//!   source is silent.
//!   - vmx/svm: named in the host CPU's features (capabilities) → yes; required/forced
//!     by the kvm host-model CPU → yes, disabled/forbidden → no; else the host CPU
//!     model's (or host-model's) definition in libvirt's cpu_map: EPYC*, Opteron_G2–G5,
//!     phenom, qemu64 and Dhyana include svm (no named model includes vmx); else unknown.
//!   - nested virt: the `nested` parameter of `kvm_intel`/`kvm_amd` (the host vendor's
//!     module; both on an x86 host of unknown vendor; none on other arches), Y/1 → yes,
//!     N/0 → no; else yes when the kvm host-model CPU gives guests vmx/svm (source
//!     "host-model CPU"); else unknown with the sysfs reason. The daemon reads sysfs on
//!     the host; inspect cannot.
//!   - KSM: `/sys/kernel/mm/ksm/run` 1 → yes, 0/2 → no, unreadable → unknown with the
//!     reason (in `source`; the memory group's status is not changed by it).
//! - CPU models: `usable='yes'` / `'no'` / `'unknown'` (or no attribute) are three lists;
//!   "unknown" (every aarch64, ppc64 and loongarch64 kvm document) is not "unusable".
//! - Memory and topology: page sizes come from `host/cpu/pages` and every NUMA cell;
//!   per-cell memory and pages (size, count, free where given) are in
//!   `cpu_info.numa_cells` only. The capabilities give page counts, not free ones:
//!   `free` is `virNodeGetFreePages`' answer for that cell and size
//!   (`DiscoveryInput::free_pages`), `null` for a cell or size it did not answer.
//!   Discovery asks only the hugepage sizes: the base pages' free count moves every
//!   second, and the capabilities would differ (and be written again) at every
//!   discovery. Its
//!   refusal (or "not given to inspect" offline) is a reason in `memory_info`'s status
//!   (`partial`, never `unavailable`: the counts are still there) only when the host has
//!   NUMA cells; without cells there is nothing to ask and no reason. The cpu group,
//!   which lists the cells, is not changed by it.
//!   Topology includes `clusters` (1 when not named).
//!   `logical_cpus` counts the CPU ids of all NUMA cells, else multiplies the topology;
//!   a mismatch with `virNodeGetInfo`'s CPUs is a reason (cpu group `partial`).
//! - The memory balloon is `null` unless domain capabilities list `<memballoon>` (none
//!   of libvirt 9–11's do).
//! - Yes/no values from domain capabilities are `null` when the document has no element
//!   for them, never `false` (libvirt 9.0 writes no `<launchSecurity>` or `<tdx>`, older
//!   ones no `<sev>`/`<sgx>`, bhyve/xen no `<tpm>`): `false` only where the document
//!   says `supported='no'` or leaves the value out of a list it gives. Without a usable
//!   domain-capabilities document every one is `null`. (The table prints `unknown`.)
//!   - SEV: `<sev supported>`; without `<sev>`, `sev` among the launchSecurity sectypes.
//!   - SEV-ES: no when SEV is not supported; else `maxESGuests` > 0; `null` when SEV's
//!     support is unknown or a supported `<sev>` gives no `maxESGuests`.
//!   - SEV-SNP: `sev-snp` among the sectypes of a `<launchSecurity supported='yes'>`
//!     (no when that enum lacks it or launchSecurity is `supported='no'`); `null`
//!     without `<launchSecurity>` or its sectype enum — even when `<sev>` says no.
//!   - TDX: yes when the sectypes list `tdx` or a `<tdx supported='yes'>` feature is
//!     there; no when `<tdx supported='no'>` or launchSecurity says no / lists no
//!     `tdx`; else `null`.
//!   - SGX, TPM, the host-model CPU: the `supported` attribute of `<sgx>`, of the
//!     `<tpm>` device, of the host-model `<mode>`; `null` without it.
//! - Secure boot = the loader's `secure` enum contains `yes`; `false` when `<os>` or its
//!   loader is `supported='no'`; `null` without `<os>`, without a loader, or without a
//!   `secure` enum.
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

pub use build::{
    CellFreePages, DiscoveryInput, DomCapsAnswer, build_capabilities, fingerprint_of, fnv1a64,
};
pub use domain::{HypervisorType, hypervisor_type};
pub use domcaps::{DomCapsDoc, no_limit, parse_domain_capabilities};
pub use host::{CapsDoc, parse_capabilities};
pub use model::*;
pub use nodeinfo::{NodeInfo, parse_nodeinfo};
pub use resources::{
    Fetched, Network, PhysicalFunction, SriovRole, StoragePool, parse_network, parse_node_device,
    parse_storage_pool,
};
pub use xml::{Element, Malformed, XmlError};

/// A libvirt document that cannot be read.
#[derive(Debug, Clone, thiserror::Error)]
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
