//! `virsh domcapabilities` (`virConnectGetDomainCapabilities`) → [`DomCapsDoc`], for both
//! the current schema (libvirt 10/11) and the older one (libvirt 9: empty firmware enum,
//! no launchSecurity element). A yes/no whose element the document lacks is `None`,
//! never `false`.

use super::ParseError;
use super::model::{
    CpuFeature, DomainCapsSummary, HostModelCpu, SevSupport, SgxSection, SgxSupport, TpmSupport,
};
use super::values::{attr_num, child_num, enum_values, expect_root, to_kib};
use super::xml::{self, Element, yes_no};

/// What one domain capabilities document says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomCapsDoc {
    /// `kvm`, `qemu`, …
    pub domain: String,
    pub arch: Option<String>,
    pub machine: Option<String>,
    pub emulator: Option<String>,
    pub max_vcpus: Option<u32>,
    pub firmware: Vec<String>,
    /// The loader's `secure` enum (`yes`, `no`).
    pub loader_secure: Vec<String>,
    /// `yes` in the loader's `secure` enum; `false` when `<os>` or its `<loader>` is
    /// `supported='no'`; `None` when the document is silent (no `<os>`, no `<loader>`, or
    /// a loader without a `secure` enum).
    pub secure_boot: Option<bool>,
    pub host_passthrough: Option<bool>,
    pub host_model: Option<HostModelCpu>,
    /// Custom CPU models by their `usable` attribute: `yes`, `no`, and `unknown` (or
    /// none), in document order.
    pub usable_models: Vec<String>,
    pub unusable_models: Vec<String>,
    pub unknown_models: Vec<String>,
    pub memory_backing_sources: Vec<String>,
    pub disk_devices: Vec<String>,
    pub disk_buses: Vec<String>,
    pub disk_models: Vec<String>,
    pub memballoon: Option<bool>,
    /// `supported: None` without a `<tpm>` device.
    pub tpm: TpmSupport,
    pub interface_backends: Vec<String>,
    pub gic_versions: Vec<String>,
    pub hyperv_features: Vec<String>,
    /// `<sev>`, with `snp` (and `supported` when there is no `<sev>`) from
    /// `<launchSecurity>`; see [`SevSupport`].
    pub sev: SevSupport,
    /// `supported: None` without `<sgx>`.
    pub sgx: SgxSupport,
    pub s390_pv: Option<bool>,
    /// `tdx` among the launchSecurity sectypes or a `<tdx supported='yes'>` feature;
    /// `Some(false)` when either says no; `None` when neither is there.
    pub tdx: Option<bool>,
    /// The sectype enum of a `<launchSecurity supported='yes'>`; empty otherwise.
    pub launch_security_types: Vec<String>,
}

impl DomCapsDoc {
    pub fn summary(&self) -> DomainCapsSummary {
        DomainCapsSummary {
            domain: self.domain.clone(),
            arch: self.arch.clone(),
            machine: self.machine.clone(),
            emulator: self.emulator.clone(),
            max_vcpus: self.max_vcpus.filter(|&n| !no_limit(n)),
            host_passthrough: self.host_passthrough,
            host_model: self.host_model.as_ref().and_then(|m| m.supported),
            usable_models: self.usable_models.len(),
            gic_versions: self.gic_versions.clone(),
            hyperv_features: self.hyperv_features.clone(),
        }
    }
}

/// libvirt's "no limit stated" for `vcpu max` (ppc64 reports INT_MAX): 2^31-1 or more.
pub fn no_limit(max_vcpus: u32) -> bool {
    const INT_MAX: u32 = 2_147_483_647;
    max_vcpus >= INT_MAX
}

/// Parses a `<domainCapabilities>` document.
pub fn parse_domain_capabilities(text: &str) -> Result<DomCapsDoc, ParseError> {
    let root = xml::parse(text)?;
    expect_root(&root, "domainCapabilities")?;
    let mut doc = DomCapsDoc {
        domain: root.child_text("domain").unwrap_or_default().to_string(),
        arch: root.child_text("arch").map(str::to_string),
        machine: root.child_text("machine").map(str::to_string),
        emulator: root.child_text("path").map(str::to_string),
        max_vcpus: match root.child("vcpu") {
            Some(v) => attr_num(v, "max", "vcpu max")?,
            None => None,
        },
        ..DomCapsDoc::default()
    };
    if let Some(os) = root.child("os") {
        doc.firmware = enum_values(Some(os), "firmware");
        let loader = os.child("loader");
        doc.loader_secure = enum_values(loader, "secure");
        let has_secure_enum = loader.is_some_and(|l| has_enum(l, "secure"));
        doc.secure_boot = if os.supported() == Some(false)
            || loader.is_some_and(|l| l.supported() == Some(false))
        {
            Some(false)
        } else if has_secure_enum {
            Some(doc.loader_secure.iter().any(|v| v == "yes"))
        } else {
            None
        };
    }
    if let Some(cpu) = root.child("cpu") {
        read_cpu(cpu, &mut doc);
    }
    doc.memory_backing_sources = enum_values(root.child("memoryBacking"), "sourceType");
    if let Some(devices) = root.child("devices") {
        let disk = devices.child("disk");
        doc.disk_devices = enum_values(disk, "diskDevice");
        doc.disk_buses = enum_values(disk, "bus");
        doc.disk_models = enum_values(disk, "model");
        doc.memballoon = devices.child("memballoon").and_then(Element::supported);
        if let Some(tpm) = devices.child("tpm") {
            doc.tpm = TpmSupport {
                supported: tpm.supported(),
                models: enum_values(Some(tpm), "model"),
                backend_models: enum_values(Some(tpm), "backendModel"),
                versions: enum_values(Some(tpm), "backendVersion"),
            };
        }
        doc.interface_backends = enum_values(devices.child("interface"), "backendType");
    }
    if let Some(features) = root.child("features") {
        read_features(features, &mut doc)?;
    }
    Ok(doc)
}

