//! `virtsync inspect capabilities --output table`: the seven groups of the host
//! capabilities, each with its state and why it is not complete, and the main values
//! in a line each. Long lists (CPU features, machine types) are counted, not listed:
//! `--output json` has every value.

use crate::derive::caps::{
    CpuInfo, DomainCapsSummary, GroupState, GroupStatus, HostCapabilities, HostInfo, MachineCaps,
    MachineRef, MemoryInfo, NetworkInfo, SecurityInfo, StorageInfo, Tri, TriFact, VirtInfo,
};

/// How many names of a list are shown before "+N more".
const SHOWN: usize = 6;

/// The capabilities as a two-column table: a line per group (`name  state`, with the
/// reasons unless complete), then its values indented under it.
pub fn render(caps: &HostCapabilities) -> String {
    let mut rows = Rows::default();
    let machine = caps.virt_info.guest_machine.as_ref();
    host(&mut rows, &caps.host_info);
    cpu(&mut rows, &caps.cpu_info);
    memory(&mut rows, &caps.memory_info);
    security(&mut rows, &caps.security_info, machine);
    storage(&mut rows, &caps.storage_info, machine);
    network(&mut rows, &caps.network_info);
    virt(&mut rows, &caps.virt_info);
    rows.text()
}

#[derive(Default)]
struct Rows(Vec<(String, String)>);

impl Rows {
    fn group(&mut self, name: &str, status: &GroupStatus) {
        let state = match status.state {
            GroupState::Complete => "complete",
            GroupState::Partial => "partial",
            GroupState::Unavailable => "unavailable",
        };
        let value = if status.reasons.is_empty() {
            state.to_owned()
        } else {
            format!("{state}: {}", reasons(&status.reasons))
        };
        self.0.push((name.to_owned(), value));
    }

    fn value(&mut self, field: &str, value: impl Into<String>) {
        let value = value.into();
        let value = if value.is_empty() {
            "-".to_owned()
        } else {
            value
        };
        self.0.push((format!("  {field}"), value));
    }

    fn text(&self) -> String {
        let width = self.0.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        self.0
            .iter()
            .map(|(k, v)| format!("{k:<width$}  {v}").trim_end().to_owned() + "\n")
            .collect()
    }
}

