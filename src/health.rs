//! The daemon's own conditions (`CacheReady`, `KubernetesConnected`, `LibvirtConnected`,
//! `PostgresConnected`, `StateWritable`; Kubernetes-style, see docs/ARCHITECTURE.md,
//! "Field rules") and the liveness of its internal loops, shared by the tasks that know,
//! `/readyz`, `virtsync status` and the systemd watchdog.
//!
//! Health knows nothing of metrics: `/metrics` reads the connection conditions when it is
//! scraped (`virtsync_source_up`), so the tasks report a connection in one place.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::derive::{Condition, ConditionStatus, set_condition};
use crate::model::Timestamp;

pub const CACHE_READY: &str = "CacheReady";
pub const KUBERNETES_CONNECTED: &str = "KubernetesConnected";
pub const LIBVIRT_CONNECTED: &str = "LibvirtConnected";
pub const POSTGRES_CONNECTED: &str = "PostgresConnected";
/// False while the state file refuses writes (a full disk): events wait in memory.
pub const STATE_WRITABLE: &str = "StateWritable";

/// The connection conditions, each with the source it is about (the `source` label of
/// `virtsync_source_up`).
pub const CONNECTIONS: &[(&str, &str)] = &[
    (KUBERNETES_CONNECTED, "kubernetes"),
    (LIBVIRT_CONNECTED, "libvirt"),
    (POSTGRES_CONNECTED, "postgres"),
];

/// How often an idle loop must still say it is alive; a loop silent for
/// [`STALE_AFTER`] counts as hung.
pub const BEAT_INTERVAL: Duration = Duration::from_secs(5);
pub const STALE_AFTER: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Inner {
    conditions: Vec<Condition>,
    /// Conditions that are expected (their source is configured): `/readyz` needs them.
    required: Vec<&'static str>,
    loops: BTreeMap<&'static str, Instant>,
}

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Mutex<Inner>>,
    clock: fn() -> Timestamp,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

impl Default for Health {
    fn default() -> Self {
        Health::new(Timestamp::now)
    }
}

impl Health {
    pub fn new(clock: fn() -> Timestamp) -> Health {
        Health {
            inner: Arc::new(Mutex::new(Inner::default())),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Declares a condition this daemon will report (Unknown until its source says).
    pub fn expect(&self, type_: &'static str, message: &str) {
        let now = (self.clock)();
        let mut inner = self.lock();
        if !inner.required.contains(&type_) {
            inner.required.push(type_);
        }
        if !inner.conditions.iter().any(|c| c.type_ == type_) {
            set_condition(
                &mut inner.conditions,
                type_,
                ConditionStatus::Unknown,
                "Starting",
                message,
                now,
            );
        }
    }

    /// Sets a condition (the transition time moves only when the status changes).
    pub fn set(&self, type_: &'static str, ok: bool, reason: &str, message: &str) {
        let now = (self.clock)();
        set_condition(
            &mut self.lock().conditions,
            type_,
            ConditionStatus::from_bool(ok),
            reason,
            message,
            now,
        );
    }

    /// Each source whose connection condition has been reported (not merely expected),
    /// with whether it is connected.
    pub fn sources_up(&self) -> Vec<(&'static str, bool)> {
        let inner = self.lock();
        CONNECTIONS
            .iter()
            .filter_map(|&(type_, source)| {
                let c = inner.conditions.iter().find(|c| c.type_ == type_)?;
                match c.status {
                    ConditionStatus::True => Some((source, true)),
                    ConditionStatus::False => Some((source, false)),
                    ConditionStatus::Unknown => None,
                }
            })
            .collect()
    }

    pub fn conditions(&self) -> Vec<Condition> {
        let mut c = self.lock().conditions.clone();
        c.sort_by(|a, b| a.type_.cmp(&b.type_));
        c
    }

    /// Ready: every expected condition is True. `Err` names those that are not.
    pub fn ready(&self) -> Result<(), String> {
        let inner = self.lock();
        let not: Vec<String> = inner
            .required
            .iter()
            .filter_map(|t| {
                let c = inner.conditions.iter().find(|c| c.type_ == *t)?;
                (c.status != ConditionStatus::True).then(|| format!("{t}: {}", c.message))
            })
            .collect();
        if not.is_empty() {
            Ok(())
        } else {
            Err(not.join("; "))
        }
    }

    /// A loop says it is alive (call at least every [`BEAT_INTERVAL`], also when idle).
    pub fn beat(&self, name: &'static str) {
        self.lock().loops.insert(name, Instant::now());
    }

    /// A loop that ended on purpose (shutdown) is no longer watched.
    pub fn done(&self, name: &'static str) {
        self.lock().loops.remove(name);
    }

    /// The loops that have not beaten within `stale` (empty: all alive).
    pub fn stuck(&self, stale: Duration) -> Vec<&'static str> {
        self.lock()
            .loops
            .iter()
            .filter(|(_, at)| at.elapsed() > stale)
            .map(|(name, _)| *name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_every_expected_condition_true() {
        let h = Health::default();
        assert_eq!(h.ready(), Ok(()));
        h.expect(CACHE_READY, "opening the state file");
        h.expect(POSTGRES_CONNECTED, "not connected yet");
        let err = h.ready().unwrap_err();
        assert!(err.contains("CacheReady: opening the state file"), "{err}");
        h.set(CACHE_READY, true, "Loaded", "10 records");
        h.set(POSTGRES_CONNECTED, true, "Connected", "db");
        assert_eq!(h.ready(), Ok(()));
        let t = h.conditions()[0].last_transition_time;
        h.set(CACHE_READY, true, "Loaded", "11 records");
        assert_eq!(h.conditions()[0].last_transition_time, t);
        assert_eq!(h.conditions()[0].message, "11 records");
        h.set(POSTGRES_CONNECTED, false, "ConnectionLost", "refused");
        assert_eq!(h.ready(), Err("PostgresConnected: refused".to_owned()));
        // Conditions nobody expects (no such source configured) do not block readiness.
        h.set(LIBVIRT_CONNECTED, false, "Down", "x");
        assert_eq!(h.ready(), Err("PostgresConnected: refused".to_owned()));
    }

    #[test]
    fn sources_up_follow_the_reported_connection_conditions() {
        let h = Health::default();
        h.expect(POSTGRES_CONNECTED, "not connected yet");
        h.expect(KUBERNETES_CONNECTED, "not connected yet");
        h.set(CACHE_READY, true, "Loaded", "10 records");
        assert_eq!(h.sources_up(), []);
        h.set(POSTGRES_CONNECTED, true, "Connected", "db");
        h.set(LIBVIRT_CONNECTED, false, "Down", "refused");
        assert_eq!(h.sources_up(), [("libvirt", false), ("postgres", true)]);
        h.set(POSTGRES_CONNECTED, false, "ConnectionLost", "reset");
        h.set(KUBERNETES_CONNECTED, true, "Connected", "api");
        assert_eq!(
            h.sources_up(),
            [
                ("kubernetes", true),
                ("libvirt", false),
                ("postgres", false)
            ]
        );
    }

    #[test]
    fn silent_loops_are_stuck_and_finished_ones_are_not_watched() {
        let h = Health::default();
        h.beat("writer");
        h.beat("sink");
        assert!(h.stuck(Duration::from_secs(1)).is_empty());
        std::thread::sleep(Duration::from_millis(30));
        h.beat("sink");
        assert_eq!(h.stuck(Duration::from_millis(20)), vec!["writer"]);
        h.done("writer");
        assert!(h.stuck(Duration::from_millis(20)).is_empty());
    }
}
