//! The socket API's contract (docs/ARCHITECTURE.md, "Socket API and CLI"): every request
//! and response body as a type, serialized by the server and read back into the same
//! types by the CLI.
//!
//! The wire: every body goes through [`to_value`] (a `serde_json::Value`, whose objects
//! keep their keys sorted) and is pretty-printed, so the keys of every object on the wire
//! are in sorted order whatever the order of the fields below; the CLI's `--output json`
//! prints with [`to_text`], the same encoding, so it shows what the daemon sent. An
//! `Option` is `null` when empty unless its field says `skip_serializing_if` (then the key
//! is left out). Open-ended parts stay `serde_json::Value`: the capabilities document
//! (its own schema, `derive::caps`). The tests at the end pin the text of each response.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Role;
use crate::derive::Condition;
use crate::derive::caps::GroupStatus;
use crate::model::{Timestamp, VmRecord};
use crate::sink::postgres::ResyncStatus;

pub const STATUS_PATH: &str = "/v1/status";
pub const VMS_PATH: &str = "/v1/vms";
pub const CAPABILITIES_PATH: &str = "/v1/host/capabilities";
pub const REFRESH_CAPABILITIES_PATH: &str = "/v1/host/capabilities/refresh";
pub const RESYNC_PATH: &str = "/v1/resync";
pub const OUTBOX_PATH: &str = "/v1/outbox";

/// A body as the wire has it: a JSON value whose objects have sorted keys.
pub fn to_value<T: Serialize>(body: &T) -> Result<Value, serde_json::Error> {
    serde_json::to_value(body)
}

/// A body as the server sends it (without the final newline) and as the CLI's
/// `--output json` prints it.
pub fn to_text<T: Serialize>(body: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(&to_value(body)?)
}

// ---------------------------------------------------------------------------------------
// Requests. Every call but the VM list takes no query and no body (a POST may carry an
// empty body or any JSON, which is ignored).

/// `GET /v1/vms?namespace=&node=`: both optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmsQuery {
    pub namespace: Option<String>,
    /// Only VMs whose VMI runs on this node.
    pub node: Option<String>,
}

impl VmsQuery {
    /// The path with its query, percent-encoded.
    pub fn path(&self) -> String {
        let query: Vec<String> = [("namespace", &self.namespace), ("node", &self.node)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
            .collect();
        if query.is_empty() {
            VMS_PATH.to_owned()
        } else {
            format!("{VMS_PATH}?{}", query.join("&"))
        }
    }
}

/// `GET /v1/vms/{ns}/{name}`.
pub fn vm_path(namespace: &str, name: &str) -> String {
    format!("{VMS_PATH}/{namespace}/{name}")
}

/// `POST /v1/outbox/{ns}/{name}/retry|drop`.
pub fn outbox_action_path(namespace: &str, name: &str, action: OutboxAction) -> String {
    format!(
        "{OUTBOX_PATH}/{}/{}/{}",
        encode(namespace),
        encode(name),
        action.as_str()
    )
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Responses.

/// Every non-2xx answer: `{"error": {"code": 404, "message": "..."}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// The HTTP status code again.
    pub code: u16,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: u16, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }
}

/// `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub node: String,
    pub role: DaemonRole,
    pub version: String,
    pub started_at: Timestamp,
    /// Every expected condition is True (what `/readyz` says).
    pub ready: bool,
    /// Sorted by type.
    pub conditions: Vec<Condition>,
    pub cluster_role: ClusterRoleState,
    /// VM records in the state file.
    pub records: u64,
    /// Of those, the ones with a running VMI.
    pub records_with_runtime_details: u64,
    pub outbox: OutboxSummary,
    /// `null` without PostgreSQL (nothing to compare with).
    pub resync: Option<Resync>,
}

/// `role` of the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonRole {
    Node,
    Cluster,
    All,
}

impl DaemonRole {
    pub fn as_str(self) -> &'static str {
        match self {
            DaemonRole::Node => "node",
            DaemonRole::Cluster => "cluster",
            DaemonRole::All => "all",
        }
    }
}

