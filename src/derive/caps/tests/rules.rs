//! The rules of [`build_capabilities`], a table of cases each: machines and the guests'
//! machine, tri-states, secure boot, vCPU limits, arch and driver checks, pages and
//! topology.

use super::build::answer;
use super::fixture;
use crate::derive::caps::build::model_includes;
use crate::derive::caps::*;

fn corpus(name: &str) -> String {
    fixture(&format!("corpus-9.0.0/domaincapsdata/{name}"))
}

/// A domain capabilities document with `body` after `<arch>`.
fn dc(domain: &str, arch: &str, machine: &str, body: &str) -> String {
    format!(
        "<domainCapabilities><path>/usr/bin/qemu-system-{arch}</path><domain>{domain}</domain>\
         <machine>{machine}</machine><arch>{arch}</arch>{body}</domainCapabilities>"
    )
}

/// A capabilities document: `cpu` inside `host/cpu` after `<arch>`, `host` after `</cpu>`.
fn caps(arch: &str, cpu: &str, host: &str, guests: &str) -> String {
    format!(
        "<capabilities><host><cpu><arch>{arch}</arch>{cpu}</cpu>{host}</host>{guests}</capabilities>"
    )
}

fn host_model(model: &str, vendor: &str, features: &str) -> String {
    format!(
        "<cpu><mode name='host-model' supported='yes'><model fallback='forbid'>{model}</model>\
         <vendor>{vendor}</vendor>{features}</mode></cpu>"
    )
}

fn input(capabilities: String, domcaps: Vec<DomCapsAnswer>) -> DiscoveryInput {
    let mut i = DiscoveryInput::unavailable("offline");
    i.capabilities = Ok(capabilities);
    i.hypervisor_type = Ok("QEMU".into());
    i.domcaps = domcaps;
    i
}

fn x86() -> String {
    caps("x86_64", "", "", "")
}

const SECURE_YES: &str = "<os supported='yes'><loader supported='yes'><enum name='secure'>\
    <value>yes</value><value>no</value></enum></loader></os>";

#[test]
fn secure_boot_is_null_when_the_document_is_silent() {
    let cases: [(&str, &str, Option<bool>); 7] = [
        ("no <os>", "", None),
        ("<os supported='no'>", "<os supported='no'/>", Some(false)),
        ("secure yes and no", SECURE_YES, Some(true)),
        (
            "secure no only",
            "<os supported='yes'><loader supported='yes'><enum name='secure'><value>no</value>\
             </enum></loader></os>",
            Some(false),
        ),
        (
            "loader without a secure enum",
            "<os supported='yes'><loader supported='yes'><value>/x</value></loader></os>",
            None,
        ),
        (
            "loader not supported",
            "<os supported='yes'><loader supported='no'/></os>",
            Some(false),
        ),
        ("<os> without a loader", "<os supported='yes'/>", None),
    ];
    for (what, body, want) in cases {
        let text = dc("kvm", "x86_64", "pc-q35-7.2", body);
        assert_eq!(
            parse_domain_capabilities(&text).unwrap().secure_boot,
            want,
            "{what}"
        );
        let c = build_capabilities(&input(x86(), vec![answer("kvm", Some("q35"), text)]));
        assert_eq!(c.security_info.secure_boot, want, "{what}");
        assert_eq!(c.virt_info.machines[0].secure_boot, want, "{what}");
    }
    // libvirt's own minimal document has no <os>: null, not false.
    let c = build_capabilities(&input(
        x86(),
        vec![answer("kvm", None, corpus("empty.xml"))],
    ));
    assert_eq!(c.security_info.secure_boot, None);
    assert_eq!(c.virt_info.max_vcpus, None);
}

/// What, the `<devices>` body, the `<features>` body (`None`: no such element), and the
/// flags wanted.
type Case = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    [Option<bool>; 6],
);

/// SEV, SEV-ES, SEV-SNP, SGX, TDX, TPM as `[supported, es, snp, sgx, tdx, tpm]`.
fn security_flags(
    sev: &SevSupport,
    sgx: &SgxSupport,
    tdx: Option<bool>,
    tpm: &TpmSupport,
) -> [Option<bool>; 6] {
    [
        sev.supported,
        sev.es,
        sev.snp,
        sgx.supported,
        tdx,
        tpm.supported,
    ]
}

