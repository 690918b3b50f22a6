//! Host capability discovery in the daemon (docs/ARCHITECTURE.md, "Sources"): at start, every
//! `capabilities.refresh_interval` and on request; the canonical form is stored in redb
//! only when it changed, and the PostgreSQL sink writes it to
//! `virtsync.host_capabilities` when its fingerprint differs from the one last written.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use super::connection::LibvirtConnection;
use super::discovery::discover;
use super::pool::ConnectionPool;
use crate::derive::caps::{DiscoveryInput, build_capabilities, fingerprint_of};
use crate::health::{Health, LIBVIRT_CONNECTED};
use crate::metrics::Metrics;
use crate::model::Timestamp;
use crate::state::writer::{SharedStore, with_store};

/// The redb `host` key of the current capabilities.
pub const CAPABILITIES_KEY: &str = "capabilities";
/// The fingerprint last written to PostgreSQL.
pub const WRITTEN_KEY: &str = "capabilities.written";

/// What is stored: the canonical JSON and its fingerprint, with the time the current
/// form was first seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCapabilities {
    pub fingerprint: String,
    pub hostname: String,
    pub discovered_at: Timestamp,
    /// Canonical JSON text (sorted keys), so equal capabilities are equal bytes.
    pub canonical: String,
    /// False when no libvirt could be asked (every group unavailable with the reason).
    #[serde(default = "yes")]
    pub available: bool,
}

fn yes() -> bool {
    true
}

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

async fn discover_from(source: &CapabilitySource) -> Discovered {
    match source {
        CapabilitySource::Host(conn) => match discover(conn).await {
            Ok(raw) => Discovered::Input(Box::new(raw.into_input())),
            Err(e) => Discovered::Unavailable(e.to_string()),
        },
        CapabilitySource::Launchers(pool) => {
            let uris = pool.uris();
            let mut problems = Vec::new();
            for uri in &uris {
                match discover(&pool.get(uri)).await {
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
    store: &SharedStore,
    now: Timestamp,
) -> Result<(StoredCapabilities, bool), String> {
    let (input, unavailable) = match discover_from(source).await {
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
    let fingerprint = fingerprint_of(&canonical);
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        with_store(&store, |s| {
            let previous: Option<StoredCapabilities> = s
                .host(CAPABILITIES_KEY)?
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(p) = previous
                .filter(|p| p.fingerprint == fingerprint || (unavailable.is_some() && p.available))
            {
                return Ok((p, false));
            }
            let stored = StoredCapabilities {
                fingerprint,
                hostname: caps.host_info.hostname.clone().unwrap_or_default(),
                discovered_at: now,
                canonical,
                available: unavailable.is_none(),
            };
            let bytes =
                serde_json::to_vec(&stored).map_err(|source| crate::state::StoreError::Encode {
                    what: "host capabilities",
                    source,
                })?;
            s.put_host(CAPABILITIES_KEY, &bytes)?;
            Ok((stored, true))
        })
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// The discovery task's inputs and outputs.
pub struct CapabilityTask {
    pub source: CapabilitySource,
    pub store: SharedStore,
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

/// Refreshes at start, every `interval` and whenever `requested` is notified, until
/// `shutdown`.
pub async fn run_capabilities(task: CapabilityTask, mut shutdown: watch::Receiver<bool>) {
    let CapabilityTask {
        source,
        store,
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
        match refresh(&source, &store, Timestamp::now()).await {
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
            _ = shutdown.changed() => break,
        }
    }
    if let CapabilitySource::Host(conn) = source {
        let _ = conn.close().await;
    }
}
