//! Every fixture in tests/fixtures/libvirt, checked against its SOURCES.md.

use super::fixture;
use crate::derive::caps::*;

#[test]
fn caps_qemu_kvm() {
    let c = parse_capabilities(&fixture("caps/caps-qemu-kvm.xml")).unwrap();
    assert_eq!(
        c.uuid.as_deref(),
        Some("a25c794c-34ad-11b2-a85c-b030533115b8")
    );
    assert_eq!(c.arch.as_deref(), Some("x86_64"));
    assert_eq!(c.model.as_deref(), Some("Haswell-noTSX"));
    assert_eq!(c.vendor.as_deref(), Some("Intel"));
    assert_eq!(c.microcode.as_deref(), Some("45"));
    assert_eq!(c.tsc_frequency_hz, Some(2_596_991_000));
    assert_eq!(
        c.topology,
        Some(CpuTopology {
            sockets: 1,
            dies: 1,
            clusters: 1,
            cores: 8,
            threads: 1
        })
    );
    assert_eq!(c.page_sizes_kib, vec![4, 2048, 1_048_576]);
    assert!(c.features.iter().any(|f| f == "vmx"));
    assert_eq!(
        c.power_management,
        vec!["suspend_mem", "suspend_disk", "suspend_hybrid"]
    );
    assert_eq!(c.migration_transports, vec!["tcp", "rdma"]);
    assert_eq!(c.numa_cells.len(), 2);
    assert_eq!(c.numa_cells[0].memory_kib, Some(16_175_540));
    assert_eq!(c.numa_cells[1].memory_kib, Some(16_510_060));
    assert_eq!(c.numa_cells[0].cpus, vec![0, 2, 4, 6, 8, 10, 12, 14]);
    assert_eq!(
        c.numa_cells[0].pages[0],
        PageCount {
            size_kib: 4,
            count: 4_043_885,
            free: None
        }
    );
    let models: Vec<_> = c.security_models.iter().map(|m| m.model.as_str()).collect();
    assert_eq!(models, vec!["selinux", "dac"]);
    assert_eq!(
        c.security_models[0].base_labels[0].label,
        "system_u:system_r:svirt_t:s0"
    );
    assert_eq!(c.security_models[1].base_labels[1].label, "+107:+107");
    assert_eq!(c.security_models[1].doi.as_deref(), Some("0"));
    assert_eq!(c.guests.len(), 15);
    let x86 = c
        .guests
        .iter()
        .find(|g| g.arch == "x86_64" && g.os_type == "hvm")
        .unwrap();
    assert_eq!(x86.domain_types, vec!["qemu", "kvm"]);
    assert_eq!(x86.wordsize, Some(64));
    assert_eq!(x86.machines[1].canonical.as_deref(), Some("pc-0.11"));
    assert!(c.guests.iter().any(|g| g.os_type == "xen"));
    for arch in ["armv7l", "mips", "sparc", "ppc", "riscv64"] {
        assert!(c.guests.iter().any(|g| g.arch == arch), "{arch}");
    }
}

#[test]
fn caps_aarch64_minimal() {
    let c = parse_capabilities(&fixture("caps/caps.aarch64.xml")).unwrap();
    assert_eq!(c.arch.as_deref(), Some("aarch64"));
    assert_eq!(c.iommu, Some(false));
    assert!(c.power_management.is_empty());
    assert!(c.topology.is_none() && c.security_models.is_empty() && c.numa_cells.is_empty());
    assert_eq!(c.guests.len(), 1);
    assert_eq!(c.guests[0].domain_types, vec!["qemu", "kvm"]);
    assert_eq!(
        c.guests[0].features,
        vec![
            "acpi",
            "cpuselection",
            "deviceboot",
            "disksnapshot",
            "externalSnapshot"
        ]
    );
}

