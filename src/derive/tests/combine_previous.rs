//! `observe`: what is kept from the previous observation.

use std::sync::Arc;

use super::combine::{key, vm_part, vmi_part};
use crate::derive::{VmInput, VmiInput, observe};
use crate::model::{LegacyOrigin, VmStatus};

#[test]
fn unreported_runtime_fields_keep_the_same_vmis_previous_values() {
    let first = vmi_part("vmi-1", false);
    let mut prev = observe(&key(), VmInput::Unknown, VmiInput::Present(&first), None);
    let mut prev_rt = (*prev.record.runtime_details.clone().unwrap()).clone();
    prev_rt.guest_os_id = Some("centos".into());
    prev_rt.hypervisor_type = Some("kvm".into());
    prev.record.runtime_details = Some(Arc::new(prev_rt));

    // Same VMI, the new event lacks guest_os_id and primary_ip.
    let mut next = vmi_part("vmi-1", false);
    Arc::make_mut(&mut next.runtime).primary_ip = None;
    Arc::make_mut(&mut next.runtime).phase = Some("Paused".into());
    let o = observe(
        &key(),
        VmInput::Unknown,
        VmiInput::Present(&next),
        Some(&prev),
    );
    let rt = o.record.runtime_details.unwrap();
    assert_eq!(rt.guest_os_id.as_deref(), Some("centos"));
    assert_eq!(rt.primary_ip.as_deref(), Some("10.0.0.1"));
    assert_eq!(rt.hypervisor_type.as_deref(), Some("kvm"));
    assert_eq!(rt.phase.as_deref(), Some("Paused"), "reported values win");

    // A new VMI (another uid) starts from what it reports.
    let other = {
        let mut p = vmi_part("vmi-2", false);
        Arc::make_mut(&mut p.runtime).primary_ip = None;
        p
    };
    let o = observe(
        &key(),
        VmInput::Unknown,
        VmiInput::Present(&other),
        Some(&prev),
    );
    let rt = o.record.runtime_details.unwrap();
    assert_eq!(rt.guest_os_id, None);
    assert_eq!(rt.primary_ip, None);

    // A VMI without uid never matches.
    let mut anon = vmi_part("x", false);
    anon.uid = None;
    Arc::make_mut(&mut anon.runtime).primary_ip = None;
    let mut prev_anon = prev.clone();
    prev_anon.versions.vmi_uid = None;
    let o = observe(
        &key(),
        VmInput::Unknown,
        VmiInput::Present(&anon),
        Some(&prev_anon),
    );
    assert_eq!(o.record.runtime_details.unwrap().primary_ip, None);
}

#[test]
fn guest_os_is_never_replaced_by_an_unknown_value() {
    let prev = observe(
        &key(),
        VmInput::Unknown,
        VmiInput::Present(&vmi_part("vmi-1", false)),
        None,
    );
    assert_eq!(
        prev.record.guest_os.as_deref(),
        Some("CentOS Linux 7 (Core)")
    );

    // The agent went away: the VMI reports no OS.
    let mut quiet = vmi_part("vmi-1", false);
    quiet.guest_os = None;
    let o = observe(
        &key(),
        VmInput::Unknown,
        VmiInput::Present(&quiet),
        Some(&prev),
    );
    assert_eq!(o.record.guest_os.as_deref(), Some("CentOS Linux 7 (Core)"));
    assert_eq!(o.versions.legacy_origin, LegacyOrigin::Vmi);

    // Stopped, and the VM has no annotation: the known value stays.
    let mut bare = vm_part(VmStatus::PoweredOff, false);
    bare.annotation_os = None;
    let o = observe(
        &key(),
        VmInput::Present(&bare),
        VmiInput::Unknown,
        Some(&prev),
    );
    assert_eq!(o.record.guest_os.as_deref(), Some("CentOS Linux 7 (Core)"));
    assert_eq!(o.versions.legacy_origin, LegacyOrigin::Vm);

    // With an annotation, the stopped VM's annotation is written.
    let annotated = vm_part(VmStatus::PoweredOff, false);
    let o = observe(
        &key(),
        VmInput::Present(&annotated),
        VmiInput::Unknown,
        Some(&prev),
    );
    assert_eq!(o.record.guest_os.as_deref(), Some("rhel9"));
}

#[test]
fn instancetype_vm_leaves_legacy_columns_untouched() {
    let mut vm = vm_part(VmStatus::PoweredOff, false);
    vm.spec_cpu_count = None;
    vm.spec_memory_mb = None;
    let o = observe(&key(), VmInput::Present(&vm), VmiInput::Unknown, None);
    assert_eq!(o.record.cpu_count, None);
    assert_eq!(o.record.memory_mb, None);
    assert_eq!(o.record.guest_os.as_deref(), Some("rhel9"));
    assert_eq!(o.record.runtime_details, None);
    assert!(!o.versions.runtime_unknown);
}
