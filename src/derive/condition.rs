//! Kubernetes-style conditions: `lastTransitionTime` changes only when
//! `status` changes; reason and message are updated every time.

use serde::{Deserialize, Serialize};

use crate::model::Timestamp;

use super::objects::RawCondition;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    /// KubeVirt's text; anything but `True`/`False` is `Unknown`.
    pub fn parse(text: &str) -> ConditionStatus {
        match text {
            "True" => ConditionStatus::True,
            "False" => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        }
    }

    pub fn from_bool(b: bool) -> ConditionStatus {
        if b {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    pub reason: String,
    pub message: String,
    pub last_transition_time: Timestamp,
}

/// Sets (adds or updates) the condition of type `type_`.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.status = status;
                c.last_transition_time = now;
            }
            reason.clone_into(&mut c.reason);
            message.clone_into(&mut c.message);
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: now,
        }),
    }
}

pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the record's last change reached PostgreSQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncState {
    Synced,
    /// Waiting in the outbox.
    Pending,
    /// Parked after an error, with it.
    Parked(String),
    /// No live row in PostgreSQL: nothing to write.
    Unmanaged,
}

/// The `Ready`, `AgentConnected` and `Synced` conditions of a VM, in that order, updated
/// from `previous` (transition times kept where the status did not change).
/// `vmi_conditions` are the conditions of its running VMI, `None` when none runs.
pub fn vm_conditions(
    previous: &[Condition],
    vmi_conditions: Option<&[RawCondition]>,
    sync: &SyncState,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = ["Ready", "AgentConnected", "Synced"]
        .iter()
        .filter_map(|t| find_condition(previous, t).cloned())
        .collect();
    let raw = |t: &str| vmi_conditions.and_then(|cs| cs.iter().find(|c| c.type_ == t));
    let text = |v: &Option<String>, default: &str| {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(default)
            .to_string()
    };

    let (status, reason, message) = match (vmi_conditions, raw("Ready")) {
        (None, _) => (
            ConditionStatus::False,
            "NoVMI".to_string(),
            "no VirtualMachineInstance runs".to_string(),
        ),
        (Some(_), None) => (
            ConditionStatus::Unknown,
            "NotReported".to_string(),
            "the VirtualMachineInstance reports no Ready condition".to_string(),
        ),
        (Some(_), Some(c)) => {
            let status = ConditionStatus::parse(&c.status);
            let default = match status {
                ConditionStatus::True => "VMIReady",
                ConditionStatus::False => "VMINotReady",
                ConditionStatus::Unknown => "VMIReadyUnknown",
            };
            (
                status,
                text(&c.reason, default),
                text(&c.message, "as reported by the VirtualMachineInstance"),
            )
        }
    };
    set_condition(&mut out, "Ready", status, &reason, &message, now);

    let (status, reason, message) = match (vmi_conditions, raw("AgentConnected")) {
        (None, _) => (
            ConditionStatus::False,
            "NoVMI",
            "no VirtualMachineInstance runs",
        ),
        (Some(_), Some(c)) if c.status == "True" => (
            ConditionStatus::True,
            "AgentConnected",
            "the guest agent is connected",
        ),
        (Some(_), _) => (
            ConditionStatus::False,
            "AgentNotConnected",
            "the guest agent is not connected",
        ),
    };
    set_condition(&mut out, "AgentConnected", status, reason, message, now);

    let (status, reason, message) = match sync {
        SyncState::Synced => (
            ConditionStatus::True,
            "Flushed",
            "the latest change is in PostgreSQL".to_string(),
        ),
        SyncState::Pending => (
            ConditionStatus::False,
            "Pending",
            "a change waits in the outbox".to_string(),
        ),
        SyncState::Parked(e) => (ConditionStatus::False, "Parked", format!("parked: {e}")),
        SyncState::Unmanaged => (
            ConditionStatus::False,
            "Unmanaged",
            "no live row in PostgreSQL for this VM".to_string(),
        ),
    };
    set_condition(&mut out, "Synced", status, reason, &message, now);
    out
}
