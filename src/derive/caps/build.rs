//! [`DiscoveryInput`] (one answer per libvirt call) → [`HostCapabilities`].

use serde_json::Value;

use super::domcaps::{DomCapsDoc, parse_domain_capabilities};
use super::host::{CapsDoc, parse_capabilities};
use super::model::*;
use super::nodeinfo::NodeInfo;
use super::resources::{Fetched, SriovRole, parse_network, parse_node_device, parse_storage_pool};

/// What the libvirt source got from each call; `Err` holds the driver's reason
/// (e.g. "this function is not supported by the connection driver").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryInput {
    pub hostname: Result<String, String>,
    /// `virConnectGetCapabilities`.
    pub capabilities: Result<String, String>,
    /// `virConnectGetDomainCapabilities` with virttype `kvm`.
    pub domcaps_kvm: Result<String, String>,
    /// `virConnectGetDomainCapabilities` with virttype `qemu`.
    pub domcaps_qemu: Result<String, String>,
    /// `virNodeGetInfo`.
    pub node_info: Result<NodeInfo, String>,
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
}

impl DiscoveryInput {
    /// Every call unanswered for the same reason (e.g. no libvirt reachable).
    pub fn unavailable(reason: &str) -> Self {
        let r = reason.to_string();
        DiscoveryInput {
            hostname: Err(r.clone()),
            capabilities: Err(r.clone()),
            domcaps_kvm: Err(r.clone()),
            domcaps_qemu: Err(r.clone()),
            node_info: Err(r.clone()),
            hypervisor_type: Err(r.clone()),
            hypervisor_version: Err(r.clone()),
            libvirt_version: Err(r.clone()),
            storage_pools: Err(r.clone()),
            networks: Err(r.clone()),
            node_devices: Err(r),
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

    /// The kvm domain capabilities, else the qemu ones (with a reason).
    fn primary<'a>(
        &mut self,
        kvm: &'a Result<DomCapsDoc, String>,
        qemu: &'a Result<DomCapsDoc, String>,
    ) -> Option<&'a DomCapsDoc> {
        self.needed += 1;
        match (kvm, qemu) {
            (Ok(k), _) => Some(k),
            (Err(e), Ok(q)) => {
                self.reasons.push(format!(
                    "domain capabilities (kvm): {e}; using the qemu (TCG) ones"
                ));
                Some(q)
            }
            (Err(e), Err(f)) => {
                self.failed += 1;
                self.reasons.push(format!("domain capabilities (kvm): {e}"));
                self.reasons
                    .push(format!("domain capabilities (qemu): {f}"));
                None
            }
        }
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

fn version(v: u64) -> String {
    format!("{}.{}.{}", v / 1_000_000, (v / 1_000) % 1_000, v % 1_000)
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

fn named(features: &[String], host_model: Option<&HostModelCpu>, name: &str) -> bool {
    features.iter().any(|f| f == name)
        || host_model.is_some_and(|m| {
            m.features
                .iter()
                .any(|f| f.name == name && matches!(f.policy.as_deref(), Some("require" | "force")))
        })
}

/// Combines the answers into the seven groups. Never fails: whatever is missing or
/// unreadable is a reason in the group that needed it.
pub fn build_capabilities(input: &DiscoveryInput) -> HostCapabilities {
    let caps = parsed(&input.capabilities, parse_capabilities);
    let kvm = parsed(&input.domcaps_kvm, parse_domain_capabilities);
    let qemu = parsed(&input.domcaps_qemu, parse_domain_capabilities);
    let empty = CapsDoc::default();

    // host_info
    let mut d = Deps::default();
    let hostname = d.use_("hostname", &input.hostname).cloned();
    let node_info = d.use_("node info", &input.node_info).cloned();
    let c = d.use_("capabilities", &caps).unwrap_or(&empty);
    let host_info = HostInfo {
        hostname,
        uuid: c.uuid.clone(),
        arch: c.arch.clone(),
        cpu_vendor: c.vendor.clone(),
        cpu_model: c.model.clone(),
        node_info: node_info.clone(),
        power_management: c.power_management.clone(),
        migration_transports: c.migration_transports.clone(),
        status: d.status(),
    };

    // cpu_info
    let mut d = Deps::default();
    let c = d.use_("capabilities", &caps).unwrap_or(&empty);
    let k = d.use_("domain capabilities (kvm)", &kvm);
    let host_model = k.and_then(|k| k.host_model.clone());
    let vmx = named(&c.features, host_model.as_ref(), "vmx");
    let svm = named(&c.features, host_model.as_ref(), "svm");
    let guest_gets_virt =
        named(&[], host_model.as_ref(), "vmx") || named(&[], host_model.as_ref(), "svm");
    let cpu_info = CpuInfo {
        arch: c.arch.clone(),
        vendor: c.vendor.clone(),
        model: c.model.clone(),
        microcode: c.microcode.clone(),
        signature: c.signature.clone(),
        tsc_frequency_hz: c.tsc_frequency_hz,
        topology: c.topology.clone(),
        numa_cells: c.numa_cells.clone(),
        host_features: c.features.clone(),
        host_passthrough_supported: k.and_then(|k| k.host_passthrough),
        usable_models: k.map(|k| k.usable_models.clone()).unwrap_or_default(),
        unusable_model_count: k.map_or(0, |k| k.unusable_model_count),
        host_model,
        vmx,
        svm,
        status: d.status(),
    };

    // memory_info
    let mut d = Deps::default();
    let n = d.use_("node info", &input.node_info);
    let c = d.use_("capabilities", &caps).unwrap_or(&empty);
    let p = d.primary(&kvm, &qemu);
    let cells_total: Option<u64> =
        (!c.numa_cells.is_empty()).then(|| c.numa_cells.iter().filter_map(|x| x.memory_kib).sum());
    let memory_info = MemoryInfo {
        total_kib: n.map(|n| n.memory_kib).or(cells_total),
        page_sizes_kib: c.page_sizes_kib.clone(),
        hugepage_sizes_kib: c.page_sizes_kib.iter().skip(1).copied().collect(),
        ksm: None,
        memory_balloon: p.and_then(|p| p.memballoon),
        memory_backing_sources: p
            .map(|p| p.memory_backing_sources.clone())
            .unwrap_or_default(),
        status: d.status(),
    };

    // security_info
    let mut d = Deps::default();
    let c = d.use_("capabilities", &caps).unwrap_or(&empty);
    let p = d.primary(&kvm, &qemu);
    let ls = p
        .map(|p| p.launch_security_types.clone())
        .unwrap_or_default();
    let has = |t: &str| ls.iter().any(|x| x == t);
    let security_info = SecurityInfo {
        models: c.security_models.clone(),
        iommu: c.iommu,
        secure_boot: p.map(|p| p.loader_secure.iter().any(|v| v == "yes")),
        firmware: p.map(|p| p.firmware.clone()).unwrap_or_default(),
        tpm: p.map(|p| p.tpm.clone()).unwrap_or_default(),
        sev: SevSupport {
            snp: has("sev-snp"),
            ..p.map(|p| p.sev.clone()).unwrap_or_default()
        },
        tdx: has("tdx") || p.is_some_and(|p| p.tdx_feature == Some(true)),
        sgx: p.map(|p| p.sgx.clone()).unwrap_or_default(),
        s390_pv: p.and_then(|p| p.s390_pv),
        launch_security_types: ls.clone(),
        status: d.status(),
    };

    // storage_info
    let mut d = Deps::default();
    let mut pools = Vec::new();
    if let Some(list) = d.use_("storage pools", &input.storage_pools) {
        for (i, f) in list.iter().enumerate() {
            match parse_storage_pool(&f.xml, f.active) {
                Ok(pool) => pools.push(pool),
                Err(e) => d.note(format!("storage pool #{i}: {e}")),
            }
        }
    }
    let p = d.primary(&kvm, &qemu);
    let storage_info = StorageInfo {
        pools,
        disk_devices: p.map(|p| p.disk_devices.clone()).unwrap_or_default(),
        disk_buses: p.map(|p| p.disk_buses.clone()).unwrap_or_default(),
        disk_models: p.map(|p| p.disk_models.clone()).unwrap_or_default(),
        status: d.status(),
    };

    // network_info
    let mut d = Deps::default();
    let mut networks = Vec::new();
    if let Some(list) = d.use_("networks", &input.networks) {
        for (i, f) in list.iter().enumerate() {
            match parse_network(&f.xml, f.active) {
                Ok(net) => networks.push(net),
                Err(e) => d.note(format!("network #{i}: {e}")),
            }
        }
    }
    let mut bridges: Vec<String> = networks.iter().filter_map(|n| n.bridge.clone()).collect();
    bridges.sort();
    bridges.dedup();
    let mut pfs = Vec::new();
    let mut vf_devices = 0;
    if let Some(list) = d.use_("node devices", &input.node_devices) {
        for (i, xml) in list.iter().enumerate() {
            match parse_node_device(xml) {
                Ok(SriovRole::PhysicalFunction(pf)) => pfs.push(pf),
                Ok(SriovRole::VirtualFunction { .. }) => vf_devices += 1,
                Ok(SriovRole::Neither) => {}
                Err(e) => d.note(format!("node device #{i}: {e}")),
            }
        }
    }
    let p = d.primary(&kvm, &qemu);
    let network_info = NetworkInfo {
        networks,
        bridges,
        interface_backends: p.map(|p| p.interface_backends.clone()).unwrap_or_default(),
        sriov: SriovInfo {
            pf_count: pfs.len(),
            vf_count: pfs.iter().map(|p| p.vf_count).sum(),
            physical_functions: pfs,
            vf_devices,
        },
        status: d.status(),
    };

    // virt_info
    let mut d = Deps::default();
    let hv_type = d.use_("hypervisor type", &input.hypervisor_type).cloned();
    let hv_version = d
        .use_("hypervisor version", &input.hypervisor_version)
        .map(|v| version(*v));
    let lib_version = d
        .use_("libvirt version", &input.libvirt_version)
        .map(|v| version(*v));
    let c = d.use_("capabilities", &caps).unwrap_or(&empty);
    let k = d.use_("domain capabilities (kvm)", &kvm);
    let q = d.use_("domain capabilities (qemu)", &qemu);
    let mut domain_types: Vec<String> = c
        .guests
        .iter()
        .flat_map(|g| g.domain_types.iter().cloned())
        .collect();
    domain_types.sort();
    domain_types.dedup();
    let virt_info = VirtInfo {
        hypervisor_type: hv_type,
        hypervisor_version: hv_version,
        libvirt_version: lib_version,
        max_vcpus: k.and_then(|k| k.max_vcpus).or(q.and_then(|q| q.max_vcpus)),
        nested_virt: guest_gets_virt.then_some(true),
        domain_types,
        guests: c.guests.clone(),
        domain_capabilities: k.into_iter().chain(q).map(DomCapsDoc::summary).collect(),
        status: d.status(),
    };

    HostCapabilities {
        host_info,
        cpu_info,
        memory_info,
        security_info,
        storage_info,
        network_info,
        virt_info,
    }
}

impl HostCapabilities {
    /// Compact JSON with the keys of every object sorted: the same capabilities give the
    /// same bytes whatever the struct order or serde_json features.
    pub fn to_canonical_json(&self) -> String {
        // serde_json's map is a BTreeMap (no `preserve_order` feature in this build; a
        // test checks): through a Value, every object's keys come out sorted.
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        serde_json::to_string(&value).unwrap_or_default()
    }

    /// [`fnv1a64`] of [`to_canonical_json`](Self::to_canonical_json), 16 hex digits:
    /// decides whether the capabilities changed.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.to_canonical_json())
    }
}

/// The fingerprint of a canonical JSON text (computing the JSON once for both).
pub fn fingerprint_of(canonical: &str) -> String {
    format!("{:016x}", fnv1a64(canonical.as_bytes()))
}

/// 64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
