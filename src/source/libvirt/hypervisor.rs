//! The hypervisor type of each VMI running on this node: the KubeVirt source
//! says which VMIs run here ([`DomainTarget`]s); this task finds each one's domain with
//! the locator, reads `<domain type=...>`, keeps `kubevirt_vmi_hypervisor_info` and
//! reports the type back so it is stored as `runtime_hypervisor_type`.
//!
//! Choices made here:
//! - A domain is looked at when its target asks for it ([`needs_probe`]) and again every
//!   `libvirt.domain_check_interval`, so a guest destroyed behind KubeVirt's back loses
//!   its series within that interval.
//! - No such domain → no series (nothing runs here), looked for again with backoff
//!   (1 s doubling up to the check interval); the stored type is left alone.
//! - No answer (locator or libvirt error) before any answer → `unknown`; after an
//!   answer (a type, or "no such domain"), an outage (e.g. libvirtd restarting) keeps
//!   what was shown: a restart of libvirtd does not change what the guests run under.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::domain::domain_type;
use super::locator::locate_on_host;
use super::pool::ConnectionPool;
use crate::config::{LibvirtConfig, Locator};
use crate::derive::caps::HypervisorType;
use crate::derive::{DomainTarget, needs_probe};
use crate::health::{BEAT_INTERVAL, Health, LIBVIRT_CONNECTED};
use crate::metrics::Metrics;
use crate::model::VmKey;

/// The longest a single look at a domain may take (a hung launcher must not stall the
/// others for long).
const LOOK_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_FIRST: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct ProbeSettings {
    pub libvirt: LibvirtConfig,
    pub node: String,
    /// Where short links to long launcher socket paths go.
    pub link_dir: PathBuf,
    pub check_interval: Duration,
}

/// What the KubeVirt source tells the probe: a VMI's target, `None` once it is gone.
pub type TargetUpdate = (VmKey, Option<DomainTarget>);

/// What the probe found for the VMI `uid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HypervisorFound {
    pub key: VmKey,
    pub uid: Option<String>,
    pub hypervisor_type: String,
}

/// The result of one look at a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Look {
    Found(HypervisorType),
    NoDomain,
    NoAnswer(String),
}

struct Entry {
    target: DomainTarget,
    /// The `hypervisor_type` label of the exported series.
    series: Option<String>,
    /// The type last reported for this VMI.
    reported: Option<String>,
    /// libvirt answered at least once for this VMI.
    answered: bool,
    due: Instant,
    misses: u32,
    last_problem: Option<String>,
    uri: Option<String>,
}

pub struct HypervisorProbe {
    settings: ProbeSettings,
    pool: Arc<ConnectionPool>,
    metrics: Metrics,
    found: mpsc::UnboundedSender<HypervisorFound>,
    entries: HashMap<VmKey, Entry>,
    health: Health,
}

const LOOP: &str = "hypervisor-probe";

impl HypervisorProbe {
    pub fn new(
        settings: ProbeSettings,
        pool: Arc<ConnectionPool>,
        metrics: Metrics,
        found: mpsc::UnboundedSender<HypervisorFound>,
    ) -> Self {
        HypervisorProbe {
            settings,
            pool,
            metrics,
            found,
            entries: HashMap::new(),
            health: Health::default(),
        }
    }

    /// Reports `LibvirtConnected` (from each look) and the loop's liveness in `health`.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// Runs until `shutdown` or until the source is gone; closes its connections.
    pub async fn run(
        mut self,
        mut targets: mpsc::UnboundedReceiver<TargetUpdate>,
        shutdown: CancellationToken,
    ) {
        loop {
            self.health.beat(LOOP);
            let next_due = self.entries.values().map(|e| e.due).min();
            tokio::select! {
                _ = tokio::time::sleep(BEAT_INTERVAL) => {}
                update = targets.recv() => match update {
                    Some((key, target)) => self.update(key, target).await,
                    None => break,
                },
                _ = sleep_until(next_due) => self.look_at_due().await,
                _ = shutdown.cancelled() => break,
            }
        }
        self.health.done(LOOP);
        if let Err(e) = self.pool.close_all().await {
            tracing::warn!(error = %e, "closing libvirt connections failed");
        }
    }

    async fn update(&mut self, key: VmKey, target: Option<DomainTarget>) {
        let Some(target) = target else {
            if let Some(entry) = self.entries.remove(&key) {
                if let Some(t) = &entry.series {
                    self.metrics.hypervisor.remove(&key, &self.settings.node, t);
                }
                self.release(entry.uri).await;
            }
            return;
        };
        match self.entries.get_mut(&key) {
            Some(entry) => {
                if needs_probe(Some(&entry.target), &target) {
                    entry.due = Instant::now();
                    entry.misses = 0;
                    if entry.target.uid != target.uid {
                        entry.reported = None;
                        entry.answered = false;
                    }
                }
                entry.target = target;
            }
            None => {
                self.entries.insert(
                    key,
                    Entry {
                        target,
                        series: None,
                        reported: None,
                        answered: false,
                        due: Instant::now(),
                        misses: 0,
                        last_problem: None,
                        uri: None,
                    },
                );
            }
        }
    }

