//! The PostgreSQL sink (docs/ARCHITECTURE.md, "PostgreSQL sink"): settings, the
//! connection, and the flush loop that drains the outbox into the cloud API's `vms` table.

mod backoff;
pub mod cluster_role;
mod error;
pub mod flush;
pub mod host;
pub mod managed;
mod observe;
pub mod schema;
pub mod session;
pub mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

pub use error::{ErrorClass, SinkError, classify, describe};

use crate::columns::ColumnSet;
use crate::config::{Config, SchemaMode};
use crate::health::{BEAT_INTERVAL, Health, POSTGRES_CONNECTED};
use crate::metrics::Metrics;
use crate::model::{Timestamp, VmKey};
use crate::state::{AckReport, Outcome, PendingDelta, StateHandle, known_columns};

/// A server that accepts the socket but never answers must not hang the sink.
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);

/// Everything the sink needs, resolved from the configuration (no I/O).
#[derive(Clone, Debug)]
pub struct SinkSettings {
    pub pg: tokio_postgres::Config,
    pub tls: tls::Tls,
    pub table: String,
    pub schema: SchemaMode,
    pub writable: ColumnSet,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub managed_refresh_interval: Duration,
    /// Zero disables periodic anti-entropy.
    pub resync_interval: Duration,
    /// Lock and statement timeouts, set in each transaction.
    pub limits: session::Limits,
    /// `virtsync.host_capabilities.host_id` of this host (the node name).
    pub host_id: String,
}

