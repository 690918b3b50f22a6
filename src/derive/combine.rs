//! The record for one key from what this daemon knows about the VM and its VMI
//! (docs/ARCHITECTURE.md, "Field rules" and "Fence").

use std::sync::Arc;

use crate::model::{
    LegacyOrigin, Observation, RuntimeDetails, SourceVersions, VmKey, VmRecord, VmStatus,
};

use super::vm::VmPart;
use super::vmi::VmiPart;

/// What this daemon knows about the VM object.
#[derive(Clone, Copy, Debug)]
pub enum VmInput<'a> {
    /// Not watched here (node role) or not seen yet.
    Unknown,
    Present(&'a VmPart),
    /// Deletion confirmed.
    Deleted {
        resource_version: Option<i64>,
    },
}

/// What this daemon knows about the VMI object.
#[derive(Clone, Debug)]
pub enum VmiInput<'a> {
    /// Not watched here (cluster role: the VMI may run on another host).
    Unknown,
    Present(&'a VmiPart),
    /// Confirmed gone (stopped), with the last identity known.
    Gone {
        uid: Option<String>,
        resource_version: Option<i64>,
    },
}

/// Fills the fields `current` does not report with those of `previous`; `current` is
/// copied only when one is filled (it is usually shared with the VMI's part).
fn keep_unreported(current: &mut Arc<RuntimeDetails>, previous: &RuntimeDetails) {
    let p = previous;
    let c = current;
    macro_rules! keep {
        ($($field:ident),*) => {$(
            if c.$field.is_none() && p.$field.is_some() {
                Arc::make_mut(c).$field.clone_from(&p.$field);
            }
        )*};
    }
    keep!(
        cpu_cores,
        cpu_sockets,
        cpu_threads,
        cpu_model,
        memory_guest,
        memory_current,
        memory_requested,
        primary_ip,
        network_interfaces,
        guest_os_id,
        guest_os_name,
        guest_os_version,
        guest_os_kernel,
        phase,
        node_name,
        qos_class,
        machine_type,
        architecture,
        volume_details,
        agent_connected,
        hypervisor_type,
        vmi_updated_at
    );
}

/// The observation for `key`:
/// - status: the VM's (DELETING while deleting), DELETED once deleted, none if unknown;
/// - runtime: from a live VMI (present, not Succeeded/Failed), unreported fields kept
///   from `previous` when it came from the same VMI uid; cleared when the VMI is final or
///   gone, or unknown while the VM is deleted or has no running VMI (then fenced by the
///   VM's resourceVersion); otherwise unknown (`runtime_unknown`, left alone);
/// - legacy (cpu_count, memory_mb, guest_os): from a live VMI, else from the VM spec
///   when the VM has no running VMI, else not written; guest_os never replaced by an
///   unknown value.
pub fn observe(
    key: &VmKey,
    vm: VmInput<'_>,
    vmi: VmiInput<'_>,
    previous: Option<&Observation>,
) -> Observation {
    let mut record = VmRecord::new(key);
    let mut versions = SourceVersions::default();
    let previous_guest_os = previous.and_then(|p| p.record.guest_os.clone());

    match vm {
        VmInput::Present(p) => {
            record.status = Some(if p.deleting {
                VmStatus::Deleting
            } else {
                p.status
            });
            versions.vm_resource_version = p.resource_version;
        }
        VmInput::Deleted { resource_version } => {
            record.status = Some(VmStatus::Deleted);
            versions.vm_resource_version = resource_version;
        }
        VmInput::Unknown => {
            // Not known here right now (node role, or the cluster role not held yet):
            // what the previous observation said stands, so a restart or a role change
            // writes nothing unchanged (a new holder's anti-entropy checks the rows).
            if let Some(prev) = previous {
                record.status = prev.record.status;
                versions.vm_resource_version = prev.versions.vm_resource_version;
            }
        }
    }

    match &vmi {
        VmiInput::Present(p) => {
            versions.vmi_uid.clone_from(&p.uid);
            versions.vmi_resource_version = p.resource_version;
        }
        VmiInput::Gone {
            uid,
            resource_version,
        } => {
            versions.vmi_uid.clone_from(uid);
            versions.vmi_resource_version = *resource_version;
        }
        VmiInput::Unknown => {}
    }

    let live = match &vmi {
        VmiInput::Present(p) if !p.final_phase => Some(*p),
        _ => None,
    };
    // The VM alone says no VMI runs.
    let vm_says_none = match vm {
        VmInput::Deleted { .. } => true,
        VmInput::Present(p) => !p.has_running_vmi,
        VmInput::Unknown => false,
    };

    match (live, &vmi) {
        (Some(p), _) => {
            let mut details = Arc::clone(&p.runtime);
            if let Some(prev) = previous {
                let same_vmi = p.uid.is_some() && prev.versions.vmi_uid == p.uid;
                if let (true, Some(prev_details)) = (same_vmi, &prev.record.runtime_details) {
                    keep_unreported(&mut details, prev_details);
                }
            }
            record.runtime_details = Some(details);
        }
        (None, VmiInput::Present(_) | VmiInput::Gone { .. }) => record.runtime_details = None,
        (None, VmiInput::Unknown) if vm_says_none => {
            record.runtime_details = None;
            // resourceVersions are cluster-wide etcd revisions: the VM's fences the
            // clearing against newer writes from a VMI.
            versions.vmi_uid = None;
            versions.vmi_resource_version = versions.vm_resource_version;
        }
        (None, VmiInput::Unknown) => versions.runtime_unknown = true,
    }

    let no_vmi = match &vmi {
        VmiInput::Gone { .. } => true,
        VmiInput::Present(p) => p.final_phase,
        VmiInput::Unknown => vm_says_none,
    };
    match (live, vm) {
        (Some(p), _) => {
            record.cpu_count = p.cpu_count;
            record.memory_mb = p.memory_mb;
            record.guest_os = p.guest_os.clone().or(previous_guest_os);
            versions.legacy_origin = LegacyOrigin::Vmi;
        }
        (None, VmInput::Present(p)) if no_vmi => {
            record.cpu_count = p.spec_cpu_count;
            record.memory_mb = p.spec_memory_mb;
            record.guest_os = p.annotation_os.clone().or(previous_guest_os);
            versions.legacy_origin = LegacyOrigin::Vm;
        }
        // Spec values from an earlier VM observation stand while the VM is unknown here.
        (None, VmInput::Unknown) => {
            if let Some(prev) = previous.filter(|p| p.versions.legacy_origin == LegacyOrigin::Vm) {
                record.cpu_count = prev.record.cpu_count;
                record.memory_mb = prev.record.memory_mb;
                record.guest_os.clone_from(&prev.record.guest_os);
                versions.legacy_origin = LegacyOrigin::Vm;
            }
        }
        _ => {}
    }

    Observation { record, versions }
}
