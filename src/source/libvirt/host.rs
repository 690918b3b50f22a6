//! Host capability discovery in the daemon (docs/ARCHITECTURE.md, "Sources"): at start, every
//! `capabilities.refresh_interval`, on request, and when the machine types the VMIs on this
//! node run change (looked at every 30 s, in memory); the canonical form is stored in redb
//! only when it changed, and the PostgreSQL sink writes it to
//! `virtsync.host_capabilities` when its fingerprint differs from the one last written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::connection::LibvirtConnection;
use super::discovery::{MAX_RUNNING_MACHINES, MachinePlan, discover_with};
use super::pool::ConnectionPool;
use crate::derive::caps::{DiscoveryInput, build_capabilities, fingerprint_of};
use crate::health::{Health, LIBVIRT_CONNECTED};
use crate::metrics::Metrics;
use crate::model::{HostCapabilities, RuntimeDetails, Timestamp};
use crate::state::StateHandle;

/// Where discovery asks.
#[derive(Clone)]
pub enum CapabilitySource {
    /// `libvirt.uri`: the host's own libvirtd.
    Host(LibvirtConnection),
    /// A KubeVirt node with no host libvirtd (`locator = "kubevirt"`, no `libvirt.uri`):
    /// the libvirt of a running virt-launcher, from the hypervisor probe's connections.
    Launchers(Arc<ConnectionPool>),
}

/// How soon a discovery that found no libvirt at all is tried again.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(30);

/// What one discovery asked and where.
enum Discovered {
    Input(Box<DiscoveryInput>),
    /// No libvirt reachable; the reason names what was tried.
    Unavailable(String),
}

/// Which machines to ask about, and what on this node tells which the guests run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineSettings {
    /// `capabilities.machines`.
    pub configured: BTreeMap<String, Vec<String>>,
    /// `node_name`: the VMIs whose runtime node is this one tell the machine types used.
    pub node_name: String,
}

/// The machine types the VMIs of `node` run (`status.machine.type`), most used first
/// (then by name).
pub fn machine_types_on<'a>(
    runtimes: impl Iterator<Item = &'a RuntimeDetails>,
    node: &str,
) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for rt in runtimes.filter(|rt| rt.node_name.as_deref() == Some(node)) {
        if let Some(m) = rt.machine_type.as_deref().filter(|m| !m.is_empty()) {
            *counts.entry(m).or_default() += 1;
        }
    }
    let mut list: Vec<(&str, usize)> = counts.into_iter().collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    list.into_iter().map(|(m, _)| m.to_owned()).collect()
}

/// How often the machine types of this node's VMIs are looked at between discoveries.
const MACHINES_CHECK: Duration = Duration::from_secs(30);

/// What of the VMIs' machine types decides a discovery: the most used one (the guests'
/// machine candidate) and the set of those asked. A change in the counts that keeps
/// both is no reason to ask libvirt again (VMIs come and go all the time).
pub fn machines_asked(running: &[String]) -> (Option<&str>, BTreeSet<&str>) {
    let asked = running.iter().take(MAX_RUNNING_MACHINES);
    (
        running.first().map(String::as_str),
        asked.map(String::as_str).collect(),
    )
}

/// Returns once the machine types the VMIs on this node run differ from `before` in what
/// discovery asks (the guests' machine may have changed: discovery asks again). Looking
/// costs no I/O.
async fn machines_changed(settings: &MachineSettings, state: &StateHandle, before: Vec<String>) {
    loop {
        tokio::time::sleep(MACHINES_CHECK).await;
        if machines_asked(&plan_for(settings, state).running) != machines_asked(&before) {
            return;
        }
    }
}

/// The plan for one discovery: the configured machines and those the VMIs on this node
/// run, read from the state's snapshot (in memory).
pub fn plan_for(settings: &MachineSettings, state: &StateHandle) -> MachinePlan {
    let snapshot = state.snapshot();
    let running = machine_types_on(
        snapshot
            .records()
            .filter_map(|(_, vm)| vm.record.runtime_details.as_deref()),
        &settings.node_name,
    );
    MachinePlan {
        configured: settings.configured.clone(),
        running,
    }
}

