//! `virtsync inspect capabilities` and `virtsync inspect domain` as a process, on the
//! libvirt fixtures.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/libvirt")
        .join(name)
        .display()
        .to_string()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_virtsync"))
        .args(args)
        .env_remove("VIRTSYNC_CONFIG")
        .output()
        .unwrap()
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn real_host_capabilities() {
    let out = run(&[
        "inspect",
        "capabilities",
        "--capabilities",
        &fixture("real/capabilities.xml"),
        "--domcapabilities",
        &fixture("real/domcapabilities-kvm.xml"),
        &fixture("real/domcapabilities-qemu.xml"),
        "--nodeinfo",
        &fixture("real/nodeinfo.txt"),
        "--output",
        "json",
    ]);
    let v = stdout_json(&out);
    assert_eq!(v["cpu_info"]["model"], "Broadwell");
    assert_eq!(v["cpu_info"]["signature"]["model"], 167);
    assert_eq!(v["cpu_info"]["topology"]["cores"], 2);
    assert_eq!(v["cpu_info"]["status"]["state"], "complete");
    assert_eq!(v["cpu_info"]["host_model"]["model"], "kvm64");
    assert_eq!(v["cpu_info"]["usable_models"].as_array().unwrap().len(), 4);
    assert_eq!(v["host_info"]["node_info"]["mhz"], 2600);
    assert_eq!(v["memory_info"]["total_kib"], 8_349_900);
    assert_eq!(v["security_info"]["secure_boot"], false);
    assert_eq!(v["security_info"]["iommu"], false);
    assert_eq!(v["security_info"]["models"][0]["model"], "none");
    assert_eq!(v["security_info"]["status"]["state"], "complete");
    assert_eq!(v["virt_info"]["max_vcpus"], 255);
    assert_eq!(v["virt_info"]["domain_capabilities"][1]["domain"], "qemu");
    // Offline: what no file gives is a reason, not a failure.
    assert_eq!(v["host_info"]["status"]["state"], "partial");
    assert_eq!(
        v["host_info"]["status"]["reasons"][0],
        "hostname: not given to inspect"
    );
    assert_eq!(v["storage_info"]["status"]["state"], "partial");
}

#[test]
fn amd_sev_host() {
    let v = stdout_json(&run(&[
        "inspect",
        "capabilities",
        "--capabilities",
        &fixture("caps/caps-qemu-kvm.xml"),
        "--domcapabilities",
        &fixture("domcaps/qemu_10.0.0-q35.x86_64+amdsev.xml"),
    ]));
    let sev = &v["security_info"]["sev"];
    assert_eq!(sev["cbitpos"], 51);
    assert_eq!(sev["reduced_phys_bits"], 1);
    assert_eq!(sev["max_guests"], 59);
    assert_eq!(sev["max_es_guests"], 450);
    assert_eq!(sev["snp"], true);
    assert_eq!(v["security_info"]["secure_boot"], true);
    assert_eq!(v["security_info"]["tpm"]["models"][1], "tpm-crb");
    assert_eq!(v["memory_info"]["page_sizes_kib"][2], 1_048_576);
    assert_eq!(v["cpu_info"]["numa_cells"].as_array().unwrap().len(), 2);
    // Only the kvm document: the virt group names the missing qemu one.
    let reasons = v["virt_info"]["status"]["reasons"].as_array().unwrap();
    assert!(
        reasons
            .iter()
            .any(|r| r == "domain capabilities (qemu): not given to inspect")
    );
}

#[test]
fn aarch64_host() {
    let v = stdout_json(&run(&[
        "inspect",
        "capabilities",
        "--capabilities",
        &fixture("caps/caps.aarch64.xml"),
        "--domcapabilities",
        &fixture("domcaps/qemu_10.0.0-virt.aarch64.xml"),
    ]));
    assert_eq!(v["cpu_info"]["arch"], "aarch64");
    assert_eq!(v["cpu_info"]["host_model"]["supported"], false);
    assert_eq!(
        v["virt_info"]["domain_capabilities"][0]["gic_versions"][0],
        "3"
    );
    assert_eq!(v["virt_info"]["max_vcpus"], 512);
}

#[test]
fn domain_types() {
    for (file, want) in [
        ("domains/launch-security-sev.xml", "kvm"),
        ("domains/minimal.xml", "qemu-tcg"),
        ("real/domain-kvm-live.xml", "kvm"),
        ("real/domain-qemu-live.xml", "qemu-tcg"),
        ("real/test-driver-domain.xml", "unknown"),
    ] {
        let out = run(&["inspect", "domain", &fixture(file)]);
        assert!(out.status.success(), "{file}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{want}\n"),
            "{file}"
        );
    }
}

#[test]
fn bad_files_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.xml");
    std::fs::write(
        &bomb,
        "<!DOCTYPE d [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><domain type='kvm'>&b;</domain>",
    )
    .unwrap();
    let binary = dir.path().join("binary.xml");
    std::fs::write(&binary, b"<domain type='kvm'>\xff</domain>").unwrap();
    let missing = dir.path().join("missing.xml");
    let tcg = fixture("domcaps/qemu_10.0.0-tcg.x86_64.xml");
    let caps = fixture("caps/caps-qemu-kvm.xml");
    let bomb_s = bomb.display().to_string();
    let binary_s = binary.display().to_string();
    let missing_s = missing.display().to_string();
    for (args, path, problem) in [
        (
            vec!["inspect", "domain", bomb_s.as_str()],
            bomb_s.as_str(),
            "DTD/entity declarations are not accepted",
        ),
        (
            vec!["inspect", "domain", binary_s.as_str()],
            binary_s.as_str(),
            "not UTF-8",
        ),
        (
            vec!["inspect", "domain", missing_s.as_str()],
            missing_s.as_str(),
            "No such file",
        ),
        (
            vec!["inspect", "capabilities", "--capabilities", bomb_s.as_str()],
            bomb_s.as_str(),
            "DTD/entity declarations are not accepted",
        ),
        (
            vec!["inspect", "capabilities", "--capabilities", tcg.as_str()],
            tcg.as_str(),
            "root element is <domainCapabilities>, expected <capabilities>",
        ),
        (
            vec![
                "inspect",
                "capabilities",
                "--capabilities",
                caps.as_str(),
                "--domcapabilities",
                tcg.as_str(),
                tcg.as_str(),
            ],
            tcg.as_str(),
            "a second qemu domain capabilities document",
        ),
        (
            vec![
                "inspect",
                "capabilities",
                "--capabilities",
                caps.as_str(),
                "--nodeinfo",
                caps.as_str(),
            ],
            caps.as_str(),
            "CPU model is missing",
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{path}: ")), "{args:?}: {err}");
        assert!(err.contains(problem), "{args:?}: {err}");
    }
}
