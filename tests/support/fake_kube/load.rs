//! Objects for the fake server: files from a folder, synthetic VM/VMI/Node sets, and
//! churn (guest-agent changes on random VMIs).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};

use super::store::Kind;

/// What `read_dir_objects` found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// VM, VMI and Node objects, in file order.
    pub objects: Vec<Value>,
    /// Files or objects left out, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

fn push_doc(out: &mut Loaded, path: &Path, doc: Value) {
    if doc.is_null() {
        return;
    }
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    if let Some(items) = doc.get("items").and_then(Value::as_array) {
        if kind.is_empty() || kind.ends_with("List") {
            for it in items.clone() {
                push_doc(out, path, it);
            }
            return;
        }
    }
    if Kind::parse(&kind).is_some_and(|k| k.name() == kind) {
        out.objects.push(doc);
    } else {
        out.skipped
            .push((path.to_path_buf(), format!("kind {kind:?} is not served")));
    }
}

/// Reads every `*.json`, `*.yaml` and `*.yml` file in `dir` (sorted by name). A file may
/// hold one object, a `List` (anything with `items`), or several YAML documents.
/// Objects of other kinds are skipped and reported in `skipped`.
pub fn read_dir_objects(dir: &Path) -> anyhow::Result<Loaded> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("json" | "yaml" | "yml")
            )
        })
        .collect();
    files.sort();
    let mut out = Loaded::default();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        if f.extension().is_some_and(|e| e == "json") {
            let v: Value =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
            push_doc(&mut out, &f, v);
        } else {
            use serde::Deserialize;
            for d in serde_yaml_ng::Deserializer::from_str(&text) {
                let v =
                    Value::deserialize(d).with_context(|| format!("parsing {}", f.display()))?;
                push_doc(&mut out, &f, v);
            }
        }
    }
    Ok(out)
}

/// A Node object as the kubelet registers it (the fields a reader may look at).
pub fn node(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubevirt.io/schedulable": "true",
            },
        },
        "spec": {},
        "status": {
            "capacity": {"cpu": "32", "memory": "131900000Ki", "pods": "250", "devices.kubevirt.io/kvm": "1k"},
            "allocatable": {"cpu": "31500m", "memory": "130800000Ki", "pods": "250", "devices.kubevirt.io/kvm": "1k"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": "2025-01-01T00:00:00Z", "lastTransitionTime": "2025-01-01T00:00:00Z"}],
            "addresses": [{"type": "Hostname", "address": name}],
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux",
                "kubeletVersion": "v1.33.0", "containerRuntimeVersion": "cri-o://1.33.0",
                "kernelVersion": "5.14.0-570.el9.x86_64", "osImage": "Red Hat Enterprise Linux CoreOS",
                "machineID": "", "systemUUID": "", "bootID": "", "kubeProxyVersion": ""},
        },
    })
}

/// SplitMix64: small, seedable, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

const OSES: [(&str, &str, &str, &str, &str); 4] = [
    (
        "centos",
        "CentOS Linux",
        "7 (Core)",
        "7",
        "3.10.0-1160.el7.x86_64",
    ),
    (
        "rhel",
        "Red Hat Enterprise Linux",
        "9.4 (Plow)",
        "9.4",
        "5.14.0-427.13.1.el9_4.x86_64",
    ),
    (
        "ubuntu",
        "Ubuntu",
        "24.04.1 LTS (Noble Numbat)",
        "24.04",
        "6.8.0-45-generic",
    ),
    (
        "fedora",
        "Fedora Linux",
        "41 (Cloud Edition)",
        "41",
        "6.11.4-301.fc41.x86_64",
    ),
];

fn guest_os(i: u64) -> Value {
    let (id, name, version, version_id, kernel) = OSES[(i % OSES.len() as u64) as usize];
    json!({"id": id, "name": name, "prettyName": format!("{name} {version}"), "version": version,
        "versionId": version_id, "kernelRelease": kernel, "kernelVersion": "#1 SMP PREEMPT_DYNAMIC",
        "machine": "x86_64"})
}

fn ip(i: u64, salt: u64) -> String {
    let n = i.wrapping_mul(7).wrapping_add(salt);
    format!(
        "10.{}.{}.{}",
        128 + (n >> 16) % 64,
        (n >> 8) % 256,
        1 + n % 254
    )
}

