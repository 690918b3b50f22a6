use std::collections::HashMap;

use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use super::*;
use crate::model::{Observation, VmKey, VmStatus};

fn fixture(name: &str) -> Value {
    crate::test_fixtures::kubevirt(name)
}

fn object(v: Value) -> KubeObject {
    serde_json::from_str(&v.to_string()).unwrap()
}

/// The real CNV VMI, as node sno-0-0 sees it.
fn vmi() -> Value {
    fixture("vmi-running-cnv.json")
}

/// The real CNV VM, renamed to own the VMI above.
fn vm() -> Value {
    let mut v = fixture("vm-running-cnv.json");
    v["metadata"]["name"] = json!("centos7-gray-owl-35");
    v
}

fn key() -> VmKey {
    VmKey::new("openshift-cnv", "centos7-gray-owl-35")
}

fn tracker(node_role: bool, last: HashMap<VmKey, Observation>) -> Tracker {
    Tracker::new(
        TrackerOptions {
            node: "sno-0-0".into(),
            node_role,
            selector: Selector::default(),
        },
        last.into_iter().map(|(k, o)| (k, Arc::new(o))).collect(),
    )
}

fn observed(actions: &[Action]) -> Vec<&Observation> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(StateEvent::Observed(o)) => Some(&**o),
            _ => None,
        })
        .collect()
}

