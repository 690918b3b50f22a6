//! The capability parsers over every document of libvirt 9.0.0's own test data
//! (tests/fixtures/libvirt/corpus-9.0.0, see its SOURCES.md): each value is checked
//! against the document as read by a second XML reader (roxmltree), for every document,
//! and through `build_capabilities` as the daemon reports it. No document is skipped: the
//! test counts them against the files in the folders.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use roxmltree::{Document, Node};
use virtsync::derive::caps::{
    DiscoveryInput, DomCapsAnswer, GroupState, HostCapabilities, build_capabilities,
    parse_capabilities, parse_domain_capabilities,
};

const KINDS: [&str; 4] = [
    "domaincapsdata",
    "capabilityschemadata",
    "qemucaps2xmloutdata",
    "vircaps2xmldata",
];

/// Documents the parsers are expected to refuse, with the reason. None in this corpus:
/// any refusal fails the test.
const REFUSED: &[(&str, &str)] = &[];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/libvirt/corpus-9.0.0")
}

/// Every file of a folder, sorted by name.
fn files(kind: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join(kind))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

// ---- the second reader -----------------------------------------------------------------

fn child<'a, 'i>(n: Node<'a, 'i>, tag: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(tag))
}

fn children<'a, 'i>(n: Node<'a, 'i>, tag: &'a str) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(move |c| c.has_tag_name(tag))
}

fn text(n: Node, tag: &str) -> Option<String> {
    child(n, tag)
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
}

