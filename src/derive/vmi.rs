//! A `VirtualMachineInstance` → what it tells about its VM (docs/ARCHITECTURE.md, "Field rules").

use std::sync::Arc;

use crate::model::{RuntimeDetails, VmKey, parse_resource_version};

use super::DeriveError;
use super::details::{interfaces_json, primary_ip, volumes_json};
use super::domain_target::DomainFacts;
use super::objects::{ObjectMeta, QuantityText, Vmi};
use super::quantity;

/// Label KubeVirt puts on a VMI scheduled to a node.
pub const NODE_LABEL: &str = "kubevirt.io/nodeName";

/// What one VMI object says about its VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmiPart {
    pub key: VmKey,
    pub uid: Option<String>,
    pub resource_version: Option<i64>,
    /// `status.nodeName`, else the `kubevirt.io/nodeName` label.
    pub node: Option<String>,
    /// Phase Succeeded or Failed: counts as "no VMI".
    pub final_phase: bool,
    pub cpu_count: Option<i64>,
    pub memory_mb: Option<i64>,
    pub guest_os: Option<String>,
    /// Shared with the records derived from this part.
    pub runtime: Arc<RuntimeDetails>,
    /// `status.activePods`: (pod UID, node), sorted by pod UID.
    pub active_pods: Vec<(String, String)>,
    pub runtime_user: Option<i64>,
    /// What says the libvirt domain may have changed (pause, migration).
    pub domain: DomainFacts,
    /// Values that were dropped (invalid quantities, out-of-range numbers), one line each.
    pub warnings: Vec<String>,
}

/// `namespace/name` of an object; both must be present and valid.
pub(super) fn object_key(meta: &ObjectMeta) -> Result<VmKey, DeriveError> {
    let namespace = meta
        .namespace
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or(DeriveError::Missing("metadata.namespace"))?;
    let name = meta
        .name
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or(DeriveError::Missing("metadata.name"))?;
    let key = VmKey::new(namespace, name);
    key.validate().map_err(|problem| DeriveError::InvalidKey {
        key: key.to_string(),
        problem,
    })?;
    Ok(key)
}

/// Non-empty text, trimmed of nothing (reported values are kept as they are).
pub(super) fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

/// cores × sockets × threads, each missing or 0 counted as 1: never 0. `Err` when the
/// product does not fit the INTEGER column.
pub(super) fn cpu_product(
    cores: Option<u32>,
    sockets: Option<u32>,
    threads: Option<u32>,
) -> Result<i64, String> {
    let f = |v: Option<u32>| u128::from(v.filter(|n| *n > 0).unwrap_or(1));
    let product = f(cores) * f(sockets) * f(threads);
    match i32::try_from(product) {
        Ok(n) => Ok(i64::from(n)),
        Err(_) => Err(format!(
            "cpu count {product} (cores × sockets × threads) is out of range"
        )),
    }
}

/// A memory quantity as whole MiB (floor). `Ok(None)` for a value ≤ 0 MiB, `Err` for an
/// invalid quantity or one too large for the INTEGER column.
pub(super) fn memory_mib(field: &str, q: &QuantityText) -> Result<Option<i64>, String> {
    let parsed = quantity::parse(&q.0).map_err(|e| format!("{field}: {e}"))?;
    match parsed.to_mib_floor() {
        Some(mib) if mib > i64::from(i32::MAX) => {
            Err(format!("{field}: {} MiB is out of range", mib))
        }
        Some(mib) if mib > 0 => Ok(Some(mib)),
        _ => Ok(None),
    }
}

/// The first usable memory source, in order; invalid ones are skipped with a warning.
pub(super) fn first_memory_mib(
    sources: &[(&str, Option<&QuantityText>)],
    warnings: &mut Vec<String>,
) -> Option<i64> {
    for (field, q) in sources {
        let Some(q) = q else { continue };
        match memory_mib(field, q) {
            Ok(Some(mib)) => return Some(mib),
            Ok(None) => {}
            Err(w) => warnings.push(w),
        }
    }
    None
}

/// Whether a guest OS text says something: not empty, not "Unknown".
pub(super) fn known_os(v: &Option<String>) -> Option<String> {
    non_empty(v).filter(|s| !s.trim().eq_ignore_ascii_case("unknown"))
}

fn canonical_quantity(
    field: &str,
    q: Option<&QuantityText>,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let q = q?;
    match quantity::parse(&q.0) {
        Ok(parsed) => Some(parsed.canonical()),
        Err(e) => {
            warnings.push(format!("{field}: {e}"));
            None
        }
    }
}

fn topology_value(field: &str, v: Option<u32>, warnings: &mut Vec<String>) -> Option<i64> {
    let v = v?;
    match i32::try_from(v) {
        Ok(n) => Some(i64::from(n)),
        Err(_) => {
            warnings.push(format!("{field}: {v} is out of range"));
            None
        }
    }
}

