//! Host capability discovery in the daemon (DESIGN §3): at start, every
//! `capabilities.refresh_interval` and on request; the canonical form is stored in redb
//! only when it changed, and the PostgreSQL sink writes it to
//! `virtsync.host_capabilities` when its fingerprint differs from the one last written.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use super::connection::LibvirtConnection;
use super::discovery::discover;
use crate::derive::caps::build_capabilities;
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
}

/// One discovery; stores the result when its canonical form changed. Returns the stored
/// form and whether it changed.
pub async fn refresh(
    conn: &LibvirtConnection,
    store: &SharedStore,
    now: Timestamp,
) -> Result<(StoredCapabilities, bool), String> {
    let raw = discover(conn).await.map_err(|e| e.to_string())?;
    let caps = build_capabilities(&raw.into_input());
    let fingerprint = caps.fingerprint();
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        with_store(&store, |s| {
            let previous: Option<StoredCapabilities> = s
                .host(CAPABILITIES_KEY)?
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(p) = previous.filter(|p| p.fingerprint == fingerprint) {
                return Ok((p, false));
            }
            let stored = StoredCapabilities {
                fingerprint,
                hostname: caps.host_info.hostname.clone().unwrap_or_default(),
                discovered_at: now,
                canonical: caps.to_canonical_json(),
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

/// Refreshes at start, every `interval` and whenever `requested` is notified, until
/// `shutdown`. `changed` is notified when a new form was stored (the sink writes it).
pub async fn run_capabilities(
    conn: LibvirtConnection,
    store: SharedStore,
    interval: Duration,
    requested: Arc<Notify>,
    changed: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let started = std::time::Instant::now();
        match refresh(&conn, &store, Timestamp::now()).await {
            Ok((caps, true)) => {
                tracing::info!(fingerprint = %caps.fingerprint, took = ?started.elapsed(), "host capabilities changed");
                changed.notify_one();
            }
            Ok((caps, false)) => {
                tracing::debug!(fingerprint = %caps.fingerprint, "host capabilities unchanged")
            }
            Err(e) => {
                tracing::warn!(error = %e, "host capability discovery failed; retrying later")
            }
        }
        let wait = if interval.is_zero() {
            Duration::from_secs(3600)
        } else {
            interval
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = requested.notified() => {}
            _ = shutdown.changed() => break,
        }
    }
    let _ = conn.close().await;
}
