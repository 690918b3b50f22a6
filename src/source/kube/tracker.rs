//! The KubeVirt source's state machine, without I/O: watcher events and the answers to
//! confirming GETs in, state events (records, hand-offs) and GETs to make out.
//!
//! It holds the derived parts of the VMs (cluster role) and VMIs (node role) it watches,
//! combines them into one record per VM, and decides what a disappearance means: a
//! DELETED event in node role may only mean the VMI left this node's label selector, so
//! every disappearance is confirmed with a GET before anything is written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use kube::runtime::watcher::Event;

use super::object::{Kind, KubeObject};
use crate::derive::{self, DomainTarget, VmInput, VmPart, VmiInput, VmiPart, domain_target};
use crate::model::{Observation, Selector, VmKey, VmStatus, parse_resource_version};
use crate::state::StateEvent;

/// The label KubeVirt puts on every VMI naming the node it runs on.
pub const NODE_LABEL: &str = "kubevirt.io/nodeName";

#[derive(Debug)]
pub enum Action {
    Emit(StateEvent),
    /// GET the object to learn what its disappearance means; `event_rv` is the
    /// resourceVersion of the DELETED event (none after a relist).
    Confirm {
        kind: Kind,
        key: VmKey,
        event_rv: Option<i64>,
    },
    /// A VMI of this node whose domain the hypervisor probe must (re)consider: `Some`
    /// while it runs here (sent when the target changed), `None` once it stopped or left.
    Domain {
        key: VmKey,
        target: Option<DomainTarget>,
    },
}

impl Action {
    /// The state event, for a caller that answers confirmations and probes elsewhere.
    pub fn into_state_event(self) -> Option<StateEvent> {
        match self {
            Action::Emit(event) => Some(event),
            Action::Confirm { .. } | Action::Domain { .. } => None,
        }
    }
}

/// The answer to a confirming GET.
#[derive(Debug)]
pub enum Lookup {
    /// Gone. `resource_version`: the collection's resourceVersion read right after the
    /// 404, the fence for a disappearance seen without a DELETED event (after a relist).
    NotFound {
        resource_version: Option<i64>,
    },
    Found(Box<KubeObject>),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    pub vm_events: u64,
    pub vmi_events: u64,
    /// Events that derived the same record as before (nothing sent on).
    pub noop: u64,
    /// Objects that could not be decoded or derived (logged).
    pub rejected: u64,
    pub relists: u64,
    pub handoffs: u64,
    pub vmis_gone: u64,
    pub vms_deleted: u64,
}

pub struct TrackerOptions {
    pub node: String,
    pub node_role: bool,
    /// The user's extra label selector (kubernetes.label_selector), if any.
    pub selector: Selector,
}

pub struct Tracker {
    options: TrackerOptions,
    cluster_active: bool,
    // Values boxed: a table sized for 10,000 entries holds 16,384 slots, and these
    // types are 200–800 bytes (BENCHMARKS.md, memory).
    vms: HashMap<VmKey, Box<VmPart>>,
    vmis: HashMap<VmKey, Box<VmiPart>>,
    /// The last observation sent per VM: the very value the state layer stores (shared,
    /// so each VM's record is in memory once).
    last: HashMap<VmKey, Arc<Observation>>,
    /// Keys seen since the current (re)list began, per kind and namespace scope.
    listing: HashMap<(Kind, Option<String>), HashSet<VmKey>>,
    unknown_statuses: HashSet<String>,
    /// VMI list scopes (namespace, `None` = all) whose first list is complete. Until
    /// then a VM whose VMI may run here is held back: combined with an unknown VMI it
    /// would lose the runtime and legacy values the state has, and the VMI that
    /// follows would write them all again (equal values, a new `runtime_vmi_updated_at`).
    vmi_listed: HashSet<Option<String>>,
    pub stats: TrackerStats,
}

impl Tracker {
    /// `last`: the records in the state file, so that a restart costs nothing for
    /// unchanged VMs and objects that vanished meanwhile are confirmed.
    /// Their `vmi_updated_at` must be `None` (derivation never sets it), as the store's
    /// `StoredVm::obs` has it.
    pub fn new(options: TrackerOptions, last: HashMap<VmKey, Arc<Observation>>) -> Tracker {
        Tracker {
            options,
            cluster_active: false,
            vms: HashMap::new(),
            vmis: HashMap::new(),
            last,
            listing: HashMap::new(),
            unknown_statuses: HashSet::new(),
            vmi_listed: HashSet::new(),
            stats: TrackerStats::default(),
        }
    }