/// Derives the VMI's part of a record. Errors only for a VMI without a usable
/// namespace/name; bad values elsewhere are dropped with a warning.
pub fn derive_vmi(vmi: &Vmi) -> Result<VmiPart, DeriveError> {
    let key = object_key(&vmi.metadata)?;
    let status = &vmi.status;
    let spec = &vmi.spec;
    let mut warnings = Vec::new();

    let node = non_empty(&status.node_name)
        .or_else(|| non_empty(&vmi.metadata.labels.get(NODE_LABEL).cloned()));
    let phase = non_empty(&status.phase);
    let final_phase = matches!(phase.as_deref(), Some("Succeeded" | "Failed"));

    let topology = status.current_cpu_topology.as_ref();
    let spec_cpu = spec.domain.cpu.as_ref();
    let product = match (topology, spec_cpu) {
        (Some(t), _) => cpu_product(t.cores, t.sockets, t.threads),
        (None, Some(c)) => cpu_product(c.cores, c.sockets, c.threads),
        (None, None) => cpu_product(None, None, None),
    };
    let cpu_count = product.map_err(|w| warnings.push(w)).ok();

    let memory_mb = first_memory_mib(
        &[
            (
                "status.memory.guestCurrent",
                status.memory.guest_current.as_ref(),
            ),
            (
                "spec.domain.memory.guest",
                spec.domain.memory.guest.as_ref(),
            ),
            (
                "spec.domain.resources.requests.memory",
                spec.domain.resources.requests.memory.as_ref(),
            ),
        ],
        &mut warnings,
    );

    let os = &status.guest_os_info;
    let guest_os = known_os(&os.pretty_name)
        .or_else(|| match (known_os(&os.name), non_empty(&os.version)) {
            (Some(n), Some(v)) => Some(format!("{n} {v}")),
            _ => None,
        })
        .or_else(|| known_os(&os.name))
        .or_else(|| known_os(&os.id));

    let runtime = RuntimeDetails {
        cpu_cores: topology_value(
            "status.currentCPUTopology.cores",
            topology.and_then(|t| t.cores),
            &mut warnings,
        ),
        cpu_sockets: topology_value(
            "status.currentCPUTopology.sockets",
            topology.and_then(|t| t.sockets),
            &mut warnings,
        ),
        cpu_threads: topology_value(
            "status.currentCPUTopology.threads",
            topology.and_then(|t| t.threads),
            &mut warnings,
        ),
        cpu_model: spec_cpu.and_then(|c| non_empty(&c.model)),
        memory_guest: canonical_quantity(
            "status.memory.guestAtBoot",
            status.memory.guest_at_boot.as_ref(),
            &mut warnings,
        ),
        memory_current: canonical_quantity(
            "status.memory.guestCurrent",
            status.memory.guest_current.as_ref(),
            &mut warnings,
        ),
        memory_requested: canonical_quantity(
            "status.memory.guestRequested",
            status.memory.guest_requested.as_ref(),
            &mut warnings,
        ),
        primary_ip: primary_ip(&status.interfaces),
        network_interfaces: interfaces_json(&status.interfaces),
        guest_os_id: non_empty(&os.id),
        guest_os_name: non_empty(&os.name),
        guest_os_version: non_empty(&os.version),
        guest_os_kernel: non_empty(&os.kernel_release),
        phase,
        node_name: non_empty(&status.node_name),
        qos_class: non_empty(&status.qos_class),
        machine_type: status.machine.as_ref().and_then(|m| non_empty(&m.type_)),
        architecture: non_empty(&spec.architecture),
        volume_details: volumes_json(&status.volume_status, &spec.volumes),
        agent_connected: Some(
            status
                .conditions
                .iter()
                .any(|c| c.type_ == "AgentConnected" && c.status == "True"),
        ),
        hypervisor_type: None,
        vmi_updated_at: None,
    };

    let runtime_user = status.runtime_user.and_then(|u| match i64::try_from(u) {
        Ok(v) => Some(v),
        Err(_) => {
            warnings.push(format!("status.runtimeUser: {u} is out of range"));
            None
        }
    });

    Ok(VmiPart {
        key,
        uid: non_empty(&vmi.metadata.uid),
        resource_version: vmi
            .metadata
            .resource_version
            .as_deref()
            .and_then(parse_resource_version),
        node,
        final_phase,
        cpu_count,
        memory_mb,
        guest_os,
        runtime: Arc::new(runtime),
        active_pods: status
            .active_pods
            .iter()
            .map(|(pod, node)| (pod.clone(), node.clone()))
            .collect(),
        runtime_user,
        domain: DomainFacts {
            paused: status
                .conditions
                .iter()
                .any(|c| c.type_ == "Paused" && c.status == "True"),
            migration_completed: status
                .migration_state
                .as_ref()
                .filter(|m| m.completed == Some(true) && m.failed != Some(true))
                .and_then(|m| Some((m.target_node.clone()?, m.end_timestamp.clone()?))),
        },
        warnings,
    })
}
