//! Every KubeVirt fixture in tests/fixtures/kubevirt through decode and derive.

use serde_json::{Value, json};

use crate::derive::{
    DecodeError, VmInput, VmiInput, decode_vm, decode_vm_slice, decode_vmi, decode_vmi_slice,
    derive_vm, derive_vmi, observe,
};
use crate::model::{VmKey, VmStatus};

pub(super) fn fixture(name: &str) -> Value {
    crate::test_fixtures::kubevirt(name)
}

#[test]
fn real_cnv_vmi_gives_the_values_in_the_file() {
    let vmi = decode_vmi(&fixture("vmi-running-cnv.json")).unwrap();
    let p = derive_vmi(&vmi).unwrap();
    assert_eq!(p.key, VmKey::new("openshift-cnv", "centos7-gray-owl-35"));
    assert_eq!(
        p.uid.as_deref(),
        Some("2e432308-e94c-4866-a86a-388ce0b6cbc1")
    );
    assert_eq!(p.resource_version, Some(11_848_215));
    let target = crate::derive::domain_target(&p, "sno-0-0").unwrap();
    assert_eq!(
        target.active_pods,
        vec![(
            "84b1b342-6411-4292-a7b4-f0e6bd6873c8".to_owned(),
            "sno-0-0".to_owned()
        )]
    );
    assert_eq!((target.runtime_user, target.paused), (Some(107), false));
    assert_eq!(target.migrated_in_at, None, "migrationState without an end");
    assert_eq!(p.node.as_deref(), Some("sno-0-0"));
    assert!(!p.final_phase);
    assert_eq!(p.cpu_count, Some(1));
    assert_eq!(p.memory_mb, Some(2048));
    assert_eq!(p.guest_os.as_deref(), Some("CentOS Linux 7 (Core)"));
    assert_eq!(
        p.active_pods,
        vec![(
            "84b1b342-6411-4292-a7b4-f0e6bd6873c8".to_string(),
            "sno-0-0".to_string()
        )]
    );
    assert_eq!(p.runtime_user, Some(107));
    assert_eq!(p.warnings, Vec::<String>::new());

    let r = &p.runtime;
    assert_eq!(r.cpu_cores, Some(1));
    assert_eq!(r.cpu_sockets, Some(1));
    assert_eq!(r.cpu_threads, Some(1));
    assert_eq!(r.cpu_model.as_deref(), Some("host-model"));
    assert_eq!(r.memory_guest.as_deref(), Some("2Gi"));
    assert_eq!(r.memory_current.as_deref(), Some("2Gi"));
    assert_eq!(r.memory_requested.as_deref(), Some("2Gi"));
    assert_eq!(r.primary_ip.as_deref(), Some("10.128.1.193"));
    assert_eq!(r.guest_os_id.as_deref(), Some("centos"));
    assert_eq!(r.guest_os_name.as_deref(), Some("CentOS Linux"));
    assert_eq!(r.guest_os_version.as_deref(), Some("7 (Core)"));
    assert_eq!(r.guest_os_kernel.as_deref(), Some("3.10.0-1160.el7.x86_64"));
    assert_eq!(r.phase.as_deref(), Some("Running"));
    assert_eq!(r.node_name.as_deref(), Some("sno-0-0"));
    assert_eq!(r.qos_class.as_deref(), Some("Burstable"));
    assert_eq!(r.machine_type.as_deref(), Some("pc-q35-rhel9.2.0"));
    assert_eq!(r.architecture.as_deref(), Some("amd64"));
    assert_eq!(r.agent_connected, Some(true));
    assert_eq!(r.hypervisor_type, None);
    assert_eq!(r.vmi_updated_at, None);

    let ifaces: Value = serde_json::from_str(r.network_interfaces.as_deref().unwrap()).unwrap();
    assert_eq!(ifaces.as_array().unwrap().len(), 5);
    assert_eq!(
        ifaces[0],
        json!({"name": "default", "interfaceName": "eth0", "mac": "02:b8:ac:00:00:01",
               "ipAddresses": ["10.128.1.193", "fe80::60:ddff:fe00:4"],
               "infoSource": "domain, guest-agent"})
    );
    assert_eq!(ifaces[3]["name"], Value::Null);
    assert_eq!(ifaces[3]["interfaceName"], Value::Null);
    assert_eq!(
        ifaces[3]["ipAddresses"],
        json!(["10.128.1.196", "fe80::60:ddff:fe00:7"])
    );
    assert_eq!(
        r.volume_details.as_deref(),
        Some(
            r#"[{"name":"cloudinitdisk","target":"vdb","phase":null,"size":1048576,"claim":null},{"name":"rootdisk","target":"vda","phase":null,"size":null,"claim":"centos7-gray-owl-35"}]"#
        )
    );
}

