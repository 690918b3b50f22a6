//! The records virtsync derives and stores: one `VmRecord` per KubeVirt VM, in the JSON
//! shape of the cloud API's VM record: top-level `namespace`, `name`, `status`, `cpuCount`,
//! `memoryMB`, `guestOS`, and `runtimeDetails` with camelCase names.

mod selector;
pub use selector::Selector;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `namespace/name` of a VirtualMachine: the identity of a record and of a `vms` row
/// (`namespace` + `vm_name`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VmKey {
    /// Shared text: every copy of a key (map keys, parts, records) points to the same
    /// two allocations (BENCHMARKS.md, memory).
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl VmKey {
    pub fn new(namespace: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> Self {
        VmKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Kubernetes object names: non-empty, at most 253 characters, no `/` (which
    /// separates the two in the stored `namespace/name` key) and no control characters.
    pub fn validate(&self) -> Result<(), &'static str> {
        for part in [&self.namespace, &self.name] {
            if part.is_empty() {
                return Err("empty namespace or name");
            }
            if part.len() > 253 {
                return Err("namespace or name longer than 253 characters");
            }
            if part.contains('/') || part.chars().any(char::is_control) {
                return Err("namespace or name contains '/' or a control character");
            }
        }
        Ok(())
    }

    /// Parses `namespace/name`; Kubernetes names contain no `/`, so the first one splits.
    pub fn parse(text: &str) -> Option<VmKey> {
        let (namespace, name) = text.split_once('/')?;
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(VmKey::new(namespace, name))
    }
}

impl fmt::Display for VmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The cloud API's power states (SSVirt's vocabulary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VmStatus {
    PoweredOn,
    PoweredOff,
    PoweringOn,
    PoweringOff,
    Starting,
    Stopped,
    Suspended,
    Error,
    Unknown,
    Deleting,
    Deleted,
}

impl VmStatus {
    pub const ALL: [VmStatus; 11] = [
        VmStatus::PoweredOn,
        VmStatus::PoweredOff,
        VmStatus::PoweringOn,
        VmStatus::PoweringOff,
        VmStatus::Starting,
        VmStatus::Stopped,
        VmStatus::Suspended,
        VmStatus::Error,
        VmStatus::Unknown,
        VmStatus::Deleting,
        VmStatus::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VmStatus::PoweredOn => "POWERED_ON",
            VmStatus::PoweredOff => "POWERED_OFF",
            VmStatus::PoweringOn => "POWERING_ON",
            VmStatus::PoweringOff => "POWERING_OFF",
            VmStatus::Starting => "STARTING",
            VmStatus::Stopped => "STOPPED",
            VmStatus::Suspended => "SUSPENDED",
            VmStatus::Error => "ERROR",
            VmStatus::Unknown => "UNKNOWN",
            VmStatus::Deleting => "DELETING",
            VmStatus::Deleted => "DELETED",
        }
    }

    pub fn parse(text: &str) -> Option<VmStatus> {
        VmStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A point in time with millisecond precision (what PostgreSQL's timestamptz and RFC 3339
/// both keep exactly), serialized as RFC 3339 UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    pub unix_millis: i64,
}

impl Timestamp {
    /// The system clock; logic takes a `Timestamp` or a `fn() -> Timestamp` instead.
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    pub fn from_system_time(t: SystemTime) -> Timestamp {
        let unix_millis = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Timestamp { unix_millis }
    }

    pub fn to_system_time(self) -> SystemTime {
        let magnitude = Duration::from_millis(self.unix_millis.unsigned_abs());
        if self.unix_millis >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }

    pub fn to_rfc3339(self) -> String {
        humantime::format_rfc3339_millis(self.to_system_time()).to_string()
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&text)
            .map(Timestamp::from_system_time)
            .map_err(|e| serde::de::Error::custom(format!("invalid timestamp {text:?}: {e}")))
    }
}

/// Runtime details of a running VMI (the `runtime_*` columns); `None`: not reported (yet).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_sockets: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_threads: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_guest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_current: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_requested: Option<String>,
    #[serde(
        rename = "primaryIPAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub primary_ip: Option<String>,
    /// JSON array text, stable key order (equal data → equal bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interfaces: Option<String>,
    #[serde(rename = "guestOSID", default, skip_serializing_if = "Option::is_none")]
    pub guest_os_id: Option<String>,
    #[serde(
        rename = "guestOSName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub guest_os_name: Option<String>,
    #[serde(
        rename = "guestOSVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub guest_os_version: Option<String>,
    #[serde(
        rename = "guestOSKernel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub guest_os_kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(rename = "qosClass", default, skip_serializing_if = "Option::is_none")]
    pub qos_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// JSON array text, stable key order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_details: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_connected: Option<bool>,
    /// `kvm`, `qemu-tcg` or `unknown` (from the libvirt domain XML, node role only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervisor_type: Option<String>,
    /// When these details last changed; set by the state layer, not by derivation.
    #[serde(
        rename = "vmiUpdatedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vmi_updated_at: Option<Timestamp>,
}

/// What virtsync would write to one `vms` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmRecord {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<VmStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<i64>,
    #[serde(rename = "memoryMB", default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<i64>,
    #[serde(rename = "guestOS", default, skip_serializing_if = "Option::is_none")]
    pub guest_os: Option<String>,
    /// `None` when no VMI runs: every `runtime_*` column is NULL. Shared with the VMI's
    /// derived part (one copy in memory; BENCHMARKS.md, memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_details: Option<Arc<RuntimeDetails>>,
}

