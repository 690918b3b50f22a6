//! `observe`: every branch, as a table.

use crate::derive::{VmInput, VmPart, VmiInput, VmiPart, observe};
use crate::model::{LegacyOrigin, Observation, RuntimeDetails, VmKey, VmStatus};

fn key() -> VmKey {
    VmKey::new("ns", "vm")
}

fn vm_part(status: VmStatus, has_running_vmi: bool) -> VmPart {
    VmPart {
        key: key(),
        uid: Some("vm-uid".into()),
        resource_version: Some(100),
        status,
        unknown_printable_status: None,
        has_running_vmi,
        spec_cpu_count: Some(2),
        spec_memory_mb: Some(4096),
        annotation_os: Some("rhel9".into()),
        deleting: false,
        warnings: vec![],
    }
}

fn vmi_part(uid: &str, final_phase: bool) -> VmiPart {
    VmiPart {
        key: key(),
        uid: Some(uid.into()),
        resource_version: Some(200),
        node: Some("n1".into()),
        final_phase,
        cpu_count: Some(4),
        memory_mb: Some(8192),
        guest_os: Some("CentOS Linux 7 (Core)".into()),
        runtime: RuntimeDetails {
            phase: Some(if final_phase { "Succeeded" } else { "Running" }.into()),
            primary_ip: Some("10.0.0.1".into()),
            ..RuntimeDetails::default()
        },
        active_pods: vec![],
        runtime_user: Some(107),
        warnings: vec![],
    }
}

#[derive(Debug, PartialEq)]
enum Rt {
    Live,
    Cleared,
    Unknown,
}

/// (status, runtime, cpu, memory, guest_os, origin, vm rv, vmi uid, vmi rv)
type Expect = (
    Option<VmStatus>,
    Rt,
    Option<i64>,
    Option<i64>,
    Option<&'static str>,
    LegacyOrigin,
    Option<i64>,
    Option<&'static str>,
    Option<i64>,
);

fn summary(o: &Observation) -> Expect {
    let rt = match (&o.record.runtime_details, o.versions.runtime_unknown) {
        (Some(_), false) => Rt::Live,
        (None, false) => Rt::Cleared,
        (None, true) => Rt::Unknown,
        (Some(_), true) => panic!("runtime details and runtime_unknown together"),
    };
    let leak = |s: &Option<String>| s.clone().map(|s| &*Box::leak(s.into_boxed_str()));
    (
        o.record.status,
        rt,
        o.record.cpu_count,
        o.record.memory_mb,
        leak(&o.record.guest_os),
        o.versions.legacy_origin,
        o.versions.vm_resource_version,
        leak(&o.versions.vmi_uid),
        o.versions.vmi_resource_version,
    )
}

