//! The KubeVirt source: kube-rs watchers on VMIs (node role, this node's
//! label) and VMs (cluster role, while this daemon holds it), fed through the pure
//! `Tracker`; disappearances are confirmed with a GET before anything is written.

mod client;
mod object;
mod tracker;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::api::ListParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use client::{ClientError, check_node, client_from_config};
pub use object::{Kind, KubeObject};
pub use tracker::{Action, Lookup, NODE_LABEL, Tracker, TrackerOptions, TrackerStats};

/// The label selector is the model's: the configuration checks it too.
pub use crate::model::Selector;

use crate::health::{CACHE_READY, Health, KUBERNETES_CONNECTED};
use crate::metrics::Metrics;
use crate::model::{Observation, VmKey, parse_resource_version};
use crate::source::libvirt::{HypervisorFound, TargetUpdate};
use crate::state::StateEvent;

/// Objects per list request (kube's default is 500).
const LIST_PAGE_SIZE: u32 = 100;

/// What the source needs to know, from the configuration.
#[derive(Clone, Debug)]
pub struct KubeSettings {
    pub node: String,
    pub node_role: bool,
    pub cluster_role: bool,
    /// Empty = all namespaces.
    pub namespaces: Vec<String>,
    pub label_selector: Option<String>,
}

type EventStream =
    Pin<Box<dyn Stream<Item = (Option<String>, watcher::Result<Event<KubeObject>>)> + Send>>;

/// How long a failed confirming GET waits before it is tried again.
const CONFIRM_RETRY: Duration = Duration::from_secs(5);
/// The VM lists start once the first VMI lists are stored, or after this long: one list
/// at a time keeps a start's transient memory (a list's pages and decoded objects) to
/// one list's, and the VMIs come first because the tracker holds back VMs whose VMI
/// may run here until then.
const VM_LISTS_AFTER_VMIS_OR: Duration = Duration::from_secs(30);

pub struct KubeSource {
    client: Client,
    settings: KubeSettings,
    tracker: Tracker,
    events: mpsc::Sender<StateEvent>,
    /// Confirmations whose GET failed: (kind, key, event resourceVersion).
    retry: Vec<(Kind, VmKey, Option<i64>)>,
    /// The hypervisor probe (node role with libvirt): targets out, answers in.
    probe: Option<ProbeLink>,
    /// Counts the events and the no-ops they caused.
    metrics: Metrics,
    health: Health,
    /// First lists (per kind and scope) still to complete before `CacheReady`.
    first_lists: usize,
}

const LOOP: &str = "kubernetes";

/// The KubeVirt source's side of the hypervisor probe's channels.
pub struct ProbeLink {
    pub targets: mpsc::UnboundedSender<TargetUpdate>,
    pub found: mpsc::UnboundedReceiver<HypervisorFound>,
}

impl KubeSource {
    pub fn new(
        client: Client,
        settings: KubeSettings,
        last: HashMap<VmKey, Arc<Observation>>,
        events: mpsc::Sender<StateEvent>,
        metrics: Metrics,
    ) -> Result<KubeSource, ClientError> {
        let selector = match &settings.label_selector {
            Some(text) => Selector::parse(text).map_err(ClientError::Selector)?,
            None => Selector::default(),
        };
        let tracker = Tracker::new(
            TrackerOptions {
                node: settings.node.clone(),
                node_role: settings.node_role,
                selector,
            },
            last,
        );
        Ok(KubeSource {
            client,
            settings,
            tracker,
            events,
            retry: Vec::new(),
            probe: None,
            metrics,
            health: Health::default(),
            first_lists: 0,
        })
    }

    /// Reports `KubernetesConnected`, `CacheReady` (once the first lists are stored) and
    /// the loop's liveness in `health`.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// Counts one watcher event: whether it carried an object, and the no-ops it
    /// caused (`noop_before` is the tracker's no-op count before it).
    fn count_event(&self, kind: Kind, object: bool, noop_before: u64) {
        let m = &self.metrics;
        if object {
            m.events
                .with_label_values(&["kubernetes", kind.name()])
                .inc();
        }
        m.noop_events
            .with_label_values(&["kubernetes"])
            .inc_by(self.tracker.stats.noop.saturating_sub(noop_before));
    }