#[test]
fn domcaps_amdsev() {
    let d =
        parse_domain_capabilities(&fixture("domcaps/qemu_10.0.0-q35.x86_64+amdsev.xml")).unwrap();
    assert_eq!(d.domain, "kvm");
    assert_eq!(d.machine.as_deref(), Some("pc-q35-10.0"));
    assert_eq!(d.max_vcpus, Some(4096));
    assert_eq!(d.firmware, vec!["bios", "efi"]);
    assert_eq!(d.loader_secure, vec!["yes", "no"]);
    let hm = d.host_model.as_ref().unwrap();
    assert_eq!(hm.supported, Some(true));
    assert_eq!(hm.model.as_deref(), Some("EPYC-Genoa"));
    assert_eq!(hm.vendor.as_deref(), Some("AMD"));
    assert_eq!(d.usable_models.len(), 80);
    assert_eq!(d.unusable_models.len(), 65);
    assert!(d.unknown_models.is_empty());
    assert_eq!(d.secure_boot, Some(true));
    assert_eq!(d.usable_models[0], "486");
    assert_eq!(d.sev.cbitpos, Some(51));
    assert_eq!(d.sev.reduced_phys_bits, Some(1));
    assert_eq!(d.sev.max_guests, Some(59));
    assert_eq!(d.sev.max_es_guests, Some(450));
    assert_eq!(
        (d.sev.supported, d.sev.es, d.sev.snp),
        (Some(true), Some(true), Some(true))
    );
    assert_eq!(d.launch_security_types, vec!["sev", "sev-snp"]);
    assert_eq!(d.tdx, Some(false));
    assert_eq!(d.tpm.supported, Some(true));
    assert_eq!(d.tpm.models, vec!["tpm-tis", "tpm-crb"]);
    assert_eq!(
        d.tpm.backend_models,
        vec!["passthrough", "emulator", "external"]
    );
    assert_eq!(d.tpm.versions, vec!["2.0"]);
    assert_eq!(d.hyperv_features.len(), 16);
    assert_eq!(d.sgx.supported, Some(false));
    assert_eq!(d.memballoon, None);
}

#[test]
fn domcaps_aarch64() {
    let d = parse_domain_capabilities(&fixture("domcaps/qemu_10.0.0-virt.aarch64.xml")).unwrap();
    assert_eq!(
        (d.domain.as_str(), d.arch.as_deref()),
        ("kvm", Some("aarch64"))
    );
    assert_eq!(d.machine.as_deref(), Some("virt-10.0"));
    assert_eq!(d.max_vcpus, Some(512));
    assert_eq!(d.firmware, vec!["efi"]);
    assert_eq!(d.loader_secure, vec!["no"]);
    assert_eq!(d.host_model.as_ref().unwrap().supported, Some(false));
    assert_eq!(d.usable_models.len(), 0);
    // usable='unknown' is neither usable nor unusable.
    assert!(d.unusable_models.is_empty());
    assert_eq!(d.unknown_models.len(), 47);
    assert_eq!(d.secure_boot, Some(false));
    assert_eq!(d.gic_versions, vec!["3"]);
    assert_eq!(d.tpm.models, vec!["tpm-tis"]);
    // <sev supported='no'/>, <sgx supported='no'/>, <launchSecurity supported='no'/>.
    assert_eq!(
        (d.sev.supported, d.sev.es, d.sev.snp, d.tdx, d.sgx.supported),
        (
            Some(false),
            Some(false),
            Some(false),
            Some(false),
            Some(false)
        )
    );
    assert!(d.launch_security_types.is_empty());
}

