//! Regression tests from the review of the KubeVirt source: the pure tracker driven like
//! the runner drives it, feeding a real state store, to show what PostgreSQL would be
//! sent. Each test names the bug it demonstrated (all fixed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;

use kube::runtime::watcher::Event;
use serde_json::{Value, json};
use virtsync::columns::{Column, ColumnSet};
use virtsync::model::{Observation, Timestamp, VmKey};
use virtsync::source::kube::{Action, Kind, KubeObject, Lookup, Selector, Tracker, TrackerOptions};
use virtsync::state::{Outcome, StateEvent, Store, StoreOptions};

const NODE: &str = "sno-0-0";

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{CNV_NAME as NAME, CNV_NS as NS, cnv_vm as vm, cnv_vmi as vmi};

fn key() -> VmKey {
    VmKey::new(NS, NAME)
}

fn object(v: Value) -> KubeObject {
    serde_json::from_str(&v.to_string()).unwrap()
}

fn tracker(last: HashMap<VmKey, Arc<Observation>>) -> Tracker {
    Tracker::new(
        TrackerOptions {
            node: NODE.into(),
            node_role: true,
            selector: Selector::default(),
        },
        last,
    )
}

fn t(ms: i64) -> Timestamp {
    Timestamp { unix_millis: ms }
}

fn open(dir: &tempfile::TempDir) -> Store {
    let options = StoreOptions {
        path: dir.path().join("state.redb"),
        cache_size: 4 << 20,
        sync_interval: std::time::Duration::from_secs(1),
        writable: ColumnSet::all(),
    };
    let (mut store, _) = Store::open(options, t(0)).unwrap();
    let rows = HashMap::from([(key(), "urn:vcloud:vm:1".to_string())]);
    store.set_managed(rows, t(0)).unwrap();
    store
}

/// The state events among `actions` (confirmations are answered by the caller).
fn events(actions: Vec<Action>) -> Vec<StateEvent> {
    actions
        .into_iter()
        .filter_map(Action::into_state_event)
        .collect()
}

/// Flushes everything pending as if PostgreSQL applied it; returns the columns sent.
fn flush_all(store: &mut Store) -> Vec<(VmKey, Vec<&'static str>)> {
    let batch = store.next_batch(100);
    let sent = batch
        .iter()
        .map(|d| (d.key.clone(), d.columns.names()))
        .collect();
    let outcomes: Vec<_> = batch
        .iter()
        .map(|d| (d.key.clone(), d.seq, Outcome::Applied))
        .collect();
    store.ack(&outcomes).unwrap();
    sent
}

/// What the daemon hands the tracker at start (daemon.rs `start_kube_source`).
fn last_of(store: &Store) -> HashMap<VmKey, Arc<Observation>> {
    store
        .records()
        .map(|(k, s)| (k.clone(), Arc::clone(&s.obs)))
        .collect()
}

/// role = "all" (the default), steady state: VM and VMI known, row written.
fn steady_role_all(store: &mut Store) {
    let mut tr = tracker(HashMap::new());
    tr.set_cluster_active(true);
    let mut ev = events(tr.event(Kind::Vm, None, Event::Apply(object(vm()))));
    ev.extend(events(tr.event(
        Kind::Vmi,
        None,
        Event::Apply(object(vmi())),
    )));
    store.apply(&ev, t(1)).unwrap();
    let sent = flush_all(store);
    assert_eq!(sent.len(), 1);
}

