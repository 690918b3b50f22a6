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

pub(super) fn answer(virttype: &str, machine: Option<&str>, text: String) -> DomCapsAnswer {
    DomCapsAnswer {
        virttype: virttype.into(),
        machine: machine.map(str::to_string),
        answer: Ok(text),
    }
}

fn full() -> DiscoveryInput {
    DiscoveryInput {
        hostname: Ok("hv1".into()),
        capabilities: Ok(fixture("caps/caps-qemu-kvm.xml")),
        domcaps: vec![
            answer(
                "kvm",
                Some("q35"),
                fixture("domcaps/qemu_10.0.0-q35.x86_64+amdsev.xml"),
            ),
            answer("qemu", None, fixture("domcaps/qemu_10.0.0-tcg.x86_64.xml")),
        ],
        guest_machine: Some("q35".into()),
        node_info: Ok(NodeInfo {
            cpus: 16,
            ..parse_nodeinfo(&fixture("real/nodeinfo.txt")).unwrap()
        }),
        free_pages: Ok(free_pages()),
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
        kvm_intel_nested: Ok("Y\n".into()),
        kvm_amd_nested: Err("No such file or directory (os error 2)".into()),
        ksm_run: Ok("1\n".into()),
    }
}

/// `virNodeGetFreePages` for both cells of `caps-qemu-kvm.xml`: cell 1's 1 GiB pages
/// not answered.
fn free_pages() -> Vec<CellFreePages> {
    vec![
        CellFreePages {
            cell: 0,
            pages: vec![(4, 1_000_000), (2048, 0), (1_048_576, 0)],
        },
        CellFreePages {
            cell: 1,
            pages: vec![(4, 2_000_000), (2048, 0)],
        },
    ]
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
fn free_pages_per_cell_and_size() {
    let c = build_capabilities(&full());
    let free: Vec<Vec<(u64, u64, Option<u64>)>> = c
        .cpu_info
        .numa_cells
        .iter()
        .map(|cell| {
            cell.pages
                .iter()
                .map(|p| (p.size_kib, p.count, p.free))
                .collect()
        })
        .collect();
    assert_eq!(
        free,
        [
            vec![
                (4, 4_043_885, Some(1_000_000)),
                (2048, 0, Some(0)),
                (1_048_576, 0, Some(0))
            ],
            // A size the driver did not answer stays null.
            vec![
                (4, 4_127_515, Some(2_000_000)),
                (2048, 0, Some(0)),
                (1_048_576, 0, None)
            ],
        ]
    );
    assert_eq!(c.memory_info.status, GroupStatus::complete());

    // A cell not answered at all: every size null, the others filled.
    let mut i = full();
    i.free_pages = Ok(free_pages().split_off(1));
    let c = build_capabilities(&i);
    assert!(
        c.cpu_info.numa_cells[0]
            .pages
            .iter()
            .all(|p| p.free.is_none())
    );
    assert_eq!(c.cpu_info.numa_cells[1].pages[0].free, Some(2_000_000));

    // Refused: every free count null, the driver's reason in memory_info's status.
    let mut i = full();
    i.free_pages = Err("this function is not supported by the connection driver".into());
    let c = build_capabilities(&i);
    assert!(
        c.cpu_info
            .numa_cells
            .iter()
            .flat_map(|cell| &cell.pages)
            .all(|p| p.free.is_none())
    );
    assert_eq!(
        c.memory_info.status,
        GroupStatus {
            state: GroupState::Partial,
            reasons: vec![
                "free pages: this function is not supported by the connection driver".into()
            ],
        }
    );
    // The cpu group, where the cells are, is not changed by it.
    assert_eq!(c.cpu_info.status.state, GroupState::Complete);

    // No cells: nothing to fill, "not asked" is no reason.
    let mut i = full();
    i.capabilities = Ok(fixture("caps/caps-qemu-kvm.xml")
        .replace("<cells num='2'>", "<nocells>")
        .replace("</cells>", "</nocells>"));
    i.free_pages = Err("not asked".into());
    let c = build_capabilities(&i);
    assert!(c.cpu_info.numa_cells.is_empty());
    assert_eq!(c.memory_info.status.state, GroupState::Complete);
}

#[test]
fn full_input_is_complete_with_values() {
    let c = build_capabilities(&full());
    assert_eq!(states(&c), [GroupState::Complete; 7]);
    assert_eq!(c.host_info.hostname.as_deref(), Some("hv1"));
    assert_eq!(c.cpu_info.model.as_deref(), Some("Haswell-noTSX"));
    assert_eq!(c.cpu_info.vmx, TriFact::yes("host CPU features"));
    // The host-model CPU's model includes svm (mixed fixtures: an Intel host's
    // capabilities with an AMD host's domain capabilities).
    assert_eq!(
        c.cpu_info.svm,
        TriFact::yes("CPU model EPYC-Genoa definition")
    );
    assert_eq!(c.cpu_info.logical_cpus, Some(16));
    assert_eq!(
        (
            c.cpu_info.usable_models.len(),
            c.cpu_info.unusable_models.len(),
            c.cpu_info.unknown_models.len()
        ),
        (80, 65, 0)
    );
    assert_eq!(
        c.cpu_info.host_model.as_ref().unwrap().model.as_deref(),
        Some("EPYC-Genoa")
    );
    assert_eq!(c.memory_info.total_kib, Some(8_349_900));
    assert_eq!(c.memory_info.hugepage_sizes_kib, vec![2048, 1_048_576]);
    assert_eq!(c.memory_info.ksm, TriFact::yes("/sys/kernel/mm/ksm/run"));
    let s = &c.security_info;
    assert_eq!(s.secure_boot, Some(true));
    assert_eq!(
        (s.sev.supported, s.sev.es, s.sev.snp),
        (Some(true), Some(true), Some(true))
    );
    // launchSecurity lists sev and sev-snp: not tdx.
    assert_eq!((s.tdx, s.sgx.supported), (Some(false), Some(false)));
    assert_eq!(s.tpm.supported, Some(true));
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
    assert_eq!(v.nested_virt, TriFact::yes("kvm_intel nested parameter"));
    assert_eq!(
        v.guest_machine,
        Some(MachineRef {
            name: "q35".into(),
            canonical: Some("pc-q35-10.0".into()),
            virttype: "kvm".into()
        })
    );
    let m: Vec<_> = v
        .machines
        .iter()
        .map(|m| {
            (
                m.machine.as_str(),
                m.canonical.as_deref(),
                m.virttype.as_str(),
                m.max_vcpus,
                m.secure_boot,
            )
        })
        .collect();
    assert_eq!(
        m,
        vec![
            ("q35", Some("pc-q35-10.0"), "kvm", Some(4096), Some(true)),
            (
                "pc-i440fx-10.0",
                Some("pc-i440fx-10.0"),
                "qemu",
                Some(255),
                Some(false)
            ),
        ]
    );
    assert!(
        v.machines
            .iter()
            .all(|m| m.status.state == GroupState::Complete)
    );
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

    // The guests' machine (q35) unanswered for kvm and not asked for qemu: its values
    // are missing, never taken from another machine (the i440fx TCG document).
    let mut input = full();
    input.domcaps[0].answer = Err("no kvm".into());
    let c = build_capabilities(&input);
    assert_eq!(c.cpu_info.status.state, GroupState::Partial);
    assert_eq!(
        c.cpu_info.status.reasons,
        vec!["domain capabilities (kvm, q35): no kvm"]
    );
    assert!(c.cpu_info.host_model.is_none() && c.cpu_info.usable_models.is_empty());
    assert_eq!(c.security_info.status.state, GroupState::Partial);
    assert_eq!(c.security_info.secure_boot, None);
    assert_eq!(c.virt_info.max_vcpus, None);
    assert_eq!(c.virt_info.guest_machine, None);
    assert_eq!(c.host_info.status.state, GroupState::Complete);
    assert_eq!(
        c.virt_info.machines[0].status,
        GroupStatus {
            state: GroupState::Unavailable,
            reasons: vec!["no kvm".into()]
        }
    );

    // The same machine's qemu (TCG) document serves, with the reason.
    let mut input = full();
    input.guest_machine = None;
    input.domcaps = vec![
        DomCapsAnswer {
            virttype: "kvm".into(),
            machine: None,
            answer: Err("no kvm".into()),
        },
        answer("qemu", None, fixture("domcaps/qemu_10.0.0-tcg.x86_64.xml")),
    ];
    let c = build_capabilities(&input);
    assert_eq!(c.security_info.status.state, GroupState::Partial);
    assert_eq!(
        c.security_info.status.reasons,
        vec!["domain capabilities (kvm): no kvm; using the qemu (TCG) ones"]
    );
    assert_eq!(c.security_info.sev.supported, Some(false));
    assert_eq!(c.security_info.tdx, Some(false));
    assert_eq!(c.virt_info.max_vcpus, Some(255));
    assert_eq!(
        c.virt_info.guest_machine,
        Some(MachineRef {
            name: "pc-i440fx-10.0".into(),
            canonical: Some("pc-i440fx-10.0".into()),
            virttype: "qemu".into()
        })
    );
    // No kvm document at all: no host-model CPU, no nested virt from it.
    assert!(c.cpu_info.host_model.is_none());
    assert_eq!(c.cpu_info.status.state, GroupState::Partial);

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
            .all(|r| r.ends_with("no libvirt on this node")),
        "{:?}",
        c.security_info.status.reasons
    );
    assert!(c.virt_info.machines.is_empty() && c.virt_info.guest_machine.is_none());
    assert_eq!(c.virt_info.nested_virt.value, Tri::Unknown);
    assert_eq!(c.memory_info.ksm.value, Tri::Unknown);
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
