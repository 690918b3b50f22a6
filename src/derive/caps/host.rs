//! `virsh capabilities` (`virConnectGetCapabilities`) → [`CapsDoc`].

use super::ParseError;
use super::model::{
    BaseLabel, CpuSignature, CpuTopology, GuestType, Machine, NumaCell, PageCount, SecurityModel,
};
use super::values::{attr_num, child_num, cpu_ids, expect_root, number, to_kib};
use super::xml::{self, Element, yes_no};

/// What the capabilities document says about the host and its guests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapsDoc {
    pub uuid: Option<String>,
    pub arch: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub microcode: Option<String>,
    pub signature: Option<CpuSignature>,
    pub tsc_frequency_hz: Option<u64>,
    pub topology: Option<CpuTopology>,
    pub features: Vec<String>,
    /// The page sizes of `host/cpu/pages` only (the NUMA cells' are in `numa_cells`).
    pub page_sizes_kib: Vec<u64>,
    pub numa_cells: Vec<NumaCell>,
    pub power_management: Vec<String>,
    pub migration_transports: Vec<String>,
    pub iommu: Option<bool>,
    pub security_models: Vec<SecurityModel>,
    pub guests: Vec<GuestType>,
}

impl CapsDoc {
    /// The canonical machine of alias `name` (`<machine canonical='pc-q35-7.2'>q35</machine>`)
    /// among the guests of `arch` (`None`: of every arch); `None` when `name` is no alias.
    pub fn canonical_machine(&self, arch: Option<&str>, name: &str) -> Option<&str> {
        self.guests
            .iter()
            .filter(|g| arch.is_none_or(|a| g.arch == a))
            .flat_map(|g| &g.machines)
            .find(|m| m.name == name)
            .and_then(|m| m.canonical.as_deref())
    }
}

/// Parses a `<capabilities>` document.
pub fn parse_capabilities(text: &str) -> Result<CapsDoc, ParseError> {
    let root = xml::parse(text)?;
    expect_root(&root, "capabilities")?;
    let mut doc = CapsDoc::default();
    if let Some(host) = root.child("host") {
        read_host(host, &mut doc)?;
    }
    for guest in root.children_named("guest") {
        doc.guests.push(read_guest(guest)?);
    }
    Ok(doc)
}

fn read_host(host: &Element, doc: &mut CapsDoc) -> Result<(), ParseError> {
    doc.uuid = host.child_text("uuid").map(str::to_string);
    if let Some(cpu) = host.child("cpu") {
        doc.arch = cpu.child_text("arch").map(str::to_string);
        doc.vendor = cpu.child_text("vendor").map(str::to_string);
        doc.model = cpu.child_text("model").map(str::to_string);
        doc.microcode = cpu
            .child("microcode")
            .and_then(|m| m.attr("version"))
            .map(str::to_string);
        if let Some(sig) = cpu.child("signature") {
            doc.signature = Some(CpuSignature {
                family: attr_num(sig, "family", "signature family")?,
                model: attr_num(sig, "model", "signature model")?,
                stepping: attr_num(sig, "stepping", "signature stepping")?,
            });
        }
        if let Some(counter) = cpu
            .children_named("counter")
            .find(|c| c.attr("name") == Some("tsc"))
        {
            doc.tsc_frequency_hz = attr_num(counter, "frequency", "tsc frequency")?;
        }
        if let Some(t) = cpu.child("topology") {
            doc.topology = Some(CpuTopology {
                sockets: attr_num(t, "sockets", "topology sockets")?.unwrap_or(1),
                dies: attr_num(t, "dies", "topology dies")?.unwrap_or(1),
                clusters: attr_num(t, "clusters", "topology clusters")?.unwrap_or(1),
                cores: attr_num(t, "cores", "topology cores")?.unwrap_or(1),
                threads: attr_num(t, "threads", "topology threads")?.unwrap_or(1),
            });
        }
        doc.features = cpu
            .children_named("feature")
            .filter_map(|f| f.attr("name"))
            .map(str::to_string)
            .collect();
        // The test driver (and old i686 hosts) list `<features><pae/>…</features>`.
        if let Some(fs) = cpu.child("features") {
            doc.features
                .extend(fs.children.iter().map(|f| f.name.clone()));
        }
        for p in cpu.children_named("pages") {
            if let Some(size) = p.attr("size") {
                doc.page_sizes_kib
                    .push(to_kib(size, p.attr("unit"), 1024, "page size")?);
            }
        }
        doc.page_sizes_kib.sort_unstable();
        doc.page_sizes_kib.dedup();
    }
    if let Some(pm) = host.child("power_management") {
        doc.power_management = pm.children.iter().map(|c| c.name.clone()).collect();
    }
    if let Some(t) = host.path(&["migration_features", "uri_transports"]) {
        doc.migration_transports = t
            .children_named("uri_transport")
            .filter_map(Element::text_trimmed)
            .map(str::to_string)
            .collect();
    }
    doc.iommu = host
        .child("iommu")
        .and_then(|i| i.attr("support"))
        .and_then(yes_no);
    if let Some(cells) = host.path(&["topology", "cells"]) {
        for cell in cells.children_named("cell") {
            doc.numa_cells.push(read_cell(cell)?);
        }
    }
    for sm in host.children_named("secmodel") {
        doc.security_models.push(SecurityModel {
            model: sm.child_text("model").unwrap_or_default().to_string(),
            doi: sm.child_text("doi").map(str::to_string),
            base_labels: sm
                .children_named("baselabel")
                .map(|b| BaseLabel {
                    virt_type: b.attr("type").unwrap_or_default().to_string(),
                    label: b.text.trim().to_string(),
                })
                .collect(),
        });
    }
    Ok(())
}

fn read_cell(cell: &Element) -> Result<NumaCell, ParseError> {
    let memory_kib = match cell.child("memory") {
        Some(m) => Some(to_kib(&m.text, m.attr("unit"), 1024, "cell memory")?),
        None => None,
    };
    let mut pages = Vec::new();
    for p in cell.children_named("pages") {
        let Some(size) = p.attr("size") else { continue };
        pages.push(PageCount {
            size_kib: to_kib(size, p.attr("unit"), 1024, "cell page size")?,
            count: number(&p.text, "cell page count")?,
            free: attr_num(p, "free", "cell free pages")?,
        });
    }
    Ok(NumaCell {
        id: attr_num(cell, "id", "cell id")?.unwrap_or_default(),
        memory_kib,
        cpus: cpu_ids(cell.child("cpus"))?,
        pages,
    })
}

fn read_guest(guest: &Element) -> Result<GuestType, ParseError> {
    let arch = guest.child("arch");
    let mut machines = Vec::new();
    let mut domain_types = Vec::new();
    let mut wordsize = None;
    if let Some(arch) = arch {
        wordsize = child_num(arch, "wordsize", "guest wordsize")?;
        for m in arch.children_named("machine") {
            machines.push(Machine {
                name: m.text.trim().to_string(),
                canonical: m.attr("canonical").map(str::to_string),
                max_cpus: attr_num(m, "maxCpus", "machine maxCpus")?,
            });
        }
        domain_types = arch
            .children_named("domain")
            .filter_map(|d| d.attr("type"))
            .map(str::to_string)
            .collect();
    }
    Ok(GuestType {
        os_type: guest.child_text("os_type").unwrap_or_default().to_string(),
        arch: arch
            .and_then(|a| a.attr("name"))
            .unwrap_or_default()
            .to_string(),
        wordsize,
        domain_types,
        machines,
        features: guest
            .child("features")
            .map(|f| f.children.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default(),
    })
}