/// Was a bug: a role=all daemon restarts with nothing changed in Kubernetes. The VMI watch
/// lists before the election has given it the cluster role, so the VMI's record is
/// combined without the VM part (status None) and differs from the stored one; the
/// store keeps status None, and when the VM list arrives status "changes" back: an
/// UPDATE of an unchanged status for every VM on the host, at every restart.
#[test]
fn role_all_restart_with_nothing_changed_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    steady_role_all(&mut store);

    // Restart (same state file); the VMI list comes first, the election a little later.
    let mut tr = tracker(last_of(&store));
    let mut ev = events(tr.event(Kind::Vmi, None, Event::Init));
    ev.extend(events(tr.event(
        Kind::Vmi,
        None,
        Event::InitApply(object(vmi())),
    )));
    ev.extend(events(tr.event(Kind::Vmi, None, Event::InitDone)));
    store.apply(&ev, t(2)).unwrap();
    tr.set_cluster_active(true);
    let mut ev = events(tr.event(Kind::Vm, None, Event::Init));
    ev.extend(events(tr.event(
        Kind::Vm,
        None,
        Event::InitApply(object(vm())),
    )));
    ev.extend(events(tr.event(Kind::Vm, None, Event::InitDone)));
    store.apply(&ev, t(3)).unwrap();

    assert_eq!(
        flush_all(&mut store),
        vec![],
        "nothing changed in Kubernetes, yet columns are sent to PostgreSQL"
    );
}

/// BUG (same cause): role=all loses the cluster role (e.g. a late heartbeat) and gets it
/// back; any VMI event in between stores status None, and regaining re-sends status.
#[test]
fn role_all_losing_and_regaining_the_cluster_role_writes_nothing_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let mut tr = tracker(HashMap::new());
    tr.set_cluster_active(true);
    let mut ev = events(tr.event(Kind::Vm, None, Event::Apply(object(vm()))));
    ev.extend(events(tr.event(
        Kind::Vmi,
        None,
        Event::Apply(object(vmi())),
    )));
    store.apply(&ev, t(1)).unwrap();
    flush_all(&mut store);

    tr.set_cluster_active(false);
    // A guest-agent heartbeat-ish change while standing by: only a runtime field moves.
    let mut v = vmi();
    v["metadata"]["resourceVersion"] = json!("11848300");
    v["status"]["interfaces"][0]["ipAddress"] = json!("10.128.1.200");
    v["status"]["interfaces"][0]["ipAddresses"] = json!(["10.128.1.200"]);
    store
        .apply(
            &events(tr.event(Kind::Vmi, None, Event::Apply(object(v)))),
            t(2),
        )
        .unwrap();
    let sent = flush_all(&mut store);
    assert!(sent.iter().all(|(_, c)| !c.contains(&"status")), "{sent:?}");

    tr.set_cluster_active(true);
    let mut ev = events(tr.event(Kind::Vm, None, Event::Init));
    ev.extend(events(tr.event(
        Kind::Vm,
        None,
        Event::InitApply(object(vm())),
    )));
    ev.extend(events(tr.event(Kind::Vm, None, Event::InitDone)));
    store.apply(&ev, t(3)).unwrap();
    assert_eq!(
        flush_all(&mut store),
        vec![],
        "the VM did not change while the role was away"
    );
}

/// Was a bug: a node daemon that was down while its VM stopped confirms the disappearance after
/// its relist with a GET (404) and clears the runtime columns with NO fence at all
/// (vmi_resource_version None → `d.vmi_rv IS NULL` passes in flush.rs). The record stays
/// in its store with that unfenced version, so this write — and every later
/// anti-entropy correction of it — can overwrite what the VM's next VMI on another node
/// wrote. (Proven end to end in kube_e2e.rs
/// `a_relist_confirmed_stop_does_not_clear_the_next_vmi_on_another_node`.)
#[test]
fn a_stop_confirmed_after_a_relist_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let mut tr = tracker(HashMap::new());
    store
        .apply(
            &events(tr.event(Kind::Vmi, None, Event::Apply(object(vmi())))),
            t(1),
        )
        .unwrap();
    flush_all(&mut store);

    // Down while the VM stopped; back, the list no longer shows the VMI.
    let mut tr = tracker(last_of(&store));
    tr.event(Kind::Vmi, None, Event::Init);
    let actions = tr.event(Kind::Vmi, None, Event::InitDone);
    assert!(matches!(
        &actions[..],
        [Action::Confirm { event_rv: None, .. }]
    ));
    // The runner reads the collection's resourceVersion right after the 404.
    let found = Lookup::NotFound {
        resource_version: Some(12_000_000),
    };
    let actions = tr.confirmed(Kind::Vmi, &key(), None, found);
    store.apply(&events(actions), t(2)).unwrap();
    let batch = store.next_batch(10);
    assert_eq!(batch.len(), 1);
    assert!(batch[0].columns.contains(Column::RuntimePrimaryIp));
    assert!(
        batch[0].versions.vmi_resource_version.is_some(),
        "runtime cleared without any fence: {:?}",
        batch[0].versions
    );
}

