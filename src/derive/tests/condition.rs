use crate::derive::condition::{
    Condition, ConditionStatus, SyncState, find_condition, set_condition, vm_conditions,
};
use crate::derive::objects::RawCondition;
use crate::model::Timestamp;

fn t(ms: i64) -> Timestamp {
    Timestamp { unix_millis: ms }
}

#[test]
fn transition_time_changes_only_with_the_status() {
    let mut cs: Vec<Condition> = Vec::new();
    set_condition(
        &mut cs,
        "Ready",
        ConditionStatus::True,
        "Up",
        "fine",
        t(1000),
    );
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0].last_transition_time, t(1000));

    // Same status, new reason and message: updated, time kept.
    set_condition(
        &mut cs,
        "Ready",
        ConditionStatus::True,
        "StillUp",
        "still fine",
        t(2000),
    );
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0].reason, "StillUp");
    assert_eq!(cs[0].message, "still fine");
    assert_eq!(cs[0].last_transition_time, t(1000));

    // Status change: new time.
    set_condition(
        &mut cs,
        "Ready",
        ConditionStatus::False,
        "Down",
        "broken",
        t(3000),
    );
    assert_eq!(cs[0].status, ConditionStatus::False);
    assert_eq!(cs[0].last_transition_time, t(3000));

    // Another type is added, the first untouched.
    set_condition(
        &mut cs,
        "Synced",
        ConditionStatus::Unknown,
        "Wait",
        "",
        t(4000),
    );
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[0].last_transition_time, t(3000));
    assert_eq!(cs[1].last_transition_time, t(4000));
}

#[test]
fn conditions_serialize_like_kubernetes() {
    let mut cs = Vec::new();
    set_condition(
        &mut cs,
        "Ready",
        ConditionStatus::True,
        "Up",
        "fine",
        t(1_700_000_000_000),
    );
    let v = serde_json::to_value(&cs[0]).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"type": "Ready", "status": "True", "reason": "Up",
            "message": "fine", "lastTransitionTime": "2023-11-14T22:13:20.000Z"})
    );
    let back: Condition = serde_json::from_value(v).unwrap();
    assert_eq!(back, cs[0]);
}

#[test]
fn vm_conditions_from_the_vmi_and_the_sync_state() {
    let raw = |type_: &str, status: &str| RawCondition {
        type_: type_.into(),
        status: status.into(),
        ..RawCondition::default()
    };
    let running = [raw("Ready", "True"), raw("AgentConnected", "True")];
    let cs = vm_conditions(&[], Some(&running), &SyncState::Pending, t(10));
    let types: Vec<&str> = cs.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Ready", "AgentConnected", "Synced"]);
    assert_eq!(cs[0].status, ConditionStatus::True);
    assert_eq!(cs[1].status, ConditionStatus::True);
    assert_eq!(cs[2].status, ConditionStatus::False);
    assert_eq!(cs[2].reason, "Pending");

    // Flushed later: Synced transitions, the others keep their time.
    let cs2 = vm_conditions(&cs, Some(&running), &SyncState::Synced, t(20));
    assert_eq!(
        find_condition(&cs2, "Ready").unwrap().last_transition_time,
        t(10)
    );
    let synced = find_condition(&cs2, "Synced").unwrap();
    assert_eq!(synced.status, ConditionStatus::True);
    assert_eq!(synced.last_transition_time, t(20));

    // Agent gone (condition absent), VMI not ready with a reason.
    let mut not_ready = raw("Ready", "False");
    not_ready.reason = Some("GuestNotRunning".into());
    let cs3 = vm_conditions(&cs2, Some(&[not_ready]), &SyncState::Synced, t(30));
    assert_eq!(cs3[0].status, ConditionStatus::False);
    assert_eq!(cs3[0].reason, "GuestNotRunning");
    assert_eq!(cs3[0].last_transition_time, t(30));
    assert_eq!(cs3[1].status, ConditionStatus::False);
    assert_eq!(cs3[1].reason, "AgentNotConnected");
    assert_eq!(cs3[2].last_transition_time, t(20));

    // No VMI; parked flush.
    let cs4 = vm_conditions(
        &cs3,
        None,
        &SyncState::Parked("value too long".into()),
        t(40),
    );
    assert_eq!(cs4[0].reason, "NoVMI");
    assert_eq!(cs4[0].last_transition_time, t(30), "still False");
    assert_eq!(cs4[1].reason, "NoVMI");
    assert_eq!(cs4[2].status, ConditionStatus::False);
    assert!(cs4[2].message.contains("value too long"));
    assert_eq!(cs4[2].last_transition_time, t(40));

    // A VMI without Ready condition: Unknown.
    let cs5 = vm_conditions(&[], Some(&[]), &SyncState::Unmanaged, t(50));
    assert_eq!(cs5[0].status, ConditionStatus::Unknown);
    assert_eq!(cs5[2].reason, "Unmanaged");
}