/// `<enum name='NAME'><value>…` directly under `n`.
fn enum_of(n: Option<Node>, enum_name: &str) -> Vec<String> {
    let Some(n) = n else { return Vec::new() };
    children(n, "enum")
        .find(|e| e.attribute("name") == Some(enum_name))
        .map(|e| {
            children(e, "value")
                .filter_map(|v| v.text())
                .map(|t| t.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn supported(n: Option<Node>) -> Option<bool> {
    match n?.attribute("supported")? {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

fn kib(size: &str, unit: Option<&str>) -> u64 {
    let n: u64 = size.trim().parse().unwrap();
    match unit.unwrap_or("KiB") {
        "KiB" | "K" | "k" => n,
        "MiB" | "M" | "m" => n * 1024,
        "GiB" | "G" | "g" => n * 1024 * 1024,
        "b" | "B" | "bytes" => n / 1024,
        other => panic!("page unit {other}"),
    }
}

/// What a domain capabilities document says, read with roxmltree.
#[derive(Debug)]
struct Dc {
    domain: String,
    arch: Option<String>,
    machine: Option<String>,
    vcpu_max: Option<u32>,
    secure_boot: Option<bool>,
    firmware: Vec<String>,
    disk_buses: Vec<String>,
    /// Custom models by `usable`: yes, no, other/none.
    models: [usize; 3],
    /// SEV, SEV-ES, SEV-SNP, SGX, TDX, TPM (`[sev, es, snp, sgx, tdx, tpm]`) as the
    /// document states them: `None` when it is silent.
    security: [Option<bool>; 6],
    /// Whether the document has an element for each: `<sev>` or `<launchSecurity>`;
    /// the same with `maxESGuests` unless SEV is not supported; `<launchSecurity>`;
    /// `<sgx>`; `<tdx>` or `<launchSecurity>`; `<tpm>`.
    present: [bool; 6],
    /// The host-model mode's `supported`; `None` without that mode.
    host_model: Option<Option<bool>>,
}

/// The names of [`Dc::security`], for messages.
const SECURITY: [&str; 6] = ["sev", "sev-es", "sev-snp", "sgx", "tdx", "tpm"];

fn read_dc(xml: &str) -> Dc {
    let doc = Document::parse(xml).unwrap();
    let r = doc.root_element();
    assert_eq!(r.tag_name().name(), "domainCapabilities");
    let os = child(r, "os");
    let loader = os.and_then(|o| child(o, "loader"));
    let secure_boot = match (os, loader) {
        (None, _) => None,
        (Some(o), _) if supported(Some(o)) == Some(false) => Some(false),
        (_, None) => None,
        (_, Some(l)) if supported(Some(l)) == Some(false) => Some(false),
        (_, Some(l)) => {
            let has_enum = children(l, "enum").any(|e| e.attribute("name") == Some("secure"));
            has_enum.then(|| enum_of(Some(l), "secure").iter().any(|v| v == "yes"))
        }
    };
    let mut models = [0; 3];
    if let Some(cpu) = child(r, "cpu") {
        for mode in children(cpu, "mode") {
            if mode.attribute("name") == Some("custom") && supported(Some(mode)) == Some(true) {
                for m in children(mode, "model") {
                    if m.text().is_none_or(|t| t.trim().is_empty()) {
                        continue;
                    }
                    match m.attribute("usable") {
                        Some("yes") => models[0] += 1,
                        Some("no") => models[1] += 1,
                        _ => models[2] += 1,
                    }
                }
            }
        }
    }
    let features = child(r, "features");
    let devices = child(r, "devices");
    let disk = devices.and_then(|d| child(d, "disk"));
    let feature = |tag: &str| features.and_then(|f| child(f, tag));
    let ls = feature("launchSecurity");
    // The sectypes <launchSecurity> states: none when supported='no', its enum when
    // supported='yes' gives one.
    let sectypes: Option<Vec<String>> = ls.and_then(|l| match l.attribute("supported") {
        Some("no") => Some(Vec::new()),
        Some("yes") if children(l, "enum").any(|e| e.attribute("name") == Some("sectype")) => {
            Some(enum_of(Some(l), "sectype"))
        }
        _ => None,
    });
    let listed = |t: &str| sectypes.as_ref().map(|l| l.iter().any(|x| x == t));
    let sev_el = feature("sev");
    let sev = supported(sev_el).or_else(|| listed("sev"));
    let max_es: Option<u32> = sev_el
        .and_then(|s| text(s, "maxESGuests"))
        .map(|t| t.parse().unwrap());
    let es = match sev {
        Some(false) => Some(false),
        Some(true) => max_es.map(|n| n > 0),
        None => None,
    };
    let tdx = match (supported(feature("tdx")), listed("tdx")) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (a, b) => a.or(b),
    };
    let tpm_el = devices.and_then(|d| child(d, "tpm"));
    let security = [
        sev,
        es,
        listed("sev-snp"),
        supported(feature("sgx")),
        tdx,
        supported(tpm_el),
    ];
    let sev_present = sev_el.is_some() || ls.is_some();
    let present = [
        sev_present,
        sev_present && (sev == Some(false) || max_es.is_some()),
        ls.is_some(),
        feature("sgx").is_some(),
        feature("tdx").is_some() || ls.is_some(),
        tpm_el.is_some(),
    ];
    let host_model = child(r, "cpu").and_then(|cpu| {
        children(cpu, "mode")
            .find(|m| m.attribute("name") == Some("host-model"))
            .map(|m| supported(Some(m)))
    });
    Dc {
        domain: text(r, "domain").unwrap_or_default(),
        arch: text(r, "arch"),
        machine: text(r, "machine"),
        vcpu_max: child(r, "vcpu").map(|v| v.attribute("max").unwrap().parse().unwrap()),
        secure_boot,
        firmware: os.map(|o| enum_of(Some(o), "firmware")).unwrap_or_default(),
        disk_buses: enum_of(disk, "bus"),
        models,
        security,
        present,
        host_model,
    }
}

/// What a capabilities document says, read with roxmltree.
#[derive(Debug)]
struct Caps {
    arch: Option<String>,
    /// sockets, dies, clusters, cores, threads.
    topology: Option<[u32; 5]>,
    cpu_pages: Vec<u64>,
    all_pages: Vec<u64>,
    cells: usize,
    cell_cpus: usize,
    /// Per cell: (size KiB, count) of each `<pages>`.
    cell_pages: Vec<Vec<(u64, u64)>>,
    guests: usize,
}

fn read_caps(xml: &str) -> Caps {
    let doc = Document::parse(xml).unwrap();
    let r = doc.root_element();
    assert_eq!(r.tag_name().name(), "capabilities");
    let host = child(r, "host");
    let cpu = host.and_then(|h| child(h, "cpu"));
    let pages_of = |n: Node| -> Vec<(u64, u64)> {
        children(n, "pages")
            .filter_map(|p| {
                let size = kib(p.attribute("size")?, p.attribute("unit"));
                let count = p.text().map_or(0, |t| t.trim().parse().unwrap_or(0));
                Some((size, count))
            })
            .collect()
    };
    let mut cpu_pages: Vec<u64> = cpu
        .map(|c| pages_of(c).into_iter().map(|p| p.0).collect())
        .unwrap_or_default();
    cpu_pages.sort_unstable();
    cpu_pages.dedup();
    let cells: Vec<Node> = host
        .and_then(|h| child(h, "topology"))
        .and_then(|t| child(t, "cells"))
        .map(|c| children(c, "cell").collect())
        .unwrap_or_default();
    let cell_pages: Vec<Vec<(u64, u64)>> = cells.iter().map(|c| pages_of(*c)).collect();
    let mut all_pages: Vec<u64> = cpu_pages
        .iter()
        .copied()
        .chain(cell_pages.iter().flatten().map(|p| p.0))
        .collect();
    all_pages.sort_unstable();
    all_pages.dedup();
    let topology = cpu.and_then(|c| child(c, "topology")).map(|t| {
        let a = |n: &str| t.attribute(n).map_or(1, |v| v.parse().unwrap());
        [
            a("sockets"),
            a("dies"),
            a("clusters"),
            a("cores"),
            a("threads"),
        ]
    });
    Caps {
        arch: cpu.and_then(|c| text(c, "arch")),
        topology,
        cpu_pages,
        all_pages,
        cells: cells.len(),
        cell_cpus: cells
            .iter()
            .filter_map(|c| child(*c, "cpus"))
            .map(|c| children(c, "cpu").count())
            .sum(),
        cell_pages,
        guests: children(r, "guest").count(),
    }
}

// ---- building as the daemon does -------------------------------------------------------

fn host_caps(arch: &str) -> String {
    format!("<capabilities><host><cpu><arch>{arch}</arch></cpu></host></capabilities>")
}

fn input(capabilities: String, domcaps: Vec<DomCapsAnswer>) -> DiscoveryInput {
    let mut i = DiscoveryInput::unavailable("not read: offline");
    i.capabilities = Ok(capabilities);
    i.hypervisor_type = Ok("QEMU".into());
    i.domcaps = domcaps;
    i
}

fn answer(virttype: &str, machine: Option<&str>, xml: String) -> DomCapsAnswer {
    DomCapsAnswer {
        virttype: virttype.into(),
        machine: machine.map(str::to_string),
        answer: Ok(xml),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// INT_MAX or more: "no limit stated".
fn limit(max: Option<u32>) -> Option<u32> {
    max.filter(|&n| n < 2_147_483_647)
}

/// `[sev, es, snp, sgx, tdx, tpm]` as a parser's or a build's fields give them.
fn security_of(
    sev: &virtsync::derive::caps::SevSupport,
    sgx: &virtsync::derive::caps::SgxSupport,
    tdx: Option<bool>,
    tpm: &virtsync::derive::caps::TpmSupport,
) -> [Option<bool>; 6] {
    [
        sev.supported,
        sev.es,
        sev.snp,
        sgx.supported,
        tdx,
        tpm.supported,
    ]
}

/// Checks one domain capabilities document; `nulls` counts, per field of
/// [`SECURITY`] and the host-model's `supported` last, the documents where the parser
/// gives `null`.
fn check_domcaps(path: &Path, failures: &mut Vec<String>, nulls: &mut [usize; 7]) {
    let file = name(path);
    let xml = read(path);
    let want = read_dc(&xml);
    let doc = match parse_domain_capabilities(&xml) {
        Ok(d) => d,
        Err(e) => {
            failures.push(format!("{file}: refused: {e}"));
            return;
        }
    };
    let mut diff = |what: &str, got: String, want: String| {
        if got != want {
            failures.push(format!("{file}: {what}: parser {got}, document {want}"));
        }
    };
    diff("domain", doc.domain.clone(), want.domain.clone());
    diff(
        "arch",
        format!("{:?}", doc.arch),
        format!("{:?}", want.arch),
    );
    diff(
        "machine",
        format!("{:?}", doc.machine),
        format!("{:?}", want.machine),
    );
    diff(
        "vcpu max",
        format!("{:?}", doc.max_vcpus),
        format!("{:?}", want.vcpu_max),
    );
    diff(
        "secure boot",
        format!("{:?}", doc.secure_boot),
        format!("{:?}", want.secure_boot),
    );
    diff(
        "firmware",
        format!("{:?}", doc.firmware),
        format!("{:?}", want.firmware),
    );
    diff(
        "disk buses",
        format!("{:?}", doc.disk_buses),
        format!("{:?}", want.disk_buses),
    );
    diff(
        "models yes/no/unknown",
        format!(
            "{:?}",
            [
                doc.usable_models.len(),
                doc.unusable_models.len(),
                doc.unknown_models.len()
            ]
        ),
        format!("{:?}", want.models),
    );
    let got = security_of(&doc.sev, &doc.sgx, doc.tdx, &doc.tpm);
    diff(
        "sev/es/snp/sgx/tdx/tpm",
        format!("{got:?}"),
        format!("{:?}", want.security),
    );
    // Null exactly where the document has no element for the value.
    for (i, what) in SECURITY.iter().enumerate() {
        diff(
            &format!("{what} stated"),
            got[i].is_some().to_string(),
            want.present[i].to_string(),
        );
        nulls[i] += usize::from(got[i].is_none());
    }
    let host_model = doc.host_model.as_ref().map(|m| m.supported);
    diff(
        "host-model supported",
        format!("{host_model:?}"),
        format!("{:?}", want.host_model),
    );
    nulls[6] += usize::from(host_model.flatten().is_none());

    // As the daemon reports it, on a host of the document's arch.
    let arch = want.arch.clone().unwrap_or_else(|| "x86_64".into());
    let c = build_capabilities(&input(
        host_caps(&arch),
        vec![answer(&want.domain, None, xml.clone())],
    ));
    let m = &c.virt_info.machines[0];
    let mut diff = |what: &str, got: String, want: String| {
        if got != want {
            failures.push(format!("{file}: built {what}: {got}, document {want}"));
        }
    };
    if matches!(want.domain.as_str(), "kvm" | "qemu") {
        diff(
            "machine state",
            format!("{:?}", m.status.state),
            format!(
                "{:?}",
                if limit(want.vcpu_max) == want.vcpu_max {
                    GroupState::Complete
                } else {
                    GroupState::Partial
                }
            ),
        );
        diff(
            "guest machine",
            format!(
                "{:?}",
                c.virt_info.guest_machine.as_ref().map(|g| g.name.clone())
            ),
            format!("{:?}", want.machine),
        );
        diff(
            "max vcpus",
            format!("{:?}", c.virt_info.max_vcpus),
            format!("{:?}", limit(want.vcpu_max)),
        );
        diff(
            "machine max vcpus",
            format!("{:?}", m.max_vcpus),
            format!("{:?}", limit(want.vcpu_max)),
        );
        diff(
            "secure boot",
            format!("{:?}", c.security_info.secure_boot),
            format!("{:?}", want.secure_boot),
        );
        diff(
            "machine secure boot",
            format!("{:?}", m.secure_boot),
            format!("{:?}", want.secure_boot),
        );
        diff(
            "firmware",
            format!("{:?}", c.security_info.firmware),
            format!("{:?}", want.firmware),
        );
        diff(
            "disk buses",
            format!("{:?}", c.storage_info.disk_buses),
            format!("{:?}", want.disk_buses),
        );
        let s = &c.security_info;
        diff(
            "sev/es/snp/sgx/tdx/tpm",
            format!("{:?}", security_of(&s.sev, &s.sgx, s.tdx, &s.tpm)),
            format!("{:?}", want.security),
        );
        // As JSON: null where the document is silent, never false.
        let json = serde_json::to_value(s).unwrap();
        let json_flags = [
            &json["sev"]["supported"],
            &json["sev"]["es"],
            &json["sev"]["snp"],
            &json["sgx"]["supported"],
            &json["tdx"],
            &json["tpm"]["supported"],
        ]
        .map(|v| v.as_bool());
        diff(
            "json sev/es/snp/sgx/tdx/tpm",
            format!("{json_flags:?}"),
            format!("{:?}", want.security),
        );
        // The host-model CPU: from kvm documents only.
        diff(
            "host-model supported",
            format!("{:?}", c.cpu_info.host_model.as_ref().map(|m| m.supported)),
            format!(
                "{:?}",
                if want.domain == "kvm" {
                    want.host_model
                } else {
                    None
                }
            ),
        );
        // CPU models and the host-model come from kvm documents only.
        let models = if want.domain == "kvm" {
            want.models
        } else {
            [0; 3]
        };
        diff(
            "models yes/no/unknown",
            format!(
                "{:?}",
                [
                    c.cpu_info.usable_models.len(),
                    c.cpu_info.unusable_models.len(),
                    c.cpu_info.unknown_models.len()
                ]
            ),
            format!("{models:?}"),
        );
    } else {
        // Another driver: listed, unavailable with the reason, never used.
        diff(
            "machine status",
            format!("{:?}", m.status),
            format!(
                "{:?}",
                virtsync::derive::caps::GroupStatus {
                    state: GroupState::Unavailable,
                    reasons: vec![format!("driver {} is not supported", want.domain)],
                }
            ),
        );
        diff(
            "secure boot",
            format!("{:?}", c.security_info.secure_boot),
            "None".into(),
        );
        diff(
            "guest machine",
            format!("{:?}", c.virt_info.guest_machine),
            "None".into(),
        );
        let s = &c.security_info;
        diff(
            "sev/es/snp/sgx/tdx/tpm",
            format!("{:?}", security_of(&s.sev, &s.sgx, s.tdx, &s.tpm)),
            format!("{:?}", [None::<bool>; 6]),
        );
    }
}

fn check_caps(path: &Path, failures: &mut Vec<String>) {
    let file = name(path);
    let xml = read(path);
    let want = read_caps(&xml);
    let doc = match parse_capabilities(&xml) {
        Ok(d) => d,
        Err(e) => {
            failures.push(format!("{file}: refused: {e}"));
            return;
        }
    };
    let mut diff = |what: &str, got: String, want: String| {
        if got != want {
            failures.push(format!("{file}: {what}: parser {got}, document {want}"));
        }
    };
    diff(
        "arch",
        format!("{:?}", doc.arch),
        format!("{:?}", want.arch),
    );
    diff(
        "cpu pages",
        format!("{:?}", doc.page_sizes_kib),
        format!("{:?}", want.cpu_pages),
    );
    diff(
        "topology",
        format!(
            "{:?}",
            doc.topology
                .as_ref()
                .map(|t| [t.sockets, t.dies, t.clusters, t.cores, t.threads])
        ),
        format!("{:?}", want.topology),
    );
    diff(
        "cells",
        doc.numa_cells.len().to_string(),
        want.cells.to_string(),
    );
    diff(
        "cell pages",
        format!(
            "{:?}",
            doc.numa_cells
                .iter()
                .map(|c| c.pages.iter().map(|p| (p.size_kib, p.count)).collect())
                .collect::<Vec<Vec<_>>>()
        ),
        format!("{:?}", want.cell_pages),
    );
    diff(
        "guests",
        doc.guests.len().to_string(),
        want.guests.to_string(),
    );

    let c: HostCapabilities = build_capabilities(&input(xml.clone(), vec![]));
    let logical = if want.cell_cpus > 0 {
        Some(want.cell_cpus as u32)
    } else {
        want.topology.map(|t| t.iter().product())
    };
    let mut diff = |what: &str, got: String, want: String| {
        if got != want {
            failures.push(format!("{file}: built {what}: {got}, document {want}"));
        }
    };
    diff(
        "page sizes",
        format!("{:?}", c.memory_info.page_sizes_kib),
        format!("{:?}", want.all_pages),
    );
    diff(
        "hugepage sizes",
        format!("{:?}", c.memory_info.hugepage_sizes_kib),
        format!("{:?}", want.all_pages.iter().skip(1).collect::<Vec<_>>()),
    );
    diff(
        "logical cpus",
        format!("{:?}", c.cpu_info.logical_cpus),
        format!("{logical:?}"),
    );
    diff(
        "cells",
        c.cpu_info.numa_cells.len().to_string(),
        want.cells.to_string(),
    );
    diff(
        "arch",
        format!("{:?}", c.host_info.arch),
        format!("{:?}", want.arch),
    );
}

#[test]
fn every_document_of_the_corpus() {
    // Only the four folders (and the notes) are there: a new folder is not skipped
    // silently.
    let mut entries: Vec<String> = std::fs::read_dir(root())
        .unwrap()
        .map(|e| name(&e.unwrap().path()))
        .collect();
    entries.sort();
    let mut expected: Vec<String> = KINDS
        .iter()
        .map(|k| k.to_string())
        .chain(["LICENSE-NOTE.md".into(), "SOURCES.md".into()])
        .collect();
    expected.sort();
    assert_eq!(entries, expected);

    let mut failures = Vec::new();
    let mut nulls = [0; 7];
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut on_disk = 0;
    for kind in KINDS {
        let list = files(kind);
        on_disk += list.len();
        for path in &list {
            let file = name(path);
            if let Some((_, why)) = REFUSED.iter().find(|(f, _)| *f == file) {
                let refused = if kind == "domaincapsdata" {
                    parse_domain_capabilities(&read(path)).is_err()
                } else {
                    parse_capabilities(&read(path)).is_err()
                };
                assert!(refused, "{file} was expected to be refused: {why}");
            } else if kind == "domaincapsdata" {
                check_domcaps(path, &mut failures, &mut nulls);
            } else {
                check_caps(path, &mut failures);
            }
            *counts.entry(kind).or_default() += 1;
        }
    }
    for (kind, n) in &counts {
        println!("{kind}: {n} documents");
    }
    let total: usize = counts.values().sum();
    println!("total: {total} documents, {} failures", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(total, on_disk);
    // The corpus as copied (SOURCES.md): 61 + 4 + 7 + 11.
    assert_eq!(
        KINDS.map(|k| counts[k]),
        [61, 4, 7, 11],
        "the corpus changed: update SOURCES.md"
    );
    // libvirt 9.0 writes <sev> and <sgx> into every document (supported='no' mostly) but
    // no <launchSecurity> or <tdx>: SEV-SNP and TDX are null in all 61, never false;
    // bhyve, xen and the empty document list no <tpm>.
    println!("null {SECURITY:?}, host-model: {nulls:?}");
    assert_eq!(nulls, [0, 0, 61, 0, 61, 6, 0]);
}

/// The x86_64 q35 documents offer secure boot (the loader's secure enum lists yes); the
/// default machine's (pc) do not and are not used as the guests' machine when a q35
/// document is given, whatever the order.
#[test]
fn q35_not_the_default_machine() {
    let dir = root().join("domaincapsdata");
    let q35: Vec<PathBuf> = files("domaincapsdata")
        .into_iter()
        .filter(|p| {
            let n = name(p);
            n.starts_with("qemu_") && n.ends_with("-q35.x86_64.xml")
        })
        .collect();
    assert_eq!(q35.len(), 11);
    let mut pairs = 0;
    for path in &q35 {
        let file = name(path);
        let xml = read(path);
        let want = read_dc(&xml);
        let secure = enum_of(
            Document::parse(&xml)
                .unwrap()
                .root_element()
                .children()
                .find(|c| c.has_tag_name("os"))
                .and_then(|o| child(o, "loader")),
            "secure",
        );
        assert!(secure.iter().any(|v| v == "yes"), "{file}");
        assert_eq!(want.secure_boot, Some(true), "{file}");
        let version = file
            .trim_start_matches("qemu_")
            .trim_end_matches("-q35.x86_64.xml");
        let default = dir.join(format!("qemu_{version}.x86_64.xml"));
        let pc_xml = read(&default);
        let pc = read_dc(&pc_xml);
        assert_eq!(pc.secure_boot, Some(false), "{}", name(&default));
        assert!(pc.machine.as_deref().unwrap().starts_with("pc-i440fx-"));
        for (domcaps, guest) in [
            (
                vec![
                    answer("kvm", None, pc_xml.clone()),
                    answer("kvm", Some("q35"), xml.clone()),
                ],
                Some("q35"),
            ),
            (
                vec![
                    answer("kvm", Some("q35"), xml.clone()),
                    answer("kvm", None, pc_xml.clone()),
                ],
                None,
            ),
        ] {
            let mut i = input(host_caps("x86_64"), domcaps);
            i.guest_machine = guest.map(str::to_string);
            let c = build_capabilities(&i);
            let g = c.virt_info.guest_machine.clone().unwrap();
            assert_eq!(g.name, "q35", "{file}");
            assert_eq!(g.canonical, want.machine, "{file}");
            assert_eq!(c.security_info.secure_boot, Some(true), "{file}");
            assert_eq!(c.virt_info.max_vcpus, want.vcpu_max, "{file}");
            assert!(c.virt_info.max_vcpus > pc.vcpu_max, "{file}");
            assert!(
                !c.storage_info.disk_buses.iter().any(|b| b == "ide"),
                "{file}"
            );
            assert_eq!(c.virt_info.machines.len(), 2);
        }
        pairs += 1;
    }
    assert_eq!(pairs, 11);
}

/// aarch64: `virt` (512 vCPUs), not libvirt 9.0's default `integratorcp` (1 vCPU); every
/// model "unknown", none "unusable". ppc64's INT_MAX is no limit.
#[test]
fn aarch64_virt_and_ppc64_int_max() {
    let dir = root().join("domaincapsdata");
    let mut n = 0;
    for path in files("domaincapsdata") {
        let file = name(&path);
        let Some(version) = file
            .strip_prefix("qemu_")
            .and_then(|f| f.strip_suffix("-virt.aarch64.xml"))
        else {
            continue;
        };
        let virt = read(&path);
        let default = read(&dir.join(format!("qemu_{version}.aarch64.xml")));
        assert_eq!(read_dc(&default).vcpu_max, Some(1), "{file}");
        let mut i = input(
            host_caps("aarch64"),
            vec![
                answer("kvm", None, default),
                answer("kvm", Some("virt"), virt),
            ],
        );
        i.guest_machine = Some("virt".into());
        let c = build_capabilities(&i);
        assert_eq!(c.virt_info.max_vcpus, Some(512), "{file}");
        assert_eq!(
            c.virt_info.guest_machine.as_ref().map(|g| g.name.as_str()),
            Some("virt")
        );
        assert!(c.cpu_info.unusable_models.is_empty(), "{file}");
        assert!(!c.cpu_info.unknown_models.is_empty(), "{file}");
        n += 1;
    }
    assert_eq!(n, 6);
    let mut int_max = 0;
    for path in files("domaincapsdata") {
        let xml = read(&path);
        if read_dc(&xml).vcpu_max != Some(2_147_483_647) {
            continue;
        }
        let c = build_capabilities(&input(host_caps("ppc64"), vec![answer("kvm", None, xml)]));
        assert_eq!(c.virt_info.max_vcpus, None, "{}", name(&path));
        assert_eq!(
            c.virt_info.machines[0].status.reasons,
            vec!["vcpu max 2147483647: no limit stated"]
        );
        int_max += 1;
    }
    assert_eq!(int_max, 3);
}