/// The hypervisor probe's updates: (key, whether the VMI runs here).
fn domains(actions: &[Action]) -> Vec<(VmKey, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Domain { key, target } => Some((key.clone(), target.is_some())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_running_vmi_becomes_a_record_and_the_same_event_again_costs_nothing() {
    let mut t = tracker(true, HashMap::new());
    let actions = t.event(Kind::Vmi, None, Event::Apply(object(vmi())));
    let obs = observed(&actions);
    assert_eq!(obs.len(), 1);
    let rt = obs[0].record.runtime_details.as_ref().unwrap();
    assert_eq!(rt.primary_ip.as_deref(), Some("10.128.1.193"));
    assert_eq!(obs[0].record.cpu_count, Some(1));
    assert_eq!(obs[0].record.status, None, "status is the cluster role's");
    assert_eq!(obs[0].versions.vmi_resource_version, Some(11848215));
    assert!(
        t.event(Kind::Vmi, None, Event::Apply(object(vmi())))
            .is_empty()
    );
    assert_eq!(t.stats.noop, 1);
}

/// Memory (BENCHMARKS.md): what the tracker holds for a VMI and what it sends share one
/// allocation each, also after an equal event derived everything anew.
#[test]
fn the_vmi_part_and_the_record_share_their_details_and_key_text() {
    let mut t = tracker(true, HashMap::new());
    let actions = t.event(Kind::Vmi, None, Event::Apply(object(vmi())));
    let Some(Action::Emit(StateEvent::Observed(sent))) = actions.first() else {
        panic!("no observation sent: {actions:?}");
    };
    let shared = |t: &Tracker| {
        let (held_key, part) = t.vmis.get_key_value(&key()).unwrap();
        let last = &t.last[&key()];
        let rt = last.record.runtime_details.as_ref().unwrap();
        (
            Arc::ptr_eq(&part.runtime, rt),
            Arc::ptr_eq(&held_key.name, &last.record.name)
                && Arc::ptr_eq(&part.key.namespace, &last.record.namespace),
        )
    };
    assert!(
        Arc::ptr_eq(sent, &t.last[&key()]),
        "the sent observation is kept"
    );
    assert_eq!(shared(&t), (true, true));
    // The same object again: a new part is derived, then shares the record's details.
    assert!(
        t.event(Kind::Vmi, None, Event::Apply(object(vmi())))
            .is_empty()
    );
    assert_eq!(shared(&t), (true, true));
    // A hypervisor answer changes the part's details: copied, not written through.
    let uid = t.vmis[&key()].uid.clone();
    let before = t.last[&key()].clone();
    t.hypervisor_found(&key(), uid.as_deref(), "kvm");
    assert_eq!(
        before
            .record
            .runtime_details
            .as_ref()
            .unwrap()
            .hypervisor_type,
        None
    );
    let rt = t.last[&key()].record.runtime_details.clone().unwrap();
    assert_eq!(rt.hypervisor_type.as_deref(), Some("kvm"));
}

#[test]
fn a_deleted_vmi_is_confirmed_first_then_cleared_when_really_gone() {
    let mut t = tracker(true, HashMap::new());
    t.event(Kind::Vmi, None, Event::Apply(object(vmi())));
    let mut gone = vmi();
    gone["metadata"]["resourceVersion"] = json!("11900000");
    let actions = t.event(Kind::Vmi, None, Event::Delete(object(gone)));
    assert!(matches!(
        &actions[..],
        [Action::Confirm {
            kind: Kind::Vmi,
            event_rv: Some(11900000),
            ..
        }]
    ));
    let actions = t.confirmed(
        Kind::Vmi,
        &key(),
        Some(11900000),
        Lookup::NotFound {
            resource_version: None,
        },
    );
    let obs = observed(&actions);
    assert_eq!(obs.len(), 1);
    assert_eq!(obs[0].record.runtime_details, None, "runtime cleared");
    assert_eq!(obs[0].versions.vmi_resource_version, Some(11900000));
    assert!(!obs[0].versions.runtime_unknown);
}

#[test]
fn a_vmi_found_on_another_node_is_handed_off_without_a_write() {
    let mut t = tracker(true, HashMap::new());
    t.event(Kind::Vmi, None, Event::Apply(object(vmi())));
    let mut moved = vmi();
    moved["metadata"]["labels"]["kubevirt.io/nodeName"] = json!("node-b");
    moved["status"]["nodeName"] = json!("node-b");
    let actions = t.confirmed(
        Kind::Vmi,
        &key(),
        None,
        Lookup::Found(Box::new(object(moved))),
    );
    assert!(
        matches!(&actions[..], [Action::Emit(StateEvent::Forget(k)), Action::Domain { target: None, .. }] if *k == key())
    );
    assert_eq!(t.stats.handoffs, 1);
    // Coming back is a fresh start.
    let actions = t.event(Kind::Vmi, None, Event::Apply(object(vmi())));
    assert_eq!(observed(&actions).len(), 1);
}

#[test]
fn after_a_relist_only_the_missing_ones_are_confirmed_including_records_from_before_a_restart() {
    let mut before = tracker(true, HashMap::new());
    let mut other = vmi();
    other["metadata"]["name"] = json!("other");
    other["metadata"]["uid"] = json!("uid-other");
    let mut last = HashMap::new();
    for v in [vmi(), other] {
        let actions = before.event(Kind::Vmi, None, Event::Apply(object(v)));
        let o = observed(&actions)[0].clone();
        last.insert(o.record.key(), o);
    }
    // Restart: both records are in the state file; the relist shows only one.
    let mut t = tracker(true, last);
    assert!(t.event(Kind::Vmi, None, Event::Init).is_empty());
    let actions = t.event(Kind::Vmi, None, Event::InitApply(object(vmi())));
    assert!(
        observed(&actions).is_empty(),
        "unchanged since the restart: nothing sent"
    );
    assert_eq!(domains(&actions), [(key(), true)], "the probe hears of it");
    let actions = t.event(Kind::Vmi, None, Event::InitDone);
    let confirms: Vec<&VmKey> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Confirm {
                key,
                event_rv: None,
                ..
            } => Some(key),
            _ => None,
        })
        .collect();
    assert_eq!(confirms, vec![&VmKey::new("openshift-cnv", "other")]);
    // A namespace-scoped list says nothing about other namespaces.
    t.event(Kind::Vmi, Some("elsewhere"), Event::Init);
    assert!(
        t.event(Kind::Vmi, Some("elsewhere"), Event::InitDone)
            .is_empty()
    );
}