#[test]
fn domcaps_tcg() {
    let d = parse_domain_capabilities(&fixture("domcaps/qemu_10.0.0-tcg.x86_64.xml")).unwrap();
    assert_eq!(d.domain, "qemu");
    assert_eq!(d.machine.as_deref(), Some("pc-i440fx-10.0"));
    assert_eq!(d.max_vcpus, Some(255));
    assert_eq!(d.host_passthrough, Some(false));
    let hm = d.host_model.as_ref().unwrap();
    assert_eq!(hm.model.as_deref(), Some("EPYC"));
    assert!(
        hm.features
            .iter()
            .any(|f| f.policy.as_deref() == Some("disable"))
    );
    assert!(
        hm.features
            .iter()
            .any(|f| f.policy.as_deref() == Some("require"))
    );
    assert_eq!((d.usable_models.len(), d.unusable_models.len()), (36, 109));
    assert!(d.disk_buses.iter().any(|b| b == "ide"));
    assert_eq!(
        (d.sev.supported, d.sev.es, d.sev.snp, d.tdx, d.sgx.supported),
        (
            Some(false),
            Some(false),
            Some(false),
            Some(false),
            Some(false)
        )
    );
    assert!(d.launch_security_types.is_empty());
    assert!(!d.hyperv_features.is_empty());
}

#[test]
fn real_capabilities() {
    let c = parse_capabilities(&fixture("real/capabilities.xml")).unwrap();
    assert_eq!(c.model.as_deref(), Some("Broadwell"));
    assert_eq!(c.vendor.as_deref(), Some("Intel"));
    assert_eq!(
        c.signature,
        Some(CpuSignature {
            family: Some(6),
            model: Some(167),
            stepping: Some(1)
        })
    );
    assert_eq!(c.microcode.as_deref(), Some("1"));
    assert_eq!(c.tsc_frequency_hz, Some(2_600_000_000));
    assert_eq!(
        c.topology,
        Some(CpuTopology {
            sockets: 1,
            dies: 1,
            clusters: 1,
            cores: 2,
            threads: 1
        })
    );
    assert_eq!(c.page_sizes_kib, vec![4, 2048, 1_048_576]);
    assert!(c.power_management.is_empty());
    assert_eq!(c.iommu, Some(false));
    assert_eq!(c.numa_cells.len(), 1);
    assert_eq!(c.numa_cells[0].memory_kib, Some(8_349_900));
    assert_eq!(c.numa_cells[0].cpus, vec![0, 1]);
    let models: Vec<_> = c.security_models.iter().map(|m| m.model.as_str()).collect();
    assert_eq!(models, vec!["none", "dac"]);
    assert_eq!(c.security_models[1].base_labels[0].label, "+0:+0");
    let archs: Vec<_> = c.guests.iter().map(|g| g.arch.as_str()).collect();
    assert_eq!(archs, vec!["i686", "x86_64"]);
    assert!(c.guests.iter().all(|g| g.domain_types == ["qemu", "kvm"]));
}

#[test]
fn real_domcapabilities() {
    let k = parse_domain_capabilities(&fixture("real/domcapabilities-kvm.xml")).unwrap();
    assert_eq!(k.domain, "kvm");
    assert_eq!(k.machine.as_deref(), Some("pc-i440fx-7.2"));
    assert_eq!(k.max_vcpus, Some(255));
    assert!(k.firmware.is_empty());
    assert_eq!(k.loader_secure, vec!["no"]);
    let hm = k.host_model.as_ref().unwrap();
    assert_eq!(
        (hm.model.as_deref(), hm.vendor.as_deref()),
        (Some("kvm64"), Some("Intel"))
    );
    assert_eq!((k.usable_models.len(), k.unusable_models.len()), (4, 49));
    assert_eq!(k.tpm.backend_models, vec!["passthrough"]);
    // libvirt 9.0: <sev supported='no'/> and <sgx supported='no'/>, no <launchSecurity>
    // (SEV-SNP and TDX unknown, not "no").
    assert!(k.launch_security_types.is_empty());
    assert_eq!(
        (k.sev.supported, k.sev.es, k.sev.snp, k.tdx, k.sgx.supported),
        (Some(false), Some(false), None, None, Some(false))
    );
    assert_eq!(k.tpm.supported, Some(true));
    assert_eq!(k.hyperv_features, vec!["spinlocks", "vendor_id"]);

    let q = parse_domain_capabilities(&fixture("real/domcapabilities-qemu.xml")).unwrap();
    assert_eq!(q.domain, "qemu");
    assert_eq!(q.host_passthrough, Some(false));
    assert_eq!(
        q.host_model.as_ref().unwrap().model.as_deref(),
        Some("EPYC")
    );
    assert_eq!((q.usable_models.len(), q.unusable_models.len()), (18, 35));
}