#[test]
fn every_branch() {
    use LegacyOrigin::{Vm, Vmi};
    use VmStatus::*;
    let on = vm_part(PoweredOn, true);
    let stopped = vm_part(PoweredOff, false);
    let mut deleting = vm_part(PoweredOn, true);
    deleting.deleting = true;
    let live = vmi_part("vmi-1", false);
    let done = vmi_part("vmi-1", true);
    let gone = || VmiInput::Gone {
        uid: Some("vmi-0".into()),
        resource_version: Some(300),
    };
    let deleted = VmInput::Deleted {
        resource_version: Some(400),
    };
    let os = Some("CentOS Linux 7 (Core)");
    let cases: Vec<(&str, VmInput<'_>, VmiInput<'_>, Expect)> = vec![
        (
            "both live",
            VmInput::Present(&on),
            VmiInput::Present(&live),
            (
                Some(PoweredOn),
                Rt::Live,
                Some(4),
                Some(8192),
                os,
                Vmi,
                Some(100),
                Some("vmi-1"),
                Some(200),
            ),
        ),
        (
            "node role",
            VmInput::Unknown,
            VmiInput::Present(&live),
            (
                None,
                Rt::Live,
                Some(4),
                Some(8192),
                os,
                Vmi,
                None,
                Some("vmi-1"),
                Some(200),
            ),
        ),
        (
            "deleting VM",
            VmInput::Present(&deleting),
            VmiInput::Present(&live),
            (
                Some(Deleting),
                Rt::Live,
                Some(4),
                Some(8192),
                os,
                Vmi,
                Some(100),
                Some("vmi-1"),
                Some(200),
            ),
        ),
        (
            "deleted VM, live VMI",
            deleted,
            VmiInput::Present(&live),
            (
                Some(Deleted),
                Rt::Live,
                Some(4),
                Some(8192),
                os,
                Vmi,
                Some(400),
                Some("vmi-1"),
                Some(200),
            ),
        ),
        (
            "final VMI, VM known",
            VmInput::Present(&stopped),
            VmiInput::Present(&done),
            (
                Some(PoweredOff),
                Rt::Cleared,
                Some(2),
                Some(4096),
                Some("rhel9"),
                Vm,
                Some(100),
                Some("vmi-1"),
                Some(200),
            ),
        ),
        (
            "final VMI, node role",
            VmInput::Unknown,
            VmiInput::Present(&done),
            (
                None,
                Rt::Cleared,
                None,
                None,
                None,
                Vm,
                None,
                Some("vmi-1"),
                Some(200),
            ),
        ),
        (
            "VMI gone, VM known",
            VmInput::Present(&stopped),
            gone(),
            (
                Some(PoweredOff),
                Rt::Cleared,
                Some(2),
                Some(4096),
                Some("rhel9"),
                Vm,
                Some(100),
                Some("vmi-0"),
                Some(300),
            ),
        ),
        (
            "VMI gone, VM still claims one",
            VmInput::Present(&on),
            gone(),
            (
                Some(PoweredOn),
                Rt::Cleared,
                Some(2),
                Some(4096),
                Some("rhel9"),
                Vm,
                Some(100),
                Some("vmi-0"),
                Some(300),
            ),
        ),
        (
            "VMI gone, node role",
            VmInput::Unknown,
            gone(),
            (
                None,
                Rt::Cleared,
                None,
                None,
                None,
                Vm,
                None,
                Some("vmi-0"),
                Some(300),
            ),
        ),
        (
            "VMI gone, VM deleted",
            deleted,
            gone(),
            (
                Some(Deleted),
                Rt::Cleared,
                None,
                None,
                None,
                Vm,
                Some(400),
                Some("vmi-0"),
                Some(300),
            ),
        ),
        (
            "cluster role, stopped VM",
            VmInput::Present(&stopped),
            VmiInput::Unknown,
            (
                Some(PoweredOff),
                Rt::Cleared,
                Some(2),
                Some(4096),
                Some("rhel9"),
                Vm,
                Some(100),
                None,
                Some(100),
            ),
        ),
        (
            "cluster role, deleted VM",
            deleted,
            VmiInput::Unknown,
            (
                Some(Deleted),
                Rt::Cleared,
                None,
                None,
                None,
                Vm,
                Some(400),
                None,
                Some(400),
            ),
        ),
        (
            "cluster role, running VM",
            VmInput::Present(&on),
            VmiInput::Unknown,
            (
                Some(PoweredOn),
                Rt::Unknown,
                None,
                None,
                None,
                Vm,
                Some(100),
                None,
                None,
            ),
        ),
        (
            "nothing known",
            VmInput::Unknown,
            VmiInput::Unknown,
            (None, Rt::Unknown, None, None, None, Vm, None, None, None),
        ),
    ];
    for (name, vm, vmi, expected) in cases {
        let o = observe(&key(), vm, vmi, None);
        assert_eq!(summary(&o), expected, "{name}");
        assert_eq!(o.record.key(), key());
    }
}

#[test]
fn unreported_runtime_fields_keep_the_same_vmis_previous_values() {
    let first = vmi_part("vmi-1", false);
    let mut prev = observe(&key(), VmInput::Unknown, VmiInput::Present(&first), None);
    let mut prev_rt = prev.record.runtime_details.clone().unwrap();
    prev_rt.guest_os_id = Some("centos".into());
    prev_rt.hypervisor_type = Some("kvm".into());
    prev.record.runtime_details = Some(prev_rt);

    // Same VMI, the new event lacks guest_os_id and primary_ip.
    let mut next = vmi_part("vmi-1", false);
    next.runtime.primary_ip = None;
    next.runtime.phase = Some("Paused".into());
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
        p.runtime.primary_ip = None;
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
    anon.runtime.primary_ip = None;
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