/// The connection settings for a URL: password, application_name, connect timeout,
/// keepalives, and the TLS connector (reads `ca_file`). No session settings: a pooler in
/// transaction mode refuses startup `options` (each transaction sets its limits, see
/// [`session`]).
pub fn pg_config(
    url: &str,
    password: Option<&str>,
    application_name: &str,
    cfg: &crate::config::PostgresConfig,
) -> Result<(tokio_postgres::Config, tls::Tls), SinkError> {
    let mut pg: tokio_postgres::Config = url.parse().map_err(SinkError::Url)?;
    if let Some(p) = password {
        pg.password(p);
    }
    pg.application_name(application_name)
        .connect_timeout(cfg.connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    let tls = tls::setup(&mut pg, cfg.ca_file.as_deref())?;
    Ok((pg, tls))
}

impl SinkSettings {
    pub fn from_config(cfg: &Config, password: Option<&str>) -> Result<SinkSettings, SinkError> {
        let url = cfg.require_postgres_url()?;
        let p = &cfg.postgres;
        let (pg, tls) = pg_config(
            url,
            password,
            &format!("virtsync-sink/{}", cfg.node_name),
            p,
        )?;
        Ok(SinkSettings {
            pg,
            tls,
            table: p.table.clone(),
            schema: p.schema,
            writable: ColumnSet::writable(&cfg.owns, p.schema),
            batch_size: p.batch_size,
            flush_interval: p.flush_interval,
            managed_refresh_interval: p.managed_refresh_interval,
            resync_interval: p.resync_interval,
            limits: session::Limits::new(p.lock_timeout, p.lock_idle_timeout),
            host_id: cfg.node_name.clone(),
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub batches: usize,
    pub applied: usize,
    pub fenced: usize,
    pub missing: usize,
    pub parked: usize,
    /// Batch parts sent again after a serialization failure or deadlock.
    pub conflict_retries: usize,
    /// The most times one part was sent (1: no retry).
    pub most_attempts: u32,
}

impl FlushReport {
    pub fn merge(&mut self, other: FlushReport) {
        self.batches += other.batches;
        self.applied += other.applied;
        self.fenced += other.fenced;
        self.missing += other.missing;
        self.parked += other.parked;
        self.conflict_retries += other.conflict_retries;
        self.most_attempts = self.most_attempts.max(other.most_attempts);
    }

    fn add(&mut self, outcomes: &[(crate::model::VmKey, u64, Outcome)]) {
        self.batches += 1;
        for (_, _, o) in outcomes {
            match o {
                Outcome::Applied => self.applied += 1,
                Outcome::FencedOut => self.fenced += 1,
                Outcome::RowMissing => self.missing += 1,
                Outcome::Parked(_) => self.parked += 1,
            }
        }
    }
}

/// A live connection with what was learned about the schema.
pub struct Connection {
    client: Client,
    table: schema::TableInfo,
    flush: flush::FlushSql,
}

pub async fn connect_client(
    pg: &tokio_postgres::Config,
    tls: &tls::Tls,
) -> Result<Client, SinkError> {
    let (client, connection) = pg
        .connect(tls.0.clone())
        .await
        .map_err(SinkError::Connect)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

pub struct PgSink {
    settings: SinkSettings,
    state: StateHandle,
    conn: Option<Connection>,
    /// The schema as the last check found it, kept across reconnects (checked again
    /// after an error that says it changed).
    schema: Option<schema::TableInfo>,
    /// True while this daemon holds the cluster role: then it reads the whole table;
    /// otherwise only the rows of its own records.
    holder: watch::Receiver<bool>,
    clock: fn() -> Timestamp,
    /// Asks for an anti-entropy pass now (a new cluster-role holder, `virtsync resync`).
    resync_requested: Arc<Notify>,
    /// Notified when new host capabilities were stored; checked once after connecting.
    host_changed: Arc<Notify>,
    host_pending: bool,
    metrics: Metrics,
    health: Health,
    resync_status: watch::Sender<ResyncStatus>,
}

/// Anti-entropy passes, for `virtsync resync` and `virtsync status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResyncStatus {
    /// Passes finished (successfully) since the start.
    pub passes: u64,
    pub running: bool,
    /// Rows the last pass found different and queued again.
    pub last_drifted: usize,
    pub last_finished: Option<Timestamp>,
    /// Why the last pass failed, if it did.
    pub last_error: Option<String>,
}

/// The sink's loop name for the watchdog.
const LOOP: &str = "postgres-sink";

impl PgSink {
    /// A sink of `state`'s outbox; `metrics` gets flushes, errors, the outbox and the
    /// connection.
    pub fn new(
        settings: SinkSettings,
        state: StateHandle,
        metrics: Metrics,
        clock: fn() -> Timestamp,
    ) -> PgSink {
        PgSink {
            settings,
            state,
            conn: None,
            schema: None,
            holder: watch::channel(false).1,
            clock,
            resync_requested: Arc::new(Notify::new()),
            host_changed: Arc::new(Notify::new()),
            host_pending: true,
            metrics,
            health: Health::default(),
            resync_status: watch::channel(ResyncStatus::default()).0,
        }
    }

    /// Where anti-entropy progress is published (the socket API reads it).
    pub fn resync_status(&self) -> watch::Receiver<ResyncStatus> {
        self.resync_status.subscribe()
    }

    /// Follows the cluster role: while `holder` reads true the managed-set refresh and
    /// anti-entropy cover the whole table, otherwise this daemon's own records.
    pub fn with_cluster_role(mut self, holder: watch::Receiver<bool>) -> PgSink {
        self.holder = holder;
        self
    }

    fn is_holder(&self) -> bool {
        *self.holder.borrow()
    }

    /// Reports `PostgresConnected` and the sink loop's liveness in `health`.
    pub fn with_health(mut self, health: Health) -> PgSink {
        self.health = health;
        self
    }

    /// Uses `trigger` to learn about newly stored host capabilities.
    pub fn with_host_trigger(mut self, trigger: Arc<Notify>) -> PgSink {
        self.host_changed = trigger;
        self
    }

    /// Writes the stored host capabilities when their fingerprint is not the one last
    /// written (kept in redb, so a restart writes nothing unchanged).
    async fn sync_host_capabilities(&mut self) -> Result<(), SinkError> {
        let snapshot = self.state.snapshot();
        let Some(caps) = snapshot.capabilities.clone() else {
            return Ok(());
        };
        if snapshot.capabilities_written.as_deref() == Some(caps.fingerprint.as_str()) {
            return Ok(());
        }
        let host_id = self.settings.host_id.clone();
        let conn = self.conn()?;
        let wrote = host::write(&conn.client, &host_id, &caps).await?;
        tracing::info!(fingerprint = %caps.fingerprint, wrote, "host capabilities in PostgreSQL");
        self.state
            .capabilities_written(caps.fingerprint.clone())
            .await?;
        Ok(())
    }

    /// Uses `trigger` to request anti-entropy passes (shared with the state writer).
    pub fn with_resync_trigger(mut self, trigger: Arc<Notify>) -> PgSink {
        self.resync_requested = trigger;
        self
    }

    pub fn is_connected(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| !c.client.is_closed())
    }

    /// Connects, checks the schema (once; see `schema`) and builds the flush statement.
    pub async fn connect(&mut self) -> Result<(), SinkError> {
        match tokio::time::timeout(CONNECT_DEADLINE, self.connect_inner()).await {
            Ok(result) => result,
            Err(_) => Err(SinkError::Timeout("connecting and checking the schema")),
        }
    }

    async fn connect_inner(&mut self) -> Result<(), SinkError> {
        let client = connect_client(&self.settings.pg, &self.settings.tls).await?;
        let table = match &self.schema {
            Some(known) => known.clone(),
            None => {
                let table = schema::check(
                    &client,
                    &self.settings.table,
                    self.settings.schema,
                    self.settings.writable,
                )
                .await?;
                self.schema = Some(table.clone());
                table
            }
        };
        let flush = flush::flush_sql(&table, self.settings.writable);
        self.conn = Some(Connection {
            client,
            table,
            flush,
        });
        Ok(())
    }

    fn conn(&mut self) -> Result<&mut Connection, SinkError> {
        self.conn.as_mut().ok_or_else(|| SinkError::NotConnected)
    }

    /// Re-reads which VMs have a live row: the whole table while this daemon holds the
    /// cluster role, else the rows of its own records. Returns how many deltas that
    /// queued.
    pub async fn refresh_managed(&mut self) -> Result<usize, SinkError> {
        let limits = self.settings.limits;
        let now = (self.clock)();
        let change = if self.is_holder() {
            let conn = self.conn()?;
            let rows = managed::live_rows(&mut conn.client, &limits, &conn.table).await?;
            self.state.set_managed(rows, now).await?
        } else {
            let keys: Vec<VmKey> = self.state.snapshot().records.keys().cloned().collect();
            let conn = self.conn()?;
            let rows = managed::live_rows_of(&mut conn.client, &limits, &conn.table, &keys).await?;
            self.state.set_managed_of(keys, rows, true, now).await?
        };
        self.log_managed_change(&change);
        Ok(change.enqueued)
    }

    /// Looks up the rows of records that appeared since the last lookup (a node's new
    /// VMI, a new holder's VMs); returns how many deltas that queued.
    pub async fn check_new_records(&mut self) -> Result<usize, SinkError> {
        // More keys than a page on the holder (a first start, a new holder's lists): one
        // read of the whole table answers them all, where each page of keys could cost
        // the planner a scan of the table (measured: 2,700 rows per host at 1,000 hosts).
        if self.is_holder() && self.state.snapshot().unchecked > managed::KEY_PAGE {
            return self.refresh_managed().await;
        }
        let limits = self.settings.limits;
        let mut enqueued = 0;
        loop {
            let keys = self.state.unchecked(managed::KEY_PAGE).await?;
            if keys.is_empty() {
                return Ok(enqueued);
            }
            let conn = self.conn()?;
            let rows = managed::live_rows_of(&mut conn.client, &limits, &conn.table, &keys).await?;
            let now = (self.clock)();
            let change = self.state.set_managed_of(keys, rows, false, now).await?;
            self.log_managed_change(&change);
            enqueued += change.enqueued;
        }
    }

    fn log_managed_change(&self, change: &crate::state::ManagedChange) {
        if change.appeared + change.vanished > 0 {
            tracing::info!(
                appeared = change.appeared,
                vanished = change.vanished,
                queued = change.enqueued,
                "managed VM rows changed"
            );
        }
    }

    /// Compares the managed rows with the stored records; differences become deltas.
    /// The cluster-role holder reads the whole table, page by page; any other daemon
    /// reads the rows of its own managed records, by key. Returns the number of rows
    /// that had drifted.
    pub async fn anti_entropy(&mut self) -> Result<usize, SinkError> {
        const PAGE: i64 = 1000;
        let writable = self.settings.writable;
        let limits = self.settings.limits;
        let mut drifted = 0;
        if self.is_holder() {
            let mut after = None;
            loop {
                let conn = self.conn()?;
                let page = managed::read_page(
                    &mut conn.client,
                    &limits,
                    &conn.table,
                    writable,
                    after.as_ref(),
                    PAGE,
                )
                .await?;
                drifted += self.correct_drift(&page).await?;
                if page.rows.len() < PAGE as usize {
                    return Ok(drifted);
                }
                after = page.last;
            }
        }
        let keys = self.state.managed_record_keys().await?;
        for chunk in keys.chunks(managed::KEY_PAGE) {
            let conn = self.conn()?;
            let page =
                managed::read_rows_of(&mut conn.client, &limits, &conn.table, writable, chunk)
                    .await?;
            drifted += self.correct_drift(&page).await?;
        }
        Ok(drifted)
    }

    /// Queues the columns where a page's rows differ from the stored records; returns
    /// how many rows differed.
    async fn correct_drift(&mut self, page: &managed::Page) -> Result<usize, SinkError> {
        let writable = self.settings.writable;
        let table = table_of(&self.conn)?;
        let snapshot = self.state.snapshot();
        let items: Vec<_> = page
            .rows
            .iter()
            // Parked deltas are known to differ; they wait for a change or an operator,
            // not for anti-entropy to queue them again every pass (the owner checks
            // again when it queues).
            .filter(|(key, _)| {
                snapshot.is_managed(key)
                    && snapshot
                        .outbox_entry(key)
                        .is_none_or(|e| e.parked.is_none())
            })
            .filter_map(|(key, row)| {
                // Compare what we would write, i.e. after fitting it to the columns.
                let stored = snapshot.record(key)?;
                let mut record = stored.record.clone();
                flush::sanitize(&mut record, writable, table);
                let known = known_columns(&stored.record, &stored.versions);
                let cols = managed::drift(&record, row, writable).intersect(known);
                (!cols.is_empty()).then(|| (key.clone(), cols))
            })
            .collect();
        drop(snapshot);
        if items.is_empty() {
            return Ok(0);
        }
        let now = (self.clock)();
        let queued = self.state.enqueue_drift(items, now).await?;
        for (key, cols) in &queued {
            tracing::info!(vm = %key, columns = ?cols.names(), "drift: row differs from the sources; correcting");
        }
        let n = queued.len();
        self.metrics.drift_corrections.inc_by(n as u64);
        Ok(n)
    }

    /// Writes pending deltas in batches until the outbox has nothing flushable left
    /// (after looking up the rows of new records, whose first deltas this queues).
    pub async fn flush_pending(&mut self) -> Result<FlushReport, SinkError> {
        self.check_new_records().await?;
        let mut report = FlushReport::default();
        loop {
            let mut batch = self.state.next_batch(self.settings.batch_size).await?;
            if batch.is_empty() {
                return Ok(report);
            }
            let table = table_of(&self.conn)?;
            for d in &mut batch {
                for change in flush::sanitize(&mut d.record, d.columns, table) {
                    tracing::warn!(vm = %d.key, change, "value adjusted to fit its column");
                }
            }
            // Key order: see `flush::FlushSql` (two writers lock shared rows alike).
            batch.sort_by(|a, b| a.key.cmp(&b.key));
            let started = std::time::Instant::now();
            let (outcomes, failed) = self.flush_batch_retrying(&batch, &mut report).await;
            observe::flushed(
                &self.metrics,
                &batch,
                &outcomes,
                started.elapsed(),
                (self.clock)(),
            );
            report.add(&outcomes);
            // What was committed is acknowledged even when a later part failed.
            // The owner sets the outbox gauges when it publishes the acknowledgement.
            let ack: AckReport = self.state.ack(outcomes).await?;
            if let Some(e) = failed {
                return Err(e);
            }
            if ack.deleted + ack.parked == 0 {
                // Everything changed while in flight: the next loop sends it again.
                tracing::debug!("whole batch changed during the flush");
            }
        }
    }

    /// A concurrent writer of the same rows makes a batch fail to serialize (or, with a
    /// writer that does not lock in key order, deadlock). The failed part waits a
    /// random time (full jitter, doubling per attempt) and is split in two, so one hot
    /// row holds up only itself. Returns the outcomes of what was committed, and the
    /// error that stopped the rest.
    async fn flush_batch_retrying(
        &mut self,
        batch: &[PendingDelta],
        report: &mut FlushReport,
    ) -> (Vec<(VmKey, u64, Outcome)>, Option<SinkError>) {
        let mut out = Vec::with_capacity(batch.len());
        let mut work = std::collections::VecDeque::from([(0..batch.len(), 0u32)]);
        while let Some((range, attempt)) = work.pop_front() {
            report.most_attempts = report.most_attempts.max(attempt + 1);
            report.conflict_retries += usize::from(attempt > 0);
            match self.flush_batch(&batch[range.clone()]).await {
                Ok(outcomes) => out.extend(outcomes),
                Err(e) if e.is_serialization_failure() && attempt < CONFLICT_ATTEMPTS => {
                    tracing::debug!(attempt, rows = range.len(), error = %e, "concurrent write; retrying after a pause");
                    observe::failed(&self.metrics, &e);
                    let cap = backoff::exponential(CONFLICT_BACKOFF, attempt, MAX_CONFLICT_BACKOFF);
                    tokio::time::sleep(backoff::full_jitter(cap)).await;
                    let mid = range.start + range.len() / 2;
                    if range.len() > 1 {
                        work.push_front((mid..range.end, attempt + 1));
                        work.push_front((range.start..mid, attempt + 1));
                    } else {
                        work.push_front((range, attempt + 1));
                    }
                }
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    async fn flush_batch(
        &mut self,
        batch: &[PendingDelta],
    ) -> Result<Vec<(VmKey, u64, Outcome)>, SinkError> {
        let writable = self.settings.writable;
        let limits = self.settings.limits;
        let conn = self.conn()?;
        let mut out = Vec::new();
        let mut send = Vec::with_capacity(batch.len());
        for d in batch {
            match flush::validate(d, &conn.table) {
                Ok(()) => send.push(d),
                Err(problem) => {
                    tracing::warn!(vm = %d.key, problem, "delta parked before sending");
                    out.push((d.key.clone(), d.seq, Outcome::Parked(problem)));
                }
            }
        }
        if !send.is_empty() {
            out.extend(
                flush::write_batch(&mut conn.client, &conn.flush, &limits, writable, &send).await?,
            );
        }
        Ok(out)
    }

    /// The sink's life: connect (with capped, jittered backoff), then flush when deltas wait, at
    /// most once per `flush_interval`, refresh the managed set and run anti-entropy when
    /// due. Returns on shutdown (after a last flush) or on a problem only an operator can
    /// fix.
    pub async fn run(
        mut self,
        enqueued: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> Result<(), SinkError> {
        let mut failures = 0u32;
        // The first periodic read of each kind at a random moment within its interval:
        // a fleet restarted together (an upgrade, a PostgreSQL restart) spreads out.
        let resync = self.settings.resync_interval;
        let mut timers = Timers {
            refresh: after(backoff::full_jitter(self.settings.managed_refresh_interval)),
            resync: (!resync.is_zero()).then(|| after(backoff::full_jitter(resync))),
        };
        loop {
            self.health.beat(LOOP);
            if shutdown.is_cancelled() {
                self.final_flush().await;
                self.health.done(LOOP);
                return Ok(());
            }
            let result = match self.is_connected() {
                false => self.reconnect().await,
                true => self.cycle(&mut timers).await,
            };
            match result {
                // Connected: flush what waited for the connection right away.
                // The backoff is reset only by a flush that worked: a server that
                // accepts connections but refuses the work must not be hammered.
                Ok(Step::Connected) => continue,
                Ok(Step::Flushed) => failures = 0,
                Err(e) if e.is_setup_problem() => {
                    self.health.done(LOOP);
                    return Err(e);
                }
                Err(e) => {
                    observe::failed(&self.metrics, &e);
                    if e.class() == ErrorClass::Connection {
                        self.health
                            .set(POSTGRES_CONNECTED, false, "Unavailable", &e.to_string());
                    }
                    if e.class() == ErrorClass::Connection {
                        self.conn = None;
                    }
                    if e.says_schema_changed() {
                        self.schema = None;
                    }
                    // Full jitter: daemons that lost the server together come back spread
                    // over the whole wait, not in a burst.
                    let wait = backoff::full_jitter(backoff::exponential(
                        MIN_BACKOFF,
                        failures,
                        MAX_BACKOFF,
                    ));
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, retry_in = ?wait, "PostgreSQL unavailable or refusing; changes wait in the outbox");
                    // An outage is no hang: the backoff sleep beats like an idle loop.
                    let until = Instant::now() + wait;
                    while Instant::now() < until && !shutdown.is_cancelled() {
                        self.health.beat(LOOP);
                        tokio::select! {
                            _ = tokio::time::sleep_until(until.min(Instant::now() + BEAT_INTERVAL).into()) => {}
                            _ = shutdown.cancelled() => {}
                        }
                    }
                    continue;
                }
            }
            let flushed_at = Instant::now();
            let wake = timers
                .resync
                .map_or(timers.refresh, |r| r.min(timers.refresh));
            let resync_requested = self.resync_requested.clone();
            let host_changed = self.host_changed.clone();
            tokio::select! {
                _ = host_changed.notified() => self.host_pending = true,
                _ = resync_requested.notified() => timers.resync = Some(Instant::now()),
                _ = enqueued.notified() => {
                    // Rate limit: changes arriving meanwhile coalesce into the next batch.
                    let wait = self.settings.flush_interval.saturating_sub(flushed_at.elapsed());
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = tokio::time::sleep(BEAT_INTERVAL) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    /// On shutdown: write what can be written now; the outbox keeps the rest.
    async fn final_flush(&mut self) {
        if !self.is_connected() {
            return;
        }
        if let Err(e) = self.flush_pending().await {
            tracing::warn!(error = %e, "last flush before shutdown failed; the outbox keeps the changes");
        }
    }

    /// Connects. The managed set is the one stored: rows that vanished meanwhile show
    /// up as RowMissing, new ones at the next periodic refresh; records nobody looked up
    /// yet are looked up with the first flush.
    async fn reconnect(&mut self) -> Result<Step, SinkError> {
        self.conn = None;
        self.connect().await?;
        let managed = self.state.snapshot().managed.len();
        tracing::info!(managed, "connected to PostgreSQL");
        self.health.set(
            POSTGRES_CONNECTED,
            true,
            "Connected",
            &format!("connected; {managed} managed VM rows"),
        );
        Ok(Step::Connected)
    }

    /// Flush first; then the background work that is due. A failing background task
    /// (other than a lost connection) is retried later and never holds up flushing.
    async fn cycle(&mut self, timers: &mut Timers) -> Result<Step, SinkError> {
        let report = self.flush_pending().await?;
        if report.batches > 0 {
            tracing::debug!(?report, "flushed");
        }
        // A drained backlog (the first sync, a catch-up after an outage) leaves its
        // batches' pages with the allocator.
        if report.batches >= BACKLOG_BATCHES {
            crate::memory::release_freed();
        }
        if self.host_pending {
            match self.sync_host_capabilities().await {
                Ok(()) => self.host_pending = false,
                Err(e) if e.class() == ErrorClass::Connection => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "writing host capabilities failed; retrying later")
                }
            }
        }
        const RETRY: Duration = Duration::from_secs(30);
        if Instant::now() >= timers.refresh {
            let interval = self.settings.managed_refresh_interval;
            let refreshed = self.refresh_managed().await;
            // The row set read (all rows' keys) is freed now; hand its pages back.
            crate::memory::release_freed();
            timers.refresh = match refreshed {
                Ok(_) => after(interval),
                Err(e) if e.class() == ErrorClass::Connection => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the managed VM rows failed; retrying later");
                    after(interval.min(RETRY))
                }
            };
        }
        if timers.resync.is_some_and(|due| Instant::now() >= due) {
            let interval = self.settings.resync_interval;
            self.resync_status.send_modify(|s| s.running = true);
            let result = self.anti_entropy().await;
            crate::memory::release_freed();
            let now = (self.clock)();
            self.resync_status.send_modify(|s| {
                s.running = false;
                match &result {
                    Ok(drifted) => {
                        s.passes += 1;
                        s.last_drifted = *drifted;
                        s.last_finished = Some(now);
                        s.last_error = None;
                    }
                    Err(e) => s.last_error = Some(e.to_string()),
                }
            });
            let next = match result {
                Ok(drifted) => {
                    tracing::info!(drifted, "anti-entropy pass done");
                    after(interval)
                }
                Err(e) if e.class() == ErrorClass::Connection => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "anti-entropy pass failed; retrying later");
                    after(if interval.is_zero() {
                        RETRY
                    } else {
                        interval.min(RETRY)
                    })
                }
            };
            // resync_interval = 0: no periodic passes, only requested ones.
            timers.resync = (!interval.is_zero() || next > Instant::now()).then_some(next);
            // What anti-entropy queued goes out now, not at the next wake-up.
            self.flush_pending().await?;
        }
        Ok(Step::Flushed)
    }
}

/// Flushes of at least this many batches in one cycle count as a drained backlog.
const BACKLOG_BATCHES: usize = 5;

/// When the periodic work is due next.
struct Timers {
    refresh: Instant,
    resync: Option<Instant>,
}

enum Step {
    Connected,
    Flushed,
}

/// The schema learned at connect (a field borrow, so the store can be locked meanwhile).
fn table_of(conn: &Option<Connection>) -> Result<&schema::TableInfo, SinkError> {
    conn.as_ref()
        .map(|c| &c.table)
        .ok_or_else(|| SinkError::NotConnected)
}

/// `now + d`, saturating far in the future instead of overflowing.
fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// The first wait after a failure; doubled per failure in a row.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between attempts while PostgreSQL is down or refusing: a server
/// that is back is used within seconds (a 30 s cap made a 60 s outage end 21 s late).
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Attempts of a batch part that keeps failing to serialize before the flush gives up
/// (the outbox keeps it for the next cycle).
const CONFLICT_ATTEMPTS: u32 = 5;
/// The first pause after a serialization failure; doubled per attempt.
const CONFLICT_BACKOFF: Duration = Duration::from_millis(20);
const MAX_CONFLICT_BACKOFF: Duration = Duration::from_millis(500);