/// Was a bug: nothing is ever dropped for VMs that are gone for good. Every VMI that stops
/// leaves an entry in the tracker's maps and a record in the state file (and every
/// deleted VM one with status DELETED), so a host running short-lived, uniquely named
/// VMs (CI, batch) grows its state without bound, and its periodic anti-entropy keeps
/// comparing those stale records with rows that other hosts now write.
#[test]
fn vmis_gone_for_good_do_not_stay_in_the_state_forever() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let mut tr = tracker(HashMap::new());
    for i in 0..50 {
        let mut v = vmi();
        v["metadata"]["name"] = json!(format!("ci-{i}"));
        v["metadata"]["uid"] = json!(format!("uid-{i}"));
        v["metadata"]["resourceVersion"] = json!((1000 + 2 * i).to_string());
        store
            .apply(
                &events(tr.event(Kind::Vmi, None, Event::Apply(object(v.clone())))),
                t(1),
            )
            .unwrap();
        v["metadata"]["resourceVersion"] = json!((1001 + 2 * i).to_string());
        let k = VmKey::new(NS, format!("ci-{i}"));
        let actions = tr.event(Kind::Vmi, None, Event::Delete(object(v)));
        assert_eq!(actions.len(), 1);
        let actions = tr.confirmed(
            Kind::Vmi,
            &k,
            Some(1001 + 2 * i),
            Lookup::NotFound {
                resource_version: None,
            },
        );
        store.apply(&events(actions), t(2)).unwrap();
    }
    let kept = store.records().count();
    assert!(
        kept < 50,
        "{kept} records kept for 50 VMIs that are gone (and their VMs never seen again)"
    );
}

/// Was a bug: the VM stops while the node daemon that ran its VMI is down (host crashed). The
/// cluster-role holder sees the VM Stopped with no VMI and derives "runtime cleared"
/// (fenced by the VM's resourceVersion), but its stored record for the running VM had
/// runtime None with `runtime_unknown`; the store diffs records only, None == None, so
/// the clearing is never queued: PostgreSQL keeps the dead node's runtime_* (node name,
/// IP, phase Running) next to status POWERED_OFF until the next periodic anti-entropy
/// (an hour by default).
#[test]
fn the_cluster_role_clears_the_runtime_of_a_vm_stopped_while_its_node_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let mut tr = Tracker::new(
        TrackerOptions {
            node: "holder".into(),
            node_role: false,
            selector: Selector::default(),
        },
        HashMap::new(),
    );
    tr.set_cluster_active(true);
    let ev = events(tr.event(Kind::Vm, None, Event::Apply(object(vm()))));
    store.apply(&ev, t(1)).unwrap();
    flush_all(&mut store);
    // (Meanwhile the node daemon wrote the runtime columns; then its host died.)

    let mut stopped = vm();
    stopped["metadata"]["resourceVersion"] = json!("99999999");
    stopped["status"]["printableStatus"] = json!("Stopped");
    stopped["status"]["created"] = json!(false);
    stopped["status"]["ready"] = json!(false);
    stopped["spec"]["running"] = json!(false);
    stopped["spec"]
        .as_object_mut()
        .unwrap()
        .remove("runStrategy");
    let ev = events(tr.event(Kind::Vm, None, Event::Apply(object(stopped))));
    let obs = match &ev[..] {
        [StateEvent::Observed(o)] => o.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        !obs.versions.runtime_unknown && obs.record.runtime_details.is_none(),
        "derive says: runtime cleared"
    );
    store.apply(&ev, t(2)).unwrap();
    let sent = flush_all(&mut store);
    assert!(
        sent.iter()
            .any(|(_, cols)| cols.contains(&"runtime_node_name")),
        "the clearing of the runtime columns was never queued: {sent:?}"
    );
}
