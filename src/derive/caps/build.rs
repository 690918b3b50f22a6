//! [`DiscoveryInput`] (one answer per libvirt call) → [`HostCapabilities`].

use serde_json::Value;

use super::domcaps::{DomCapsDoc, no_limit, parse_domain_capabilities};
use super::host::{CapsDoc, parse_capabilities};
use super::model::*;
use super::nodeinfo::NodeInfo;
use super::resources::{Fetched, SriovRole, parse_network, parse_node_device, parse_storage_pool};

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

/// One domain-capabilities answer, read and checked.
struct Entry<'a> {
    answer: &'a DomCapsAnswer,
    /// `"domain capabilities (kvm, q35)"`: the input named in reasons.
    label: String,
    /// The document when it may describe this host; else why not.
    doc: Result<DomCapsDoc, String>,
    caps: MachineCaps,
}

impl Entry<'_> {
    fn is(&self, machine: &str) -> bool {
        self.answer.machine.as_deref() == Some(machine)
            || self.caps.machine == machine
            || self.caps.canonical.as_deref() == Some(machine)
    }

    fn usable(&self) -> Option<&DomCapsDoc> {
        self.doc.as_ref().ok()
    }

    fn reason(&self) -> Option<String> {
        self.doc
            .as_ref()
            .err()
            .map(|e| format!("{}: {e}", self.label))
    }
}

/// `domain capabilities (kvm, q35)`, or `(kvm)` for the default machine.
fn label(virttype: &str, machine: Option<&str>) -> String {
    match machine {
        Some(m) => format!("domain capabilities ({virttype}, {m})"),
        None => format!("domain capabilities ({virttype})"),
    }
}

/// The canonical name of machine alias `name` in the capabilities' guests of `arch`.
fn canonical_of(caps: Option<&CapsDoc>, arch: Option<&str>, name: &str) -> Option<String> {
    caps?
        .guests
        .iter()
        .filter(|g| arch.is_none_or(|a| g.arch == a))
        .flat_map(|g| &g.machines)
        .find(|m| m.name == name)
        .and_then(|m| m.canonical.clone())
}

fn entries<'a>(input: &'a DiscoveryInput, caps: Option<&CapsDoc>) -> Vec<Entry<'a>> {
    let host_arch = caps.and_then(|c| c.arch.as_deref());
    let driver = input
        .hypervisor_type
        .as_ref()
        .ok()
        .filter(|t| !t.eq_ignore_ascii_case("QEMU"));
    input
        .domcaps
        .iter()
        .map(|answer| {
            let label = label(&answer.virttype, answer.machine.as_deref());
            let read = parsed(&answer.answer, parse_domain_capabilities);
            let mut withheld = Vec::new();
            let doc = match (&read, driver) {
                (Err(e), _) => Err(e.clone()),
                (Ok(_), Some(t)) => Err(format!("driver {t} is not supported")),
                (Ok(d), None) if !matches!(d.domain.as_str(), "kvm" | "qemu") => {
                    Err(format!("driver {} is not supported", d.domain))
                }
                (Ok(d), None) => match (host_arch, d.arch.as_deref()) {
                    (Some(h), Some(a)) if h != a => Err(format!(
                        "arch {a} is not the host's arch {h}: kept apart, not used for \
                         host-level values"
                    )),
                    _ => {
                        if let Some(max) = d.max_vcpus.filter(|&n| no_limit(n)) {
                            withheld.push(format!("vcpu max {max}: no limit stated"));
                        }
                        Ok(d.clone())
                    }
                },
            };
            let own = read.as_ref().ok();
            let machine = answer
                .machine
                .clone()
                .or_else(|| own.and_then(|d| d.machine.clone()))
                .unwrap_or_default();
            let canonical = own.and_then(|d| d.machine.clone()).or_else(|| {
                answer
                    .machine
                    .as_deref()
                    .and_then(|m| canonical_of(caps, host_arch, m))
            });
            let status = match &doc {
                Err(e) => GroupStatus {
                    state: GroupState::Unavailable,
                    reasons: vec![e.clone()],
                },
                Ok(_) if !withheld.is_empty() => GroupStatus {
                    state: GroupState::Partial,
                    reasons: withheld,
                },
                Ok(_) => GroupStatus::complete(),
            };
            let d = doc.as_ref().ok();
            let caps = MachineCaps {
                machine,
                canonical,
                virttype: answer.virttype.clone(),
                arch: own.and_then(|d| d.arch.clone()),
                status,
                max_vcpus: d.and_then(|d| d.max_vcpus).filter(|&n| !no_limit(n)),
                secure_boot: d.and_then(|d| d.secure_boot),
                firmware: d.map(|d| d.firmware.clone()).unwrap_or_default(),
                disk_buses: d.map(|d| d.disk_buses.clone()).unwrap_or_default(),
            };
            Entry {
                answer,
                label,
                doc,
                caps,
            }
        })
        .collect()
}