/// `n_vms` VM+VMI pairs (running, guest agent connected) spread round-robin over
/// `nodes`, then one Node object per node. Names are `vm-00000…` in namespaces
/// `ns-0`..`ns-9`; `seed` varies sizes, OSes and IPs.
pub fn synthetic(n_vms: usize, nodes: &[String], seed: u64) -> Vec<Value> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n_vms * 2 + nodes.len());
    for i in 0..n_vms as u64 {
        let node = nodes
            .get(i as usize % nodes.len().max(1))
            .map(String::as_str)
            .unwrap_or("node-a");
        let name = format!("vm-{i:05}");
        let ns = format!("ns-{}", i % 10);
        let cores = 1 + rng.below(4);
        let mem = format!("{}Gi", 1u64 << rng.below(4));
        let vm_uid = format!("{:08x}-0000-4000-8000-{:012x}", seed as u32, i);
        let vmi_uid = format!("{:08x}-0001-4000-8000-{:012x}", seed as u32, i);
        let os = rng.below(4);
        let mac = format!(
            "02:00:00:{:02x}:{:02x}:{:02x}",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        );
        let ts = "2025-01-01T00:00:00Z";
        let ip4 = ip(i, rng.below(1 << 20));
        out.push(json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": ns, "uid": vm_uid, "generation": 1,
                "creationTimestamp": ts,
                "labels": {"app": name, "kubevirt.io/domain": name}},
            "spec": {"runStrategy": "Always", "template": {
                "metadata": {"labels": {"kubevirt.io/domain": name}},
                "spec": {"domain": {"cpu": {"cores": cores, "sockets": 1, "threads": 1},
                    "memory": {"guest": mem}, "devices": {"interfaces": [{"name": "default", "masquerade": {}}]}},
                    "networks": [{"name": "default", "pod": {}}]}}},
            "status": {"created": true, "ready": true, "printableStatus": "Running",
                "desiredGeneration": 1, "observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": ts},
                    {"type": "AgentConnected", "status": "True", "lastProbeTime": null, "lastTransitionTime": ts}]},
        }));
        out.push(json!({
            "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": ns, "uid": vmi_uid, "generation": 8,
                "creationTimestamp": ts,
                "labels": {"kubevirt.io/domain": name, "kubevirt.io/nodeName": node},
                "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "name": name,
                    "uid": vm_uid, "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"domain": {"cpu": {"cores": cores, "sockets": 1, "threads": 1, "model": "host-model"},
                "memory": {"guest": mem}, "resources": {"requests": {"memory": mem}},
                "machine": {"type": "pc-q35-rhel9.4.0"},
                "devices": {"interfaces": [{"name": "default", "masquerade": {}, "macAddress": mac}]}},
                "networks": [{"name": "default", "pod": {}}]},
            "status": {
                "phase": "Running", "nodeName": node, "qosClass": "Burstable",
                "guestOSInfo": guest_os(os),
                "currentCPUTopology": {"cores": cores, "sockets": 1, "threads": 1},
                "memory": {"guestAtBoot": mem, "guestCurrent": mem, "guestRequested": mem},
                "machine": {"type": "pc-q35-rhel9.4.0"},
                "interfaces": [{"name": "default", "interfaceName": "eth0", "mac": mac,
                    "ipAddress": ip4, "ipAddresses": [ip4, format!("fe80::ff:fe{:02x}:{:04x}", (i >> 16) & 255, i & 0xffff)],
                    "infoSource": "domain, guest-agent", "queueCount": 1, "linkState": "up"}],
                "conditions": [
                    {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": ts},
                    {"type": "LiveMigratable", "status": "True", "lastProbeTime": null, "lastTransitionTime": null},
                    {"type": "AgentConnected", "status": "True", "lastProbeTime": ts, "lastTransitionTime": null}],
                "phaseTransitionTimestamps": [{"phase": "Running", "phaseTransitionTimestamp": ts}],
                "activePods": {format!("{vmi_uid}-pod"): node},
                "migrationMethod": "BlockMigration",
            },
        }));
    }
    out.extend(nodes.iter().map(|n| node(n)));
    out
}

/// Mutates the guest-agent data of `vmi` in place: a new IP (most of the time) or a
/// new guestOSInfo (kernel update).
pub fn churn_vmi(vmi: &mut Value, rng: &mut Rng) {
    let st = &mut vmi["status"];
    if rng.below(4) == 0 {
        let mut os = guest_os(rng.below(4));
        os["kernelRelease"] = json!(format!(
            "6.{}.{}-{}.x86_64",
            rng.below(12),
            rng.below(60),
            rng.below(500)
        ));
        st["guestOSInfo"] = os;
    } else {
        let ip4 = ip(rng.below(1 << 24), rng.below(1 << 20));
        match st["interfaces"].get_mut(0) {
            Some(ifc) => {
                ifc["ipAddress"] = json!(ip4);
                ifc["ipAddresses"][0] = json!(ip4);
            }
            None => {
                st["interfaces"] = json!([{"name": "default", "interfaceName": "eth0",
                    "ipAddress": ip4, "ipAddresses": [ip4], "infoSource": "domain, guest-agent"}]);
            }
        }
    }
}
