//! Machine selection: every domain-capabilities answer read and checked against the host
//! ([`entries`]), and the ones that give the host-level values ([`choose`]).

use crate::derive::caps::domcaps::{DomCapsDoc, no_limit, parse_domain_capabilities};
use crate::derive::caps::host::CapsDoc;
use crate::derive::caps::model::*;

use super::{DiscoveryInput, DomCapsAnswer, parsed};

/// One domain-capabilities answer, read and checked.
pub(super) struct Entry<'a> {
    answer: &'a DomCapsAnswer,
    /// `"domain capabilities (kvm, q35)"`: the input named in reasons.
    label: String,
    /// The document when it may describe this host; else why not.
    doc: Result<DomCapsDoc, String>,
    pub(super) caps: MachineCaps,
}

impl Entry<'_> {
    fn is(&self, machine: &str) -> bool {
        self.answer.machine.as_deref() == Some(machine)
            || self.caps.machine == machine
            || self.caps.canonical.as_deref() == Some(machine)
    }

    pub(super) fn usable(&self) -> Option<&DomCapsDoc> {
        self.doc.as_ref().ok()
    }

    pub(super) fn reason(&self) -> Option<String> {
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

pub(super) fn entries<'a>(input: &'a DiscoveryInput, caps: Option<&CapsDoc>) -> Vec<Entry<'a>> {
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
                    .and_then(|m| caps?.canonical_machine(host_arch, m).map(str::to_owned))
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
pub(super) struct Pick<'a> {
    pub(super) doc: Option<&'a DomCapsDoc>,
    pub(super) reasons: Vec<String>,
}

/// The guests' machine: its kvm document, else its qemu (TCG) one with a reason; and
/// the kvm document alone (for the host-model CPU, CPU models and nested virt).
pub(super) struct Chosen<'a> {
    pub(super) primary: Pick<'a>,
    pub(super) kvm: Pick<'a>,
    pub(super) machine: Option<MachineRef>,
    /// Indexes of the entries of the chosen machine.
    pub(super) members: Vec<usize>,
}

pub(super) fn choose<'a>(
    entries: &'a [Entry<'a>],
    guest: Option<&str>,
    none_reason: &str,
) -> Chosen<'a> {
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