#[test]
fn real_nodeinfo() {
    let n = parse_nodeinfo(&fixture("real/nodeinfo.txt")).unwrap();
    assert_eq!(
        n,
        NodeInfo {
            model: "x86_64".into(),
            memory_kib: 8_349_900,
            cpus: 2,
            mhz: 2600,
            nodes: 1,
            sockets: 1,
            cores: 2,
            threads: 1,
        }
    );
    assert!(matches!(
        parse_nodeinfo("CPU model: x86_64\n"),
        Err(ParseError::Missing("CPU(s)"))
    ));
    assert!(matches!(
        parse_nodeinfo(&fixture("real/nodeinfo.txt").replace("2600", "fast")),
        Err(ParseError::Value { .. })
    ));
}

#[test]
fn test_driver_capabilities() {
    let c = parse_capabilities(&fixture("real/test-driver-capabilities.xml")).unwrap();
    assert_eq!(c.arch.as_deref(), Some("i686"));
    assert_eq!(c.features, vec!["pae", "nonpae"]);
    assert_eq!(c.page_sizes_kib, vec![4, 8, 2048, 1_048_576]);
    assert_eq!(c.numa_cells.len(), 2);
    assert_eq!(c.numa_cells[1].cpus.len(), 8);
    assert_eq!(c.security_models[0].model, "testSecurity");
    assert_eq!(c.security_models[0].doi, None);
    assert!(c.guests.iter().all(|g| g.domain_types == ["test"]));
    assert!(c.guests.iter().any(|g| g.os_type == "xen"));
}

#[test]
fn domains_hypervisor_type() {
    for (file, want) in [
        ("domains/launch-security-sev.xml", HypervisorType::Kvm),
        (
            "domains/cpu-host-passthrough-features.xml",
            HypervisorType::Kvm,
        ),
        ("domains/minimal.xml", HypervisorType::QemuTcg),
        ("real/domain-kvm-live.xml", HypervisorType::Kvm),
        ("real/domain-qemu-live.xml", HypervisorType::QemuTcg),
        ("real/test-driver-domain.xml", HypervisorType::Unknown),
        // Not a domain at all.
        ("caps/caps.aarch64.xml", HypervisorType::Unknown),
    ] {
        assert_eq!(hypervisor_type(&fixture(file)), want, "{file}");
    }
    for (xml, want) in [
        ("<domain type='xen'/>", HypervisorType::Unknown),
        ("<domain/>", HypervisorType::Unknown),
        ("<domain type='kvm'>", HypervisorType::Unknown),
        ("", HypervisorType::Unknown),
    ] {
        assert_eq!(hypervisor_type(xml), want, "{xml}");
    }
    assert_eq!(HypervisorType::QemuTcg.to_string(), "qemu-tcg");
}

#[test]
fn apos_entity_decodes() {
    let root = xml::parse(&fixture("domains/cpu-host-passthrough-features.xml")).unwrap();
    let texts: Vec<&str> = ["title", "description"]
        .iter()
        .filter_map(|n| root.child_text(n))
        .collect();
    assert!(texts.iter().any(|t| t.contains('\'')), "{texts:?}");
    assert!(texts.iter().all(|t| !t.contains("&apos;")));
    let d = xml::parse(&fixture("domains/launch-security-sev.xml")).unwrap();
    let ls = d.child("launchSecurity").unwrap();
    assert_eq!(ls.attr("type"), Some("sev"));
    assert_eq!(ls.child_text("cbitpos"), Some("47"));
    assert_eq!(ls.child_text("policy"), Some("0x0001"));
}
