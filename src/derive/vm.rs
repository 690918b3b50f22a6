//! A `VirtualMachine` → its power status and the spec values used while no VMI runs.

use crate::model::{VmKey, VmStatus, parse_resource_version};

use super::DeriveError;
use super::objects::Vm;
use super::status::{should_run, vm_status};
use super::vmi::{cpu_product, first_memory_mib, known_os, non_empty, object_key};

/// Annotation with the VM's operating system (OpenShift templates), e.g. `rhel9`.
pub const OS_ANNOTATION: &str = "vm.kubevirt.io/os";

/// What one VM object says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmPart {
    pub key: VmKey,
    pub uid: Option<String>,
    pub resource_version: Option<i64>,
    /// DELETING when `deleting`.
    pub status: VmStatus,
    /// A printableStatus the table does not know (status is then UNKNOWN): log it once.
    pub unknown_printable_status: Option<String>,
    /// `status.created` is true and printableStatus is not `Stopped` (KubeVirt shows
    /// Stopped while the VMI is Succeeded or Failed).
    pub has_running_vmi: bool,
    /// From the template's `domain.cpu`; `None` when `spec.instancetype` is set and the
    /// template gives no cpu (the instancetype's value is not resolved: left untouched).
    pub spec_cpu_count: Option<i64>,
    /// From the template's `domain.memory.guest`, else `resources.requests.memory`.
    pub spec_memory_mb: Option<i64>,
    /// The `vm.kubevirt.io/os` annotation of the VM, else of its template.
    pub annotation_os: Option<String>,
    pub deleting: bool,
    /// Values that were dropped (invalid quantities, out-of-range numbers).
    pub warnings: Vec<String>,
}

pub fn derive_vm(vm: &Vm) -> Result<VmPart, DeriveError> {
    let key = object_key(&vm.metadata)?;
    let mut warnings = Vec::new();
    let deleting = non_empty(&vm.metadata.deletion_timestamp).is_some();
    let printable = vm.status.printable_status.as_deref();
    let runs = should_run(vm.spec.running, vm.spec.run_strategy.as_deref());
    let mapping = vm_status(printable, runs, deleting);
    let has_running_vmi =
        vm.status.created == Some(true) && printable.map(str::trim) != Some("Stopped");

    let domain = &vm.spec.template.spec.domain;
    let instancetype = vm.spec.instancetype.is_some();
    let spec_cpu_count = match &domain.cpu {
        Some(c) => cpu_product(c.cores, c.sockets, c.threads)
            .map_err(|w| warnings.push(w))
            .ok(),
        None if instancetype => None,
        // KubeVirt's default topology: one core, one socket, one thread.
        None => Some(1),
    };
    let spec_memory_mb = first_memory_mib(
        &[
            (
                "spec.template.spec.domain.memory.guest",
                domain.memory.guest.as_ref(),
            ),
            (
                "spec.template.spec.domain.resources.requests.memory",
                domain.resources.requests.memory.as_ref(),
            ),
        ],
        &mut warnings,
    );
    let annotation_os =
        known_os(&vm.metadata.annotations.get(OS_ANNOTATION).cloned()).or_else(|| {
            known_os(
                &vm.spec
                    .template
                    .metadata
                    .annotations
                    .get(OS_ANNOTATION)
                    .cloned(),
            )
        });

    Ok(VmPart {
        key,
        uid: non_empty(&vm.metadata.uid),
        resource_version: vm
            .metadata
            .resource_version
            .as_deref()
            .and_then(parse_resource_version),
        status: mapping.status,
        unknown_printable_status: mapping.unrecognized,
        has_running_vmi,
        spec_cpu_count,
        spec_memory_mb,
        annotation_os,
        deleting,
        warnings,
    })
}