async fn discover_from(source: &CapabilitySource, plan: &MachinePlan) -> Discovered {
    match source {
        CapabilitySource::Host(conn) => match discover_with(conn, plan).await {
            Ok(raw) => Discovered::Input(Box::new(raw.into_input())),
            Err(e) => Discovered::Unavailable(e.to_string()),
        },
        CapabilitySource::Launchers(pool) => {
            let uris = pool.uris();
            let mut problems = Vec::new();
            for uri in &uris {
                match discover_with(&pool.get(uri), plan).await {
                    Ok(raw) => {
                        let mut input = raw.into_input();
                        // The launcher's hostname is its pod's: the host is this one.
                        input.hostname = gethostname::gethostname()
                            .into_string()
                            .map_err(|_| "hostname is not UTF-8".to_owned());
                        return Discovered::Input(Box::new(input));
                    }
                    Err(e) => problems.push(e.to_string()),
                }
            }
            Discovered::Unavailable(if uris.is_empty() {
                "no host libvirt (libvirt.uri is not set) and no virt-launcher of a running VMI on this node to ask".to_owned()
            } else {
                format!(
                    "no host libvirt (libvirt.uri is not set) and no virt-launcher answered: {}",
                    problems.join("; ")
                )
            })
        }
    }
}

fn launcher_uris(source: &CapabilitySource) -> Vec<String> {
    match source {
        CapabilitySource::Host(_) => Vec::new(),
        CapabilitySource::Launchers(pool) => pool.uris(),
    }
}

/// Returns once the set of launcher connections differs from `before` (a VMI started:
/// now there is a libvirt to ask). Looking costs no I/O.
async fn launchers_changed(source: &CapabilitySource, before: Vec<String>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if launcher_uris(source) != before {
            return;
        }
    }
}

/// One discovery; stores the result when its canonical form changed. Returns the stored
/// form and whether it changed. With no libvirt to ask, the groups are stored as
/// unavailable with the reason, unless real capabilities are stored already (a KubeVirt
/// node whose last VMI stopped keeps what its launchers told).
pub async fn refresh(
    source: &CapabilitySource,
    plan: &MachinePlan,
    state: &StateHandle,
    now: Timestamp,
) -> Result<(Arc<HostCapabilities>, bool), String> {
    let (input, unavailable) = match discover_from(source, plan).await {
        Discovered::Input(input) => (*input, None),
        Discovered::Unavailable(reason) => {
            if matches!(source, CapabilitySource::Host(_)) {
                return Err(reason);
            }
            (DiscoveryInput::unavailable(&reason), Some(reason))
        }
    };
    let caps = build_capabilities(&input);
    let canonical = caps.to_canonical_json();
    let found = HostCapabilities {
        fingerprint: fingerprint_of(&canonical),
        hostname: caps.host_info.hostname.clone().unwrap_or_default(),
        discovered_at: now,
        canonical,
        available: unavailable.is_none(),
    };
    state
        .put_capabilities(found)
        .await
        .map_err(|e| e.to_string())
}

/// The discovery task's inputs and outputs.
pub struct CapabilityTask {
    pub source: CapabilitySource,
    /// The machines asked about.
    pub machines: MachineSettings,
    pub state: StateHandle,
    /// `capabilities.refresh_interval`.
    pub interval: Duration,
    /// Notified to refresh now (`POST /v1/host/capabilities/refresh`).
    pub requested: Arc<Notify>,
    /// Notified when a new form was stored (the sink writes it).
    pub changed: Arc<Notify>,
    pub metrics: Metrics,
    pub health: Health,
    /// Counts finished refreshes (successful or not), so a requester can wait for one.
    pub refreshed: watch::Sender<u64>,
}

