//! `observe`: every branch, as a table.

use std::sync::Arc;

use crate::derive::{VmInput, VmPart, VmiInput, VmiPart, observe};
use crate::model::{LegacyOrigin, Observation, RuntimeDetails, VmKey, VmStatus};

pub(super) fn key() -> VmKey {
    VmKey::new("ns", "vm")
}

pub(super) fn vm_part(status: VmStatus, has_running_vmi: bool) -> VmPart {
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

pub(super) fn vmi_part(uid: &str, final_phase: bool) -> VmiPart {
    VmiPart {
        key: key(),
        uid: Some(uid.into()),
        resource_version: Some(200),
        node: Some("n1".into()),
        final_phase,
        cpu_count: Some(4),
        memory_mb: Some(8192),
        guest_os: Some("CentOS Linux 7 (Core)".into()),
        runtime: Arc::new(RuntimeDetails {
            phase: Some(if final_phase { "Succeeded" } else { "Running" }.into()),
            primary_ip: Some("10.0.0.1".into()),
            ..RuntimeDetails::default()
        }),
        active_pods: vec![],
        runtime_user: Some(107),
        domain: crate::derive::DomainFacts::default(),
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
