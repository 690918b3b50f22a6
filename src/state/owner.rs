//! The state owner: one thread owns the [`Store`]. Sources send it [`StateEvent`]s,
//! which it applies in groups (the events of a few ms at once), retrying a group until
//! it is applied so nothing a source handed over is lost. Everyone else sends typed
//! commands through a [`StateHandle`] and reads the [`Snapshot`] it publishes after
//! every change. The store's file follows its memory within `cache.sync_interval`: the
//! owner writes it when due, between events and commands.
//!
//! The thread runs its own single-threaded runtime: redb commits and fsyncs block it,
//! never a worker of the daemon's runtime.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::commands::{Command, Reply};
use super::handle::StateHandle;
use super::{IngestReport, Snapshot, StateEvent, Store, StoreError};
use crate::health::{BEAT_INTERVAL, Health, STATE_WRITABLE};
use crate::metrics::Metrics;
use crate::model::Timestamp;

/// The owner's loop name for the watchdog.
const LOOP: &str = "state-writer";
/// Pause after a failed sync (events wait in the channel meanwhile).
const SYNC_RETRY: Duration = Duration::from_secs(1);
/// Commands waiting for the owner; senders wait when it is full.
const COMMAND_QUEUE: usize = 64;
/// Events (and the records an acknowledgement drops) reach the snapshot at most this much
/// later; other commands' changes are published before the reply. Publishing shares
/// every node of the maps with the readers, so the next change to each copies it: a
/// publish per group of events and per flushed batch cost more than applying them.
const PUBLISH_EVENTS_EVERY: Duration = Duration::from_millis(250);

pub struct OwnerSettings {
    /// How long a group waits for more events after the first.
    pub window: Duration,
    pub max_batch: usize,
    pub clock: fn() -> Timestamp,
    /// No-op counts, write errors and the outbox gauges.
    pub metrics: Metrics,
    /// `StateWritable` and the owner's liveness (also while idle).
    pub health: Health,
    /// Notified when deltas wait, or new records need their row looked up: wakes the
    /// sink.
    pub enqueued: Arc<Notify>,
    /// Notified when a stored batch carried `StateEvent::ResyncAfterThis`.
    pub resync: Arc<Notify>,
}

impl OwnerSettings {
    pub fn new(metrics: Metrics, health: Health) -> OwnerSettings {
        OwnerSettings {
            window: Duration::from_millis(5),
            max_batch: 1024,
            clock: Timestamp::now,
            metrics,
            health,
            enqueued: Arc::new(Notify::new()),
            resync: Arc::new(Notify::new()),
        }
    }
}

/// Starts the owner thread with `store`; it stores what arrives on `events` and runs
/// until it is closed ([`StateHandle::close`]) or every event sender and handle is gone.
pub fn spawn(
    store: Store,
    events: mpsc::Receiver<StateEvent>,
    settings: OwnerSettings,
) -> Result<StateHandle, StoreError> {
    let (published, snapshot) = watch::channel(Arc::new(Snapshot::of(&store)));
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(StoreError::Start)?;
    let owner = Owner {
        store: Some(store),
        settings,
        published,
        published_at: std::cell::Cell::new(Instant::now()),
        unpublished: std::cell::Cell::new(false),
        unwritable: false,
        sources_done: false,
    };
    std::thread::Builder::new()
        .name("virtsync-state".into())
        .spawn(move || runtime.block_on(owner.run(events, command_rx)))
        .map_err(StoreError::Start)?;
    Ok(StateHandle::new(commands, snapshot))
}

struct Owner {
    /// `None` once closed.
    store: Option<Store>,
    settings: OwnerSettings,
    published: watch::Sender<Arc<Snapshot>>,
    published_at: std::cell::Cell<Instant>,
    /// Applied events are not in the published snapshot yet.
    unpublished: std::cell::Cell<bool>,
    /// StateWritable=False was reported (a failed write or sync); the next success
    /// reports the recovery.
    unwritable: bool,
    /// The events channel is closed and drained.
    sources_done: bool,
}