#[test]
fn security_features_are_null_when_the_document_is_silent() {
    const N: Option<bool> = None;
    const F: Option<bool> = Some(false);
    const T: Option<bool> = Some(true);
    const SEV_YES: &str = "<sev supported='yes'><cbitpos>51</cbitpos><reducedPhysBits>1\
        </reducedPhysBits><maxGuests>15</maxGuests><maxESGuests>494</maxESGuests></sev>";
    // (what, <devices> body, <features> body, [sev, es, snp, sgx, tdx, tpm])
    let cases: [Case; 16] = [
        ("silent: no <devices>, no <features>", None, None, [N; 6]),
        (
            "silent: empty <devices>, <features>",
            Some(""),
            Some(""),
            [N; 6],
        ),
        (
            "supported='no' everywhere",
            Some("<tpm supported='no'/>"),
            Some(
                "<sev supported='no'/><sgx supported='no'/><tdx supported='no'/>\
                 <launchSecurity supported='no'/>",
            ),
            [F; 6],
        ),
        (
            "supported='yes' everywhere",
            Some("<tpm supported='yes'><enum name='model'><value>tpm-crb</value></enum></tpm>"),
            Some(
                "<sev supported='yes'><cbitpos>51</cbitpos><maxESGuests>494</maxESGuests></sev>\
                 <sgx supported='yes'><flc>yes</flc></sgx><tdx supported='yes'/>\
                 <launchSecurity supported='yes'><enum name='sectype'><value>sev</value>\
                 <value>sev-snp</value><value>tdx</value></enum></launchSecurity>",
            ),
            [T; 6],
        ),
        (
            "libvirt 9.0: sev and sgx no, no <launchSecurity>, no <tpm>",
            Some(""),
            Some("<sev supported='no'/><sgx supported='no'/>"),
            [F, F, N, F, N, N],
        ),
        (
            "SEV yes, no <launchSecurity>: SNP and TDX unknown",
            None,
            Some(SEV_YES),
            [T, T, N, N, N, N],
        ),
        (
            "SEV yes without maxESGuests: SEV-ES unknown",
            None,
            Some("<sev supported='yes'><cbitpos>47</cbitpos></sev>"),
            [T, N, N, N, N, N],
        ),
        (
            "SEV yes, maxESGuests 0",
            None,
            Some(
                "<sev supported='yes'><maxGuests>15</maxGuests><maxESGuests>0</maxESGuests></sev>",
            ),
            [T, F, N, N, N, N],
        ),
        (
            "launchSecurity sev only, no <sev>: SNP and TDX left out of the list",
            None,
            Some(
                "<launchSecurity supported='yes'><enum name='sectype'><value>sev</value>\
                 </enum></launchSecurity>",
            ),
            [T, N, F, N, F, N],
        ),
        (
            "launchSecurity s390-pv only, no <sev>: no SEV of any kind, no TDX",
            None,
            Some(
                "<launchSecurity supported='yes'><enum name='sectype'><value>s390-pv</value>\
                 </enum></launchSecurity>",
            ),
            [F, F, F, N, F, N],
        ),
        (
            "launchSecurity yes without a sectype enum: nothing listed",
            None,
            Some("<launchSecurity supported='yes'/>"),
            [N; 6],
        ),
        (
            "launchSecurity no, SEV yes: SNP and TDX no",
            None,
            Some(
                "<sev supported='yes'><maxESGuests>494</maxESGuests></sev>\
                 <launchSecurity supported='no'/>",
            ),
            [T, T, F, N, F, N],
        ),
        (
            "<tdx supported='no'> alone",
            None,
            Some("<tdx supported='no'/>"),
            [N, N, N, N, F, N],
        ),
        (
            "<tdx supported='yes'> alone",
            None,
            Some("<tdx supported='yes'/>"),
            [N, N, N, N, T, N],
        ),
        (
            "elements without a supported attribute",
            Some("<tpm/>"),
            Some("<sev/><sgx/><tdx/><launchSecurity/>"),
            [N; 6],
        ),
        (
            "sgx yes, tpm no",
            Some("<tpm supported='no'/>"),
            Some("<sgx supported='yes'><sgx1>yes</sgx1></sgx>"),
            [N, N, N, T, N, F],
        ),
    ];
    for (what, devices, features, want) in cases {
        let body = [("devices", devices), ("features", features)]
            .iter()
            .filter_map(|(tag, b)| b.map(|b| format!("<{tag}>{b}</{tag}>")))
            .collect::<String>();
        let text = dc("kvm", "x86_64", "pc-q35-7.2", &body);
        let d = parse_domain_capabilities(&text).unwrap();
        assert_eq!(
            security_flags(&d.sev, &d.sgx, d.tdx, &d.tpm),
            want,
            "{what}"
        );
        let c = build_capabilities(&input(x86(), vec![answer("kvm", Some("q35"), text)]));
        let s = &c.security_info;
        assert_eq!(
            security_flags(&s.sev, &s.sgx, s.tdx, &s.tpm),
            want,
            "built: {what}"
        );
        // As JSON: null, not false.
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(
            json["sev"]["snp"],
            serde_json::json!(want[2]),
            "json: {what}"
        );
        assert_eq!(json["tdx"], serde_json::json!(want[4]), "json: {what}");
    }
    // No domain capabilities at all: every one null.
    for i in [input(x86(), vec![]), DiscoveryInput::unavailable("offline")] {
        let s = build_capabilities(&i).security_info;
        assert_eq!(security_flags(&s.sev, &s.sgx, s.tdx, &s.tpm), [N; 6]);
    }
    // A document that cannot describe the host (another arch) gives nothing either.
    let c = build_capabilities(&input(
        x86(),
        vec![answer(
            "kvm",
            None,
            dc(
                "kvm",
                "s390x",
                "s390-ccw-virtio",
                "<features><sev supported='no'/></features>",
            ),
        )],
    ));
    let s = &c.security_info;
    assert_eq!(security_flags(&s.sev, &s.sgx, s.tdx, &s.tpm), [N; 6]);
}

