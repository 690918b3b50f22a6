//! Tri-states about the host CPU and memory, each with its source (never "no" when the
//! source is silent): vmx/svm, nested virtualization and KSM; and the free pages per NUMA
//! cell.

use crate::derive::caps::host::CapsDoc;
use crate::derive::caps::model::*;

use super::{CellFreePages, DiscoveryInput};

/// x86 CPU models whose definition includes `svm`, following libvirt's cpu_map
/// (`src/cpu_map/x86_*.xml`): phenom, qemu64, Opteron_G2–G5, every EPYC model
/// (EPYC, -IBPB, -Rome, -Milan, -Genoa, -Turin) and Hygon Dhyana, with their `-vN`
/// versions. Not athlon or Opteron_G1. No model there includes `vmx` (core2duo and
/// kvm64 list only `vmx-*` controls), so `vmx` is never implied by a model name.
pub(in crate::derive::caps) fn model_includes(model: &str, feature: &str) -> bool {
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
pub(super) fn virt_extension(
    caps: &CapsDoc,
    host_model: Option<&HostModelCpu>,
    name: &str,
) -> TriFact {
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
pub(super) fn nested_virt(
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

pub(super) fn ksm(run: &Result<String, String>) -> TriFact {
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
pub(super) fn with_free_pages(
    cells: &[NumaCell],
    free: &Result<Vec<CellFreePages>, String>,
) -> Vec<NumaCell> {
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