    /// Tells the hypervisor probe which VMIs run here and stores what it finds.
    pub fn with_probe(mut self, probe: ProbeLink) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Runs until `shutdown` is cancelled or the state owner is gone. `holder` says
    /// whether this daemon holds the cluster role.
    pub async fn run(mut self, mut holder: watch::Receiver<bool>, shutdown: CancellationToken) {
        let mut vmis = self.settings.node_role.then(|| self.watch(Kind::Vmi));
        if vmis.is_some() {
            self.first_lists = self.scopes().len();
        }
        let mut vms: Option<EventStream> = None;
        let mut vm_lists_awaited = 0usize;
        let mut election_over = false;
        let vm_lists_latest = tokio::time::Instant::now() + VM_LISTS_AFTER_VMIS_OR;
        let mut retry_tick = tokio::time::interval(CONFIRM_RETRY);
        retry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.health.beat(LOOP);
            let holding = self.settings.cluster_role && *holder.borrow_and_update();
            if holding != self.tracker.cluster_active() {
                // A takeover that ends before its VM lists are complete has stored what
                // it adopted without queuing it: anti-entropy compares that with the rows.
                let adopted_unchecked = !holding && vm_lists_awaited > 0;
                self.tracker.set_cluster_active(holding);
                vms = holding.then(|| self.watch(Kind::Vm));
                // Every namespace's first list, before the comparison with PostgreSQL.
                vm_lists_awaited = if holding { self.scopes().len() } else { 0 };
                if !holding {
                    // A deposed holder writes nothing more about VMs.
                    self.retry.retain(|(kind, _, _)| *kind != Kind::Vm);
                }
                if adopted_unchecked && self.events.send(StateEvent::ResyncAfterThis).await.is_err()
                {
                    return;
                }
                tracing::info!(
                    active = holding,
                    "cluster role (all VMs) {}",
                    if holding {
                        "active: watching VMs"
                    } else {
                        "inactive"
                    }
                );
            }
            let vm_lists_may_start =
                self.first_lists == 0 || tokio::time::Instant::now() >= vm_lists_latest;
            let (kind, scope, item) = tokio::select! {
                Some((scope, item)) = next(&mut vmis) => (Kind::Vmi, scope, item),
                Some((scope, item)) = next(&mut vms), if vm_lists_may_start => (Kind::Vm, scope, item),
                changed = holder.changed(), if !election_over => {
                    // The election ended (shutdown): keep what we have.
                    election_over = changed.is_err();
                    continue;
                }
                _ = retry_tick.tick() => {
                    if !self.retry_confirmations().await {
                        return;
                    }
                    continue;
                }
                Some(found) = next_found(&mut self.probe) => {
                let actions = self.tracker.hypervisor_found(&found.key, found.uid.as_deref(), &found.hypervisor_type);
                if !self.perform(actions).await {
                    return;
                }
                continue;
            }
                _ = shutdown.cancelled() => {
                    self.health.done(LOOP);
                    return;
                }
            };
            let event = match item {
                Ok(event) => event,
                Err(e) => {
                    self.health.set(
                        KUBERNETES_CONNECTED,
                        false,
                        "WatchFailed",
                        &format!("{} watch: {e}", kind.name()),
                    );
                    tracing::warn!(kind = kind.name(), error = %e, "watch failed; retrying with backoff");
                    continue;
                }
            };
            let list_done = matches!(event, Event::InitDone);
            let noop_before = self.tracker.stats.noop;
            let object = matches!(
                event,
                Event::Apply(_) | Event::InitApply(_) | Event::Delete(_)
            );
            if object {
                crate::failpoint::stall("kube_event").await;
            }
            let mut actions = self.tracker.event(kind, scope.as_deref(), event);
            if vm_lists_awaited > 0 {
                actions = adopt(actions);
            }
            self.count_event(kind, object, noop_before);
            if !self.perform(actions).await {
                return;
            }
            if list_done {
                self.health.set(
                    KUBERNETES_CONNECTED,
                    true,
                    "Watching",
                    &format!("{} list complete; watching", kind.name()),
                );
                if kind == Kind::Vmi && self.first_lists > 0 {
                    self.first_lists -= 1;
                    if self.first_lists == 0 {
                        self.health.set(
                            CACHE_READY,
                            true,
                            "Listed",
                            "the first VMI lists are stored",
                        );
                    }
                }
                let stats = self.tracker.stats;
                tracing::info!(
                    kind = kind.name(),
                    namespace = scope.as_deref().unwrap_or("*"),
                    relists = stats.relists,
                    rejected = stats.rejected,
                    "{} list complete; watching",
                    kind.name()
                );
                crate::memory::release_freed();
            }
            if kind == Kind::Vm && list_done && vm_lists_awaited > 0 {
                vm_lists_awaited -= 1;
                if vm_lists_awaited == 0
                    && self.events.send(StateEvent::ResyncAfterThis).await.is_err()
                {
                    return;
                }
            }
        }
    }

    /// A watcher per namespace (or one for all), merged, each item tagged with its scope.
    fn watch(&self, kind: Kind) -> EventStream {
        let ar = kind.api_resource();
        let mut labels: Vec<String> = Vec::new();
        if kind == Kind::Vmi {
            labels.push(format!("{NODE_LABEL}={}", self.settings.node));
        }
        labels.extend(self.settings.label_selector.iter().cloned());
        // Pages of 100 instead of kube's 500: a page's body and its decoded objects are
        // the list's transient memory (two lists at once at every start), and at 500
        // they set the daemon's peak RSS at a restart with 10,000 VMs.
        let config = watcher::Config::default()
            .labels(&labels.join(","))
            .page_size(LIST_PAGE_SIZE);
        let streams = self.scopes().into_iter().map(|scope| {
            let api: Api<KubeObject> = match &scope {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
                None => Api::all_with(self.client.clone(), &ar),
            };
            watcher::watcher(api, config.clone())
                .default_backoff()
                .map(move |item| (scope.clone(), item))
                .boxed()
        });
        futures::stream::select_all(streams).boxed()
    }

    /// One watch per configured namespace, or one for all.
    fn scopes(&self) -> Vec<Option<String>> {
        if self.settings.namespaces.is_empty() {
            vec![None]
        } else {
            self.settings.namespaces.iter().cloned().map(Some).collect()
        }
    }

    /// Sends events on and makes the GETs asked for. False when the writer is gone.
    async fn perform(&mut self, actions: Vec<Action>) -> bool {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Emit(event) => {
                    if self.events.send(event).await.is_err() {
                        return false;
                    }
                }
                Action::Domain { key, target } => {
                    if let Some(probe) = &self.probe {
                        // The probe ends only at shutdown; nothing to do then.
                        let _ = probe.targets.send((key, target));
                    }
                }
                Action::Confirm {
                    kind,
                    key,
                    event_rv,
                } => match self.lookup(kind, &key).await {
                    Ok(found) => queue.extend(self.tracker.confirmed(kind, &key, event_rv, found)),
                    Err(e) => {
                        tracing::warn!(kind = kind.name(), vm = %key, error = %e, "confirming a disappearance failed; retrying");
                        if !self.retry.iter().any(|(k, r, _)| *k == kind && *r == key) {
                            self.retry.push((kind, key, event_rv));
                        }
                    }
                },
            }
        }
        true
    }

    async fn retry_confirmations(&mut self) -> bool {
        let pending = std::mem::take(&mut self.retry);
        let actions = pending
            .into_iter()
            .map(|(kind, key, event_rv)| Action::Confirm {
                kind,
                key,
                event_rv,
            })
            .collect();
        self.perform(actions).await
    }

    async fn lookup(&self, kind: Kind, key: &VmKey) -> Result<Lookup, kube::Error> {
        let api: Api<KubeObject> =
            Api::namespaced_with(self.client.clone(), &key.namespace, &kind.api_resource());
        Ok(match api.get_opt(&key.name).await? {
            Some(obj) => Lookup::Found(Box::new(obj)),
            None => {
                // The collection's resourceVersion now is at least the deletion's: a
                // fence no later object can lose against.
                let list = api.list(&ListParams::default().limit(1)).await?;
                let resource_version = list
                    .metadata
                    .resource_version
                    .as_deref()
                    .and_then(parse_resource_version);
                Lookup::NotFound { resource_version }
            }
        })
    }
}

async fn next_found(probe: &mut Option<ProbeLink>) -> Option<HypervisorFound> {
    match probe {
        Some(p) => p.found.recv().await,
        None => std::future::pending().await,
    }
}

async fn next(
    stream: &mut Option<EventStream>,
) -> Option<(Option<String>, watcher::Result<Event<KubeObject>>)> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// While a new cluster-role holder lists the VMs, what it derives is adopted, not
/// written blindly: the anti-entropy pass after the lists writes what differs.
fn adopt(actions: Vec<Action>) -> Vec<Action> {
    actions
        .into_iter()
        .map(|action| match action {
            Action::Emit(StateEvent::Observed(obs)) => Action::Emit(StateEvent::Adopted(obs)),
            other => other,
        })
        .collect()
}
