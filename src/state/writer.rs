//! The state writer task: receives observations from the sources and stores them in
//! group commits (several events per redb write transaction, a few ms window), retrying
//! a batch until it is stored so nothing acknowledged by a source is lost.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use super::{IngestReport, StateEvent, Store, StoreError};
use crate::health::{BEAT_INTERVAL, Health, STATE_WRITABLE};
use crate::metrics::Metrics;
use crate::model::Timestamp;

pub type SharedStore = Arc<Mutex<Store>>;

/// Locks the store; a panic while holding the lock left consistent data behind (the
/// mirror changes only after commits), so poisoning is ignored.
pub fn lock(store: &SharedStore) -> MutexGuard<'_, Store> {
    store
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `f` on the locked store (call it on a blocking thread: redb commits fsync).
/// After an I/O error the file is reopened, so the caller's next attempt can succeed.
pub fn with_store<T>(
    store: &SharedStore,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut s = lock(store);
    let result = f(&mut s);
    if let Err(e) = &result {
        if e.needs_reopen() {
            if let Err(reopen) = s.reopen() {
                tracing::error!(error = %reopen, "reopening the state file failed");
            }
        }
    }
    result
}

#[derive(Clone, Debug)]
pub struct WriterOptions {
    pub window: Duration,
    pub max_batch: usize,
    /// Notified when a stored batch carried `StateEvent::ResyncAfterThis`.
    pub resync: Option<Arc<Notify>>,
    /// No-op counts and the outbox gauges.
    pub metrics: Option<Metrics>,
    /// Where the writer says it is alive (also while idle).
    pub health: Option<Health>,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            window: Duration::from_millis(5),
            max_batch: 1024,
            resync: None,
            metrics: None,
            health: None,
        }
    }
}

/// Runs until every sender is dropped; `enqueued` is notified when deltas wait.
pub async fn run(
    store: SharedStore,
    mut rx: mpsc::Receiver<StateEvent>,
    options: WriterOptions,
    enqueued: Arc<Notify>,
    clock: fn() -> Timestamp,
) {
    const LOOP: &str = "state-writer";
    // StateWritable=False was reported (a failed write or sync); the next success
    // reports the recovery.
    let mut unwritable = false;
    loop {
        if let Some(h) = &options.health {
            h.beat(LOOP);
        }
        // Unsynced commits are synced once `cache.sync_interval` has passed, also when
        // nothing else arrives.
        let wait = lock(&store)
            .sync_due()
            .map_or(BEAT_INTERVAL, |due| due.min(BEAT_INTERVAL));
        let first = match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(_) => {
                sync_if_due(&store, &options, false, &mut unwritable).await;
                continue;
            }
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + options.window;
        while batch.len() < options.max_batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(event)) => batch.push(event),
                Ok(None) | Err(_) => break,
            }
        }
        let batch = Arc::new(batch);
        let report = store_until_done(&store, &batch, clock, &options, &mut unwritable).await;
        // New records without a known row wake the sink too: it looks their rows up.
        if report.enqueued + report.unchecked > 0 {
            enqueued.notify_one();
        }
        if let (true, Some(resync)) = (report.resync_requested, &options.resync) {
            resync.notify_one();
        }
        if let Some(m) = &options.metrics {
            // Every stored event comes from the KubeVirt source (libvirt answers reach
            // the state through it).
            m.noop_events
                .with_label_values(&["kubernetes"])
                .inc_by(report.noop as u64);
            // After every enqueue (the sink refreshes them after every flush), so
            // `pending` is never 0 while something waits.
            if report.enqueued > 0 {
                m.set_outbox(&lock(&store).outbox_stats(), clock());
            }
        }
    }
    // The sources are gone: whatever is stored goes to disk now.
    sync_if_due(&store, &options, true, &mut unwritable).await;
    if let Some(h) = &options.health {
        h.done(LOOP);
    }
}

/// A write or sync worked: report the recovery if a failure was reported.
fn writable(options: &WriterOptions, unwritable: &mut bool) {
    if std::mem::take(unwritable) {
        if let Some(h) = &options.health {
            tracing::info!("state file writable again; the kept events are stored");
            h.set(STATE_WRITABLE, true, "Recovered", "writes succeed again");
        }
    }
}

/// A write or sync failed (e.g. a full disk): counted and reported, not a hang, so the
/// writer keeps beating.
fn failed(options: &WriterOptions, unwritable: &mut bool, reason: &str, message: &str) {
    *unwritable = true;
    if let Some(m) = &options.metrics {
        m.state_write_errors.inc();
    }
    if let Some(h) = &options.health {
        h.set(STATE_WRITABLE, false, reason, message);
        h.beat("state-writer");
    }
}

/// Syncs the state file when unsynced commits are due, or `now` if there are any (a
/// failure is retried at the next turn; the commits stay in memory meanwhile).
async fn sync_if_due(
    store: &SharedStore,
    options: &WriterOptions,
    now: bool,
    unwritable: &mut bool,
) {
    let due = lock(store).sync_due();
    if !due.is_some_and(|due| now || due.is_zero()) {
        return;
    }
    let store = store.clone();
    let result = tokio::task::spawn_blocking(move || with_store(&store, Store::sync)).await;
    let error = match result {
        Ok(Ok(_)) => return writable(options, unwritable),
        Ok(Err(e)) => e.to_string(),
        Err(join) => join.to_string(),
    };
    tracing::error!(error, "syncing the state file failed; retrying");
    let message = format!("changes kept in memory: {error}");
    failed(options, unwritable, "SyncFailed", &message);
    // Still due: without a pause the loop would retry at once, again and again.
    tokio::time::sleep(SYNC_RETRY).await;
}

/// Pause after a failed sync (events wait in the channel meanwhile).
const SYNC_RETRY: Duration = Duration::from_secs(1);

async fn store_until_done(
    store: &SharedStore,
    batch: &Arc<Vec<StateEvent>>,
    clock: fn() -> Timestamp,
    options: &WriterOptions,
    unwritable: &mut bool,
) -> IngestReport {
    let mut backoff = Duration::from_millis(100);
    loop {
        let (store2, batch2) = (store.clone(), batch.clone());
        let result =
            tokio::task::spawn_blocking(move || with_store(&store2, |s| s.apply(&batch2, clock())))
                .await;
        let error = match result {
            Ok(Ok(report)) => {
                writable(options, unwritable);
                return report;
            }
            Ok(Err(e)) => {
                log_retry(&e, backoff);
                e.to_string()
            }
            Err(join) => {
                tracing::error!(error = %join, "state writer task failed; retrying");
                join.to_string()
            }
        };
        let message = format!("{} events kept in memory: {error}", batch.len());
        failed(options, unwritable, "WriteFailed", &message);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BEAT_INTERVAL * 2);
    }
}

fn log_retry(e: &StoreError, backoff: Duration) {
    tracing::error!(error = %e, retry_in = ?backoff, "storing events failed; the batch is kept and retried");
}