#[test]
fn host_model_supported_is_null_when_the_document_is_silent() {
    // (what, <cpu> body, want HostModelCpu::supported, or None without a host-model mode)
    let cases: [(&str, &str, Option<Option<bool>>); 5] = [
        ("no <cpu>", "", None),
        (
            "no host-model mode",
            "<cpu><mode name='host-passthrough' supported='yes'/></cpu>",
            None,
        ),
        (
            "host-model without a supported attribute",
            "<cpu><mode name='host-model'><model>EPYC</model></mode></cpu>",
            Some(None),
        ),
        (
            "host-model no",
            "<cpu><mode name='host-model' supported='no'/></cpu>",
            Some(Some(false)),
        ),
        (
            "host-model yes",
            "<cpu><mode name='host-model' supported='yes'><model>EPYC</model></mode></cpu>",
            Some(Some(true)),
        ),
    ];
    for (what, body, want) in cases {
        let text = dc("kvm", "x86_64", "pc-q35-7.2", body);
        let d = parse_domain_capabilities(&text).unwrap();
        assert_eq!(d.host_model.as_ref().map(|m| m.supported), want, "{what}");
        assert_eq!(d.summary().host_model, want.flatten(), "{what}");
        let c = build_capabilities(&input(x86(), vec![answer("kvm", None, text)]));
        assert_eq!(
            c.cpu_info.host_model.as_ref().map(|m| m.supported),
            want,
            "built: {what}"
        );
        // Only a supported host-model names svm through its model (EPYC).
        let svm = if want == Some(Some(true)) {
            Tri::Yes
        } else {
            Tri::Unknown
        };
        assert_eq!(c.cpu_info.svm.value, svm, "svm: {what}");
    }
}