/// A domain-capabilities document chosen for host-level values, and the reasons.
#[derive(Default)]
struct Pick<'a> {
    doc: Option<&'a DomCapsDoc>,
    reasons: Vec<String>,
}

/// The guests' machine: its kvm document, else its qemu (TCG) one with a reason; and
/// the kvm document alone (for the host-model CPU, CPU models and nested virt).
struct Chosen<'a> {
    primary: Pick<'a>,
    kvm: Pick<'a>,
    machine: Option<MachineRef>,
    /// Indexes of the entries of the chosen machine.
    members: Vec<usize>,
}

fn choose<'a>(entries: &'a [Entry<'a>], guest: Option<&str>, none_reason: &str) -> Chosen<'a> {
    let mut chosen = Chosen {
        primary: Pick::default(),
        kvm: Pick::default(),
        machine: None,
        members: Vec::new(),
    };
    if entries.is_empty() {
        for pick in [&mut chosen.primary, &mut chosen.kvm] {
            pick.reasons
                .push(format!("domain capabilities: {none_reason}"));
        }
        return chosen;
    }
    let first_usable = entries.iter().find(|e| e.usable().is_some());
    let key_entry = match guest {
        Some(m) => match entries.iter().find(|e| e.is(m)) {
            Some(e) => e,
            None => {
                let fallback = first_usable.unwrap_or(&entries[0]);
                chosen.primary.reasons.push(format!(
                    "domain capabilities: none for the guests' machine {m}; using {}",
                    fallback.caps.machine
                ));
                fallback
            }
        },
        None => first_usable.unwrap_or(&entries[0]),
    };
    // Answers for the same machine asked (or all for the default machine) go together.
    let key = key_entry.answer.machine.as_deref();
    chosen.members = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.answer.machine.as_deref() == key)
        .map(|(i, _)| i)
        .collect();
    let of = |virttype: &str| {
        chosen
            .members
            .iter()
            .map(|&i| &entries[i])
            .filter(move |e| e.answer.virttype == virttype)
            .collect::<Vec<_>>()
    };
    let kvm = of("kvm");
    let qemu = of("qemu");
    let kvm_doc = kvm.iter().find_map(|e| e.usable().map(|d| (*e, d)));
    let qemu_doc = qemu.iter().find_map(|e| e.usable().map(|d| (*e, d)));
    let kvm_reasons: Vec<String> = if kvm.is_empty() {
        vec![format!("{}: not asked", label("kvm", key))]
    } else {
        kvm.iter().filter_map(|e| e.reason()).collect()
    };
    let used = match (kvm_doc, qemu_doc) {
        (Some((e, d)), _) => {
            chosen.primary.doc = Some(d);
            Some(e)
        }
        (None, Some((e, d))) => {
            for r in &kvm_reasons {
                chosen
                    .primary
                    .reasons
                    .push(format!("{r}; using the qemu (TCG) ones"));
            }
            chosen.primary.doc = Some(d);
            Some(e)
        }
        (None, None) => {
            chosen
                .primary
                .reasons
                .extend(chosen.members.iter().filter_map(|&i| entries[i].reason()));
            None
        }
    };
    if let Some(e) = used {
        chosen.primary.reasons.extend(
            e.caps
                .status
                .reasons
                .iter()
                .map(|r| format!("{}: {r}", e.label)),
        );
        chosen.machine = Some(MachineRef {
            name: e.caps.machine.clone(),
            canonical: e.caps.canonical.clone(),
            virttype: e.answer.virttype.clone(),
        });
    }
    // The host-model CPU is the host's whatever the machine: another machine's kvm
    // document serves when the guests' machine has none.
    match kvm_doc.map(|(_, d)| d).or_else(|| {
        entries
            .iter()
            .filter(|e| e.answer.virttype == "kvm")
            .find_map(Entry::usable)
    }) {
        Some(d) => chosen.kvm.doc = Some(d),
        None => chosen.kvm.reasons = kvm_reasons,
    }
    chosen
}