impl From<Role> for DaemonRole {
    fn from(role: Role) -> DaemonRole {
        match role {
            Role::Node => DaemonRole::Node,
            Role::Cluster => DaemonRole::Cluster,
            Role::All => DaemonRole::All,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRoleState {
    /// This daemon holds the cluster role now.
    pub held: bool,
    /// In words: held, standby, or not taken (role = node).
    pub state: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxSummary {
    pub pending: u64,
    pub parked: u64,
    /// Age of the oldest pending (not parked) change; `null` when none is pending.
    pub oldest_age_seconds: Option<f64>,
}

/// Anti-entropy passes (the sink's [`ResyncStatus`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resync {
    /// Passes finished (successfully) since the start.
    pub passes: u64,
    pub running: bool,
    /// Rows the last pass found different and queued again.
    pub last_drifted: u64,
    pub last_finished: Option<Timestamp>,
    /// Why the last pass failed, if it did.
    pub last_error: Option<String>,
}

impl From<&ResyncStatus> for Resync {
    fn from(s: &ResyncStatus) -> Resync {
        Resync {
            passes: s.passes,
            running: s.running,
            last_drifted: u64::try_from(s.last_drifted).unwrap_or(u64::MAX),
            last_finished: s.last_finished,
            last_error: s.last_error.clone(),
        }
    }
}

/// `GET /v1/vms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmList {
    /// Sorted by namespace, then name.
    pub items: Vec<Vm>,
}

/// `GET /v1/vms/{ns}/{name}` and each item of the list: the record (the cloud API's VM
/// record shape, its keys at the top level) and whether it is in PostgreSQL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    #[serde(flatten)]
    pub record: VmRecord,
    pub sync: VmSync,
}

/// Whether a VM's record is in PostgreSQL: `{"state": "Pending", "since": ...}` etc.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state")]
pub enum VmSync {
    /// No row of the cloud API for it: nothing is written.
    Unmanaged,
    /// PostgreSQL has what the record says.
    Synced,
    /// A change waits in the outbox.
    Pending { since: Timestamp },
    /// PostgreSQL refused the change; it waits for an operator or a new change.
    Parked { message: String },
}

impl VmSync {
    pub fn as_str(&self) -> &'static str {
        match self {
            VmSync::Unmanaged => "Unmanaged",
            VmSync::Synced => "Synced",
            VmSync::Pending { .. } => "Pending",
            VmSync::Parked { .. } => "Parked",
        }
    }
}

/// `GET /v1/host/capabilities`, and the answer of `POST /v1/host/capabilities/refresh`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    pub hostname: String,
    pub fingerprint: String,
    /// When the current form was first seen.
    pub discovered_at: Timestamp,
    /// False when no libvirt could be asked (every group unavailable with the reason).
    pub available: bool,
    /// The `HostCapabilities` document (`derive::caps`): seven groups, each with a
    /// `status`; its own schema, so kept as it is.
    pub capabilities: Value,
}

impl Capabilities {
    /// Each group of the document (sorted by name) with its status; `None` for a group
    /// whose status cannot be read.
    pub fn group_statuses(&self) -> Vec<(String, Option<GroupStatus>)> {
        self.capabilities
            .as_object()
            .into_iter()
            .flatten()
            .map(|(group, body)| {
                let status = body
                    .get("status")
                    .and_then(|s| GroupStatus::deserialize(s).ok());
                (group.clone(), status)
            })
            .collect()
    }
}

/// `POST /v1/resync` (202): the pass is asked for; it is done once `passes` in
/// `GET /v1/status` is over `passesBefore`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResyncRequested {
    pub requested: bool,
    pub passes_before: u64,
    pub resync: Resync,
}

/// `GET /v1/outbox`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxList {
    /// In flush order.
    pub items: Vec<OutboxItem>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// `namespace/name`.
    pub vm: String,
    /// The `vms` columns the change writes.
    pub columns: Vec<String>,
    /// When the change was first queued.
    pub since: Timestamp,
    pub state: OutboxState,
    /// PostgreSQL's reason for a parked change; `null` for a pending one.
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutboxState {
    Pending,
    Parked,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "Pending",
            OutboxState::Parked => "Parked",
        }
    }
}

