//! `virtsync inspect` as a process, on the KubeVirt fixtures.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/kubevirt")
        .join(name)
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