/// x86 CPU models whose definition includes `svm`, following libvirt's cpu_map
/// (`src/cpu_map/x86_*.xml`): phenom, qemu64, Opteron_G2–G5, every EPYC model
/// (EPYC, -IBPB, -Rome, -Milan, -Genoa, -Turin) and Hygon Dhyana, with their `-vN`
/// versions. Not athlon or Opteron_G1. No model there includes `vmx` (core2duo and
/// kvm64 list only `vmx-*` controls), so `vmx` is never implied by a model name.
pub(super) fn model_includes(model: &str, feature: &str) -> bool {
    if feature != "svm" {
        return false;
    }
    let base = match model.rsplit_once("-v") {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => model,
    };
    matches!(
        base,
        "phenom" | "qemu64" | "Opteron_G2" | "Opteron_G3" | "Opteron_G4" | "Opteron_G5" | "Dhyana"
    ) || base == "EPYC"
        || base.starts_with("EPYC-")
}

fn policy_of<'a>(host_model: Option<&'a HostModelCpu>, name: &str) -> Option<&'a str> {
    host_model?
        .features
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| f.policy.as_deref())
}

/// vmx or svm on the host: named in the host CPU's features, required or disabled by
/// the kvm host-model CPU, or part of the definition of the host's CPU model.
fn virt_extension(caps: &CapsDoc, host_model: Option<&HostModelCpu>, name: &str) -> TriFact {
    if caps.features.iter().any(|f| f == name) {
        return TriFact::yes("host CPU features");
    }
    match policy_of(host_model, name) {
        Some("require" | "force") => return TriFact::yes("host-model CPU features"),
        Some("disable" | "forbid") => return TriFact::no("host-model CPU features"),
        _ => {}
    }
    let models = [
        caps.model.as_deref(),
        host_model
            .filter(|m| m.supported == Some(true))
            .and_then(|m| m.model.as_deref()),
    ];
    match models
        .into_iter()
        .flatten()
        .find(|m| model_includes(m, name))
    {
        Some(m) => TriFact::yes(format!("CPU model {m} definition")),
        None => TriFact::unknown(None),
    }
}

/// The kvm host-model CPU gives a guest vmx or svm.
fn guest_gets_virt(host_model: Option<&HostModelCpu>) -> bool {
    let Some(m) = host_model.filter(|m| m.supported == Some(true)) else {
        return false;
    };
    ["vmx", "svm"].iter().any(|&f| match policy_of(Some(m), f) {
        Some("require" | "force") => true,
        Some("disable" | "forbid") => false,
        _ => m
            .model
            .as_deref()
            .is_some_and(|model| model_includes(model, f)),
    })
}