/// Refreshes at start, every `interval`, whenever `requested` is notified and when the
/// machine types of this node's VMIs change, until `shutdown`.
pub async fn run_capabilities(task: CapabilityTask, shutdown: CancellationToken) {
    let CapabilityTask {
        source,
        machines,
        state,
        interval,
        requested,
        changed,
        metrics,
        health,
        refreshed,
    } = task;
    let count = |result: &str, up: Result<(), &str>| {
        metrics
            .capabilities_refresh
            .with_label_values(&[result])
            .inc();
        // On a KubeVirt node the launchers come and go: the probe reports the connection.
        if let CapabilitySource::Host(conn) = &source {
            match up {
                Ok(()) => health.set(
                    LIBVIRT_CONNECTED,
                    true,
                    "Answering",
                    &format!("{} answered", conn.uri()),
                ),
                Err(reason) => health.set(LIBVIRT_CONNECTED, false, "DiscoveryFailed", reason),
            }
        }
    };
    loop {
        let started = std::time::Instant::now();
        let mut available = true;
        let mut wait = if interval.is_zero() {
            Duration::from_secs(3600)
        } else {
            interval
        };
        let plan = plan_for(&machines, &state);
        match refresh(&source, &plan, &state, Timestamp::now()).await {
            Ok((caps, changed_now)) => {
                count(
                    match (caps.available, changed_now) {
                        (false, _) => "unavailable",
                        (true, true) => "changed",
                        (true, false) => "unchanged",
                    },
                    if caps.available {
                        Ok(())
                    } else {
                        Err("no libvirt to ask")
                    },
                );
                if changed_now {
                    tracing::info!(fingerprint = %caps.fingerprint, available = caps.available, took = ?started.elapsed(), "host capabilities changed");
                    changed.notify_one();
                } else {
                    tracing::debug!(fingerprint = %caps.fingerprint, "host capabilities unchanged");
                }
                if !caps.available {
                    // Until a launcher runs: look again soon.
                    available = false;
                    wait = wait.min(UNAVAILABLE_RETRY);
                }
            }
            Err(e) => {
                count("failed", Err(&e));
                tracing::warn!(error = %e, "host capability discovery failed; retrying later")
            }
        }
        refreshed.send_modify(|n| *n += 1);
        let launchers = launcher_uris(&source);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = requested.notified() => {}
            _ = launchers_changed(&source, launchers), if !available => {}
            _ = machines_changed(&machines, &state, plan.running) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    if let CapabilitySource::Host(conn) = source {
        let _ = conn.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(node: Option<&str>, machine: Option<&str>) -> RuntimeDetails {
        RuntimeDetails {
            node_name: node.map(str::to_owned),
            machine_type: machine.map(str::to_owned),
            ..RuntimeDetails::default()
        }
    }

    #[test]
    fn machine_types_of_this_nodes_vmis_most_used_first() {
        let vmis = [
            runtime(Some("node-a"), Some("pc-q35-rhel9.2.0")),
            runtime(Some("node-a"), Some("pc-q35-rhel8.6.0")),
            runtime(Some("node-a"), Some("pc-q35-rhel9.2.0")),
            runtime(Some("node-a"), Some("q35")),
            runtime(Some("node-a"), Some("")),
            runtime(Some("node-a"), None),
            // Other nodes' VMIs and VMIs with no node say nothing about this host.
            runtime(Some("node-b"), Some("pc-i440fx-7.2")),
            runtime(Some("node-b"), Some("pc-i440fx-7.2")),
            runtime(Some("node-b"), Some("pc-i440fx-7.2")),
            runtime(None, Some("pc")),
        ];
        assert_eq!(
            machine_types_on(vmis.iter(), "node-a"),
            ["pc-q35-rhel9.2.0", "pc-q35-rhel8.6.0", "q35"]
        );
        assert_eq!(machine_types_on(vmis.iter(), "node-b"), ["pc-i440fx-7.2"]);
        assert!(machine_types_on(vmis.iter(), "node-c").is_empty());
    }

    #[test]
    fn only_the_most_used_machine_and_the_set_asked_call_for_a_new_discovery() {
        let list = |ms: &[&str]| ms.iter().map(|m| m.to_string()).collect::<Vec<_>>();
        let before = list(&["a", "b", "c", "d", "e"]);
        let cases: [(&[&str], bool); 6] = [
            (&["a", "b", "c", "d", "e"], false),
            // b and c swapped places: the same machines are asked, a stays the most used.
            (&["a", "c", "b", "d", "e"], false),
            // e is beyond the machines asked.
            (&["a", "b", "c", "d", "f"], false),
            (&["b", "a", "c", "d", "e"], true),
            (&["a", "b", "c", "e", "d"], true),
            (&["a", "b", "c"], true),
        ];
        for (after, changed) in cases {
            assert_eq!(
                machines_asked(&list(after)) != machines_asked(&before),
                changed,
                "{after:?}"
            );
        }
    }
}
