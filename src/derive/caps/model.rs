//! The `HostCapabilities` document: seven groups (host, cpu, memory, security, storage,
//! network, virtualization), each with a status.
//! Field names are snake_case like the group names. Absent values are `null`, absent
//! lists `[]`, so every key is always present. A yes/no that the document does not
//! state (no element for it) is `null`, never `false`: `false` only where the document
//! says `supported='no'` or leaves the value out of a list it gives.

use serde::{Deserialize, Serialize};

use super::nodeinfo::NodeInfo;
use super::resources::{Network, PhysicalFunction, StoragePool};

/// How completely a group could be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupState {
    /// Every input the group needs was answered and parsed.
    Complete,
    /// Some inputs were missing or unreadable: see `reasons`.
    Partial,
    /// No input the group needs was available: see `reasons`.
    Unavailable,
}

/// A group's state and, unless complete, why (`"<input>: <reason>"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    pub state: GroupState,
    pub reasons: Vec<String>,
}

impl GroupStatus {
    pub fn complete() -> Self {
        GroupStatus {
            state: GroupState::Complete,
            reasons: Vec::new(),
        }
    }
}

/// The discovered capabilities of one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCapabilities {
    pub host_info: HostInfo,
    pub cpu_info: CpuInfo,
    pub memory_info: MemoryInfo,
    pub security_info: SecurityInfo,
    pub storage_info: StorageInfo,
    pub network_info: NetworkInfo,
    pub virt_info: VirtInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub status: GroupStatus,
    pub hostname: Option<String>,
    pub uuid: Option<String>,
    pub arch: Option<String>,
    pub cpu_vendor: Option<String>,
    pub cpu_model: Option<String>,
    /// `virNodeGetInfo` as given.
    pub node_info: Option<NodeInfo>,
    /// `<power_management>` children: `suspend_mem`, `suspend_disk`, `suspend_hybrid`.
    pub power_management: Vec<String>,
    pub migration_transports: Vec<String>,
}

/// A yes/no answer that may also be unknown: no field says "no" when its source is silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tri {
    Yes,
    No,
    Unknown,
}

/// A [`Tri`] and where it came from (`"host CPU features"`, `"host-model CPU features"`,
/// `"CPU model EPYC-Rome definition"`, `"kvm_amd nested parameter"`, …); for `unknown`,
/// why nothing could tell (or `null`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriFact {
    pub value: Tri,
    pub source: Option<String>,
}

impl TriFact {
    pub fn yes(source: impl Into<String>) -> Self {
        TriFact {
            value: Tri::Yes,
            source: Some(source.into()),
        }
    }

    pub fn no(source: impl Into<String>) -> Self {
        TriFact {
            value: Tri::No,
            source: Some(source.into()),
        }
    }

    pub fn unknown(why: Option<String>) -> Self {
        TriFact {
            value: Tri::Unknown,
            source: why,
        }
    }

    /// `Some(true|false)` for yes/no, `None` for unknown.
    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Tri::Yes => Some(true),
            Tri::No => Some(false),
            Tri::Unknown => None,
        }
    }
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTopology {
    pub sockets: u32,
    pub dies: u32,
    /// Clusters per die (1 when the document names none).
    #[serde(default = "one")]
    pub clusters: u32,
    pub cores: u32,
    pub threads: u32,
}