#[test]
fn the_cluster_role_writes_status_and_a_confirmed_deletion() {
    let mut t = tracker(false, HashMap::new());
    assert!(
        t.event(Kind::Vm, None, Event::Apply(object(vm())))
            .is_empty(),
        "inactive"
    );
    t.set_cluster_active(true);
    let actions = t.event(Kind::Vm, None, Event::Apply(object(vm())));
    let obs = observed(&actions);
    assert_eq!(obs[0].record.status, Some(VmStatus::PoweredOn));
    assert!(obs[0].versions.runtime_unknown, "its VMI runs elsewhere");
    t.event(Kind::Vm, None, Event::Delete(object(vm())));
    let actions = t.confirmed(
        Kind::Vm,
        &key(),
        Some(9000000),
        Lookup::NotFound {
            resource_version: None,
        },
    );
    let obs = observed(&actions);
    assert_eq!(obs[0].record.status, Some(VmStatus::Deleted));
    assert_eq!(obs[0].record.runtime_details, None);
    assert!(
        !obs[0].versions.runtime_unknown,
        "deletion clears the runtime"
    );
    assert_eq!(obs[0].versions.vm_resource_version, Some(9000000));
    // Losing the role forgets the VM parts: later VMI events are not combined with them.
    t.set_cluster_active(false);
    assert!(
        t.event(Kind::Vm, None, Event::Apply(object(vm())))
            .is_empty()
    );
}

#[test]
fn role_all_hand_off_keeps_the_cluster_part_of_the_record() {
    let mut t = tracker(true, HashMap::new());
    t.set_cluster_active(true);
    t.event(Kind::Vm, None, Event::Apply(object(vm())));
    t.event(Kind::Vmi, None, Event::Apply(object(vmi())));
    let mut moved = vmi();
    moved["metadata"]["labels"]["kubevirt.io/nodeName"] = json!("node-b");
    let actions = t.confirmed(
        Kind::Vmi,
        &key(),
        None,
        Lookup::Found(Box::new(object(moved))),
    );
    let obs = observed(&actions);
    assert_eq!(obs.len(), 1, "no Forget: the VM part stays");
    assert_eq!(obs[0].record.status, Some(VmStatus::PoweredOn));
    assert!(obs[0].versions.runtime_unknown, "runtime is node-b's now");
}

#[test]
fn a_malformed_object_is_rejected_and_counted_and_the_last_record_kept() {
    let mut t = tracker(true, HashMap::new());
    t.event(Kind::Vmi, None, Event::Apply(object(vmi())));
    let mut bad = vmi();
    bad["status"]["currentCPUTopology"]["cores"] = json!("many");
    assert!(
        t.event(Kind::Vmi, None, Event::Apply(object(bad)))
            .is_empty()
    );
    assert_eq!(t.stats.rejected, 1);
    let mut bad_meta = vmi();
    bad_meta["metadata"]["labels"] = json!(7);
    assert!(
        t.event(Kind::Vmi, None, Event::Apply(object(bad_meta)))
            .is_empty()
    );
    assert_eq!(t.stats.rejected, 2);
    // The good record is still the reference: the same good event is a no-op.
    assert!(
        t.event(Kind::Vmi, None, Event::Apply(object(vmi())))
            .is_empty()
    );
}