#[test]
fn real_cnv_vm_gives_its_status_and_spec_values() {
    let vm = decode_vm(&fixture("vm-running-cnv.json")).unwrap();
    let p = derive_vm(&vm).unwrap();
    assert_eq!(p.key, VmKey::new("openshift-cnv", "rhel9-gitops"));
    assert_eq!(
        p.uid.as_deref(),
        Some("01c049ff-8a18-4c6e-98fb-df6ab7777777")
    );
    assert_eq!(p.resource_version, Some(8_398_727));
    assert_eq!(p.status, VmStatus::PoweredOn);
    assert_eq!(p.unknown_printable_status, None);
    assert!(p.has_running_vmi);
    assert!(!p.deleting);
    // spec.instancetype is set, but the template gives cpu and memory.guest.
    assert_eq!(p.spec_cpu_count, Some(1));
    assert_eq!(p.spec_memory_mb, Some(2048));
    assert_eq!(p.annotation_os.as_deref(), Some("rhel9"));
    assert!(p.warnings.is_empty());

    // Cluster role, VMI unknown: the VM has a running VMI, so nothing legacy is written
    // and the runtime columns are left alone.
    let obs = observe(&p.key, VmInput::Present(&p), VmiInput::Unknown, None);
    assert_eq!(obs.record.status, Some(VmStatus::PoweredOn));
    assert_eq!(obs.record.cpu_count, None);
    assert!(obs.versions.runtime_unknown);
    assert_eq!(obs.versions.vm_resource_version, Some(8_398_727));
}

#[test]
fn synthetic_vmi_derives_with_warnings_and_never_zero_cpus() {
    let vmi = decode_vmi(&fixture("vmi-all-fields-synthetic.json")).unwrap();
    let p = derive_vmi(&vmi).unwrap();
    assert_eq!(p.key, VmKey::new("namespaceValue", "nameValue"));
    assert_eq!(
        p.resource_version, None,
        "non-numeric resourceVersion is unfenced"
    );
    // 4294967291 × 4294967289 × 4294967289 does not fit: dropped, never 0.
    assert_eq!(p.cpu_count, None);
    assert_eq!(p.memory_mb, None, "every memory quantity is 0");
    assert_eq!(p.guest_os.as_deref(), Some("prettyNameValue"));
    assert_eq!(p.runtime.cpu_cores, None);
    assert_eq!(p.runtime.memory_current.as_deref(), Some("0"));
    assert_eq!(p.runtime.primary_ip, None, "ipAddressValue is no address");
    assert_eq!(p.runtime_user, None);
    assert_eq!(p.runtime.agent_connected, Some(false));
    // migrationState says completed and failed: not a migration that ended here.
    assert_eq!(p.domain.migration_completed, None);
    assert!(!p.domain.paused, "typeValue is no Paused condition");
    assert!(
        p.warnings.iter().any(|w| w.contains("cpu count")),
        "{:?}",
        p.warnings
    );
    assert!(p.warnings.iter().any(|w| w.contains("status.runtimeUser")));
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("status.currentCPUTopology.cores"))
    );
    let obs = observe(&p.key, VmInput::Unknown, VmiInput::Present(&p), None);
    assert_ne!(obs.record.cpu_count, Some(0));
}

#[test]
fn synthetic_vm_derives_as_deleting() {
    let vm = decode_vm(&fixture("vm-all-fields-synthetic.json")).unwrap();
    let p = derive_vm(&vm).unwrap();
    assert_eq!(p.status, VmStatus::Deleting, "it has a deletionTimestamp");
    assert!(p.deleting);
    assert!(p.has_running_vmi);
    assert_eq!(p.spec_cpu_count, None, "the product does not fit");
    assert_eq!(p.spec_memory_mb, None);
    assert!(p.warnings.iter().any(|w| w.contains("cpu count")));
    let obs = observe(&p.key, VmInput::Present(&p), VmiInput::Unknown, None);
    assert_eq!(obs.record.status, Some(VmStatus::Deleting));
    assert_ne!(obs.record.cpu_count, Some(0));
}

#[test]
fn migration_object_is_refused_by_kind() {
    let v = fixture("vmim-scheduling-cnv.json");
    let e = decode_vmi(&v).unwrap_err();
    assert!(matches!(e, DecodeError::Kind { .. }), "{e}");
    assert!(decode_vm(&v).is_err());
    // And a VM is no VMI.
    assert!(decode_vmi(&fixture("vm-running-cnv.json")).is_err());
}