impl CpuTopology {
    /// sockets × dies × clusters × cores × threads.
    pub fn product(&self) -> u64 {
        [
            self.sockets,
            self.dies,
            self.clusters,
            self.cores,
            self.threads,
        ]
        .iter()
        .map(|&n| u64::from(n))
        .product()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuSignature {
    pub family: Option<u32>,
    pub model: Option<u32>,
    pub stepping: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageCount {
    pub size_kib: u64,
    pub count: u64,
    /// Free pages: `virNodeGetFreePages`' answer for this cell and size; `null` when
    /// not answered (the capabilities give only counts) and for the base page size,
    /// whose free count moves every second.
    #[serde(default)]
    pub free: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumaCell {
    pub id: u32,
    pub memory_kib: Option<u64>,
    pub cpus: Vec<u32>,
    pub pages: Vec<PageCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuFeature {
    pub name: String,
    /// `require`, `disable`, … (`null` for host CPU features, which carry none).
    pub policy: Option<String>,
}

/// The kvm domain capabilities' `host-model` CPU: what a guest with
/// `mode='host-model'` gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostModelCpu {
    /// The mode's `supported` attribute; `null` when it has none.
    pub supported: Option<bool>,
    pub model: Option<String>,
    pub vendor: Option<String>,
    pub features: Vec<CpuFeature>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuInfo {
    pub status: GroupStatus,
    pub arch: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub microcode: Option<String>,
    pub signature: Option<CpuSignature>,
    pub tsc_frequency_hz: Option<u64>,
    pub topology: Option<CpuTopology>,
    /// The CPU ids of all NUMA cells counted, else the topology's product; a mismatch
    /// with `node_info.cpus` is a reason in `status`.
    pub logical_cpus: Option<u32>,
    /// Per NUMA cell: its memory, CPUs and pages (size, count, free where given). The
    /// one place per-cell memory and pages are reported.
    pub numa_cells: Vec<NumaCell>,
    /// Features named in the host `<cpu>` beyond its model (capabilities XML).
    pub host_features: Vec<String>,
    pub host_model: Option<HostModelCpu>,
    pub host_passthrough_supported: Option<bool>,
    /// kvm domain capabilities custom models with `usable='yes'`, in document order.
    pub usable_models: Vec<String>,
    /// … with `usable='no'`.
    pub unusable_models: Vec<String>,
    /// … with `usable='unknown'` (or no `usable` attribute).
    pub unknown_models: Vec<String>,
    /// Intel VT-x: the host CPU features, the host-model CPU features, or the CPU
    /// model's definition; `unknown` when none of them tells.
    pub vmx: TriFact,
    /// AMD-V, likewise (EPYC, Opteron G2–G5, phenom, qemu64, Dhyana include it).
    pub svm: TriFact,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryInfo {
    pub status: GroupStatus,
    /// `virNodeGetInfo` memory, else the sum of the NUMA cells' memory.
    pub total_kib: Option<u64>,
    /// Every page size of the host CPU (`host/cpu/pages`) and of every NUMA cell,
    /// ascending, without duplicates.
    pub page_sizes_kib: Vec<u64>,
    /// The page sizes above the smallest one.
    pub hugepage_sizes_kib: Vec<u64>,
    /// `/sys/kernel/mm/ksm/run`: 1 = yes, 0 or 2 = no; unreadable = unknown with the
    /// reason.
    pub ksm: TriFact,
    /// `<memballoon supported>` in domain capabilities devices; `null` when not listed.
    pub memory_balloon: Option<bool>,
    /// domain capabilities `<memoryBacking>` source types (file, anonymous, memfd).
    pub memory_backing_sources: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseLabel {
    pub virt_type: String,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityModel {
    pub model: String,
    pub doi: Option<String>,
    pub base_labels: Vec<BaseLabel>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmSupport {
    /// `<tpm supported>` among the domain capabilities devices; `null` when the
    /// document lists no `<tpm>` (or none was available).
    pub supported: Option<bool>,
    pub models: Vec<String>,
    pub backend_models: Vec<String>,
    pub versions: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SevSupport {
    /// `<sev supported>`; without `<sev>`, `sev` among the launchSecurity sectypes
    /// (`false` when `<launchSecurity>` is `supported='no'` or its sectype enum lacks
    /// it); `null` when the document has neither.
    pub supported: Option<bool>,
    pub cbitpos: Option<u32>,
    pub reduced_phys_bits: Option<u32>,
    pub max_guests: Option<u32>,
    pub max_es_guests: Option<u32>,
    /// `maxESGuests` > 0 when SEV is supported; `false` when SEV is not; `null` when
    /// SEV's support is unknown or a supported `<sev>` gives no `maxESGuests`.
    pub es: Option<bool>,
    /// `sev-snp` among the sectypes of a `<launchSecurity supported='yes'>`; `false`
    /// when that enum lacks it or `<launchSecurity>` is `supported='no'`; `null`
    /// without `<launchSecurity>` (libvirt before 10.x) or its sectype enum.
    pub snp: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgxSection {
    pub node: Option<u32>,
    pub size_kib: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgxSupport {
    /// `<sgx supported>`; `null` when the document has no `<sgx>`.
    pub supported: Option<bool>,
    pub flc: Option<bool>,
    pub sgx1: Option<bool>,
    pub sgx2: Option<bool>,
    pub epc_size_kib: Option<u64>,
    pub sections: Vec<SgxSection>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityInfo {
    pub status: GroupStatus,
    pub models: Vec<SecurityModel>,
    /// `<iommu support>` in the capabilities host.
    pub iommu: Option<bool>,
    /// For the guests' machine (`virt_info.guest_machine`): a firmware loader whose
    /// `secure` enum contains `yes`; `null` without an `<os>`.
    pub secure_boot: Option<bool>,
    /// For the guests' machine: the `<os>` firmware enum.
    pub firmware: Vec<String>,
    pub tpm: TpmSupport,
    /// The sectype enum of a `<launchSecurity supported='yes'>`; `[]` otherwise.
    pub launch_security_types: Vec<String>,
    pub sev: SevSupport,
    /// `tdx` among the launchSecurity sectypes, or a `<tdx supported='yes'>` feature;
    /// `false` when `<tdx>` is `supported='no'`, `<launchSecurity>` is
    /// `supported='no'` or its sectype enum lacks `tdx`; `null` when the document has
    /// neither element.
    pub tdx: Option<bool>,
    pub sgx: SgxSupport,
    /// `<s390-pv supported>`; `null` when not listed.
    pub s390_pv: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageInfo {
    pub status: GroupStatus,
    pub pools: Vec<StoragePool>,
    /// domain capabilities disk `diskDevice` enum (disk, cdrom, floppy, lun).
    pub disk_devices: Vec<String>,
    /// domain capabilities disk `bus` enum, for the guests' machine.
    pub disk_buses: Vec<String>,
    /// domain capabilities disk `model` enum.
    pub disk_models: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SriovInfo {
    pub physical_functions: Vec<PhysicalFunction>,
    pub pf_count: usize,
    /// VF addresses listed under the PFs' `virt_functions`.
    pub vf_count: usize,
    /// Node devices carrying a `phys_function` capability (the VFs libvirt sees).
    pub vf_devices: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub status: GroupStatus,
    pub networks: Vec<Network>,
    /// The networks' bridges, sorted, without duplicates.
    pub bridges: Vec<String>,
    /// domain capabilities `<interface>` backendType enum.
    pub interface_backends: Vec<String>,
    pub sriov: SriovInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub name: String,
    pub canonical: Option<String>,
    pub max_cpus: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestType {
    pub os_type: String,
    pub arch: String,
    pub wordsize: Option<u32>,
    pub domain_types: Vec<String>,
    pub machines: Vec<Machine>,
    pub features: Vec<String>,
}

/// One `virsh domcapabilities` document in brief.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainCapsSummary {
    pub domain: String,
    pub arch: Option<String>,
    pub machine: Option<String>,
    pub emulator: Option<String>,
    pub max_vcpus: Option<u32>,
    pub host_passthrough: Option<bool>,
    pub host_model: Option<bool>,
    pub usable_models: usize,
    pub gic_versions: Vec<String>,
    pub hyperv_features: Vec<String>,
}

/// What one machine's domain capabilities say (one virttype).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineCaps {
    /// The machine asked for (`q35`), or the document's own when none was named.
    pub machine: String,
    /// The canonical machine (`pc-q35-7.2`): the document's `<machine>`, else the
    /// capabilities' alias.
    pub canonical: Option<String>,
    /// `kvm` or `qemu`.
    pub virttype: String,
    /// The document's `<arch>`.
    pub arch: Option<String>,
    /// `unavailable` when not answered, unreadable, of another arch or of an
    /// unsupported driver (values then `null`/`[]`); `partial` when a value is withheld.
    pub status: GroupStatus,
    /// `<vcpu max>`; `null` without `<vcpu>` or at 2^31-1 or more ("no limit stated").
    pub max_vcpus: Option<u32>,
    /// The loader's `secure` enum contains `yes`; `null` without `<os>`.
    pub secure_boot: Option<bool>,
    pub firmware: Vec<String>,
    pub disk_buses: Vec<String>,
}

/// The machine the host-level values describe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineRef {
    pub name: String,
    pub canonical: Option<String>,
    pub virttype: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtInfo {
    pub status: GroupStatus,
    /// `virConnectGetType` (e.g. `QEMU`).
    pub hypervisor_type: Option<String>,
    /// `virConnectGetVersion` as `major.minor.release`.
    pub hypervisor_version: Option<String>,
    /// `virConnectGetLibVersion` as `major.minor.release`.
    pub libvirt_version: Option<String>,
    /// The guests' machine: which machine, canonical version and virttype the
    /// host-level domain-capabilities values (secure boot, firmware, max vCPUs, disk
    /// buses, host-model CPU, …) describe.
    pub guest_machine: Option<MachineRef>,
    /// `vcpu max` of the guests' machine (kvm, else qemu with a reason); `null` when
    /// that document has no `<vcpu>` or states no limit.
    pub max_vcpus: Option<u32>,
    /// The `kvm_intel`/`kvm_amd` `nested` parameter of the host's vendor, else yes when
    /// the kvm host-model CPU gives guests vmx/svm, else unknown.
    pub nested_virt: TriFact,
    /// Every machine asked for, per virttype, in the order asked.
    pub machines: Vec<MachineCaps>,
    pub domain_types: Vec<String>,
    pub guests: Vec<GuestType>,
    pub domain_capabilities: Vec<DomainCapsSummary>,
}