/// The `nested` parameter of the kvm module of the host's vendor (both modules on an x86
/// host of unknown vendor, none on other arches), else the host-model CPU, else unknown.
fn nested_virt(
    input: &DiscoveryInput,
    arch: Option<&str>,
    vendor: Option<&str>,
    host_model: Option<&HostModelCpu>,
) -> TriFact {
    let intel = ("kvm_intel", &input.kvm_intel_nested);
    let amd = ("kvm_amd", &input.kvm_amd_nested);
    let modules = match vendor {
        Some("Intel") => vec![intel],
        Some("AMD" | "Hygon") => vec![amd],
        _ if arch.is_none_or(|a| matches!(a, "x86_64" | "i686")) => vec![intel, amd],
        _ => Vec::new(),
    };
    let mut why = Vec::new();
    for (module, text) in modules {
        let source = format!("{module} nested parameter");
        match text.as_ref().map(|t| t.trim()) {
            Ok("Y" | "y" | "1") => return TriFact::yes(source),
            Ok("N" | "n" | "0") => return TriFact::no(source),
            Ok(other) => why.push(format!("{source}: {other:?} is not Y/N/1/0")),
            Err(e) => why.push(format!("{source}: {e}")),
        }
    }
    if guest_gets_virt(host_model) {
        return TriFact::yes("host-model CPU");
    }
    TriFact::unknown((!why.is_empty()).then(|| why.join("; ")))
}

fn ksm(run: &Result<String, String>) -> TriFact {
    const SOURCE: &str = "/sys/kernel/mm/ksm/run";
    match run.as_ref().map(|t| t.trim()) {
        Ok("1") => TriFact::yes(SOURCE),
        Ok("0" | "2") => TriFact::no(SOURCE),
        Ok(other) => TriFact::unknown(Some(format!("{SOURCE}: {other:?} is not 0, 1 or 2"))),
        Err(e) => TriFact::unknown(Some(format!("{SOURCE}: {e}"))),
    }
}

/// The NUMA cells with the free pages `virNodeGetFreePages` gave for each cell and page
/// size; a size (or cell) it did not answer keeps the document's value (`null`).
fn with_free_pages(cells: &[NumaCell], free: &Result<Vec<CellFreePages>, String>) -> Vec<NumaCell> {
    let answers = free.as_ref().map_or(&[][..], Vec::as_slice);
    cells
        .iter()
        .map(|cell| {
            let mut cell = cell.clone();
            let answer = answers.iter().find(|a| a.cell == cell.id);
            for page in &mut cell.pages {
                let given = answer
                    .and_then(|a| a.pages.iter().find(|(size, _)| *size == page.size_kib))
                    .map(|&(_, n)| n);
                page.free = given.or(page.free);
            }
            cell
        })
        .collect()
}

/// Combines the answers into the seven groups. Never fails: whatever is missing or
/// unreadable is a reason in the group that needed it.
pub fn build_capabilities(input: &DiscoveryInput) -> HostCapabilities {
    let caps = parsed(&input.capabilities, parse_capabilities);
    let empty = CapsDoc::default();
    let entries = entries(input, caps.as_ref().ok());
    let none_reason = match &input.capabilities {
        Err(e) => e.clone(),
        Ok(_) => "none asked".to_string(),
    };
    let chosen = choose(&entries, input.guest_machine.as_deref(), &none_reason);

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

    // memory_info
    let mut d = Deps::default();
    let n = d.use_("node info", &input.node_info);
    let c = d.use_("capabilities", &caps).unwrap_or(&empty);
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
    let memory_info = MemoryInfo {
        total_kib: n.map(|n| n.memory_kib).or(cells_total),
        hugepage_sizes_kib: page_sizes.iter().skip(1).copied().collect(),
        page_sizes_kib: page_sizes,
        ksm: ksm(&input.ksm_run),
        memory_balloon: p.and_then(|p| p.memballoon),
        memory_backing_sources: p
            .map(|p| p.memory_backing_sources.clone())
            .unwrap_or_default(),
        status: d.status(),
    };

    // security_info
    let mut d = Deps::default();
    let c = d.use_("capabilities", &caps).unwrap_or(&empty);
    let p = d.take(&chosen.primary);
    let security_info = SecurityInfo {
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
    let p = d.take(&chosen.primary);
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
    let p = d.take(&chosen.primary);
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
    let virt_info = VirtInfo {
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
