//! DiscoveryInput → HostCapabilities: group status, SR-IOV, canonical JSON, fingerprint.

use super::fixture;
use crate::derive::caps::*;

const POOL: &str = "<pool type='dir'><name>default</name><uuid>u</uuid>\
    <capacity unit='bytes'>107374182400</capacity><allocation unit='bytes'>1073741824</allocation>\
    <available unit='bytes'>106300440576</available><target><path>/var/lib/libvirt/images</path></target></pool>";
const NET: &str =
    "<network><name>default</name><forward mode='nat'/><bridge name='virbr0'/></network>";
const ISOLATED: &str = "<network><name>iso</name><bridge name='virbr1'/></network>";
const PF: &str = "<device><name>pci_0000_02_00_0</name><capability type='pci'><domain>0</domain>\
    <bus>2</bus><slot>0</slot><function>0</function>\
    <capability type='virt_functions' maxCount='7'>\
    <address domain='0x0000' bus='0x02' slot='0x10' function='0x0'/>\
    <address domain='0x0000' bus='0x02' slot='0x10' function='0x2'/></capability></capability></device>";
const VF: &str = "<device><name>pci_0000_02_10_0</name><capability type='pci'><domain>0</domain>\
    <bus>2</bus><slot>16</slot><function>0</function><capability type='phys_function'>\
    <address domain='0x0000' bus='0x02' slot='0x00' function='0x0'/></capability></capability></device>";
const NIC: &str = "<device><name>net_eth0</name><capability type='net'><interface>eth0</interface></capability></device>";

fn full() -> DiscoveryInput {
    DiscoveryInput {
        hostname: Ok("hv1".into()),
        capabilities: Ok(fixture("caps/caps-qemu-kvm.xml")),
        domcaps_kvm: Ok(fixture("domcaps/qemu_10.0.0-q35.x86_64+amdsev.xml")),
        domcaps_qemu: Ok(fixture("domcaps/qemu_10.0.0-tcg.x86_64.xml")),
        node_info: Ok(parse_nodeinfo(&fixture("real/nodeinfo.txt")).unwrap()),
        hypervisor_type: Ok("QEMU".into()),
        hypervisor_version: Ok(7_002_022),
        libvirt_version: Ok(9_000_000),
        storage_pools: Ok(vec![Fetched {
            xml: POOL.into(),
            active: true,
        }]),
        networks: Ok(vec![
            Fetched {
                xml: NET.into(),
                active: true,
            },
            Fetched {
                xml: ISOLATED.into(),
                active: false,
            },
        ]),
        node_devices: Ok(vec![PF.into(), VF.into(), NIC.into()]),
    }
}

fn states(c: &HostCapabilities) -> [GroupState; 7] {
    [
        c.host_info.status.state,
        c.cpu_info.status.state,
        c.memory_info.status.state,
        c.security_info.status.state,
        c.storage_info.status.state,
        c.network_info.status.state,
        c.virt_info.status.state,
    ]
}

#[test]
fn full_input_is_complete_with_values() {
    let c = build_capabilities(&full());
    assert_eq!(states(&c), [GroupState::Complete; 7]);
    assert_eq!(c.host_info.hostname.as_deref(), Some("hv1"));
    assert_eq!(c.cpu_info.model.as_deref(), Some("Haswell-noTSX"));
    assert!(c.cpu_info.vmx && !c.cpu_info.svm);
    assert_eq!(c.cpu_info.usable_models.len(), 80);
    assert_eq!(
        c.cpu_info.host_model.as_ref().unwrap().model.as_deref(),
        Some("EPYC-Genoa")
    );
    assert_eq!(c.memory_info.total_kib, Some(8_349_900));
    assert_eq!(c.memory_info.hugepage_sizes_kib, vec![2048, 1_048_576]);
    assert_eq!(c.memory_info.ksm, None);
    let s = &c.security_info;
    assert_eq!(s.secure_boot, Some(true));
    assert!(s.sev.supported && s.sev.es && s.sev.snp && !s.tdx && !s.sgx.supported);
    assert_eq!(s.sev.cbitpos, Some(51));
    assert_eq!(s.tpm.versions, vec!["2.0"]);
    assert_eq!(s.models.len(), 2);
    let pool = &c.storage_info.pools[0];
    assert_eq!(
        (pool.name.as_str(), pool.pool_type.as_str()),
        ("default", "dir")
    );
    assert_eq!(pool.capacity_bytes, Some(107_374_182_400));
    assert_eq!(pool.available_bytes, Some(106_300_440_576));
    assert!(pool.active);
    let n = &c.network_info;
    assert_eq!(n.networks[0].forward_mode.as_deref(), Some("nat"));
    assert_eq!(n.networks[1].forward_mode, None);
    assert!(!n.networks[1].active);
    assert_eq!(n.bridges, vec!["virbr0", "virbr1"]);
    assert_eq!(
        (n.sriov.pf_count, n.sriov.vf_count, n.sriov.vf_devices),
        (1, 2, 1)
    );
    assert_eq!(
        n.sriov.physical_functions[0].address.as_deref(),
        Some("0000:02:00.0")
    );
    assert_eq!(n.sriov.physical_functions[0].max_vfs, Some(7));
    let v = &c.virt_info;
    assert_eq!(v.hypervisor_version.as_deref(), Some("7.2.22"));
    assert_eq!(v.libvirt_version.as_deref(), Some("9.0.0"));
    assert_eq!(v.hypervisor_type.as_deref(), Some("QEMU"));
    assert_eq!(v.max_vcpus, Some(4096));
    assert_eq!(v.domain_types, vec!["kvm", "qemu"]);
    assert_eq!(v.domain_capabilities.len(), 2);
}