#[test]
fn max_vcpus_of_the_kvm_document_only_and_no_int_max() {
    // (kvm <vcpu>, want host max, want the kvm machine's status reasons)
    let cases: [(&str, Option<u32>, &[&str]); 5] = [
        ("<vcpu max='288'/>", Some(288), &[]),
        // A kvm document without <vcpu> (riscv64's) says nothing: not the TCG 255.
        ("", None, &[]),
        (
            "<vcpu max='2147483647'/>",
            None,
            &["vcpu max 2147483647: no limit stated"],
        ),
        (
            "<vcpu max='4294967295'/>",
            None,
            &["vcpu max 4294967295: no limit stated"],
        ),
        ("<vcpu max='2147483646'/>", Some(2_147_483_646), &[]),
    ];
    for (vcpu, want, reasons) in cases {
        let kvm = dc("kvm", "x86_64", "pc-q35-7.2", vcpu);
        let qemu = dc("qemu", "x86_64", "pc-q35-7.2", "<vcpu max='255'/>");
        let c = build_capabilities(&input(
            x86(),
            vec![
                answer("kvm", Some("q35"), kvm),
                answer("qemu", Some("q35"), qemu),
            ],
        ));
        assert_eq!(c.virt_info.max_vcpus, want, "{vcpu}");
        let m = &c.virt_info.machines[0];
        assert_eq!(m.max_vcpus, want, "{vcpu}");
        assert_eq!(m.status.reasons, reasons, "{vcpu}");
        let state = if reasons.is_empty() {
            GroupState::Complete
        } else {
            GroupState::Partial
        };
        assert_eq!(m.status.state, state, "{vcpu}");
        assert_eq!(c.virt_info.machines[1].max_vcpus, Some(255));
        for r in reasons {
            assert!(
                c.virt_info
                    .status
                    .reasons
                    .contains(&format!("domain capabilities (kvm, q35): {r}")),
                "{:?}",
                c.virt_info.status
            );
        }
        assert!(
            c.virt_info.domain_capabilities[0]
                .max_vcpus
                .is_none_or(|n| !no_limit(n))
        );
    }
    // ppc64's INT_MAX from libvirt's own data.
    let mut i = input(
        caps("ppc64", "", "", ""),
        vec![answer("kvm", None, corpus("qemu_7.0.0.ppc64.xml"))],
    );
    i.guest_machine = Some("pseries".into());
    let c = build_capabilities(&i);
    assert_eq!(c.virt_info.max_vcpus, None);
    assert_eq!(c.virt_info.machines[0].max_vcpus, None);
    // Not asked for pseries by that name: the first answered machine, with the reason.
    assert!(
        c.virt_info.status.reasons.iter().any(|r| r.starts_with(
            "domain capabilities: none for the guests' machine pseries; using pseries-"
        )),
        "{:?}",
        c.virt_info.status
    );
}

#[test]
fn another_arch_is_kept_apart() {
    let s390 = corpus("qemu_6.0.0.s390x.xml");
    let x = corpus("qemu_7.2.0-q35.x86_64.xml");
    let c = build_capabilities(&input(
        x86(),
        vec![
            answer("kvm", Some("s390-ccw-virtio"), s390.clone()),
            answer("kvm", Some("q35"), x),
        ],
    ));
    let m = &c.virt_info.machines[0];
    assert_eq!(m.arch.as_deref(), Some("s390x"));
    assert_eq!(m.status.state, GroupState::Unavailable);
    assert_eq!(
        m.status.reasons,
        vec![
            "arch s390x is not the host's arch x86_64: kept apart, not used for host-level values"
        ]
    );
    assert_eq!((m.max_vcpus, m.secure_boot), (None, None));
    assert!(m.firmware.is_empty() && m.disk_buses.is_empty());
    // The host-level values are the x86_64 q35 ones; the s390x one is a reason.
    assert_eq!(
        c.virt_info.guest_machine.as_ref().map(|g| g.name.as_str()),
        Some("q35")
    );
    assert_eq!(c.security_info.s390_pv, None);
    assert_eq!(c.security_info.status.state, GroupState::Complete);
    assert_eq!(c.virt_info.status.state, GroupState::Partial);
    assert!(
        c.virt_info.status.reasons.iter().any(|r| r.starts_with(
            "domain capabilities (kvm, s390-ccw-virtio): arch s390x is not the host's"
        )),
        "{:?}",
        c.virt_info.status
    );

    // Alone, it gives nothing: the groups say why.
    let c = build_capabilities(&input(x86(), vec![answer("kvm", None, s390)]));
    assert_eq!(c.virt_info.guest_machine, None);
    assert_eq!(c.security_info.status.state, GroupState::Partial);
    assert_eq!(c.security_info.s390_pv, None);
    assert_eq!(c.virt_info.max_vcpus, None);
}