    /// Whether the VMIs of `namespace` have been listed once (always, without a VMI
    /// watch: cluster role only).
    fn vmis_listed(&self, namespace: &str) -> bool {
        !self.options.node_role
            || self.vmi_listed.contains(&None)
            || self.vmi_listed.contains(&Some(namespace.to_owned()))
    }

    pub fn cluster_active(&self) -> bool {
        self.cluster_active
    }

    /// Taking or losing the cluster role. Losing it forgets the VM parts (records are
    /// then combined without them); taking it waits for the VM watch's first list.
    pub fn set_cluster_active(&mut self, active: bool) {
        self.cluster_active = active;
        if !active {
            self.vms.clear();
            self.listing.retain(|(kind, _), _| *kind != Kind::Vm);
        }
    }

    pub fn event(
        &mut self,
        kind: Kind,
        scope: Option<&str>,
        event: Event<KubeObject>,
    ) -> Vec<Action> {
        let scope_key = (kind, scope.map(str::to_string));
        match event {
            Event::Init => {
                self.stats.relists += 1;
                self.listing.insert(scope_key, HashSet::new());
                Vec::new()
            }
            Event::InitApply(obj) => {
                if let (Some(seen), Some(key)) = (self.listing.get_mut(&scope_key), key_of(&obj)) {
                    seen.insert(key);
                }
                self.apply(kind, &obj)
            }
            Event::Apply(obj) => self.apply(kind, &obj),
            Event::Delete(obj) => {
                self.count(kind);
                match key_of(&obj) {
                    Some(key) => vec![Action::Confirm {
                        kind,
                        key,
                        event_rv: obj
                            .metadata
                            .resource_version
                            .as_deref()
                            .and_then(parse_resource_version),
                    }],
                    None => Vec::new(),
                }
            }
            Event::InitDone => {
                let mut held = Vec::new();
                if kind == Kind::Vmi && self.vmi_listed.insert(scope.map(str::to_string)) {
                    held = self.release_held_vms(scope);
                }
                let seen = self.listing.remove(&scope_key).unwrap_or_default();
                let mut missing: Vec<VmKey> = self
                    .tracked(kind)
                    .into_iter()
                    .filter(|k| scope.is_none_or(|ns| &*k.namespace == ns))
                    .filter(|k| !seen.contains(k))
                    .collect();
                missing.sort();
                held.extend(missing.into_iter().map(|key| Action::Confirm {
                    kind,
                    key,
                    event_rv: None,
                }));
                held
            }
        }
    }

    /// What a confirming GET found.
    pub fn confirmed(
        &mut self,
        kind: Kind,
        key: &VmKey,
        event_rv: Option<i64>,
        lookup: Lookup,
    ) -> Vec<Action> {
        match (kind, lookup) {
            (Kind::Vmi, Lookup::NotFound { resource_version }) => {
                self.stats.vmis_gone += 1;
                let stopped = self.domain_gone(key);
                let uid = match self.vmis.remove(key) {
                    Some(part) => part.uid,
                    None => self.last.get(key).and_then(|o| o.versions.vmi_uid.clone()),
                };
                let gone = VmiInput::Gone {
                    uid,
                    resource_version: event_rv.or(resource_version),
                };
                let obs = derive::observe(
                    key,
                    self.vm_input(key),
                    gone,
                    self.last.get(key).map(Arc::as_ref),
                );
                let mut actions = self.send_final(key, obs);
                actions.extend(stopped);
                actions
            }
            (Kind::Vm, Lookup::NotFound { resource_version }) => {
                self.stats.vms_deleted += 1;
                self.vms.remove(key);
                let deleted = VmInput::Deleted {
                    resource_version: event_rv.or(resource_version),
                };
                let obs = derive::observe(
                    key,
                    deleted,
                    self.vmi_input(key),
                    self.last.get(key).map(Arc::as_ref),
                );
                self.send_final(key, obs)
            }
            (kind, Lookup::Found(obj)) => {
                if self.still_ours(kind, &obj) {
                    return self.apply(kind, &obj);
                }
                self.hand_off(kind, key)
            }
        }
    }

    fn still_ours(&self, kind: Kind, obj: &KubeObject) -> bool {
        let empty = BTreeMap::new();
        let labels = obj.metadata.labels.as_ref().unwrap_or(&empty);
        let on_this_node = labels.get(NODE_LABEL) == Some(&self.options.node);
        let selected = self.options.selector.matches(labels);
        match kind {
            Kind::Vmi => self.options.node_role && on_this_node && selected,
            Kind::Vm => self.cluster_active && selected,
        }
    }