    /// Closes a launcher's connection nobody uses any more (`kubevirt` mode: one per pod).
    async fn release(&self, uri: Option<String>) {
        let Some(uri) = uri else { return };
        if self.settings.libvirt.locator != Locator::Kubevirt
            || self
                .entries
                .values()
                .any(|e| e.uri.as_deref() == Some(&uri))
        {
            return;
        }
        if let Err(e) = self.pool.remove(&uri).await {
            tracing::debug!(%uri, error = %e, "closing a launcher connection failed");
        }
    }

    async fn look_at_due(&mut self) {
        let now = Instant::now();
        let mut due: Vec<VmKey> = self
            .entries
            .iter()
            .filter(|(_, e)| e.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        due.sort();
        for key in due {
            let Some(target) = self.entries.get(&key).map(|e| e.target.clone()) else {
                continue;
            };
            let (uri, look) = self.look(&key, &target).await;
            self.metrics
                .events
                .with_label_values(&["libvirt", "domain"])
                .inc();
            match &look {
                Look::NoAnswer(reason) => {
                    self.health
                        .set(LIBVIRT_CONNECTED, false, "NoAnswer", reason)
                }
                _ => self.health.set(
                    LIBVIRT_CONNECTED,
                    true,
                    "Answering",
                    &format!("{} answered", uri.as_deref().unwrap_or("libvirt")),
                ),
            }
            let previous_uri = self.entries.get_mut(&key).and_then(|e| {
                let old = e.uri.clone();
                e.uri.clone_from(&uri);
                old.filter(|old| Some(old) != uri.as_ref())
            });
            self.settle(&key, look);
            self.release(previous_uri).await;
        }
    }

    async fn look(&self, key: &VmKey, target: &DomainTarget) -> (Option<String>, Look) {
        let location = match locate_on_host(
            &self.settings.libvirt,
            &self.settings.node,
            &key.namespace,
            &key.name,
            &target.active_pods,
            target.runtime_user,
            &self.settings.link_dir,
        ) {
            Ok(l) => l,
            Err(e) => return (None, Look::NoAnswer(e.to_string())),
        };
        let uri = Some(location.uri.clone());
        let look =
            match tokio::time::timeout(LOOK_TIMEOUT, domain_type(&self.pool, &location)).await {
                Ok(Ok(Some(t))) => Look::Found(t),
                Ok(Ok(None)) => Look::NoDomain,
                Ok(Err(e)) => Look::NoAnswer(e.to_string()),
                Err(_) => Look::NoAnswer(format!(
                    "libvirt {} did not answer within {LOOK_TIMEOUT:?}",
                    location.uri
                )),
            };
        (uri, look)
    }

    /// Applies one look's result to the series, the report and the next due time.
    fn settle(&mut self, key: &VmKey, look: Look) {
        let node = self.settings.node.clone();
        let check = self.settings.check_interval.max(Duration::from_millis(100));
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        // What the series should say now; `None`: leave it (an outage after an answer).
        let show: Option<Option<&str>> = match &look {
            Look::Found(t) => Some(Some(t.as_str())),
            Look::NoDomain => Some(None),
            Look::NoAnswer(_) if entry.answered => None,
            Look::NoAnswer(_) => Some(Some(HypervisorType::Unknown.as_str())),
        };
        match show {
            None => {}
            Some(Some(t)) => {
                if entry.series.as_deref() != Some(t) {
                    self.metrics
                        .hypervisor
                        .set(key, &node, entry.series.as_deref(), t);
                    entry.series = Some(t.to_owned());
                }
                if entry.reported.as_deref() != Some(t) {
                    entry.reported = Some(t.to_owned());
                    let _ = self.found.send(HypervisorFound {
                        key: key.clone(),
                        uid: entry.target.uid.clone(),
                        hypervisor_type: t.to_owned(),
                    });
                }
            }
            Some(None) => {
                if let Some(old) = entry.series.take() {
                    self.metrics.hypervisor.remove(key, &node, &old);
                }
            }
        }
        match look {
            Look::Found(t) => {
                if entry.last_problem.take().is_some() || !entry.answered {
                    tracing::info!(vm = %key, hypervisor_type = t.as_str(), "hypervisor type of the domain");
                }
                entry.answered = true;
                entry.misses = 0;
                entry.due = Instant::now() + check;
            }
            Look::NoDomain | Look::NoAnswer(_) => {
                // "No such domain" is an answer too: a later outage keeps "no series".
                entry.answered |= look == Look::NoDomain;
                let problem = match look {
                    Look::NoAnswer(reason) => reason,
                    _ => "no such domain".to_owned(),
                };
                if entry.last_problem.as_deref() != Some(&problem) {
                    tracing::warn!(vm = %key, %problem, "domain not found or not answering; looking again later");
                    entry.last_problem = Some(problem);
                }
                entry.misses = entry.misses.saturating_add(1);
                entry.due = Instant::now() + retry_delay(entry.misses, check);
            }
        }
    }
}

/// 1 s, 2 s, 4 s … after the n-th miss, never longer than `cap`.
fn retry_delay(misses: u32, cap: Duration) -> Duration {
    let exp = misses.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1 << exp).min(cap)
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_up_to_the_check_interval() {
        let cap = Duration::from_secs(30);
        let delays: Vec<u64> = (1..=7).map(|n| retry_delay(n, cap).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(retry_delay(u32::MAX, cap), cap);
    }
}