#[test]
fn other_drivers_are_unavailable_with_the_reason() {
    let cases = [
        (
            "bhyve",
            "QEMU",
            corpus("bhyve_uefi.x86_64.xml"),
            "driver bhyve is not supported",
        ),
        (
            "xen",
            "QEMU",
            corpus("libxl-xenfv.xml"),
            "driver xen is not supported",
        ),
        (
            "hvf",
            "QEMU",
            dc("hvf", "x86_64", "pc-q35-7.2", SECURE_YES),
            "driver hvf is not supported",
        ),
        (
            "kvm",
            "Xen",
            corpus("qemu_7.2.0-q35.x86_64.xml"),
            "driver Xen is not supported",
        ),
    ];
    for (virttype, hv, text, why) in cases {
        let mut i = input(x86(), vec![answer(virttype, None, text)]);
        i.hypervisor_type = Ok(hv.into());
        let c = build_capabilities(&i);
        let m = &c.virt_info.machines[0];
        assert_eq!(m.status.state, GroupState::Unavailable, "{why}");
        assert_eq!(m.status.reasons, vec![why.to_string()]);
        assert_eq!(m.secure_boot, None);
        assert_eq!(
            c.security_info.status.reasons,
            vec![format!("domain capabilities ({virttype}): {why}")]
        );
        assert_eq!(c.security_info.secure_boot, None);
        assert_eq!(c.security_info.status.state, GroupState::Partial);
        assert!(c.storage_info.disk_buses.is_empty());
    }
}

#[test]
fn vmx_and_svm_say_where_they_come_from() {
    let no_hm = "";
    // (host CPU in capabilities, kvm host-model CPU, vmx, svm)
    let cases: Vec<(&str, String, TriFact, TriFact)> = vec![
        (
            "<model>Skylake-Client</model><vendor>Intel</vendor><feature name='vmx'/>",
            no_hm.into(),
            TriFact::yes("host CPU features"),
            TriFact::unknown(None),
        ),
        (
            "<model>EPYC-Rome</model><vendor>AMD</vendor>",
            no_hm.into(),
            TriFact::unknown(None),
            TriFact::yes("CPU model EPYC-Rome definition"),
        ),
        (
            "",
            host_model("EPYC-Rome-v4", "AMD", ""),
            TriFact::unknown(None),
            TriFact::yes("CPU model EPYC-Rome-v4 definition"),
        ),
        (
            "",
            host_model(
                "Skylake-Client-IBRS",
                "Intel",
                "<feature policy='require' name='vmx'/>",
            ),
            TriFact::yes("host-model CPU features"),
            TriFact::unknown(None),
        ),
        (
            "",
            host_model("EPYC", "AMD", "<feature policy='disable' name='svm'/>"),
            TriFact::unknown(None),
            TriFact::no("host-model CPU features"),
        ),
        (
            "",
            host_model("Opteron_G1", "AMD", ""),
            TriFact::unknown(None),
            TriFact::unknown(None),
        ),
        (
            "<model>Haswell</model><vendor>Intel</vendor>",
            host_model("Haswell", "Intel", ""),
            TriFact::unknown(None),
            TriFact::unknown(None),
        ),
    ];
    for (cpu, hm, vmx, svm) in cases {
        let c = build_capabilities(&input(
            caps("x86_64", cpu, "", ""),
            vec![answer("kvm", None, dc("kvm", "x86_64", "pc-q35-7.2", &hm))],
        ));
        assert_eq!(c.cpu_info.vmx, vmx, "{cpu} {hm}");
        assert_eq!(c.cpu_info.svm, svm, "{cpu} {hm}");
    }
    // libvirt's own data: every AMD (EPYC-Rome) kvm document gives svm, every Intel one
    // (Skylake-Client-IBRS, vmx required) gives vmx.
    for (file, vmx, svm) in [
        ("qemu_7.2.0-q35.x86_64.xml", Tri::Unknown, Tri::Yes),
        ("qemu_5.1.0.x86_64.xml", Tri::Unknown, Tri::Yes),
        ("qemu_5.0.0-q35.x86_64.xml", Tri::Yes, Tri::Unknown),
        ("qemu_7.0.0-virt.aarch64.xml", Tri::Unknown, Tri::Unknown),
    ] {
        let arch = if file.contains("aarch64") {
            "aarch64"
        } else {
            "x86_64"
        };
        let c = build_capabilities(&input(
            caps(arch, "", "", ""),
            vec![answer("kvm", None, corpus(file))],
        ));
        assert_eq!(
            (c.cpu_info.vmx.value, c.cpu_info.svm.value),
            (vmx, svm),
            "{file}"
        );
    }
}