#[test]
fn wrong_type_names_the_field_path() {
    let mut v = fixture("vmi-running-cnv.json");
    v["status"]["currentCPUTopology"]["cores"] = json!("x");
    let e = decode_vmi(&v).unwrap_err();
    assert_eq!(
        e.to_string(),
        "VirtualMachineInstance openshift-cnv/centos7-gray-owl-35: \
         status.currentCPUTopology.cores: invalid type: string \"x\", expected u32"
    );
    let bytes = serde_json::to_vec(&v).unwrap();
    let e = decode_vmi_slice(&bytes).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "VirtualMachineInstance openshift-cnv/centos7-gray-owl-35: \
             status.currentCPUTopology.cores: invalid type: string \"x\", expected u32"
        ),
        "{e}"
    );

    let mut v = fixture("vm-running-cnv.json");
    v["spec"]["running"] = json!("yes");
    let e = decode_vm(&v).unwrap_err();
    assert!(
        e.to_string().contains(": spec.running: invalid type"),
        "{e}"
    );
    assert!(decode_vm_slice(b"{not json").is_err());
    assert!(decode_vmi_slice(b"[]").is_err());
}

/// The JSON parser's error stays the cause (for error chains), and the message is the
/// same as when it was copied into a string.
#[test]
fn decode_errors_keep_the_parsers_error_as_source() {
    use std::error::Error as _;
    let mut v = fixture("vmi-running-cnv.json");
    v["status"]["currentCPUTopology"]["cores"] = json!("x");
    let bytes = serde_json::to_vec(&v).unwrap();
    for e in [
        decode_vmi(&v).unwrap_err(),
        decode_vmi_slice(&bytes).unwrap_err(),
    ] {
        let source = e.source().expect("a source");
        let json = source
            .downcast_ref::<serde_json::Error>()
            .expect("a serde_json::Error");
        assert!(e.to_string().ends_with(&json.to_string()), "{e}");
    }
    let e = decode_vm_slice(b"{not json").unwrap_err();
    assert!(matches!(e, DecodeError::Json { .. }), "{e}");
    assert!(
        e.source().is_some_and(|s| s.is::<serde_json::Error>()),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("VirtualMachine: not JSON: key must be a string"),
        "{e}"
    );
    let e = decode_vmi_slice(b"[]").unwrap_err();
    assert_eq!(
        e.to_string(),
        "VirtualMachineInstance: not JSON: not a JSON object"
    );
    assert!(e.source().is_none());
}

#[test]
fn slice_and_value_decoding_agree_on_every_fixture() {
    for name in ["vmi-running-cnv.json", "vmi-all-fields-synthetic.json"] {
        let bytes = crate::test_fixtures::text(&format!("kubevirt/{name}")).into_bytes();
        let a = derive_vmi(&decode_vmi_slice(&bytes).unwrap()).unwrap();
        let b = derive_vmi(&decode_vmi(&fixture(name)).unwrap()).unwrap();
        assert_eq!(a, b, "{name}");
    }
    for name in ["vm-running-cnv.json", "vm-all-fields-synthetic.json"] {
        let bytes = crate::test_fixtures::text(&format!("kubevirt/{name}")).into_bytes();
        let a = derive_vm(&decode_vm_slice(&bytes).unwrap()).unwrap();
        let b = derive_vm(&decode_vm(&fixture(name)).unwrap()).unwrap();
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn nulls_and_missing_sections_are_defaults_not_errors() {
    let v = json!({"metadata": {"namespace": "ns", "name": "a", "labels": null,
                   "annotations": null},
                   "spec": null, "status": {"interfaces": null, "conditions": null,
                   "activePods": null, "memory": null}});
    let p = derive_vmi(&decode_vmi(&v).unwrap()).unwrap();
    assert_eq!(p.cpu_count, Some(1), "no topology at all: 1 × 1 × 1");
    assert_eq!(p.memory_mb, None);
    assert_eq!(p.runtime.network_interfaces, None);
    assert_eq!(p.runtime.volume_details, None);
    // Without namespace or name there is no record.
    let e = derive_vmi(&decode_vmi(&json!({"metadata": {"name": "a"}})).unwrap()).unwrap_err();
    assert_eq!(e.to_string(), "metadata.namespace is missing or empty");
    let e = derive_vm(&decode_vm(&json!({"metadata": {"namespace": "n", "name": "a/b"}})).unwrap());
    assert!(e.is_err());
    // A VMI only labelled with its node (not yet in status).
    let v = json!({"metadata": {"namespace": "ns", "name": "a",
                   "labels": {"kubevirt.io/nodeName": "n1"}}});
    let p = derive_vmi(&decode_vmi(&v).unwrap()).unwrap();
    assert_eq!(p.node.as_deref(), Some("n1"));
    assert_eq!(p.runtime.node_name, None);
}
