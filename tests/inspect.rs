//! `virtsync inspect` as a process: `vmi`/`vm` on the KubeVirt fixtures, `capabilities`
//! and `domain` on the libvirt fixtures.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{Value, json};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::existing as existing_fixture;

fn fixture(name: &str) -> PathBuf {
    existing_fixture(&format!("kubevirt/{name}"))
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

fn path_str(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn vmi_alone_gives_the_node_role_record() {
    let f = fixture("vmi-running-cnv.json");
    let v = stdout_json(&run(&["inspect", "vmi", path_str(&f)]));
    let r = &v["record"];
    assert_eq!(r["namespace"], "openshift-cnv");
    assert_eq!(r["name"], "centos7-gray-owl-35");
    assert_eq!(r.get("status"), None, "no VM given: status unknown");
    assert_eq!(r["cpuCount"], 1);
    assert_eq!(r["memoryMB"], 2048);
    assert_eq!(r["guestOS"], "CentOS Linux 7 (Core)");
    let rt = &r["runtimeDetails"];
    assert_eq!(rt["primaryIPAddress"], "10.128.1.193");
    assert_eq!(rt["nodeName"], "sno-0-0");
    assert_eq!(rt["memoryGuest"], "2Gi");
    assert_eq!(rt["agentConnected"], true);
    assert_eq!(
        v["versions"],
        json!({"vmiUid": "2e432308-e94c-4866-a86a-388ce0b6cbc1",
               "vmiResourceVersion": 11848215, "legacyOrigin": "vmi"})
    );
    // --output json is the default.
    let explicit = run(&["inspect", "vmi", path_str(&f), "--output", "json"]);
    assert_eq!(stdout_json(&explicit), v);
}

#[test]
fn vmi_with_its_vm_adds_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut vm: Value =
        serde_json::from_slice(&std::fs::read(fixture("vm-running-cnv.json")).unwrap()).unwrap();
    vm["metadata"]["name"] = json!("centos7-gray-owl-35");
    let vm_path = dir.path().join("vm.json");
    std::fs::write(&vm_path, serde_json::to_vec(&vm).unwrap()).unwrap();
    let f = fixture("vmi-running-cnv.json");
    let v = stdout_json(&run(&[
        "inspect",
        "vmi",
        path_str(&f),
        "--vm",
        path_str(&vm_path),
    ]));
    assert_eq!(v["record"]["status"], "POWERED_ON");
    assert_eq!(v["record"]["cpuCount"], 1);
    assert_eq!(v["versions"]["vmResourceVersion"], 8398727);
    assert_eq!(v["versions"]["vmiResourceVersion"], 11848215);

    // A VM of another name is refused.
    let other = fixture("vm-running-cnv.json");
    let out = run(&["inspect", "vmi", path_str(&f), "--vm", path_str(&other)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not the VM of VMI"));
}

#[test]
fn vm_alone_gives_the_cluster_role_record() {
    let f = fixture("vm-running-cnv.json");
    let v = stdout_json(&run(&["inspect", "vm", path_str(&f)]));
    assert_eq!(v["record"]["status"], "POWERED_ON");
    assert_eq!(v["record"].get("cpuCount"), None, "a VMI runs: not written");
    assert_eq!(v["record"].get("runtimeDetails"), None);
    assert_eq!(v["versions"]["runtimeUnknown"], true);
    assert_eq!(v["versions"]["vmResourceVersion"], 8398727);
}

#[test]
fn yaml_input_gives_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture("vmi-running-cnv.json");
    let value: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
    let yaml_path = dir.path().join("vmi.yaml");
    std::fs::write(&yaml_path, serde_yaml_ng::to_string(&value).unwrap()).unwrap();
    let from_yaml = run(&["inspect", "vmi", path_str(&yaml_path)]);
    let from_json = run(&["inspect", "vmi", path_str(&f)]);
    assert_eq!(stdout_json(&from_yaml), stdout_json(&from_json));
    assert_eq!(from_yaml.stdout, from_json.stdout);
}

#[test]
fn table_output_lists_fields_and_values() {
    let f = fixture("vmi-running-cnv.json");
    let out = run(&["inspect", "vmi", path_str(&f), "--output", "table"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let row = |field: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(field))
            .map(|l| l[field.len()..].trim().to_string())
    };
    assert_eq!(row("record.cpuCount").as_deref(), Some("1"));
    assert_eq!(
        row("record.guestOS").as_deref(),
        Some("CentOS Linux 7 (Core)")
    );
    assert_eq!(
        row("record.runtimeDetails.primaryIPAddress").as_deref(),
        Some("10.128.1.193")
    );
    let out = run(&["inspect", "vmi", path_str(&f), "--output", "yaml"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "unsupported output is a usage error"
    );
}

#[test]
fn synthetic_objects_derive_with_warnings() {
    let f = fixture("vmi-all-fields-synthetic.json");
    let out = run(&["inspect", "vmi", path_str(&f)]);
    let v = stdout_json(&out);
    assert_eq!(v["record"].get("cpuCount"), None, "never 0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cpu count"), "{stderr}");
    let f = fixture("vm-all-fields-synthetic.json");
    let v = stdout_json(&run(&["inspect", "vm", path_str(&f)]));
    assert_eq!(v["record"]["status"], "DELETING");
}

#[test]
fn bad_files_exit_2_with_one_line_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut vmi: Value =
        serde_json::from_slice(&std::fs::read(fixture("vmi-running-cnv.json")).unwrap()).unwrap();
    vmi["status"]["currentCPUTopology"]["cores"] = json!("x");
    let bad_field = dir.path().join("bad-field.json");
    std::fs::write(&bad_field, serde_json::to_vec(&vmi).unwrap()).unwrap();
    let not_json = dir.path().join("broken.json");
    std::fs::write(&not_json, "{\"metadata\": ").unwrap();
    let missing = dir.path().join("missing.json");
    let vmim = fixture("vmim-scheduling-cnv.json");

    let cases: [(&std::path::Path, &str, &str); 4] = [
        (
            &bad_field,
            "vmi",
            "status.currentCPUTopology.cores: invalid type: string \"x\", expected u32",
        ),
        (&not_json, "vmi", "EOF"),
        (&missing, "vm", "No such file"),
        (&vmim, "vmi", "VirtualMachineInstanceMigration"),
    ];
    for (path, what, needle) in cases {
        let out = run(&["inspect", what, path_str(path)]);
        assert_eq!(out.status.code(), Some(2), "{}", path.display());
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(path_str(path)), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
}

/// A file of the libvirt fixtures, as a path string.
fn libvirt_fixture(name: &str) -> String {
    existing_fixture(&format!("libvirt/{name}"))
        .display()
        .to_string()
}

// ---- inspect capabilities / inspect domain ----

#[test]
fn real_host_capabilities() {
    let out = run(&[
        "inspect",
        "capabilities",
        "--capabilities",
        &libvirt_fixture("real/capabilities.xml"),
        "--domcapabilities",
        &libvirt_fixture("real/domcapabilities-kvm.xml"),
        &libvirt_fixture("real/domcapabilities-qemu.xml"),
        "--nodeinfo",
        &libvirt_fixture("real/nodeinfo.txt"),
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
    // libvirt 9.0 says <sev supported='no'/>, <sgx supported='no'/>, <tpm
    // supported='yes'> but has no <launchSecurity> or <tdx>: SEV-SNP and TDX are null,
    // not false.
    let s = &v["security_info"];
    assert_eq!(s["sev"]["supported"], false);
    assert_eq!(s["sev"]["es"], false);
    assert_eq!(s["sev"]["snp"], Value::Null);
    assert_eq!(s["tdx"], Value::Null);
    assert_eq!(s["sgx"]["supported"], false);
    assert_eq!(s["tpm"]["supported"], true);
    assert_eq!(v["cpu_info"]["host_model"]["supported"], true);
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

/// The values of the loader's `secure` enum in a domcapabilities file, read without the
/// parser.
fn secure_enum(path: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let loader = &text[text.find("<loader").unwrap()..text.find("</loader>").unwrap()];
    let Some(start) = loader.find("<enum name='secure'>") else {
        return Vec::new();
    };
    let values = &loader[start..start + loader[start..].find("</enum>").unwrap()];
    values
        .split("<value>")
        .skip(1)
        .map(|v| v.split_once("</value>").unwrap().0.to_owned())
        .collect()
}

/// `--domcapabilities` for machines pc (libvirt's default) and q35 of the same real host:
/// the documents of the guests' machine give the host-level values, the others are
/// reported per machine, whatever the order the files are given in.
#[test]
fn machine_picks_the_documents_that_describe_the_guests() {
    let caps = libvirt_fixture("real/capabilities.xml");
    let pc_kvm = libvirt_fixture("real/domcapabilities-kvm.xml");
    let pc_qemu = libvirt_fixture("real/domcapabilities-qemu.xml");
    let q35_kvm = libvirt_fixture("real/domcapabilities-q35-kvm.xml");
    let q35_qemu = libvirt_fixture("real/domcapabilities-q35-qemu.xml");
    let q35_secure = secure_enum(&q35_kvm).contains(&"yes".to_owned());
    let pc_secure = secure_enum(&pc_kvm).contains(&"yes".to_owned());
    let inspect = |files: &[&str], machine: Option<&str>| -> Value {
        let mut args = vec!["inspect", "capabilities", "--capabilities", &caps];
        args.push("--domcapabilities");
        args.extend(files);
        if let Some(m) = machine {
            args.extend(["--machine", m]);
        }
        let out = run(&args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        stdout_json(&out)
    };
    let all = [
        pc_kvm.as_str(),
        pc_qemu.as_str(),
        q35_qemu.as_str(),
        q35_kvm.as_str(),
    ];
    let v = inspect(&all, Some("q35"));
    assert_eq!(
        v["virt_info"]["guest_machine"],
        json!({"name": "q35", "canonical": "pc-q35-7.2", "virttype": "kvm"})
    );
    assert_eq!(v["security_info"]["secure_boot"], q35_secure);
    assert_eq!(v["virt_info"]["max_vcpus"], 288);
    let machines: Vec<(String, String, String)> = v["virt_info"]["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["machine"].as_str().unwrap().to_owned(),
                m["canonical"].as_str().unwrap_or("-").to_owned(),
                m["virttype"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let row = |m: &str, c: &str, t: &str| (m.to_owned(), c.to_owned(), t.to_owned());
    assert_eq!(
        machines,
        [
            row("q35", "pc-q35-7.2", "kvm"),
            row("q35", "pc-q35-7.2", "qemu"),
            row("pc-i440fx-7.2", "pc-i440fx-7.2", "kvm"),
            row("pc-i440fx-7.2", "pc-i440fx-7.2", "qemu"),
        ]
    );
    let per_machine = &v["virt_info"]["machines"];
    assert_eq!(per_machine[0]["max_vcpus"], 288);
    assert_eq!(per_machine[0]["secure_boot"], q35_secure);
    assert_eq!(per_machine[2]["max_vcpus"], 255);
    assert_eq!(per_machine[2]["secure_boot"], pc_secure);
    // No --machine: the daemon's default for x86_64, q35, as a document describes it.
    assert_eq!(inspect(&all, None), v);
    // The canonical name works too, and names the machine as given.
    let canonical = inspect(&all, Some("pc-q35-7.2"));
    assert_eq!(
        canonical["virt_info"]["guest_machine"]["name"],
        "pc-q35-7.2"
    );
    assert_eq!(canonical["security_info"]["secure_boot"], q35_secure);
    // pc (an alias of pc-i440fx-7.2): its documents give the host-level values, in
    // whatever order the files come.
    for files in [
        all,
        [
            q35_kvm.as_str(),
            q35_qemu.as_str(),
            pc_qemu.as_str(),
            pc_kvm.as_str(),
        ],
    ] {
        let pc = inspect(&files, Some("pc"));
        assert_eq!(
            pc["virt_info"]["guest_machine"],
            json!({"name": "pc", "canonical": "pc-i440fx-7.2", "virttype": "kvm"})
        );
        assert_eq!(pc["security_info"]["secure_boot"], pc_secure);
        assert_eq!(pc["virt_info"]["max_vcpus"], 255);
        assert_eq!(pc["virt_info"]["machines"][0]["machine"], "pc");
    }
    // The table says which machine the values describe.
    let out = run(&[
        "inspect",
        "capabilities",
        "--capabilities",
        &caps,
        "--domcapabilities",
        &pc_kvm,
        &q35_kvm,
        "--machine",
        "q35",
        "--output",
        "table",
    ]);
    let t = stdout_text("capabilities --machine q35 --output table", &out);
    let row = |f: &str| table_row(&t, f);
    assert_eq!(
        row("guest machine").as_deref(),
        Some("q35 = pc-q35-7.2, kvm")
    );
    assert_eq!(
        row("max vcpus").as_deref(),
        Some("288 (for q35 = pc-q35-7.2, kvm)")
    );
    assert!(
        row("machine pc-i440fx-7.2 kvm").is_some_and(|r| r.contains("max 255 vCPUs")),
        "{t}"
    );
    // Only pc documents and no --machine: the first document's machine.
    let only_pc = inspect(&[pc_qemu.as_str(), pc_kvm.as_str()], None);
    assert_eq!(
        only_pc["virt_info"]["guest_machine"],
        json!({"name": "pc-i440fx-7.2", "canonical": "pc-i440fx-7.2", "virttype": "kvm"})
    );
}

/// A domain capabilities document of another driver (bhyve here) or of another
/// architecture (s390x next to an x86_64 host) is reported unavailable with the reason,
/// and is never taken for the host's values.
#[test]
fn other_drivers_are_reported_not_refused() {
    let bhyve = libvirt_fixture("corpus-9.0.0/domaincapsdata/bhyve_basic.x86_64.xml");
    let s390x = libvirt_fixture("corpus-9.0.0/domaincapsdata/qemu_6.0.0.s390x.xml");
    let out = run(&[
        "inspect",
        "capabilities",
        "--capabilities",
        &libvirt_fixture("real/capabilities.xml"),
        "--domcapabilities",
        &bhyve,
        &s390x,
        &libvirt_fixture("real/domcapabilities-kvm.xml"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v = stdout_json(&out);
    let machines = v["virt_info"]["machines"].as_array().unwrap();
    let b = machines
        .iter()
        .find(|m| m["virttype"] == "bhyve")
        .unwrap_or_else(|| panic!("{machines:?}"));
    assert_eq!(b["status"]["state"], "unavailable", "{b}");
    assert!(
        b["status"]["reasons"].as_array().unwrap().iter().any(|r| r
            .as_str()
            .unwrap()
            .contains("driver bhyve is not supported")),
        "{b}"
    );
    let s = machines
        .iter()
        .find(|m| m["arch"] == "s390x")
        .unwrap_or_else(|| panic!("{machines:?}"));
    assert_eq!(s["status"]["state"], "unavailable", "{s}");
    assert!(
        s["status"]["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("s390x") && r.contains("x86_64")),
        "{s}"
    );
    assert_ne!(v["security_info"]["s390_pv"], true);
    // The host's values come from the kvm document.
    assert_eq!(v["virt_info"]["guest_machine"]["virttype"], "kvm");
    assert_eq!(v["virt_info"]["max_vcpus"], 255);
    let buses = &v["storage_info"]["disk_buses"];
    assert!(
        buses.as_array().unwrap().iter().any(|b| b == "ide"),
        "the kvm pc document's buses, not bhyve's: {buses}"
    );
}

/// `--machine` must name a machine a document describes, and be a machine name.
#[test]
fn machine_errors_exit_2() {
    let caps = libvirt_fixture("real/capabilities.xml");
    let pc_kvm = libvirt_fixture("real/domcapabilities-kvm.xml");
    for (machine, words) in [
        (
            "q35",
            &[
                "--machine q35: no --domcapabilities document describes it",
                "pc-q35-7.2",
                "kvm pc-i440fx-7.2",
            ][..],
        ),
        (
            "virt",
            &["--machine virt: no --domcapabilities document"][..],
        ),
        (
            "q35;reboot",
            &["--machine", "is not a machine type name"][..],
        ),
        ("", &["--machine", "is not a machine type name"][..]),
    ] {
        let out = run(&[
            "inspect",
            "capabilities",
            "--capabilities",
            &caps,
            "--domcapabilities",
            &pc_kvm,
            "--machine",
            machine,
        ]);
        assert_eq!(out.status.code(), Some(2), "{machine}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        for w in words {
            assert!(err.contains(w), "{machine}: {err} lacks {w:?}");
        }
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn amd_sev_host() {
    let v = stdout_json(&run(&[
        "inspect",
        "capabilities",
        "--capabilities",
        &libvirt_fixture("caps/caps-qemu-kvm.xml"),
        "--domcapabilities",
        &libvirt_fixture("domcaps/qemu_10.0.0-q35.x86_64+amdsev.xml"),
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
    // Only the kvm document, of q35 10.0: it describes the guests (no --machine, no q35
    // alias in these capabilities: the first document).
    assert_eq!(
        v["virt_info"]["guest_machine"],
        json!({"name": "pc-q35-10.0", "canonical": "pc-q35-10.0", "virttype": "kvm"})
    );
    assert_eq!(v["virt_info"]["machines"].as_array().unwrap().len(), 1);
    assert_eq!(v["virt_info"]["max_vcpus"], 4096);
}

#[test]
fn aarch64_host() {
    let v = stdout_json(&run(&[
        "inspect",
        "capabilities",
        "--capabilities",
        &libvirt_fixture("caps/caps.aarch64.xml"),
        "--domcapabilities",
        &libvirt_fixture("domcaps/qemu_10.0.0-virt.aarch64.xml"),
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
        let out = run(&["inspect", "domain", &libvirt_fixture(file)]);
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
    let tcg = libvirt_fixture("domcaps/qemu_10.0.0-tcg.x86_64.xml");
    let caps = libvirt_fixture("caps/caps-qemu-kvm.xml");
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
            "a second qemu domain capabilities document for machine pc-i440fx-10.0",
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

// ---- examples/inputs: the README's commands on the sample files ----

/// The `virtsync …` lines of the README's shell blocks (comments and output excluded).
fn readme_commands() -> Vec<String> {
    let readme = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/inputs/README.md");
    let text =
        std::fs::read_to_string(&readme).unwrap_or_else(|e| panic!("{}: {e}", readme.display()));
    let mut in_shell = false;
    let mut commands = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_shell = line == "```sh";
            continue;
        }
        if in_shell && let Some(args) = line.strip_prefix("virtsync ") {
            commands.push(args.to_owned());
        }
    }
    commands
}

/// Runs `virtsync ARGS` from the repository root, as the README says.
fn run_in_repo(args: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_virtsync"))
        .args(args.split_whitespace())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("VIRTSYNC_CONFIG")
        .output()
        .unwrap()
}

/// The value of a `field  value` row of a table, `None` when there is no such row.
fn table_row(text: &str, field: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix(field)?;
        rest.starts_with("  ").then(|| rest.trim().to_owned())
    })
}

fn stdout_text(args: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{args}: exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn the_sample_inputs_readme_commands_work() {
    type Check = fn(&str, &Output);
    let checks: &[(&str, Check)] = &[
        (
            "inspect vmi examples/inputs/vmi.yaml --vm examples/inputs/vm.yaml --output table",
            |args, out| {
                let t = stdout_text(args, out);
                let row = |f: &str| table_row(&t, f);
                assert_eq!(row("record.name").as_deref(), Some("centos7-gray-owl-35"));
                assert_eq!(row("record.namespace").as_deref(), Some("openshift-cnv"));
                assert_eq!(row("record.status").as_deref(), Some("POWERED_ON"));
                assert_eq!(row("record.cpuCount").as_deref(), Some("1"));
                assert_eq!(row("record.memoryMB").as_deref(), Some("2048"));
                assert_eq!(
                    row("record.guestOS").as_deref(),
                    Some("CentOS Linux 7 (Core)")
                );
                assert_eq!(
                    row("record.runtimeDetails.primaryIPAddress").as_deref(),
                    Some("10.128.1.193")
                );
                assert_eq!(
                    row("record.runtimeDetails.nodeName").as_deref(),
                    Some("sno-0-0")
                );
            },
        ),
        (
            "inspect vmi examples/inputs/vmi.yaml --vm examples/inputs/vm.yaml",
            |args, out| {
                let v: Value = serde_json::from_str(&stdout_text(args, out)).unwrap();
                assert_eq!(v["record"]["name"], "centos7-gray-owl-35");
                assert_eq!(v["record"]["status"], "POWERED_ON");
                assert_eq!(v["record"]["runtimeDetails"]["cpuCores"], 1);
                assert_eq!(v["versions"]["vmiResourceVersion"], 11848215);
                assert_eq!(v["versions"]["vmResourceVersion"], 8398727);
                assert!(out.stderr.is_empty(), "no warnings on the samples");
            },
        ),
        (
            "inspect vm examples/inputs/vm.yaml --output table",
            |args, out| {
                let t = stdout_text(args, out);
                assert_eq!(
                    table_row(&t, "record.name").as_deref(),
                    Some("centos7-gray-owl-35")
                );
                assert_eq!(
                    table_row(&t, "record.status").as_deref(),
                    Some("POWERED_ON")
                );
                assert_eq!(
                    table_row(&t, "versions.runtimeUnknown").as_deref(),
                    Some("true")
                );
                assert_eq!(table_row(&t, "record.cpuCount"), None, "a VMI runs");
            },
        ),
        (
            "inspect vmi examples/inputs/vmis-list.yaml --name rhel9-gitops --output table",
            |args, out| {
                let t = stdout_text(args, out);
                let row = |f: &str| table_row(&t, f);
                assert_eq!(row("record.name").as_deref(), Some("rhel9-gitops"));
                assert_eq!(row("record.cpuCount").as_deref(), Some("2"));
                assert_eq!(row("record.memoryMB").as_deref(), Some("4096"));
                assert_eq!(
                    row("record.guestOS").as_deref(),
                    Some("Red Hat Enterprise Linux 9.4 (Plow)")
                );
                assert_eq!(row("record.status"), None, "no VM given");
            },
        ),
        (
            "inspect vmi examples/inputs/vmis-list.yaml --name openshift-cnv/centos7-gray-owl-35 --vm examples/inputs/vm.yaml",
            |args, out| {
                let v: Value = serde_json::from_str(&stdout_text(args, out)).unwrap();
                assert_eq!(v["record"]["name"], "centos7-gray-owl-35");
                assert_eq!(v["record"]["status"], "POWERED_ON");
                assert_eq!(v["record"]["cpuCount"], 1);
            },
        ),
        (
            "inspect capabilities --capabilities examples/inputs/capabilities.xml --domcapabilities examples/inputs/domcapabilities.xml --nodeinfo examples/inputs/nodeinfo.txt --output table",
            |args, out| {
                let t = stdout_text(args, out);
                let row = |f: &str| table_row(&t, f);
                assert_eq!(row("cpu").as_deref(), Some("Intel Broadwell"));
                assert_eq!(row("model").as_deref(), Some("Broadwell (Intel, x86_64)"));
                assert_eq!(
                    row("topology").as_deref(),
                    Some("1 socket, 1 die, 1 cluster, 2 cores, 1 thread per core: 2 CPUs")
                );
                assert_eq!(
                    row("nodeinfo").as_deref(),
                    Some("2 CPUs, 2600 MHz, 1 NUMA node, 7.96 GiB")
                );
                assert_eq!(row("cpu_info").as_deref(), Some("complete"));
                // Free pages per cell come from libvirt, not from a document.
                assert_eq!(
                    row("memory_info").as_deref(),
                    Some("partial: free pages: not given to inspect")
                );
                assert_eq!(row("domain types").as_deref(), Some("kvm, qemu"));
                // The sample's domain capabilities are of libvirt's default machine.
                assert_eq!(row("guest machine").as_deref(), Some("pc-i440fx-7.2, kvm"));
                assert_eq!(
                    row("max vcpus").as_deref(),
                    Some("255 (for pc-i440fx-7.2, kvm)")
                );
                assert_eq!(
                    row("secure boot").as_deref(),
                    Some("no (for pc-i440fx-7.2, kvm)")
                );
                assert!(
                    row("host_info")
                        .is_some_and(|s| s == "partial: hostname: not given to inspect"),
                    "{t}"
                );
            },
        ),
        ("inspect vmi examples/inputs/vmis-list.yaml", |args, out| {
            assert_eq!(out.status.code(), Some(2), "{args}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("the List holds 2 VirtualMachineInstances")
                    && err.contains("openshift-cnv/centos7-gray-owl-35")
                    && err.contains("openshift-cnv/rhel9-gitops")
                    && err.contains("--name"),
                "{err}"
            );
        }),
    ];
    let commands = readme_commands();
    let tested: Vec<&str> = checks.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        commands, tested,
        "examples/inputs/README.md and this test list the same commands"
    );
    for (args, check) in checks {
        check(args, &run_in_repo(args));
    }
}

#[test]
fn lists_from_kubectl_in_json_and_yaml() {
    // The sample List as JSON (`kubectl get vmi -o json`) picks the same VMI.
    let dir = tempfile::tempdir().unwrap();
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/inputs/vmis-list.yaml");
    let list: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&sample).unwrap()).unwrap();
    let json_path = dir.path().join("vmis.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&list).unwrap()).unwrap();
    let from_yaml = run(&[
        "inspect",
        "vmi",
        path_str(&sample),
        "--name",
        "rhel9-gitops",
    ]);
    let from_json = run(&[
        "inspect",
        "vmi",
        path_str(&json_path),
        "--name",
        "rhel9-gitops",
    ]);
    assert_eq!(stdout_json(&from_yaml), stdout_json(&from_json));

    // A List of one VMI needs no --name.
    let mut one = list.clone();
    one["items"].as_array_mut().unwrap().truncate(1);
    let one_path = dir.path().join("one.yaml");
    std::fs::write(&one_path, serde_yaml_ng::to_string(&one).unwrap()).unwrap();
    let v = stdout_json(&run(&["inspect", "vmi", path_str(&one_path)]));
    assert_eq!(v["record"]["name"], "centos7-gray-owl-35");

    // `kubectl get vm,vmi -o yaml`: one List for FILE and --vm; --name skips the VM items.
    let vm: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(sample.with_file_name("vm.yaml")).unwrap(),
    )
    .unwrap();
    let mut mixed = list.clone();
    mixed["items"].as_array_mut().unwrap().insert(0, vm);
    let mixed_path = dir.path().join("mixed.yaml");
    std::fs::write(&mixed_path, serde_yaml_ng::to_string(&mixed).unwrap()).unwrap();
    let m = path_str(&mixed_path);
    let v = stdout_json(&run(&[
        "inspect",
        "vmi",
        m,
        "--vm",
        m,
        "--name",
        "centos7-gray-owl-35",
    ]));
    assert_eq!(v["record"]["status"], "POWERED_ON");
    assert_eq!(v["record"]["cpuCount"], 1);
    let v = stdout_json(&run(&["inspect", "vm", m, "--name", "centos7-gray-owl-35"]));
    assert_eq!(v["record"]["status"], "POWERED_ON");

    // Errors: exit 2, one line naming the file and what is wrong.
    for (args, needle) in [
        (
            vec!["inspect", "vmi", m],
            "items[0] (openshift-cnv/centos7-gray-owl-35) is a VirtualMachine, not a VirtualMachineInstance",
        ),
        (
            vec!["inspect", "vmi", m, "--name", "nope"],
            "no VirtualMachineInstance nope in the List (it holds openshift-cnv/centos7-gray-owl-35, openshift-cnv/rhel9-gitops)",
        ),
        (
            vec!["inspect", "vm", m, "--name", "rhel9-gitops"],
            "no VirtualMachine rhel9-gitops in the List (it holds openshift-cnv/centos7-gray-owl-35)",
        ),
        // The VM of the VMI is looked for in a --vm List by the VMI's namespace and name.
        (
            vec!["inspect", "vmi", m, "--name", "rhel9-gitops", "--vm", m],
            "no VirtualMachine openshift-cnv/rhel9-gitops in the List",
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(m) && err.contains(needle), "{args:?}: {err}");
    }
    let out = run(&["inspect", "vmi", m, "--name", "a/b/c"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected NAME or NAMESPACE/NAME"));
}

#[test]
fn capabilities_table_of_the_fixtures() {
    let out = run(&[
        "inspect",
        "capabilities",
        "--capabilities",
        &libvirt_fixture("caps/caps-qemu-kvm.xml"),
        "--domcapabilities",
        &libvirt_fixture("domcaps/qemu_10.0.0-q35.x86_64+amdsev.xml"),
        "--output",
        "table",
    ]);
    let t = stdout_text("capabilities --output table", &out);
    let groups: Vec<&str> = t
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        groups,
        [
            "host_info",
            "cpu_info",
            "memory_info",
            "security_info",
            "storage_info",
            "network_info",
            "virt_info"
        ]
    );
    let row = |f: &str| table_row(&t, f);
    assert_eq!(row("cpu").as_deref(), Some("Intel Haswell-noTSX"));
    assert_eq!(
        row("host-model").as_deref(),
        Some("EPYC-Genoa (AMD), 31 features")
    );
    assert_eq!(
        row("sev").as_deref(),
        Some("yes: SEV, SEV-ES, SEV-SNP; max guests 59, max ES guests 450")
    );
    // launchSecurity lists sev and sev-snp only.
    assert_eq!(row("tdx").as_deref(), Some("no"));
    assert_eq!(row("sgx").as_deref(), Some("no"));
    assert_eq!(
        row("secure boot").as_deref(),
        Some("yes (for pc-q35-10.0, kvm)")
    );
    assert_eq!(
        row("max vcpus").as_deref(),
        Some("4096 (for pc-q35-10.0, kvm)")
    );
    assert_eq!(row("guest machine").as_deref(), Some("pc-q35-10.0, kvm"));
    assert_eq!(row("numa cells").as_deref(), Some("2"));
    assert!(
        row("virt_info")
            .is_some_and(|s| s.contains("hypervisor type") && s.contains("not given to inspect")),
        "{t}"
    );
    assert!(
        row("domcaps kvm").is_some_and(|s| s.starts_with("pc-q35-10.0, x86_64, max 4096 vCPUs")),
        "{t}"
    );
    // Compact: long lists are cut.
    assert!(
        row("usable models").is_some_and(|s| s.contains("more")),
        "{t}"
    );
    assert!(t.lines().count() < 60, "{t}");
}