#[test]
fn svm_follows_libvirts_cpu_map() {
    for (model, svm) in [
        ("EPYC", true),
        ("EPYC-IBPB", true),
        ("EPYC-Rome", true),
        ("EPYC-Milan-v2", true),
        ("EPYC-Genoa", true),
        ("EPYC-v4", true),
        ("Opteron_G2", true),
        ("Opteron_G5", true),
        ("phenom", true),
        ("qemu64", true),
        ("Dhyana", true),
        ("Opteron_G1", false),
        ("athlon", false),
        ("kvm64", false),
        ("Skylake-Client", false),
        ("EPYCX", false),
        ("EPYC-Rome-vx", true),
        ("", false),
    ] {
        assert_eq!(model_includes(model, "svm"), svm, "{model}");
        assert!(!model_includes(model, "vmx"), "{model}");
    }
}

/// (host vendor, host-model, kvm_intel text, kvm_amd text, want).
type NestedCase = (
    &'static str,
    String,
    Result<String, String>,
    Result<String, String>,
    TriFact,
);

#[test]
fn nested_virt_from_sysfs_else_host_model_else_unknown() {
    let offline = || Err::<String, String>("not read: offline".into());
    let skylake = host_model("Skylake-Client-IBRS", "Intel", "");
    let skylake_vmx = host_model(
        "Skylake-Client-IBRS",
        "Intel",
        "<feature policy='require' name='vmx'/>",
    );
    let rome = host_model("EPYC-Rome", "AMD", "");
    let cases: Vec<NestedCase> = vec![
        (
            "Intel",
            String::new(),
            Ok("Y\n".into()),
            offline(),
            TriFact::yes("kvm_intel nested parameter"),
        ),
        (
            "Intel",
            skylake_vmx.clone(),
            Ok("N\n".into()),
            Ok("1\n".into()),
            TriFact::no("kvm_intel nested parameter"),
        ),
        (
            "AMD",
            String::new(),
            Ok("Y".into()),
            Ok("0\n".into()),
            TriFact::no("kvm_amd nested parameter"),
        ),
        (
            "AMD",
            String::new(),
            offline(),
            Ok("1\n".into()),
            TriFact::yes("kvm_amd nested parameter"),
        ),
        (
            "Hygon",
            String::new(),
            offline(),
            Ok("1".into()),
            TriFact::yes("kvm_amd nested parameter"),
        ),
        (
            "",
            String::new(),
            Err("no such file".into()),
            Ok("1\n".into()),
            TriFact::yes("kvm_amd nested parameter"),
        ),
        (
            "AMD",
            rome.clone(),
            offline(),
            offline(),
            TriFact::yes("host-model CPU"),
        ),
        (
            "AMD",
            rome,
            offline(),
            Ok("0\n".into()),
            TriFact::no("kvm_amd nested parameter"),
        ),
        (
            "Intel",
            skylake_vmx,
            offline(),
            offline(),
            TriFact::yes("host-model CPU"),
        ),
        (
            "Intel",
            skylake.clone(),
            offline(),
            offline(),
            TriFact::unknown(Some("kvm_intel nested parameter: not read: offline".into())),
        ),
        (
            "Intel",
            skylake,
            Ok("maybe\n".into()),
            offline(),
            TriFact::unknown(Some(
                "kvm_intel nested parameter: \"maybe\" is not Y/N/1/0".into(),
            )),
        ),
    ];
    for (vendor, hm, intel, amd, want) in cases {
        let cpu = if vendor.is_empty() {
            String::new()
        } else {
            format!("<vendor>{vendor}</vendor>")
        };
        let mut i = input(
            caps("x86_64", &cpu, "", ""),
            vec![answer("kvm", None, dc("kvm", "x86_64", "pc-q35-7.2", &hm))],
        );
        i.kvm_intel_nested = intel;
        i.kvm_amd_nested = amd;
        let c = build_capabilities(&i);
        assert_eq!(c.virt_info.nested_virt, want, "{vendor} {hm}");
    }
    // Not x86: no kvm_intel/kvm_amd to ask; the host-model CPU (none here) cannot tell.
    let mut i = input(
        caps("aarch64", "", "", ""),
        vec![answer(
            "kvm",
            Some("virt"),
            corpus("qemu_7.0.0-virt.aarch64.xml"),
        )],
    );
    i.kvm_intel_nested = Ok("Y\n".into());
    let c = build_capabilities(&i);
    assert_eq!(c.virt_info.nested_virt, TriFact::unknown(None));
}