#[test]
fn missing_document_makes_its_groups_partial_only() {
    let mut input = full();
    input.storage_pools = Err("not supported by the test driver".into());
    let c = build_capabilities(&input);
    assert_eq!(c.storage_info.status.state, GroupState::Partial);
    assert_eq!(
        c.storage_info.status.reasons,
        vec!["storage pools: not supported by the test driver"]
    );
    assert_eq!(c.storage_info.disk_buses.len(), 5);
    for (i, s) in states(&c).iter().enumerate() {
        if i != 4 {
            assert_eq!(*s, GroupState::Complete, "group {i}");
        }
    }

    let mut input = full();
    input.domcaps_kvm = Err("no kvm".into());
    let c = build_capabilities(&input);
    assert_eq!(c.cpu_info.status.state, GroupState::Partial);
    assert!(c.cpu_info.host_model.is_none() && c.cpu_info.usable_models.is_empty());
    // Security falls back to the TCG document, with the reason.
    assert_eq!(c.security_info.status.state, GroupState::Partial);
    assert!(!c.security_info.sev.supported);
    assert_eq!(c.host_info.status.state, GroupState::Complete);
    assert_eq!(c.virt_info.max_vcpus, Some(255));

    let mut input = full();
    input.storage_pools = Ok(vec![Fetched {
        xml: "<pool>".into(),
        active: true,
    }]);
    let c = build_capabilities(&input);
    assert_eq!(c.storage_info.status.state, GroupState::Partial);
    assert!(c.storage_info.status.reasons[0].starts_with("storage pool #0: malformed XML"));

    let mut input = full();
    input.capabilities = Ok("<!DOCTYPE x><capabilities/>".into());
    let c = build_capabilities(&input);
    assert!(c.cpu_info.status.reasons[0].contains("DTD/entity declarations are not accepted"));
}

#[test]
fn nothing_answered_is_unavailable() {
    let c = build_capabilities(&DiscoveryInput::unavailable("no libvirt on this node"));
    assert_eq!(states(&c), [GroupState::Unavailable; 7]);
    assert!(
        c.security_info
            .status
            .reasons
            .iter()
            .all(|r| r.ends_with("no libvirt on this node"))
    );
}

#[test]
fn canonical_json_and_fingerprint_are_stable() {
    let a = build_capabilities(&full());
    let b = build_capabilities(&full());
    assert_eq!(a.to_canonical_json(), b.to_canonical_json());
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.fingerprint().len(), 16);
    let json = a.to_canonical_json();
    assert!(
        json.starts_with("{\"cpu_info\":{\"arch\":\"x86_64\""),
        "{}",
        &json[..60]
    );
    let back: HostCapabilities = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
    // Keys sorted, not in declaration order (host_info is declared first): the
    // canonical form relies on serde_json's sorted maps.
    let at = |k: &str| json.find(&format!("\"{k}\":")).unwrap();
    let groups = [
        "cpu_info",
        "host_info",
        "memory_info",
        "network_info",
        "security_info",
        "storage_info",
        "virt_info",
    ];
    assert!(
        groups.windows(2).all(|w| at(w[0]) < at(w[1])),
        "{json:.300}"
    );
    assert_eq!(fingerprint_of(&json), a.fingerprint());

    let mut input = full();
    input.libvirt_version = Ok(9_000_001);
    assert_ne!(build_capabilities(&input).fingerprint(), a.fingerprint());
    let mut input = full();
    input.networks = Ok(vec![Fetched {
        xml: NET.into(),
        active: false,
    }]);
    assert_ne!(build_capabilities(&input).fingerprint(), a.fingerprint());
    // Known FNV-1a vectors.
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
}