/// `"<input>: <reason>"` lines, the inputs of one reason together:
/// `hostname, node info: not given to inspect`.
fn reasons(lines: &[String]) -> String {
    let mut grouped: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in lines {
        let (input, reason) = line.split_once(": ").unwrap_or(("", line.as_str()));
        match grouped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, inputs)) => inputs.push(input),
            None => grouped.push((reason, vec![input])),
        }
    }
    grouped
        .iter()
        .map(|(reason, inputs)| {
            let inputs: Vec<&str> = inputs.iter().copied().filter(|i| !i.is_empty()).collect();
            if inputs.is_empty() {
                (*reason).to_owned()
            } else {
                format!("{}: {reason}", inputs.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// `yes (host-model CPU)`, `unknown`, `unknown (kvm_amd nested parameter: …)`.
fn tri(f: &TriFact) -> String {
    let value = match f.value {
        Tri::Yes => "yes",
        Tri::No => "no",
        Tri::Unknown => "unknown",
    };
    match &f.source {
        Some(source) => format!("{value} ({source})"),
        None => value.to_owned(),
    }
}

/// `q35 = pc-q35-7.2, kvm`: which machine a value describes.
fn machine_ref(m: &MachineRef) -> String {
    match &m.canonical {
        Some(c) if *c != m.name => format!("{} = {c}, {}", m.name, m.virttype),
        _ => format!("{}, {}", m.name, m.virttype),
    }
}

/// A host-level value and the machine it describes: `yes (for q35 = pc-q35-7.2, kvm)`.
fn for_machine(value: String, machine: Option<&MachineRef>) -> String {
    match machine {
        Some(m) if value != "-" && !value.is_empty() => {
            format!("{value} (for {})", machine_ref(m))
        }
        _ => value,
    }
}

/// `yes`, `no`, or `unknown` for a value the document does not state.
fn yes_no(v: Option<bool>) -> String {
    match v {
        Some(true) => "yes".to_owned(),
        Some(false) => "no".to_owned(),
        None => "unknown".to_owned(),
    }
}

/// `yes: DETAILS` (or `yes`), `no`, `unknown`.
fn yes_with(v: Option<bool>, details: impl FnOnce() -> String) -> String {
    match v {
        Some(true) => {
            let details = details();
            if details.is_empty() {
                "yes".to_owned()
            } else {
                format!("yes: {details}")
            }
        }
        other => yes_no(other),
    }
}

/// `a, b, c`, the first few of a long list then `+N more`.
fn names<S: AsRef<str>>(items: &[S]) -> String {
    let mut shown: Vec<&str> = items.iter().take(SHOWN).map(AsRef::as_ref).collect();
    let more = items.len().saturating_sub(SHOWN);
    let more_text = format!("+{more} more");
    if more > 0 {
        shown.push(&more_text);
    }
    shown.join(", ")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A size in KiB in the largest binary unit that keeps it readable: `4 KiB`, `2 MiB`,
/// `1 GiB`, `7.96 GiB`.
fn kib(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut whole = n;
    while unit + 1 < UNITS.len() && whole >= 1024 && whole % 1024 == 0 {
        whole /= 1024;
        unit += 1;
    }
    if unit == 0 && n >= 1024 * 1024 {
        // Not a whole number of MiB: two decimals of the largest unit.
        let mut value = n as f64;
        let mut unit = 0;
        while unit + 1 < UNITS.len() && value >= 1024.0 {
            value /= 1024.0;
            unit += 1;
        }
        return format!("{value:.2} {}", UNITS[unit]);
    }
    format!("{whole} {}", UNITS[unit])
}

fn host(rows: &mut Rows, h: &HostInfo) {
    rows.group("host_info", &h.status);
    rows.value("hostname", opt(&h.hostname));
    rows.value("arch", opt(&h.arch));
    rows.value(
        "cpu",
        [opt(&h.cpu_vendor), opt(&h.cpu_model)]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    );
    rows.value("uuid", opt(&h.uuid));
    if let Some(n) = &h.node_info {
        rows.value(
            "nodeinfo",
            format!(
                "{}, {} MHz, {}, {}",
                plural(n.cpus as usize, "CPU", "CPUs"),
                n.mhz,
                plural(n.nodes as usize, "NUMA node", "NUMA nodes"),
                kib(n.memory_kib)
            ),
        );
    }
    rows.value("power management", names(&h.power_management));
    rows.value("migration", names(&h.migration_transports));
}

fn cpu(rows: &mut Rows, c: &CpuInfo) {
    rows.group("cpu_info", &c.status);
    let mut model = opt(&c.model);
    let origin: Vec<String> = [opt(&c.vendor), opt(&c.arch)]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    if !origin.is_empty() {
        model = format!("{model} ({})", origin.join(", "));
    }
    rows.value("model", model.trim());
    if let Some(s) = &c.signature {
        rows.value(
            "signature",
            format!(
                "family {}, model {}, stepping {}",
                opt(&s.family),
                opt(&s.model),
                opt(&s.stepping)
            ),
        );
    }
    if let Some(t) = &c.topology {
        rows.value(
            "topology",
            format!(
                "{}, {}, {}, {}, {} per core: {} CPUs",
                plural(t.sockets as usize, "socket", "sockets"),
                plural(t.dies as usize, "die", "dies"),
                plural(t.clusters as usize, "cluster", "clusters"),
                plural(t.cores as usize, "core", "cores"),
                plural(t.threads as usize, "thread", "threads"),
                t.product()
            ),
        );
    }
    rows.value("logical cpus", opt(&c.logical_cpus));
    if let Some(hz) = c.tsc_frequency_hz {
        rows.value("tsc", format!("{:.2} GHz", hz as f64 / 1e9));
    }
    rows.value("numa cells", c.numa_cells.len().to_string());
    for cell in &c.numa_cells {
        let pages: Vec<String> = cell
            .pages
            .iter()
            .map(|p| match p.free {
                Some(free) => format!("{} x {} ({free} free)", p.count, kib(p.size_kib)),
                None => format!("{} x {}", p.count, kib(p.size_kib)),
            })
            .collect();
        let mut text = format!(
            "{}, {}",
            cell.memory_kib.map(kib).unwrap_or_else(|| "-".to_owned()),
            plural(cell.cpus.len(), "CPU", "CPUs")
        );
        if !pages.is_empty() {
            text = format!("{text}; pages {}", pages.join(", "));
        }
        rows.value(&format!("cell {}", cell.id), text);
    }
    rows.value(
        "host features",
        plural(c.host_features.len(), "feature", "features"),
    );
    if let Some(m) = &c.host_model {
        let text = match m.supported {
            Some(true) => {
                let vendor = m
                    .vendor
                    .as_ref()
                    .map(|v| format!(" ({v})"))
                    .unwrap_or_default();
                format!(
                    "{}{vendor}, {}",
                    opt(&m.model),
                    plural(m.features.len(), "feature", "features")
                )
            }
            Some(false) => "not supported".to_owned(),
            None => "unknown".to_owned(),
        };
        rows.value("host-model", text);
    }
    rows.value("host-passthrough", yes_no(c.host_passthrough_supported));
    rows.value(
        "usable models",
        format!(
            "{} ({} unusable, {} unknown)",
            if c.usable_models.is_empty() {
                "none".to_owned()
            } else {
                names(&c.usable_models)
            },
            c.unusable_models.len(),
            c.unknown_models.len()
        ),
    );
    rows.value("vmx", tri(&c.vmx));
    rows.value("svm", tri(&c.svm));
}

fn memory(rows: &mut Rows, m: &MemoryInfo) {
    rows.group("memory_info", &m.status);
    rows.value("total", m.total_kib.map(kib).unwrap_or_default());
    let pages: Vec<String> = m.page_sizes_kib.iter().map(|&p| kib(p)).collect();
    rows.value("page sizes", pages.join(", "));
    rows.value("ksm", tri(&m.ksm));
    rows.value("balloon", yes_no(m.memory_balloon));
    rows.value("backing", names(&m.memory_backing_sources));
}

fn security(rows: &mut Rows, s: &SecurityInfo, machine: Option<&MachineRef>) {
    rows.group("security_info", &s.status);
    let models: Vec<&str> = s.models.iter().map(|m| m.model.as_str()).collect();
    rows.value("models", names(&models));
    rows.value("iommu", yes_no(s.iommu));
    rows.value("secure boot", for_machine(yes_no(s.secure_boot), machine));
    rows.value("firmware", names(&s.firmware));
    let tpm = yes_with(s.tpm.supported, || {
        let mut text = names(&s.tpm.models);
        if !s.tpm.backend_models.is_empty() {
            text = format!("{text} (backends {})", names(&s.tpm.backend_models));
        }
        text
    });
    rows.value("tpm", tpm);
    let sev = yes_with(s.sev.supported, || {
        let mut kinds = vec!["SEV"];
        let mut unknown = Vec::new();
        for (kind, v) in [("SEV-ES", s.sev.es), ("SEV-SNP", s.sev.snp)] {
            match v {
                Some(true) => kinds.push(kind),
                Some(false) => {}
                None => unknown.push(kind),
            }
        }
        let unknown = if unknown.is_empty() {
            String::new()
        } else {
            format!(" ({} unknown)", unknown.join(", "))
        };
        format!(
            "{}{unknown}; max guests {}, max ES guests {}",
            kinds.join(", "),
            opt(&s.sev.max_guests),
            opt(&s.sev.max_es_guests)
        )
    });
    rows.value("sev", sev);
    rows.value("tdx", yes_no(s.tdx));
    let sgx = yes_with(s.sgx.supported, || {
        s.sgx
            .epc_size_kib
            .map(|epc| format!("EPC {}", kib(epc)))
            .unwrap_or_default()
    });
    rows.value("sgx", sgx);
    if s.s390_pv.is_some() {
        rows.value("s390-pv", yes_no(s.s390_pv));
    }
}

fn storage(rows: &mut Rows, s: &StorageInfo, machine: Option<&MachineRef>) {
    rows.group("storage_info", &s.status);
    let pools: Vec<String> = s
        .pools
        .iter()
        .map(|p| format!("{} ({})", p.name, p.pool_type))
        .collect();
    rows.value("pools", names(&pools));
    rows.value("disk devices", names(&s.disk_devices));
    rows.value("disk buses", for_machine(names(&s.disk_buses), machine));
}

fn network(rows: &mut Rows, n: &NetworkInfo) {
    rows.group("network_info", &n.status);
    let networks: Vec<&str> = n.networks.iter().map(|w| w.name.as_str()).collect();
    rows.value("networks", names(&networks));
    rows.value("bridges", names(&n.bridges));
    rows.value("interface backends", names(&n.interface_backends));
    rows.value(
        "sr-iov",
        format!(
            "{}, {}",
            plural(n.sriov.pf_count, "PF", "PFs"),
            plural(n.sriov.vf_count, "VF", "VFs")
        ),
    );
}

fn domcaps(d: &DomainCapsSummary) -> String {
    let mut parts = vec![opt(&d.machine), opt(&d.arch)];
    if let Some(max) = d.max_vcpus {
        parts.push(format!("max {max} vCPUs"));
    }
    parts.push(format!(
        "host-passthrough {}, host-model {}",
        yes_no(d.host_passthrough),
        yes_no(d.host_model)
    ));
    parts.push(plural(d.usable_models, "usable model", "usable models"));
    if !d.gic_versions.is_empty() {
        parts.push(format!("GIC {}", d.gic_versions.join(", ")));
    }
    parts.retain(|p| !p.is_empty());
    parts.join(", ")
}

/// One machine's values: `pc-q35-7.2, x86_64, max 288 vCPUs, secure boot yes, …`, or
/// its state and reasons when it is not usable.
fn machine(m: &MachineCaps) -> String {
    if m.status.state == GroupState::Unavailable {
        return format!("unavailable: {}", m.status.reasons.join("; "));
    }
    let mut parts = vec![opt(&m.canonical), opt(&m.arch)];
    parts.push(match m.max_vcpus {
        Some(max) => format!("max {max} vCPUs"),
        None => "max vCPUs -".to_owned(),
    });
    parts.push(format!("secure boot {}", yes_no(m.secure_boot)));
    if !m.firmware.is_empty() {
        parts.push(format!("firmware {}", m.firmware.join("/")));
    }
    if !m.disk_buses.is_empty() {
        parts.push(format!("buses {}", m.disk_buses.join("/")));
    }
    if !m.status.reasons.is_empty() {
        parts.push(format!("({})", m.status.reasons.join("; ")));
    }
    parts.retain(|p| !p.is_empty());
    parts.join(", ")
}

fn virt(rows: &mut Rows, v: &VirtInfo) {
    rows.group("virt_info", &v.status);
    let hypervisor = [opt(&v.hypervisor_type), opt(&v.hypervisor_version)]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    rows.value("hypervisor", hypervisor);
    rows.value("libvirt", opt(&v.libvirt_version));
    rows.value("domain types", names(&v.domain_types));
    rows.value(
        "guest machine",
        v.guest_machine
            .as_ref()
            .map(machine_ref)
            .unwrap_or_default(),
    );
    rows.value(
        "max vcpus",
        for_machine(opt(&v.max_vcpus), v.guest_machine.as_ref()),
    );
    rows.value("nested virt", tri(&v.nested_virt));
    for m in &v.machines {
        rows.value(&format!("machine {} {}", m.machine, m.virttype), machine(m));
    }
    let guests: Vec<String> = v
        .guests
        .iter()
        .map(|g| {
            format!(
                "{} {} ({}; {})",
                g.os_type,
                g.arch,
                g.domain_types.join(", "),
                plural(g.machines.len(), "machine", "machines")
            )
        })
        .collect();
    rows.value("guests", names(&guests));
    for d in &v.domain_capabilities {
        rows.value(&format!("domcaps {}", d.domain), domcaps(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::caps::{DiscoveryInput, DomCapsAnswer, build_capabilities};
    use crate::test_fixtures::text as fixture_text;

    fn row<'a>(text: &'a str, field: &str) -> Option<&'a str> {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(field)?;
            rest.starts_with("  ").then(|| rest.trim())
        })
    }

    #[test]
    fn sizes_read_well() {
        let cases = [
            (4, "4 KiB"),
            (2048, "2 MiB"),
            (1_048_576, "1 GiB"),
            (8_349_900, "7.96 GiB"),
            (1536, "1536 KiB"),
            (0, "0 KiB"),
        ];
        for (n, want) in cases {
            assert_eq!(kib(n), want, "{n}");
        }
        assert_eq!(names(&["a", "b"]), "a, b");
        let many: Vec<String> = (0..9).map(|i| i.to_string()).collect();
        assert_eq!(names(&many), "0, 1, 2, 3, 4, 5, +3 more");
        assert_eq!(names::<&str>(&[]), "");
        let why = [
            "hostname: not given to inspect".to_owned(),
            "capabilities: permission denied".to_owned(),
            "node info: not given to inspect".to_owned(),
            "no input".to_owned(),
        ];
        assert_eq!(
            reasons(&why),
            "hostname, node info: not given to inspect; capabilities: permission denied; no input"
        );
    }

    /// A value the domain capabilities do not state reads "unknown", never "no".
    #[test]
    fn silent_values_read_unknown() {
        let table = |body: &str| {
            let mut input = DiscoveryInput::unavailable("not given to inspect");
            input.capabilities = Ok(fixture_text("libvirt/real/capabilities.xml"));
            input.domcaps = vec![DomCapsAnswer {
                virttype: "kvm".into(),
                machine: Some("q35".into()),
                answer: Ok(format!(
                    "<domainCapabilities><domain>kvm</domain><machine>pc-q35-7.2</machine>\
                     <arch>x86_64</arch>{body}</domainCapabilities>"
                )),
            }];
            render(&build_capabilities(&input))
        };
        let text = table("<cpu><mode name='host-model'><model>EPYC</model></mode></cpu>");
        for field in ["tpm", "sev", "tdx", "sgx", "host-model", "host-passthrough"] {
            assert_eq!(
                row(&text, &format!("  {field}")),
                Some("unknown"),
                "{field}"
            );
        }
        assert_eq!(
            row(&text, "  secure boot"),
            Some("unknown (for q35 = pc-q35-7.2, kvm)")
        );
        let text = table(
            "<devices><tpm supported='no'/></devices><features><sev supported='yes'>\
             <maxGuests>59</maxGuests><maxESGuests>450</maxESGuests></sev>\
             <sgx supported='no'/></features>",
        );
        assert_eq!(
            row(&text, "  sev"),
            Some("yes: SEV, SEV-ES (SEV-SNP unknown); max guests 59, max ES guests 450")
        );
        assert_eq!(row(&text, "  tpm"), Some("no"));
        assert_eq!(row(&text, "  sgx"), Some("no"));
        assert_eq!(row(&text, "  tdx"), Some("unknown"));
    }

    #[test]
    fn real_host_table() {
        let mut input = DiscoveryInput::unavailable("not given to inspect");
        input.capabilities = Ok(fixture_text("libvirt/real/capabilities.xml"));
        input.domcaps = vec![DomCapsAnswer {
            virttype: "kvm".into(),
            machine: None,
            answer: Ok(fixture_text("libvirt/real/domcapabilities-kvm.xml")),
        }];
        let text = render(&build_capabilities(&input));
        // Every group, in order, with its state.
        let groups: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with(' '))
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        assert_eq!(
            groups,
            [
                "host_info",
                "cpu_info",
                "memory_info",
                "security_info",
                "storage_info",
                "network_info",
                "virt_info"
            ]
        );
        assert_eq!(
            row(&text, "host_info"),
            Some("partial: hostname, node info: not given to inspect")
        );
        assert_eq!(row(&text, "  cpu"), Some("Intel Broadwell"));
        assert_eq!(row(&text, "  model"), Some("Broadwell (Intel, x86_64)"));
        assert_eq!(
            row(&text, "  signature"),
            Some("family 6, model 167, stepping 1")
        );
        assert_eq!(
            row(&text, "  topology"),
            Some("1 socket, 1 die, 1 cluster, 2 cores, 1 thread per core: 2 CPUs")
        );
        assert_eq!(row(&text, "  logical cpus"), Some("2"));
        assert_eq!(
            row(&text, "  cell 0"),
            Some("7.96 GiB, 2 CPUs; pages 2087475 x 4 KiB, 0 x 2 MiB, 0 x 1 GiB")
        );
        // Free pages are not in the capabilities: asked of libvirt, not given here.
        assert_eq!(
            row(&text, "memory_info"),
            Some("partial: node info, free pages: not given to inspect")
        );
        // Given (the 1 GiB pages not answered): shown per size.
        input.free_pages = Ok(vec![crate::derive::caps::CellFreePages {
            cell: 0,
            pages: vec![(4, 1_500_000), (2048, 0)],
        }]);
        let with_free = render(&build_capabilities(&input));
        assert_eq!(
            row(&with_free, "  cell 0"),
            Some(
                "7.96 GiB, 2 CPUs; pages 2087475 x 4 KiB (1500000 free), 0 x 2 MiB (0 free), \
                 0 x 1 GiB"
            )
        );
        assert_eq!(
            row(&with_free, "memory_info"),
            Some("partial: node info: not given to inspect")
        );
        // Intel host whose kvm host-model (kvm64) names no vmx: unknown, never "no".
        assert_eq!(row(&text, "  vmx"), Some("unknown"));
        assert_eq!(
            row(&text, "  nested virt"),
            Some("unknown (kvm_intel nested parameter: not given to inspect)")
        );
        assert_eq!(
            row(&text, "  ksm"),
            Some("unknown (/sys/kernel/mm/ksm/run: not given to inspect)")
        );
        assert_eq!(
            row(&text, "  usable models"),
            Some("pentium3, pentium2, pentium, 486 (49 unusable, 0 unknown)")
        );
        assert_eq!(row(&text, "  guest machine"), Some("pc-i440fx-7.2, kvm"));
        assert_eq!(
            row(&text, "  machine pc-i440fx-7.2 kvm"),
            Some(
                "pc-i440fx-7.2, x86_64, max 255 vCPUs, secure boot no, buses ide/fdc/scsi/virtio/usb/sata"
            )
        );
        assert_eq!(row(&text, "  total"), Some("7.96 GiB"));
        assert_eq!(row(&text, "  page sizes"), Some("4 KiB, 2 MiB, 1 GiB"));
        assert_eq!(
            row(&text, "  secure boot"),
            Some("no (for pc-i440fx-7.2, kvm)")
        );
        assert_eq!(
            row(&text, "  tpm"),
            Some("yes: tpm-tis, tpm-crb (backends passthrough)")
        );
        // libvirt 9.0: <sev>/<sgx> say no; no <launchSecurity>, no <tdx>: unknown.
        assert_eq!(row(&text, "  sev"), Some("no"));
        assert_eq!(row(&text, "  sgx"), Some("no"));
        assert_eq!(row(&text, "  tdx"), Some("unknown"));
        assert_eq!(
            row(&text, "  max vcpus"),
            Some("255 (for pc-i440fx-7.2, kvm)")
        );
        assert_eq!(row(&text, "  domain types"), Some("kvm, qemu"));
        assert!(
            row(&text, "  domcaps kvm").is_some_and(|d| d.starts_with("pc-i440fx-7.2, x86_64")),
            "{text}"
        );
        // Compact: a line per value, no long lists.
        assert!(text.lines().count() < 60, "{text}");
        assert!(text.lines().all(|l| l.len() < 200), "{text}");
    }
}