#[test]
fn ksm_from_sysfs() {
    let cases: [(Result<String, String>, TriFact); 5] = [
        (Ok("1\n".into()), TriFact::yes("/sys/kernel/mm/ksm/run")),
        (Ok("0\n".into()), TriFact::no("/sys/kernel/mm/ksm/run")),
        (Ok("2\n".into()), TriFact::no("/sys/kernel/mm/ksm/run")),
        (
            Ok("on".into()),
            TriFact::unknown(Some(
                "/sys/kernel/mm/ksm/run: \"on\" is not 0, 1 or 2".into(),
            )),
        ),
        (
            Err("permission denied".into()),
            TriFact::unknown(Some("/sys/kernel/mm/ksm/run: permission denied".into())),
        ),
    ];
    for (run, want) in cases {
        let mut i = input(x86(), vec![]);
        i.ksm_run = run.clone();
        let c = build_capabilities(&i);
        assert_eq!(c.memory_info.ksm, want, "{run:?}");
    }
    let json = serde_json::to_value(TriFact::yes("x")).unwrap();
    assert_eq!(json, serde_json::json!({"value": "yes", "source": "x"}));
}

#[test]
fn cpu_models_in_three_lists() {
    let body = "<cpu><mode name='custom' supported='yes'>\
        <model usable='yes'>a</model><model usable='no'>b</model>\
        <model usable='unknown'>c</model><model>d</model><model usable='yes'>e</model>\
        </mode></cpu>";
    let c = build_capabilities(&input(
        x86(),
        vec![answer("kvm", None, dc("kvm", "x86_64", "m", body))],
    ));
    assert_eq!(c.cpu_info.usable_models, vec!["a", "e"]);
    assert_eq!(c.cpu_info.unusable_models, vec!["b"]);
    assert_eq!(c.cpu_info.unknown_models, vec!["c", "d"]);
    // aarch64 kvm: every model "unknown", none "unusable".
    let c = build_capabilities(&input(
        caps("aarch64", "", "", ""),
        vec![answer(
            "kvm",
            Some("virt"),
            corpus("qemu_7.0.0-virt.aarch64.xml"),
        )],
    ));
    assert!(c.cpu_info.usable_models.is_empty() && c.cpu_info.unusable_models.is_empty());
    assert!(c.cpu_info.unknown_models.len() > 30, "{:?}", c.cpu_info);
}

/// (answers, guest machine, want: machine name, secure boot, max vCPUs, ide among the
/// buses, security reasons).
type MachineCase = (
    Vec<DomCapsAnswer>,
    Option<&'static str>,
    &'static str,
    bool,
    u32,
    bool,
    usize,
);