    /// The object is another host's (or another filter's) now: drop what we know and
    /// write nothing. A VM part this daemon still holds keeps the record alive.
    fn hand_off(&mut self, kind: Kind, key: &VmKey) -> Vec<Action> {
        self.stats.handoffs += 1;
        let mut left = Vec::new();
        match kind {
            Kind::Vmi => {
                left = self.domain_gone(key);
                self.vmis.remove(key);
            }
            Kind::Vm => {
                self.vms.remove(key);
            }
        }
        let keeps_record = match kind {
            Kind::Vmi => self.vms.contains_key(key),
            Kind::Vm => self.vmis.contains_key(key),
        };
        let mut actions = if keeps_record {
            self.emit(key)
        } else {
            self.last.remove(key);
            tracing::info!(vm = %key, kind = kind.name(), "now handled elsewhere; local record dropped");
            vec![Action::Emit(StateEvent::Forget(key.clone()))]
        };
        actions.extend(left);
        actions
    }

    /// The probe's target of a tracked VMI.
    fn target(&self, key: &VmKey) -> Option<DomainTarget> {
        domain_target(self.vmis.get(key)?, &self.options.node)
    }

    /// The action that ends the probe's interest in a VMI about to be dropped.
    fn domain_gone(&self, key: &VmKey) -> Vec<Action> {
        match self.target(key) {
            Some(_) => vec![Action::Domain {
                key: key.clone(),
                target: None,
            }],
            None => Vec::new(),
        }
    }

    /// The hypervisor probe's answer for the VMI `uid` (ignored when the VMI changed).
    pub fn hypervisor_found(
        &mut self,
        key: &VmKey,
        uid: Option<&str>,
        hypervisor_type: &str,
    ) -> Vec<Action> {
        let Some(part) = self.vmis.get_mut(key) else {
            return Vec::new();
        };
        if part.uid.as_deref() != uid {
            return Vec::new();
        }
        Arc::make_mut(&mut part.runtime).hypervisor_type = Some(hypervisor_type.to_owned());
        self.emit(key)
    }

    fn apply(&mut self, kind: Kind, obj: &KubeObject) -> Vec<Action> {
        self.count(kind);
        if let Some(problem) = &obj.metadata_error {
            return self.reject(kind, obj, problem);
        }
        match kind {
            Kind::Vmi => {
                if !self.options.node_role {
                    return Vec::new();
                }
                let mut part = match derive::decode_vmi_slice(obj.json())
                    .map_err(|e| e.to_string())
                    .and_then(|vmi| derive::derive_vmi(&vmi).map_err(|e| e.to_string()))
                {
                    Ok(part) => part,
                    Err(problem) => return self.reject(kind, obj, &problem),
                };
                for warning in &part.warnings {
                    tracing::warn!(vm = %part.key, warning, "field ignored");
                }
                part.key = self.held_key(part.key);
                let key = part.key.clone();
                let before = self.target(&key);
                self.vmis.insert(key.clone(), Box::new(part));
                let mut actions = self.emit(&key);
                let target = self.target(&key);
                if target != before {
                    actions.push(Action::Domain { key, target });
                }
                actions
            }
            Kind::Vm => {
                if !self.cluster_active {
                    return Vec::new();
                }
                let mut part = match derive::decode_vm_slice(obj.json())
                    .map_err(|e| e.to_string())
                    .and_then(|vm| derive::derive_vm(&vm).map_err(|e| e.to_string()))
                {
                    Ok(part) => part,
                    Err(problem) => return self.reject(kind, obj, &problem),
                };
                if let Some(status) = &part.unknown_printable_status {
                    if self.unknown_statuses.insert(status.clone()) {
                        tracing::warn!(vm = %part.key, status, "unknown printableStatus; reported as UNKNOWN");
                    }
                }
                part.key = self.held_key(part.key);
                let key = part.key.clone();
                self.vms.insert(key.clone(), Box::new(part));
                if !self.vmis_listed(&key.namespace) {
                    return Vec::new();
                }
                self.emit(&key)
            }
        }
    }

    /// The key as this tracker already holds it, so that every copy (parts, records, the
    /// store's maps) shares one text allocation; a new key as it is.
    fn held_key(&self, key: VmKey) -> VmKey {
        let held = self
            .last
            .get_key_value(&key)
            .map(|(k, _)| k)
            .or_else(|| self.vmis.get_key_value(&key).map(|(k, _)| k))
            .or_else(|| self.vms.get_key_value(&key).map(|(k, _)| k));
        held.cloned().unwrap_or(key)
    }

