//! Our own serde structs for the KubeVirt `VirtualMachineInstance` and `VirtualMachine`
//! fields virtsync reads. Unknown fields are ignored; absent or `null` fields take their
//! default; a field of the wrong type is an error for the whole object, naming its path.
//! Quantities stay text here and are validated during derivation.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// `null` reads as the default value (Kubernetes writes `null` for empty lists and maps).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The text of a quantity. Kubernetes writes quantities as strings but also accepts plain
/// JSON numbers, so both are read (a number keeps its JSON spelling).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct QuantityText(pub String);

impl<'de> Deserialize<'de> for QuantityText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = QuantityText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity (string or number)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<QuantityText, E> {
                Ok(QuantityText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<QuantityText, E> {
                Ok(QuantityText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<QuantityText, E> {
                Ok(QuantityText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<QuantityText, E> {
                Ok(QuantityText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub resource_version: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub deletion_timestamp: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Cpu {
    #[serde(default)]
    pub cores: Option<u32>,
    #[serde(default)]
    pub sockets: Option<u32>,
    #[serde(default)]
    pub threads: Option<u32>,
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Memory {
    #[serde(default)]
    pub guest: Option<QuantityText>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ResourceList {
    #[serde(default)]
    pub memory: Option<QuantityText>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Resources {
    #[serde(default, deserialize_with = "nullable")]
    pub requests: ResourceList,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Machine {
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Domain {
    #[serde(default)]
    pub cpu: Option<Cpu>,
    #[serde(default, deserialize_with = "nullable")]
    pub memory: Memory,
    #[serde(default, deserialize_with = "nullable")]
    pub resources: Resources,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRef {
    #[serde(default)]
    pub claim_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct NameRef {
    #[serde(default)]
    pub name: Option<String>,
}

/// A VMI spec volume, for the claim behind a volume status that does not name it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub persistent_volume_claim: Option<ClaimRef>,
    #[serde(default)]
    pub data_volume: Option<NameRef>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct VmiSpec {
    #[serde(default, deserialize_with = "nullable")]
    pub domain: Domain,
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub volumes: Vec<Volume>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct CpuTopology {
    #[serde(default)]
    pub cores: Option<u32>,
    #[serde(default)]
    pub sockets: Option<u32>,
    #[serde(default)]
    pub threads: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStatus {
    #[serde(default)]
    pub guest_at_boot: Option<QuantityText>,
    #[serde(default)]
    pub guest_current: Option<QuantityText>,
    #[serde(default)]
    pub guest_requested: Option<QuantityText>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestOsInfo {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub pretty_name: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub version_id: Option<String>,
    #[serde(default)]
    pub kernel_release: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub interface_name: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub ip_address: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub ip_addresses: Vec<String>,
    #[serde(default)]
    pub info_source: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub size: Option<i64>,
    #[serde(default)]
    pub persistent_volume_claim_info: Option<ClaimRef>,
}

/// A Kubernetes condition as KubeVirt reports it (timestamps kept as text).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawCondition {
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub last_transition_time: Option<String>,
    #[serde(default)]
    pub last_probe_time: Option<String>,
}

/// The parts of `status.migrationState` that tell where a VMI is going.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationState {
    #[serde(default)]
    pub source_node: Option<String>,
    #[serde(default)]
    pub target_node: Option<String>,
    #[serde(default)]
    pub completed: Option<bool>,
    #[serde(default)]
    pub failed: Option<bool>,
    #[serde(default)]
    pub end_timestamp: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmiStatus {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub qos_class: Option<String>,
    #[serde(default)]
    pub machine: Option<Machine>,
    #[serde(default, rename = "currentCPUTopology")]
    pub current_cpu_topology: Option<CpuTopology>,
    #[serde(default, deserialize_with = "nullable")]
    pub memory: MemoryStatus,
    #[serde(default, rename = "guestOSInfo", deserialize_with = "nullable")]
    pub guest_os_info: GuestOsInfo,
    #[serde(default, deserialize_with = "nullable")]
    pub interfaces: Vec<Interface>,
    #[serde(default, deserialize_with = "nullable")]
    pub volume_status: Vec<VolumeStatus>,
    #[serde(default, deserialize_with = "nullable")]
    pub conditions: Vec<RawCondition>,
    #[serde(default, deserialize_with = "nullable")]
    pub active_pods: BTreeMap<String, String>,
    #[serde(default)]
    pub runtime_user: Option<u64>,
    #[serde(default)]
    pub migration_state: Option<MigrationState>,
}

/// A `VirtualMachineInstance`, reduced to what virtsync reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Vmi {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: VmiSpec,
    #[serde(default, deserialize_with = "nullable")]
    pub status: VmiStatus,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct InstancetypeMatcher {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct TemplateMeta {
    #[serde(default, deserialize_with = "nullable")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct TemplateSpec {
    #[serde(default, deserialize_with = "nullable")]
    pub domain: Domain,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Template {
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: TemplateMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: TemplateSpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmSpec {
    #[serde(default)]
    pub running: Option<bool>,
    #[serde(default)]
    pub run_strategy: Option<String>,
    #[serde(default)]
    pub instancetype: Option<InstancetypeMatcher>,
    #[serde(default, deserialize_with = "nullable")]
    pub template: Template,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmObjStatus {
    #[serde(default)]
    pub printable_status: Option<String>,
    #[serde(default)]
    pub created: Option<bool>,
    #[serde(default)]
    pub ready: Option<bool>,
}

/// A `VirtualMachine`, reduced to what virtsync reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Vm {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: VmSpec,
    #[serde(default, deserialize_with = "nullable")]
    pub status: VmObjStatus,
}