#[test]
fn the_guests_machine_decides_the_host_level_values() {
    let pc = || answer("kvm", None, corpus("qemu_7.2.0.x86_64.xml"));
    let q35 = || answer("kvm", Some("q35"), corpus("qemu_7.2.0-q35.x86_64.xml"));
    let cases: Vec<MachineCase> = vec![
        (vec![pc(), q35()], Some("q35"), "q35", true, 288, false, 0),
        (vec![q35(), pc()], None, "q35", true, 288, false, 0),
        (
            vec![pc(), q35()],
            None,
            "pc-i440fx-7.2",
            false,
            255,
            true,
            0,
        ),
        // A VMI's canonical machine type finds the alias' answer.
        (
            vec![pc(), q35()],
            Some("pc-q35-7.2"),
            "q35",
            true,
            288,
            false,
            0,
        ),
        // Not asked: the first answered machine, with the reason.
        (
            vec![pc(), q35()],
            Some("virt"),
            "pc-i440fx-7.2",
            false,
            255,
            true,
            1,
        ),
    ];
    for (answers, guest, name, secure, max, ide, reasons) in cases {
        let mut i = input(x86(), answers);
        i.guest_machine = guest.map(str::to_string);
        let c = build_capabilities(&i);
        let g = c.virt_info.guest_machine.clone().unwrap();
        assert_eq!(g.name, name, "{guest:?}");
        assert_eq!(g.virttype, "kvm");
        assert_eq!(c.security_info.secure_boot, Some(secure), "{guest:?}");
        assert_eq!(c.virt_info.max_vcpus, Some(max), "{guest:?}");
        assert_eq!(
            c.storage_info.disk_buses.iter().any(|b| b == "ide"),
            ide,
            "{guest:?}"
        );
        assert_eq!(c.security_info.status.reasons.len(), reasons, "{guest:?}");
        assert_eq!(c.virt_info.machines.len(), 2);
    }
    let c = build_capabilities(&input(x86(), vec![q35()]));
    assert_eq!(
        c.virt_info.guest_machine,
        Some(MachineRef {
            name: "q35".into(),
            canonical: Some("pc-q35-7.2".into()),
            virttype: "kvm".into()
        })
    );
    // Unanswered: the canonical name from the capabilities' machine aliases.
    let guests = "<guest><os_type>hvm</os_type><arch name='x86_64'>\
        <machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine><machine maxCpus='288'>pc-q35-7.2</machine>\
        <domain type='kvm'/></arch></guest>";
    let mut i = input(caps("x86_64", "", "", guests), vec![]);
    i.domcaps = vec![DomCapsAnswer {
        virttype: "kvm".into(),
        machine: Some("q35".into()),
        answer: Err("internal error".into()),
    }];
    let c = build_capabilities(&i);
    let m = &c.virt_info.machines[0];
    assert_eq!(
        (m.machine.as_str(), m.canonical.as_deref()),
        ("q35", Some("pc-q35-7.2"))
    );
    assert_eq!(m.status.reasons, vec!["internal error"]);
    assert!(
        c.virt_info
            .status
            .reasons
            .contains(&"domain capabilities (kvm, q35): internal error".to_string()),
        "{:?}",
        c.virt_info.status
    );
}

#[test]
fn pages_from_cells_clusters_and_logical_cpus() {
    let dies = fixture("corpus-9.0.0/vircaps2xmldata/vircaps-x86_64-basic-dies.xml");
    let mut i = input(dies, vec![]);
    i.node_info = Ok(NodeInfo {
        cpus: 12,
        ..NodeInfo::default()
    });
    let c = build_capabilities(&i);
    assert_eq!(c.memory_info.page_sizes_kib, vec![4, 2048, 1_048_576]);
    assert_eq!(c.memory_info.hugepage_sizes_kib, vec![2048, 1_048_576]);
    assert_eq!(c.cpu_info.logical_cpus, Some(12));
    assert_eq!(
        c.cpu_info.numa_cells[0].pages[1],
        PageCount {
            size_kib: 2048,
            count: 4096,
            free: None
        }
    );
    assert!(
        !c.cpu_info
            .status
            .reasons
            .iter()
            .any(|r| r.starts_with("logical CPUs")),
        "{:?}",
        c.cpu_info.status
    );

    // Clusters count; no cells: the topology's product; a node info that disagrees is
    // a reason.
    let topo = caps(
        "aarch64",
        "<topology sockets='1' dies='1' clusters='2' cores='4' threads='1'/>\
         <pages unit='KiB' size='4'/><pages unit='KiB' size='2048'/>",
        "",
        "",
    );
    let mut i = input(topo, vec![]);
    i.node_info = Ok(NodeInfo {
        cpus: 4,
        ..NodeInfo::default()
    });
    let c = build_capabilities(&i);
    let t = c.cpu_info.topology.clone().unwrap();
    assert_eq!((t.clusters, t.cores, t.product()), (2, 4, 8));
    assert_eq!(c.cpu_info.logical_cpus, Some(8));
    assert_eq!(c.memory_info.hugepage_sizes_kib, vec![2048]);
    assert_eq!(c.cpu_info.status.state, GroupState::Partial);
    assert!(
        c.cpu_info
            .status
            .reasons
            .contains(&"logical CPUs: capabilities give 8, node info 4".to_string()),
        "{:?}",
        c.cpu_info.status
    );
    // Old JSON without `clusters` reads as 1.
    let t: CpuTopology =
        serde_json::from_str(r#"{"sockets":1,"dies":1,"cores":2,"threads":2}"#).unwrap();
    assert_eq!(t.clusters, 1);
}