    /// The VMs held back until the VMIs of `scope` were listed, combined with what is
    /// known now (a VM already sent with its VMI costs nothing: the same observation).
    fn release_held_vms(&mut self, scope: Option<&str>) -> Vec<Action> {
        let mut keys: Vec<VmKey> = self
            .vms
            .keys()
            .filter(|k| scope.is_none_or(|ns| &*k.namespace == ns))
            .cloned()
            .collect();
        keys.sort();
        keys.iter().flat_map(|k| self.emit(k)).collect()
    }

    fn reject(&mut self, kind: Kind, obj: &KubeObject, problem: &str) -> Vec<Action> {
        self.stats.rejected += 1;
        let meta = &obj.metadata;
        tracing::warn!(
            kind = kind.name(),
            vm = %format_args!(
                "{}/{}",
                meta.namespace.as_deref().unwrap_or(""),
                meta.name.as_deref().unwrap_or("")
            ),
            problem,
            "object rejected; its last good record is kept"
        );
        Vec::new()
    }

    fn count(&mut self, kind: Kind) {
        match kind {
            Kind::Vm => self.stats.vm_events += 1,
            Kind::Vmi => self.stats.vmi_events += 1,
        }
    }

    fn vm_input(&self, key: &VmKey) -> VmInput<'_> {
        match self.vms.get(key) {
            Some(part) if self.cluster_active => VmInput::Present(part),
            _ => VmInput::Unknown,
        }
    }

    /// A VMI confirmed gone is not remembered: later events for the key come from the
    /// VM, which says itself whether a VMI runs (possibly on another host).
    fn vmi_input(&self, key: &VmKey) -> VmiInput<'_> {
        match self.vmis.get(key) {
            Some(part) => VmiInput::Present(part),
            None => VmiInput::Unknown,
        }
    }

    fn emit(&mut self, key: &VmKey) -> Vec<Action> {
        let obs = derive::observe(
            key,
            self.vm_input(key),
            self.vmi_input(key),
            self.last.get(key).map(Arc::as_ref),
        );
        self.send(key, obs)
    }

    /// Sends the last observation of something that is gone; when nothing else is known
    /// about the key any more, it is not remembered either (the state layer drops the
    /// record once it is written), so state does not grow with every VM ever seen.
    fn send_final(&mut self, key: &VmKey, obs: Observation) -> Vec<Action> {
        let actions = self.send(key, obs);
        if !self.vms.contains_key(key) && !self.vmis.contains_key(key) {
            self.last.remove(key);
        }
        actions
    }

    fn send(&mut self, key: &VmKey, obs: Observation) -> Vec<Action> {
        if let Some(last) = self.last.get(key).filter(|last| ***last == obs) {
            self.stats.noop += 1;
            // The VMI's part was derived anew: let it share the details the record
            // already holds instead of keeping a second equal copy.
            if let (Some(part), Some(rt)) = (self.vmis.get_mut(key), &last.record.runtime_details) {
                if !Arc::ptr_eq(&part.runtime, rt) && part.runtime == *rt {
                    part.runtime = Arc::clone(rt);
                }
            }
            return Vec::new();
        }
        let obs = Arc::new(obs);
        self.last.insert(key.clone(), Arc::clone(&obs));
        vec![Action::Emit(StateEvent::Observed(obs))]
    }

    /// Keys whose disappearance from a list needs confirming: what this daemon holds
    /// for the kind, including records from before a restart.
    fn tracked(&self, kind: Kind) -> HashSet<VmKey> {
        match kind {
            Kind::Vmi => {
                let node = &self.options.node;
                let from_state = self.last.iter().filter(|(k, o)| {
                    !self.vmis.contains_key(*k)
                        && !o.versions.runtime_unknown
                        && o.record
                            .runtime_details
                            .as_ref()
                            .is_some_and(|rt| rt.node_name.as_ref() == Some(node))
                });
                self.vmis
                    .keys()
                    .chain(from_state.map(|(k, _)| k))
                    .cloned()
                    .collect()
            }
            Kind::Vm => {
                let from_state = self.last.iter().filter(|(_, o)| {
                    o.record.status.is_some() && o.record.status != Some(VmStatus::Deleted)
                });
                self.vms
                    .keys()
                    .chain(from_state.map(|(k, _)| k))
                    .cloned()
                    .collect()
            }
        }
    }
}

fn key_of(obj: &KubeObject) -> Option<VmKey> {
    let key = VmKey::new(obj.metadata.namespace.clone()?, obj.metadata.name.clone()?);
    key.validate().is_ok().then_some(key)
}

#[cfg(test)]
mod tests;