#[test]
fn the_probe_hears_of_running_vmis_and_its_answer_becomes_the_record() {
    let mut t = tracker(true, HashMap::new());
    let actions = t.event(Kind::Vmi, None, Event::Apply(object(vmi())));
    assert_eq!(domains(&actions), [(key(), true)], "entered Running");
    let uid = "2e432308-e94c-4866-a86a-388ce0b6cbc1";

    // The answer for another (older) VMI of that name is ignored.
    assert!(
        t.hypervisor_found(&key(), Some("old-uid"), "kvm")
            .is_empty()
    );
    let actions = t.hypervisor_found(&key(), Some(uid), "kvm");
    let obs = observed(&actions);
    let rt = obs[0].record.runtime_details.as_ref().unwrap();
    assert_eq!(rt.hypervisor_type.as_deref(), Some("kvm"));
    assert!(
        t.hypervisor_found(&key(), Some(uid), "kvm").is_empty(),
        "no-op"
    );

    // A later event of the VMI keeps the type and tells the probe nothing new.
    let mut next = vmi();
    next["metadata"]["resourceVersion"] = json!("11848300");
    next["status"]["interfaces"][0]["ipAddress"] = json!("10.128.1.200");
    let actions = t.event(Kind::Vmi, None, Event::Apply(object(next.clone())));
    let obs = observed(&actions);
    let rt = obs[0].record.runtime_details.as_ref().unwrap();
    assert_eq!(rt.hypervisor_type.as_deref(), Some("kvm"));
    assert!(domains(&actions).is_empty());

    // Paused, then resumed: both change the target (the probe decides to look again).
    next["status"]["conditions"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "Paused", "status": "True"}));
    let actions = t.event(Kind::Vmi, None, Event::Apply(object(next)));
    assert_eq!(domains(&actions), [(key(), true)]);

    // Finished: the probe drops it.
    let mut done = vmi();
    done["status"]["phase"] = json!("Succeeded");
    let actions = t.event(Kind::Vmi, None, Event::Apply(object(done)));
    assert_eq!(domains(&actions), [(key(), false)]);
    assert_eq!(observed(&actions)[0].record.runtime_details, None);
}

#[test]
fn a_vmi_confirmed_gone_ends_the_probe() {
    let mut t = tracker(true, HashMap::new());
    t.event(Kind::Vmi, None, Event::Apply(object(vmi())));
    let actions = t.confirmed(
        Kind::Vmi,
        &key(),
        Some(11900000),
        Lookup::NotFound {
            resource_version: None,
        },
    );
    assert_eq!(domains(&actions), [(key(), false)]);
    // A VMI that never ran here (Scheduled) never reaches the probe.
    let mut t = tracker(true, HashMap::new());
    let mut scheduled = vmi();
    scheduled["status"]["phase"] = json!("Scheduled");
    let actions = t.event(Kind::Vmi, None, Event::Apply(object(scheduled)));
    assert!(domains(&actions).is_empty());
    let actions = t.confirmed(
        Kind::Vmi,
        &key(),
        None,
        Lookup::NotFound {
            resource_version: Some(1),
        },
    );
    assert!(domains(&actions).is_empty());
}

#[test]
fn role_all_restart_holds_a_vm_until_its_vmis_are_listed_and_writes_nothing_unchanged() {
    // The state before the restart: VM and VMI combined.
    let mut before = tracker(true, HashMap::new());
    before.set_cluster_active(true);
    before.event(Kind::Vm, None, Event::Apply(object(vm())));
    let actions = before.event(Kind::Vmi, None, Event::Apply(object(vmi())));
    let stored = observed(&actions)[0].clone();
    // The restart: the VM list comes before the VMI list.
    let mut t = tracker(true, HashMap::from([(key(), stored.clone())]));
    t.set_cluster_active(true);
    t.event(Kind::Vm, None, Event::Init);
    let held = t.event(Kind::Vm, None, Event::InitApply(object(vm())));
    assert!(
        observed(&held).is_empty(),
        "combined with an unknown VMI it would drop the runtime values: {held:?}"
    );
    t.event(Kind::Vm, None, Event::InitDone);
    t.event(Kind::Vmi, None, Event::Init);
    let listed = t.event(Kind::Vmi, None, Event::InitApply(object(vmi())));
    let done = t.event(Kind::Vmi, None, Event::InitDone);
    assert!(
        observed(&listed).is_empty() && observed(&done).is_empty(),
        "nothing changed, nothing sent: {listed:?} {done:?}"
    );
    // A VM without a VMI here is released once the VMIs are listed.
    let mut t = tracker(true, HashMap::new());
    t.set_cluster_active(true);
    assert!(observed(&t.event(Kind::Vm, None, Event::Apply(object(vm())))).is_empty());
    t.event(Kind::Vmi, None, Event::Init);
    let released = t.event(Kind::Vmi, None, Event::InitDone);
    let obs = observed(&released);
    assert_eq!(obs.len(), 1, "{released:?}");
    assert_eq!(obs[0].record.status, Some(VmStatus::PoweredOn));
}