/// What an operator does to one outbox entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxAction {
    /// Put a parked change back in line.
    Retry,
    /// Forget a pending or parked change.
    Drop,
}

impl OutboxAction {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxAction::Retry => "retry",
            OutboxAction::Drop => "drop",
        }
    }
}

/// `POST /v1/outbox/{ns}/{name}/retry|drop`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxActionDone {
    /// `namespace/name`.
    pub vm: String,
    pub done: OutboxAction,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde::de::DeserializeOwned;

    use super::*;
    use crate::derive::ConditionStatus;
    use crate::model::{RuntimeDetails, VmStatus};

    /// The value encodes to exactly `text` (what the server sent before these types: the
    /// `json!` bodies of the handlers), and `text` reads back into the same value and
    /// prints again as the same text (what the CLI's `--output json` shows).
    fn pin<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T, text: &str) {
        assert_eq!(to_text(value).unwrap(), text.trim_end());
        let back: T = serde_json::from_str(text).unwrap();
        assert_eq!(&back, value);
        assert_eq!(to_text(&back).unwrap(), text.trim_end());
    }

    fn t(unix_millis: i64) -> Timestamp {
        Timestamp { unix_millis }
    }

    const T1: i64 = 1_780_000_000_123;
    const T2: i64 = 1_780_000_100_000;

    fn record(name: &str, running: bool) -> VmRecord {
        let runtime = RuntimeDetails {
            cpu_cores: Some(2),
            cpu_sockets: Some(1),
            cpu_threads: Some(1),
            memory_current: Some("2Gi".into()),
            primary_ip: Some("10.128.1.193".into()),
            network_interfaces: Some("[{\"name\":\"default\"}]".into()),
            node_name: Some("sno-0-0".into()),
            phase: Some("Running".into()),
            agent_connected: Some(true),
            hypervisor_type: Some("kvm".into()),
            vmi_updated_at: Some(t(T1)),
            ..Default::default()
        };
        VmRecord {
            namespace: "ns".into(),
            name: name.into(),
            status: Some(if running {
                VmStatus::PoweredOn
            } else {
                VmStatus::PoweredOff
            }),
            cpu_count: running.then_some(2),
            memory_mb: running.then_some(2048),
            guest_os: running.then(|| "Fedora Linux 40".to_owned()),
            runtime_details: running.then(|| Arc::new(runtime)),
        }
    }

    #[test]
    fn status_keeps_its_wire_form() {
        let status = Status {
            node: "sno-0-0".into(),
            role: DaemonRole::Node,
            version: "0.1.0".into(),
            started_at: t(T1),
            ready: true,
            conditions: vec![Condition {
                type_: "CacheReady".into(),
                status: ConditionStatus::True,
                reason: "Opened".into(),
                message: "state file open (2 records)".into(),
                last_transition_time: t(T1),
            }],
            cluster_role: ClusterRoleState {
                held: false,
                state: "not taken (role = node)".into(),
            },
            records: 2,
            records_with_runtime_details: 1,
            outbox: OutboxSummary {
                pending: 1,
                parked: 1,
                oldest_age_seconds: Some(1.5),
            },
            resync: Some(Resync::from(&ResyncStatus {
                passes: 3,
                running: false,
                last_drifted: 1,
                last_finished: Some(t(T2)),
                last_error: None,
            })),
        };
        pin(
            &status,
            r#"{
  "clusterRole": {
    "held": false,
    "state": "not taken (role = node)"
  },
  "conditions": [
    {
      "lastTransitionTime": "2026-05-28T20:26:40.123Z",
      "message": "state file open (2 records)",
      "reason": "Opened",
      "status": "True",
      "type": "CacheReady"
    }
  ],
  "node": "sno-0-0",
  "outbox": {
    "oldestAgeSeconds": 1.5,
    "parked": 1,
    "pending": 1
  },
  "ready": true,
  "records": 2,
  "recordsWithRuntimeDetails": 1,
  "resync": {
    "lastDrifted": 1,
    "lastError": null,
    "lastFinished": "2026-05-28T20:28:20.000Z",
    "passes": 3,
    "running": false
  },
  "role": "node",
  "startedAt": "2026-05-28T20:26:40.123Z",
  "version": "0.1.0"
}"#,
        );
        // A daemon without PostgreSQL and nothing pending: nulls, not absent keys.
        let idle = Status {
            role: DaemonRole::All,
            conditions: Vec::new(),
            outbox: OutboxSummary {
                pending: 0,
                parked: 0,
                oldest_age_seconds: None,
            },
            resync: None,
            ..status
        };
        let text = to_text(&idle).unwrap();
        for line in [
            r#""oldestAgeSeconds": null,"#,
            r#""resync": null,"#,
            r#""role": "all","#,
            r#""conditions": [],"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert_eq!(serde_json::from_str::<Status>(&text).unwrap(), idle);
    }

    #[test]
    fn vms_keep_their_wire_form() {
        let list = VmList {
            items: vec![
                Vm {
                    record: record("vm1", true),
                    sync: VmSync::Synced,
                },
                Vm {
                    record: record("vm2", false),
                    sync: VmSync::Parked {
                        message: "db error: 23514".into(),
                    },
                },
                Vm {
                    record: record("vm2", false),
                    sync: VmSync::Unmanaged,
                },
            ],
        };
        pin(
            &list,
            r#"{
  "items": [
    {
      "cpuCount": 2,
      "guestOS": "Fedora Linux 40",
      "memoryMB": 2048,
      "name": "vm1",
      "namespace": "ns",
      "runtimeDetails": {
        "agentConnected": true,
        "cpuCores": 2,
        "cpuSockets": 1,
        "cpuThreads": 1,
        "hypervisorType": "kvm",
        "memoryCurrent": "2Gi",
        "networkInterfaces": "[{\"name\":\"default\"}]",
        "nodeName": "sno-0-0",
        "phase": "Running",
        "primaryIPAddress": "10.128.1.193",
        "vmiUpdatedAt": "2026-05-28T20:26:40.123Z"
      },
      "status": "POWERED_ON",
      "sync": {
        "state": "Synced"
      }
    },
    {
      "name": "vm2",
      "namespace": "ns",
      "status": "POWERED_OFF",
      "sync": {
        "message": "db error: 23514",
        "state": "Parked"
      }
    },
    {
      "name": "vm2",
      "namespace": "ns",
      "status": "POWERED_OFF",
      "sync": {
        "state": "Unmanaged"
      }
    }
  ]
}"#,
        );
        pin(&VmList { items: Vec::new() }, "{\n  \"items\": []\n}");
        let one = Vm {
            record: record("vm1", true),
            sync: VmSync::Pending { since: t(T1) },
        };
        pin(
            &one,
            r#"{
  "cpuCount": 2,
  "guestOS": "Fedora Linux 40",
  "memoryMB": 2048,
  "name": "vm1",
  "namespace": "ns",
  "runtimeDetails": {
    "agentConnected": true,
    "cpuCores": 2,
    "cpuSockets": 1,
    "cpuThreads": 1,
    "hypervisorType": "kvm",
    "memoryCurrent": "2Gi",
    "networkInterfaces": "[{\"name\":\"default\"}]",
    "nodeName": "sno-0-0",
    "phase": "Running",
    "primaryIPAddress": "10.128.1.193",
    "vmiUpdatedAt": "2026-05-28T20:26:40.123Z"
  },
  "status": "POWERED_ON",
  "sync": {
    "since": "2026-05-28T20:26:40.123Z",
    "state": "Pending"
  }
}"#,
        );
    }

    #[test]
    fn outbox_answers_keep_their_wire_form() {
        let list = OutboxList {
            items: vec![
                OutboxItem {
                    vm: "ns/vm2".into(),
                    columns: vec!["status".into(), "runtime_primary_ip".into()],
                    since: t(T1),
                    state: OutboxState::Parked,
                    message: Some("db error: 23514".into()),
                },
                OutboxItem {
                    vm: "ns/vm3".into(),
                    columns: vec!["cpu_count".into()],
                    since: t(T2),
                    state: OutboxState::Pending,
                    message: None,
                },
            ],
        };
        pin(
            &list,
            r#"{
  "items": [
    {
      "columns": [
        "status",
        "runtime_primary_ip"
      ],
      "message": "db error: 23514",
      "since": "2026-05-28T20:26:40.123Z",
      "state": "Parked",
      "vm": "ns/vm2"
    },
    {
      "columns": [
        "cpu_count"
      ],
      "message": null,
      "since": "2026-05-28T20:28:20.000Z",
      "state": "Pending",
      "vm": "ns/vm3"
    }
  ]
}"#,
        );
        pin(
            &OutboxActionDone {
                vm: "ns/vm2".into(),
                done: OutboxAction::Retry,
            },
            r#"{
  "done": "retry",
  "vm": "ns/vm2"
}"#,
        );
        assert_eq!(
            to_text(&OutboxActionDone {
                vm: "ns/vm2".into(),
                done: OutboxAction::Drop,
            })
            .unwrap(),
            "{\n  \"done\": \"drop\",\n  \"vm\": \"ns/vm2\"\n}"
        );
    }

    #[test]
    fn resync_capabilities_and_errors_keep_their_wire_form() {
        pin(
            &ResyncRequested {
                requested: true,
                passes_before: 3,
                resync: Resync {
                    passes: 3,
                    running: true,
                    last_drifted: 0,
                    last_finished: None,
                    last_error: Some("connection refused".into()),
                },
            },
            r#"{
  "passesBefore": 3,
  "requested": true,
  "resync": {
    "lastDrifted": 0,
    "lastError": "connection refused",
    "lastFinished": null,
    "passes": 3,
    "running": true
  }
}"#,
        );
        let caps = Capabilities {
            hostname: "vm".into(),
            fingerprint: "b6b07d3a04d40c03".into(),
            discovered_at: t(T1),
            available: true,
            capabilities: serde_json::from_str(
                r#"{"host_info":{"hostname":"vm","status":{"reasons":[],"state":"complete"}},
                    "cpu_info":{"logical_cpus":16,"status":{"reasons":["no domain capabilities"],"state":"partial"}}}"#,
            )
            .unwrap(),
        };
        pin(
            &caps,
            r#"{
  "available": true,
  "capabilities": {
    "cpu_info": {
      "logical_cpus": 16,
      "status": {
        "reasons": [
          "no domain capabilities"
        ],
        "state": "partial"
      }
    },
    "host_info": {
      "hostname": "vm",
      "status": {
        "reasons": [],
        "state": "complete"
      }
    }
  },
  "discoveredAt": "2026-05-28T20:26:40.123Z",
  "fingerprint": "b6b07d3a04d40c03",
  "hostname": "vm"
}"#,
        );
        let groups = caps.group_statuses();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].0, "cpu_info");
        assert_eq!(
            groups[0].1.as_ref().map(|s| s.reasons.clone()),
            Some(vec!["no domain capabilities".to_owned()])
        );
        pin(
            &ErrorBody::new(404, "no VM ns/x known here"),
            r#"{
  "error": {
    "code": 404,
    "message": "no VM ns/x known here"
  }
}"#,
        );
    }

    #[test]
    fn a_body_that_does_not_fit_says_where() {
        let e = serde_path_to_error::deserialize::<_, OutboxList>(
            &mut serde_json::Deserializer::from_str(r#"{"items":[{"vm":"a/b","columns":[],"since":"2026-01-01T00:00:00.000Z","state":"Lost","message":null}]}"#),
        )
        .unwrap_err();
        assert_eq!(e.path().to_string(), "items[0].state");
        assert!(e.inner().to_string().contains("Lost"), "{e}");
    }

    #[test]
    fn request_paths() {
        assert_eq!(VmsQuery::default().path(), "/v1/vms");
        let q = VmsQuery {
            namespace: Some("a b".into()),
            node: Some("n1".into()),
        };
        assert_eq!(q.path(), "/v1/vms?namespace=a%20b&node=n1");
        assert_eq!(
            outbox_action_path("ns", "vm", OutboxAction::Drop),
            "/v1/outbox/ns/vm/drop"
        );
        assert_eq!(vm_path("ns", "vm"), "/v1/vms/ns/vm");
        assert_eq!(encode("a b/ü"), "a%20b%2F%C3%BC");
    }
}
