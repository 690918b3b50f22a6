//! The seven groups of [`HostCapabilities`], one function each: every group counts its
//! own inputs ([`Deps`]), so one missing answer makes only the groups that read it
//! `partial` or `unavailable`.

use crate::derive::caps::domcaps::{DomCapsDoc, no_limit};
use crate::derive::caps::host::CapsDoc;
use crate::derive::caps::model::*;
use crate::derive::caps::resources::{
    SriovRole, parse_network, parse_node_device, parse_storage_pool,
};

use super::cpu_facts::{ksm, nested_virt, virt_extension, with_free_pages};
use super::machines::{Chosen, Entry};
use super::{Deps, DiscoveryInput};

fn version(v: u64) -> String {
    format!("{}.{}.{}", v / 1_000_000, (v / 1_000) % 1_000, v % 1_000)
}

pub(super) fn host_info(input: &DiscoveryInput, caps: &Result<CapsDoc, String>) -> HostInfo {
    let empty = CapsDoc::default();
    let mut d = Deps::default();
    let hostname = d.use_("hostname", &input.hostname).cloned();
    let node_info = d.use_("node info", &input.node_info).cloned();
    let c = d.use_("capabilities", caps).unwrap_or(&empty);
    HostInfo {
        hostname,
        uuid: c.uuid.clone(),
        arch: c.arch.clone(),
        cpu_vendor: c.vendor.clone(),
        cpu_model: c.model.clone(),
        node_info: node_info.clone(),
        power_management: c.power_management.clone(),
        migration_transports: c.migration_transports.clone(),
        status: d.status(),
    }
}

/// The cpu group and the nested-virt fact (reported in virt_info), which reads the same
/// host CPU vendor and kvm host-model CPU.
pub(super) fn cpu_info(
    input: &DiscoveryInput,
    caps: &Result<CapsDoc, String>,
    chosen: &Chosen<'_>,
) -> (CpuInfo, TriFact) {
    let empty = CapsDoc::default();
    let mut d = Deps::default();
    let c = d.use_("capabilities", caps).unwrap_or(&empty);
    let k = d.take(&chosen.kvm);
    let host_model = k.and_then(|k| k.host_model.clone());
    let cell_cpus: usize = c.numa_cells.iter().map(|x| x.cpus.len()).sum();
    let logical_cpus = if cell_cpus > 0 {
        u32::try_from(cell_cpus).ok()
    } else {
        c.topology
            .as_ref()
            .and_then(|t| u32::try_from(t.product()).ok())
    };
    if let (Some(l), Ok(n)) = (logical_cpus, &input.node_info) {
        if l != n.cpus {
            d.note(format!(
                "logical CPUs: capabilities give {l}, node info {}",
                n.cpus
            ));
        }
    }
    let vendor = c
        .vendor
        .as_deref()
        .or_else(|| host_model.as_ref().and_then(|m| m.vendor.as_deref()));
    let nested = nested_virt(input, c.arch.as_deref(), vendor, host_model.as_ref());
    let cpu_info = CpuInfo {
        arch: c.arch.clone(),
        vendor: c.vendor.clone(),
        model: c.model.clone(),
        microcode: c.microcode.clone(),
        signature: c.signature.clone(),
        tsc_frequency_hz: c.tsc_frequency_hz,
        topology: c.topology.clone(),
        logical_cpus,
        numa_cells: with_free_pages(&c.numa_cells, &input.free_pages),
        host_features: c.features.clone(),
        host_passthrough_supported: k.and_then(|k| k.host_passthrough),
        usable_models: k.map(|k| k.usable_models.clone()).unwrap_or_default(),
        unusable_models: k.map(|k| k.unusable_models.clone()).unwrap_or_default(),
        unknown_models: k.map(|k| k.unknown_models.clone()).unwrap_or_default(),
        vmx: virt_extension(c, host_model.as_ref(), "vmx"),
        svm: virt_extension(c, host_model.as_ref(), "svm"),
        host_model,
        status: d.status(),
    };
    (cpu_info, nested)
}