fn read_cpu(cpu: &Element, doc: &mut DomCapsDoc) {
    for mode in cpu.children_named("mode") {
        match mode.attr("name") {
            Some("host-passthrough") => doc.host_passthrough = mode.supported(),
            Some("host-model") => {
                doc.host_model = Some(HostModelCpu {
                    supported: mode.supported(),
                    model: mode.child_text("model").map(str::to_string),
                    vendor: mode.child_text("vendor").map(str::to_string),
                    features: mode
                        .children_named("feature")
                        .filter_map(|f| {
                            Some(CpuFeature {
                                name: f.attr("name")?.to_string(),
                                policy: f.attr("policy").map(str::to_string),
                            })
                        })
                        .collect(),
                });
            }
            Some("custom") if mode.supported() == Some(true) => {
                for m in mode.children_named("model") {
                    let Some(name) = m.text_trimmed() else {
                        continue;
                    };
                    let list = match m.attr("usable") {
                        Some("yes") => &mut doc.usable_models,
                        Some("no") => &mut doc.unusable_models,
                        _ => &mut doc.unknown_models,
                    };
                    list.push(name.to_string());
                }
            }
            _ => {}
        }
    }
}

fn read_features(features: &Element, doc: &mut DomCapsDoc) -> Result<(), ParseError> {
    if let Some(gic) = features.child("gic") {
        if gic.supported() == Some(true) {
            doc.gic_versions = enum_values(Some(gic), "version");
        }
    }
    if let Some(h) = features.child("hyperv") {
        if h.supported() == Some(true) {
            doc.hyperv_features = enum_values(Some(h), "features");
        }
    }
    // The sectypes `<launchSecurity>` states: none when it is `supported='no'`, its
    // enum when `supported='yes'` gives one; `None` when it is silent.
    let sectypes: Option<Vec<String>> =
        features
            .child("launchSecurity")
            .and_then(|ls| match ls.supported() {
                Some(false) => Some(Vec::new()),
                Some(true) if has_enum(ls, "sectype") => Some(enum_values(Some(ls), "sectype")),
                _ => None,
            });
    let listed = |t: &str| sectypes.as_ref().map(|l| l.iter().any(|x| x == t));
    doc.sev = match features.child("sev") {
        Some(sev) => {
            let supported = sev.supported().or_else(|| listed("sev"));
            let max_es_guests: Option<u32> = child_num(sev, "maxESGuests", "sev maxESGuests")?;
            SevSupport {
                supported,
                cbitpos: child_num(sev, "cbitpos", "sev cbitpos")?,
                reduced_phys_bits: child_num(sev, "reducedPhysBits", "sev reducedPhysBits")?,
                max_guests: child_num(sev, "maxGuests", "sev maxGuests")?,
                max_es_guests,
                es: sev_es(supported, max_es_guests),
                snp: listed("sev-snp"),
            }
        }
        None => {
            let supported = listed("sev");
            SevSupport {
                supported,
                es: sev_es(supported, None),
                snp: listed("sev-snp"),
                ..SevSupport::default()
            }
        }
    };
    if let Some(sgx) = features.child("sgx") {
        doc.sgx = read_sgx(sgx)?;
    }
    doc.s390_pv = features.child("s390-pv").and_then(Element::supported);
    let tdx_feature = features.child("tdx").and_then(Element::supported);
    let tdx_listed = listed("tdx");
    doc.tdx = if tdx_feature == Some(true) || tdx_listed == Some(true) {
        Some(true)
    } else {
        tdx_feature.or(tdx_listed)
    };
    doc.launch_security_types = sectypes.unwrap_or_default();
    Ok(())
}

/// SEV-ES: `maxESGuests` > 0 when SEV is supported; no when SEV is not; unknown when
/// SEV's support is, or a supported SEV states no `maxESGuests`.
fn sev_es(supported: Option<bool>, max_es_guests: Option<u32>) -> Option<bool> {
    match supported {
        Some(false) => Some(false),
        Some(true) => max_es_guests.map(|n| n > 0),
        None => None,
    }
}

/// `el` has an `<enum name='NAME'>`.
fn has_enum(el: &Element, name: &str) -> bool {
    el.children_named("enum")
        .any(|e| e.attr("name") == Some(name))
}

fn read_sgx(sgx: &Element) -> Result<SgxSupport, ParseError> {
    let flag = |name: &str| sgx.child_text(name).and_then(yes_no);
    let epc_size_kib = match sgx.child("section_size").or_else(|| sgx.child("epc_size")) {
        Some(s) => Some(to_kib(&s.text, s.attr("unit"), 1024, "sgx section_size")?),
        None => None,
    };
    let mut sections = Vec::new();
    if let Some(list) = sgx.child("sections") {
        for s in list.children_named("section") {
            let Some(size) = s.attr("size") else { continue };
            sections.push(SgxSection {
                node: attr_num(s, "node", "sgx section node")?,
                size_kib: to_kib(size, s.attr("unit"), 1024, "sgx section size")?,
            });
        }
    }
    Ok(SgxSupport {
        supported: sgx.supported(),
        flc: flag("flc"),
        sgx1: flag("sgx1"),
        sgx2: flag("sgx2"),
        epc_size_kib,
        sections,
    })
}