/// A batch the store refused (e.g. a full disk), kept and tried again.
struct Unstored {
    batch: Vec<StateEvent>,
    backoff: Duration,
    retry_at: Instant,
}

impl Owner {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<StateEvent>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let (mut events_open, mut commands_open) = (true, true);
        let mut unstored: Option<Unstored> = None;
        let mut sync_retry_at: Option<Instant> = None;
        while events_open || commands_open || unstored.is_some() {
            self.settings.health.beat(LOOP);
            let Some(store) = self.store.as_ref() else {
                break;
            };
            let now = Instant::now();
            // The file is written once `cache.sync_interval` has passed since its first
            // unwritten change, also when nothing else arrives.
            let sync_at = store
                .sync_due()
                .map(|due| now + due)
                .map(|at| sync_retry_at.map_or(at, |r| at.max(r)));
            // Due now (the interval passed, or too much waits): before anything else, so
            // a steady stream of events cannot put it off.
            if sync_at.is_some_and(|at| at <= now) {
                sync_retry_at = self.sync(false);
                continue;
            }
            let publish_at = self
                .unpublished
                .get()
                .then(|| self.published_at.get() + PUBLISH_EVENTS_EVERY);
            if publish_at.is_some_and(|at| at <= now) {
                self.publish();
                continue;
            }
            let mut wake = now + BEAT_INTERVAL;
            for at in [sync_at, unstored.as_ref().map(|u| u.retry_at), publish_at]
                .into_iter()
                .flatten()
            {
                wake = wake.min(at);
            }
            tokio::select! {
                biased;
                command = commands.recv(), if commands_open => match command {
                    Some(Command::Close(reply)) => {
                        let queued = if events_open { events.len() } else { 0 };
                        let unstored = unstored.as_ref().map_or(0, |u| u.batch.len());
                        if queued + unstored > 0 {
                            tracing::warn!(queued, unstored, "closing with events not stored; the relist after the next start derives them again");
                        }
                        let _ = reply.send(self.close());
                        break;
                    }
                    Some(command) => self.handle(command),
                    None => commands_open = false,
                },
                event = events.recv(), if events_open && unstored.is_none() => match event {
                    Some(first) => {
                        let batch = self.collect(first, &mut events).await;
                        unstored = self.store_batch(batch, Duration::from_millis(100));
                    }
                    None => {
                        events_open = false;
                        // The sources are gone: whatever is stored goes to disk now.
                        sync_retry_at = self.sync(true);
                        self.sources_done = true;
                        self.publish();
                    }
                },
                _ = tokio::time::sleep_until(wake) => {
                    if let Some(u) = unstored.take_if(|u| u.retry_at <= Instant::now()) {
                        let backoff = (u.backoff * 2).min(BEAT_INTERVAL * 2);
                        unstored = self.store_batch(u.batch, backoff);
                    }
                }
            }
        }
        // Closed already when asked to (then this does nothing).
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing the state file failed");
        }
        self.settings.health.done(LOOP);
    }

    /// The first event and whatever else arrives within the window (one group).
    async fn collect(
        &self,
        first: StateEvent,
        events: &mut mpsc::Receiver<StateEvent>,
    ) -> Vec<StateEvent> {
        let max = self.settings.max_batch;
        let mut batch = vec![first];
        // One wake-up at the end of the window, not one per event: the events wait in
        // the channel meanwhile (unless a whole batch is there already).
        if events.len() + 1 < max {
            tokio::time::sleep(self.settings.window).await;
        }
        while batch.len() < max {
            match events.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        batch
    }

    /// Stores a batch; on failure returns it to be retried after `backoff`.
    fn store_batch(&mut self, batch: Vec<StateEvent>, backoff: Duration) -> Option<Unstored> {
        let now = (self.settings.clock)();
        match self.on_store(|s| s.apply(&batch, now)) {
            Ok(report) => {
                // Not `writable()`: applying is in memory; only a write of the file
                // says the file takes writes again.
                self.after_ingest(&report, batch.len());
                None
            }
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?backoff, "storing events failed; the batch is kept and retried");
                let message = format!("{} events kept in memory: {e}", batch.len());
                self.failed("WriteFailed", &message);
                // Part of the batch may be applied (the file write failed after it).
                self.settings.enqueued.notify_one();
                Some(Unstored {
                    batch,
                    backoff,
                    retry_at: Instant::now() + backoff,
                })
            }
        }
    }

    /// Publishes what a stored batch changed and tells whom it concerns.
    fn after_ingest(&self, report: &IngestReport, events: usize) {
        let s = &self.settings;
        // Every stored event comes from the KubeVirt source (libvirt answers reach the
        // state through it).
        s.metrics
            .noop_events
            .with_label_values(&["kubernetes"])
            .inc_by(report.noop as u64);
        if report.noop < events || report.rejected > 0 {
            self.unpublished.set(true);
        }
        // New records to look up and resync requests are read from the snapshot by the
        // sink it wakes: those are published before the wake-up.
        if report.unchecked > 0 || report.resync_requested {
            self.publish();
        }
        // New records without a known row wake the sink too: it looks their rows up.
        if report.enqueued + report.unchecked > 0 {
            s.enqueued.notify_one();
        }
        if report.resync_requested {
            s.resync.notify_one();
        }
    }

    /// Writes what the file lacks (`now`: whatever it lacks, else only when due).
    /// Returns when to try again after a failure.
    fn sync(&mut self, now: bool) -> Option<Instant> {
        let due = self.store.as_ref()?.sync_due();
        if !due.is_some_and(|due| now || due.is_zero()) {
            return None;
        }
        match self.on_store(Store::sync) {
            Ok(_) => {
                self.writable();
                self.publish();
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "writing the state file failed; the changes stay in memory and are written again");
                self.failed("SyncFailed", &format!("changes kept in memory: {e}"));
                Some(Instant::now() + SYNC_RETRY)
            }
        }
    }

    /// Runs `f` on the store. After an I/O error the file is reopened, so the next
    /// attempt can succeed.
    fn on_store<T>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let store = self.store.as_mut().ok_or(StoreError::Closed)?;
        let result = f(store);
        if let Err(e) = &result {
            if e.needs_reopen() {
                if let Err(reopen) = store.reopen() {
                    tracing::error!(error = %reopen, "reopening the state file failed");
                }
            }
        }
        result
    }

    /// Publishes the snapshot, and the outbox gauges with it: they change only here (the
    /// periodic gauges task keeps the oldest entry's age current in between).
    fn publish(&self) {
        self.send(true);
    }

    /// [`Owner::publish`], keeping the published record map while record changes wait
    /// for their publish ([`PUBLISH_EVENTS_EVERY`]): a publish shares the map's nodes, so
    /// the next change to each copies it, and an acknowledgement per flushed batch would
    /// otherwise publish the records as often as the events did.
    fn publish_outbox(&self) {
        self.send(!self.unpublished.get());
    }

    fn send(&self, with_records: bool) {
        let Some(store) = &self.store else {
            return;
        };
        let mut snapshot = Snapshot {
            sources_done: self.sources_done,
            ..Snapshot::of(store)
        };
        if with_records {
            self.published_at.set(Instant::now());
            self.unpublished.set(false);
        } else {
            snapshot.records = self.published.borrow().records.clone();
        }
        let s = &self.settings;
        s.metrics.set_outbox(&snapshot.stats, (s.clock)());
        self.published.send_replace(Arc::new(snapshot));
    }

    /// Runs a command's change, publishes the result, then answers.
    fn change<T>(&mut self, reply: Reply<T>, f: impl FnOnce(&mut Store) -> Result<T, StoreError>) {
        let result = self.on_store(f);
        self.publish();
        let _ = reply.send(result);
    }

    /// Answers a read of the live store (what the snapshot does not carry).
    fn read<T>(&self, reply: oneshot::Sender<T>, f: impl FnOnce(&Store) -> T) {
        if let Some(store) = &self.store {
            let _ = reply.send(f(store));
        }
    }

    fn handle(&mut self, command: Command) {
        let now = (self.settings.clock)();
        match command {
            Command::Ingest(batch, reply) => {
                let result = self.on_store(|s| s.ingest(&batch, now));
                if let Ok(report) = &result {
                    self.after_ingest(report, batch.len());
                }
                self.publish();
                let _ = reply.send(result);
            }
            Command::NextBatch(limit, reply) => self.read(reply, |s| s.next_batch(limit)),
            Command::Unchecked(max, reply) => self.read(reply, |s| s.unchecked(max)),
            Command::ManagedRecordKeys(reply) => self.read(reply, Store::managed_record_keys),
            Command::Ack(outcomes, reply) => {
                let result = self.on_store(|s| s.ack(&outcomes));
                // The outbox and its numbers at once (the sink and `virtsync outbox` read
                // them); the records (an acknowledgement drops those of gone VMs) with
                // the next publish of the events' changes.
                if result.as_ref().is_ok_and(|r| r.deleted > 0) {
                    self.unpublished.set(true);
                }
                self.publish_outbox();
                let _ = reply.send(result);
            }
            Command::SetManaged { rows, now, reply } => {
                self.change(reply, |s| s.set_managed(rows, now));
            }
            Command::SetManagedOf {
                keys,
                rows,
                prune,
                now,
                reply,
            } => {
                self.change(reply, |s| {
                    if prune {
                        s.prune_managed_without_records(now)?;
                    }
                    s.set_managed_of(&keys, rows, now)
                });
            }
            Command::EnqueueDrift { items, now, reply } => {
                self.change(reply, |s| s.enqueue_drift(items, now));
            }
            Command::RetryParked(key, reply) => {
                let result = self.on_store(|s| s.retry_parked(&key));
                self.publish();
                // A retried delta goes out at once.
                if matches!(result, Ok(true)) {
                    self.settings.enqueued.notify_one();
                }
                let _ = reply.send(result);
            }
            Command::DropOutboxEntry(key, reply) => {
                self.change(reply, |s| s.drop_outbox_entry(&key));
            }
            Command::PutCapabilities(caps, reply) => {
                self.change(reply, |s| s.put_capabilities(*caps));
            }
            Command::CapabilitiesWritten(fingerprint, reply) => {
                self.change(reply, |s| s.set_capabilities_written(&fingerprint));
            }
            Command::Sync(reply) => {
                self.change(reply, Store::sync);
            }
            // Handled by the loop.
            Command::Close(reply) => {
                let _ = reply.send(self.close());
            }
        }
    }

    /// Syncs what is not on disk yet and closes the file; later commands get `Closed`.
    fn close(&mut self) -> Result<(), StoreError> {
        let Some(store) = self.store.take() else {
            return Ok(());
        };
        let result = store.close();
        tracing::debug!(ok = result.is_ok(), "state file closed");
        result
    }

    /// A write or sync worked: report the recovery if a failure was reported.
    fn writable(&mut self) {
        if std::mem::take(&mut self.unwritable) {
            tracing::info!("state file writable again; the kept events are stored");
            self.settings
                .health
                .set(STATE_WRITABLE, true, "Recovered", "writes succeed again");
        }
    }

    /// A write or sync failed (e.g. a full disk): counted and reported, not a hang, so
    /// the owner keeps beating.
    fn failed(&mut self, reason: &str, message: &str) {
        self.unwritable = true;
        self.settings.metrics.state_write_errors.inc();
        let health = &self.settings.health;
        health.set(STATE_WRITABLE, false, reason, message);
        health.beat(LOOP);
        // A failed write may have reopened the file or committed part of the work: the
        // snapshot shows it.
        self.publish();
    }
}