pub(super) fn memory_info(
    input: &DiscoveryInput,
    caps: &Result<CapsDoc, String>,
    chosen: &Chosen<'_>,
) -> MemoryInfo {
    let empty = CapsDoc::default();
    let mut d = Deps::default();
    let n = d.use_("node info", &input.node_info);
    let c = d.use_("capabilities", caps).unwrap_or(&empty);
    let p = d.take(&chosen.primary);
    if let (false, Err(e)) = (c.numa_cells.is_empty(), &input.free_pages) {
        d.note(format!("free pages: {e}"));
    }
    let cells_total: Option<u64> =
        (!c.numa_cells.is_empty()).then(|| c.numa_cells.iter().filter_map(|x| x.memory_kib).sum());
    let mut page_sizes: Vec<u64> = c
        .page_sizes_kib
        .iter()
        .copied()
        .chain(
            c.numa_cells
                .iter()
                .flat_map(|cell| cell.pages.iter().map(|p| p.size_kib)),
        )
        .collect();
    page_sizes.sort_unstable();
    page_sizes.dedup();
    MemoryInfo {
        total_kib: n.map(|n| n.memory_kib).or(cells_total),
        hugepage_sizes_kib: page_sizes.iter().skip(1).copied().collect(),
        page_sizes_kib: page_sizes,
        ksm: ksm(&input.ksm_run),
        memory_balloon: p.and_then(|p| p.memballoon),
        memory_backing_sources: p
            .map(|p| p.memory_backing_sources.clone())
            .unwrap_or_default(),
        status: d.status(),
    }
}

pub(super) fn security_info(caps: &Result<CapsDoc, String>, chosen: &Chosen<'_>) -> SecurityInfo {
    let empty = CapsDoc::default();
    let mut d = Deps::default();
    let c = d.use_("capabilities", caps).unwrap_or(&empty);
    let p = d.take(&chosen.primary);
    SecurityInfo {
        models: c.security_models.clone(),
        iommu: c.iommu,
        secure_boot: p.and_then(|p| p.secure_boot),
        firmware: p.map(|p| p.firmware.clone()).unwrap_or_default(),
        tpm: p.map(|p| p.tpm.clone()).unwrap_or_default(),
        sev: p.map(|p| p.sev.clone()).unwrap_or_default(),
        tdx: p.and_then(|p| p.tdx),
        sgx: p.map(|p| p.sgx.clone()).unwrap_or_default(),
        s390_pv: p.and_then(|p| p.s390_pv),
        launch_security_types: p
            .map(|p| p.launch_security_types.clone())
            .unwrap_or_default(),
        status: d.status(),
    }
}

pub(super) fn storage_info(input: &DiscoveryInput, chosen: &Chosen<'_>) -> StorageInfo {
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
    let p = d.take(&chosen.primary);
    StorageInfo {
        pools,
        disk_devices: p.map(|p| p.disk_devices.clone()).unwrap_or_default(),
        disk_buses: p.map(|p| p.disk_buses.clone()).unwrap_or_default(),
        disk_models: p.map(|p| p.disk_models.clone()).unwrap_or_default(),
        status: d.status(),
    }
}

pub(super) fn network_info(input: &DiscoveryInput, chosen: &Chosen<'_>) -> NetworkInfo {
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
    let p = d.take(&chosen.primary);
    NetworkInfo {
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
    }
}

pub(super) fn virt_info(
    input: &DiscoveryInput,
    caps: &Result<CapsDoc, String>,
    entries: &[Entry<'_>],
    chosen: &Chosen<'_>,
    nested: TriFact,
) -> VirtInfo {
    let empty = CapsDoc::default();
    let mut d = Deps::default();
    let hv_type = d.use_("hypervisor type", &input.hypervisor_type).cloned();
    let hv_version = d
        .use_("hypervisor version", &input.hypervisor_version)
        .map(|v| version(*v));
    let lib_version = d
        .use_("libvirt version", &input.libvirt_version)
        .map(|v| version(*v));
    let c = d.use_("capabilities", caps).unwrap_or(&empty);
    let p = d.take(&chosen.primary);
    // The other machines' answers that cannot be used: kept apart, with the reason.
    for (i, e) in entries.iter().enumerate() {
        if !chosen.members.contains(&i) {
            if let Some(r) = e.reason() {
                d.note(r);
            }
        }
    }
    let mut domain_types: Vec<String> = c
        .guests
        .iter()
        .flat_map(|g| g.domain_types.iter().cloned())
        .collect();
    domain_types.sort();
    domain_types.dedup();
    VirtInfo {
        hypervisor_type: hv_type,
        hypervisor_version: hv_version,
        libvirt_version: lib_version,
        guest_machine: chosen.machine.clone(),
        max_vcpus: p.and_then(|p| p.max_vcpus).filter(|&n| !no_limit(n)),
        nested_virt: nested,
        machines: entries.iter().map(|e| e.caps.clone()).collect(),
        domain_types,
        guests: c.guests.clone(),
        domain_capabilities: entries
            .iter()
            .filter_map(Entry::usable)
            .map(DomCapsDoc::summary)
            .collect(),
        status: d.status(),
    }
}