impl VmRecord {
    pub fn new(key: &VmKey) -> VmRecord {
        VmRecord {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            status: None,
            cpu_count: None,
            memory_mb: None,
            guest_os: None,
            runtime_details: None,
        }
    }

    pub fn key(&self) -> VmKey {
        VmKey::new(self.namespace.clone(), self.name.clone())
    }
}

/// Which source object the legacy fields (cpu_count, memory_mb, guest_os) came from: they
/// have two writers (the node and the cluster role), and each is fenced by its own resourceVersion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LegacyOrigin {
    #[default]
    Vm,
    Vmi,
}

/// The source resourceVersions behind a record, carried by its deltas into
/// `virtsync.vm_fence`. `None` = unfenced (unknown or non-numeric).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceVersions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_resource_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmi_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmi_resource_version: Option<i64>,
    #[serde(default)]
    pub legacy_origin: LegacyOrigin,
    /// This daemon cannot tell the runtime details (e.g. the cluster role of a VM whose
    /// VMI runs on another host): the runtime columns are left alone, not cleared.
    #[serde(default, skip_serializing_if = "is_false")]
    pub runtime_unknown: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// resourceVersions are opaque by contract but etcd revisions in practice: compare them
/// numerically, and leave a non-numeric one unfenced.
pub fn parse_resource_version(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().filter(|v| *v >= 0)
}

/// One derived record as a source hands it to the state layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Observation {
    pub record: VmRecord,
    #[serde(default)]
    pub versions: SourceVersions,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_json_uses_the_cloud_api_names() {
        let mut r = VmRecord::new(&VmKey::new("vdc-a", "web-1"));
        r.status = Some(VmStatus::PoweredOn);
        r.cpu_count = Some(2);
        r.memory_mb = Some(4096);
        r.guest_os = Some("CentOS Stream 9".into());
        r.runtime_details = Some(Arc::new(RuntimeDetails {
            primary_ip: Some("10.128.1.131".into()),
            guest_os_id: Some("centos".into()),
            qos_class: Some("Burstable".into()),
            vmi_updated_at: Some(Timestamp {
                unix_millis: 1_755_357_930_000,
            }),
            ..RuntimeDetails::default()
        }));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["status"], "POWERED_ON");
        assert_eq!(json["cpuCount"], 2);
        assert_eq!(json["memoryMB"], 4096);
        assert_eq!(json["guestOS"], "CentOS Stream 9");
        let rt = &json["runtimeDetails"];
        assert_eq!(rt["primaryIPAddress"], "10.128.1.131");
        assert_eq!(rt["guestOSID"], "centos");
        assert_eq!(rt["qosClass"], "Burstable");
        assert_eq!(rt["vmiUpdatedAt"], "2025-08-16T15:25:30.000Z");
        let back: VmRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn status_names_round_trip() {
        for s in VmStatus::ALL {
            assert_eq!(VmStatus::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(VmStatus::parse("RUNNING"), None);
    }

    #[test]
    fn keys_parse_and_print() {
        let k = VmKey::parse("ns/vm-1").unwrap();
        assert_eq!(k, VmKey::new("ns", "vm-1"));
        assert_eq!(k.to_string(), "ns/vm-1");
        for bad in ["", "ns", "/x", "ns/", "a/b/c"] {
            assert_eq!(VmKey::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn resource_versions_compare_numerically_or_not_at_all() {
        assert_eq!(parse_resource_version("12345"), Some(12345));
        assert_eq!(parse_resource_version("abc"), None);
        assert_eq!(parse_resource_version("-1"), None);
        assert_eq!(parse_resource_version(""), None);
    }

    #[test]
    fn timestamps_keep_milliseconds() {
        let t = Timestamp {
            unix_millis: 1_700_000_000_123,
        };
        assert_eq!(Timestamp::from_system_time(t.to_system_time()), t);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }
}

/// The host's capabilities as stored and written to PostgreSQL: the canonical JSON, its
/// fingerprint, and when this form was first seen. Produced by discovery, kept by the
/// state, read by the sink and the socket API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCapabilities {
    pub fingerprint: String,
    pub hostname: String,
    pub discovered_at: Timestamp,
    /// Canonical JSON text (sorted keys), so equal capabilities are equal bytes.
    pub canonical: String,
    /// False when no libvirt could be asked (every group unavailable with the reason).
    #[serde(default = "available_by_default")]
    pub available: bool,
}

fn available_by_default() -> bool {
    true
}

impl HostCapabilities {
    /// Whether a discovery's result replaces `previous`: not when it is the same form,
    /// and a discovery that reached no libvirt never replaces real capabilities (a
    /// KubeVirt node whose last VMI stopped keeps what its launchers told).
    pub fn replaces(&self, previous: Option<&HostCapabilities>) -> bool {
        match previous {
            None => true,
            Some(p) => p.fingerprint != self.fingerprint && (self.available || !p.available),
        }
    }
}
