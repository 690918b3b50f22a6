//! The cluster-role election: the cluster role (all VMs: power status, the
//! stopped-VM fallback, deletions) is held by one daemon at a time, the one whose lock
//! session holds the PostgreSQL advisory lock `postgres.lock_key`.
//!
//! - The lock session is a dedicated, direct connection (its own client, never pooled,
//!   the same TLS handling as the sink) named `virtsync/<node_name>`
//!   (`application_name`), so `pg_stat_activity` and [`current_holder`] show who holds
//!   the role.
//! - The session sets `idle_session_timeout = postgres.lock_idle_timeout` (PostgreSQL 14
//!   or newer): PostgreSQL ends a session that stays idle that long, which frees the lock
//!   of a hung holder. It also sets the server's `tcp_keepalives_*` low (and the client's
//!   keepalives), so that the lock of a dead host is freed in about 11 s over TCP.
//! - The holder checks at a third of the idle timeout that its session still holds the
//!   lock (`pg_locks` for its own backend; the query is also the heartbeat that keeps the
//!   session from idling out), each check bounded by the same third. It steps down — the
//!   holder flag goes false *before* anything else — when a check fails, is late, says
//!   the lock is gone, or when the connection ends. It also steps down on its own when
//!   its last good check is two thirds of the idle timeout old (a process that was
//!   suspended cannot know whether PostgreSQL ended its session meanwhile), so a resumed
//!   holder gives up the role at once, before PostgreSQL could hand it to anyone else
//!   with a margin of a third of the idle timeout in the normal case.
//! - A standby tries `pg_try_advisory_lock` every `postgres.lock_retry_interval`.
//! - On shutdown the holder steps down, unlocks and closes the session.
//!
//! Where no PostgreSQL is configured there is nothing to share the role with: the daemon
//! holds the cluster role unconditionally and does not run this election.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_util::sync::CancellationToken;

use super::{SinkError, describe, pg_config, tls};
use crate::config::Config;

/// Server-side TCP keepalives of the lock session (seconds): a dead host's session, and
/// with it the lock, is gone after about idle + interval × count = 11 s.
const KEEPALIVES_IDLE_S: u64 = 5;
const KEEPALIVES_INTERVAL_S: u64 = 2;
const KEEPALIVES_COUNT: u32 = 3;
/// Reconnect backoff after a failure (doubling, capped).
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Everything the election needs, resolved from the configuration (no I/O).
#[derive(Clone, Debug)]
pub struct ClusterRoleSettings {
    /// The lock session's connection settings (application name, session options,
    /// keepalives) and its TLS connector.
    pub pg: tokio_postgres::Config,
    pub tls: tls::Tls,
    /// `postgres.lock_key`.
    pub lock_key: i64,
    /// `postgres.lock_idle_timeout`: the session's `idle_session_timeout`.
    pub idle_timeout: Duration,
    /// `postgres.lock_retry_interval`: how often a standby tries the lock.
    pub retry_interval: Duration,
    /// Bound on establishing the lock session (TCP, TLS, authentication).
    pub connect_deadline: Duration,
    /// Test hook: while this reads true the election does nothing at all — no
    /// heartbeat, no step-down, no lock attempt — as a hung (e.g. stopped) process would.
    /// `None` (what [`ClusterRoleSettings::from_config`] sets) in the daemon.
    pub pause: Option<watch::Receiver<bool>>,
}

impl ClusterRoleSettings {
    pub fn from_config(
        cfg: &Config,
        password: Option<&str>,
    ) -> Result<ClusterRoleSettings, SinkError> {
        let url = cfg.require_postgres_url()?;
        let p = &cfg.postgres;
        // The session holds an advisory lock: it must not go through a pooler.
        let url = p.lock_url.as_deref().unwrap_or(url);
        let (mut pg, tls) = pg_config(url, password, &application_name(&cfg.node_name), p)?;
        let session = format!(
            "-c idle_session_timeout={}ms -c tcp_keepalives_idle={KEEPALIVES_IDLE_S} \
             -c tcp_keepalives_interval={KEEPALIVES_INTERVAL_S} \
             -c tcp_keepalives_count={KEEPALIVES_COUNT}",
            p.lock_idle_timeout.as_millis().max(1)
        );
        let options = match pg.get_options() {
            Some(existing) => format!("{existing} {session}"),
            None => session,
        };
        pg.options(&options)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(KEEPALIVES_IDLE_S))
            .keepalives_interval(Duration::from_secs(KEEPALIVES_INTERVAL_S))
            .keepalives_retries(KEEPALIVES_COUNT);
        Ok(ClusterRoleSettings {
            pg,
            tls,
            lock_key: p.lock_key,
            idle_timeout: p.lock_idle_timeout,
            retry_interval: p.lock_retry_interval,
            connect_deadline: p.connect_timeout.saturating_mul(2),
            pause: None,
        })
    }

    /// How often the holder checks its lock: a third of the idle timeout. Each check may
    /// take as long.
    pub fn heartbeat_interval(&self) -> Duration {
        self.idle_timeout / 3
    }

    /// The lock session's `application_name`, `virtsync/<node_name>`.
    pub fn application_name(&self) -> &str {
        self.pg.get_application_name().unwrap_or("")
    }
}

/// `virtsync/<node_name>`: how the lock session of a node is named.
pub fn application_name(node_name: &str) -> String {
    format!("virtsync/{node_name}")
}

/// Runs the election until `shutdown` is cancelled:
/// `holder` is true exactly while this daemon holds the cluster role. Connection
/// problems are logged and retried with a capped backoff, never returned; the only
/// error is a server too old for the election (PostgreSQL before 14 has no
/// `idle_session_timeout`), which an operator must fix.
pub async fn run_cluster_role(
    settings: ClusterRoleSettings,
    holder: watch::Sender<bool>,
    shutdown: CancellationToken,
) -> Result<(), SinkError> {
    let pause = settings.pause.clone();
    holder.send_if_modified(|h| std::mem::replace(h, false));
    let mut elector = Elector {
        settings,
        holder,
        shutdown,
        pause,
        session: None,
        locked: false,
    };
    let result = elector.run().await;
    elector.release().await;
    result
}

/// The `application_name` of the session that holds `lock_key` in the current
/// database, if any session does (`None`: nobody holds the cluster role right now).
pub async fn current_holder(client: &Client, lock_key: i64) -> Result<Option<String>, SinkError> {
    const SQL: &str = "SELECT a.application_name \
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
          AND l.classid = (($1::bigint >> 32) & 4294967295)::oid \
          AND l.objid = ($1::bigint & 4294967295)::oid";
    const STEP: &str = "reading the cluster-role holder";
    let Some(row) = client
        .query_opt(SQL, &[&lock_key])
        .await
        .map_err(SinkError::query(STEP))?
    else {
        return Ok(None);
    };
    let name: Option<String> = row.try_get(0).map_err(SinkError::query(STEP))?;
    Ok(Some(name.unwrap_or_default()))
}

/// Whether this session still holds `lock_key` (one row in `pg_locks` for our backend).
const STILL_HOLDS_SQL: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks \
    WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
      AND pid = pg_backend_pid() \
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
      AND classid = (($1::bigint >> 32) & 4294967295)::oid \
      AND objid = ($1::bigint & 4294967295)::oid)";

/// The lock session: its client and a flag the connection task raises when it ends.
struct Session {
    client: Client,
    /// Why the connection ended, once it has.
    ended: watch::Receiver<Option<String>>,
}

impl Session {
    /// Why the connection ended, if it has.
    fn end_reason(&self) -> Option<String> {
        match (self.ended.borrow().clone(), self.client.is_closed()) {
            (Some(reason), _) => Some(reason),
            (None, true) => Some("connection closed".to_owned()),
            (None, false) => None,
        }
    }

    /// Resolves once the connection has ended (e.g. the backend was terminated).
    async fn wait_ended(&mut self) {
        // An error means the connection task is gone: ended as well.
        let _ = self.ended.wait_for(Option::is_some).await;
    }
}

/// Why holding the role stopped.
enum Held {
    Shutdown,
    /// The session is fine but no longer holds the lock: stand by on it.
    LockLost,
    /// The connection ended (e.g. the backend was terminated, or PostgreSQL ended the
    /// session for idling while this process was suspended).
    SessionEnded(String),
}

struct Elector {
    settings: ClusterRoleSettings,
    holder: watch::Sender<bool>,
    shutdown: CancellationToken,
    pause: Option<watch::Receiver<bool>>,
    session: Option<Session>,
    /// The session holds the lock as far as we know (it may, while `holder` is false
    /// after a late heartbeat).
    locked: bool,
}

impl Elector {
    async fn run(&mut self) -> Result<(), SinkError> {
        let mut backoff = MIN_BACKOFF;
        loop {
            self.while_paused().await;
            if self.shutting_down() {
                return Ok(());
            }
            let sent = Instant::now();
            let attempt = match self.session.is_some() {
                false => self.connect().await.map(|()| None),
                true => self.try_lock().await.map(Some),
            };
            let wait = match attempt {
                // Connected: try the lock at once.
                Ok(None) => continue,
                Ok(Some(true)) => match self.hold(sent).await {
                    Ok(Held::Shutdown) => return Ok(()),
                    Ok(Held::LockLost) => {
                        backoff = MIN_BACKOFF;
                        self.settings.retry_interval
                    }
                    Ok(Held::SessionEnded(reason)) => {
                        self.session = None;
                        self.locked = false;
                        tracing::warn!(reason, retry_in = ?backoff, "cluster-role lock session ended; reconnecting");
                        next_backoff(&mut backoff)
                    }
                    Err(e) => {
                        self.session = None;
                        self.locked = false;
                        tracing::warn!(error = %e, retry_in = ?backoff, "cluster-role lock session failed; reconnecting");
                        next_backoff(&mut backoff)
                    }
                },
                Ok(Some(false)) => {
                    backoff = MIN_BACKOFF;
                    self.settings.retry_interval
                }
                Err(e) if e.is_setup_problem() => {
                    tracing::error!(error = %e, "the cluster-role election cannot run");
                    return Err(e);
                }
                Err(e) => {
                    self.session = None;
                    self.locked = false;
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot take part in the cluster-role election; retrying");
                    next_backoff(&mut backoff)
                }
            };
            let shutdown = self.shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {}
                _ = pause_begins(&mut self.pause) => {}
            }
        }
    }

    async fn connect(&mut self) -> Result<(), SinkError> {
        let s = &self.settings;
        let connecting = s.pg.connect(s.tls.0.clone());
        let (client, connection) = tokio::time::timeout(s.connect_deadline, connecting)
            .await
            .map_err(|_| SinkError::Timeout("connecting the cluster-role lock session"))?
            .map_err(|e| match too_old(&e) {
                true => SinkError::Setup(format!(
                    "the cluster-role election needs PostgreSQL 14 or newer \
                     (idle_session_timeout): {}",
                    describe(&e)
                )),
                false => SinkError::Connect(e),
            })?;
        let (ended_tx, ended) = watch::channel(None);
        tokio::spawn(async move {
            let reason = match connection.await {
                Ok(()) => "connection closed".to_owned(),
                Err(e) => describe(&e),
            };
            ended_tx.send_replace(Some(reason));
        });
        tracing::debug!(
            application_name = s.application_name(),
            "cluster-role lock session connected"
        );
        self.session = Some(Session { client, ended });
        Ok(())
    }

    /// One `pg_try_advisory_lock`, bounded by the heartbeat interval.
    async fn try_lock(&mut self) -> Result<bool, SinkError> {
        let key = self.settings.lock_key;
        let limit = self.settings.heartbeat_interval();
        let session = self.session.as_ref().ok_or(SinkError::NotConnected)?;
        let got = query_bool(
            &session.client,
            "SELECT pg_try_advisory_lock($1)",
            key,
            limit,
            "trying the cluster-role lock",
        )
        .await?;
        self.locked = got;
        Ok(got)
    }

    /// Holds the role from a successful `pg_try_advisory_lock` (sent at `since`) until
    /// shutdown or a failure; the role is given up before this returns (except on
    /// shutdown, where `release` does it).
    async fn hold(&mut self, since: Instant) -> Result<Held, SinkError> {
        let interval = self.settings.heartbeat_interval();
        // The role is ours while our last good check is younger than this.
        let lease = interval * 2;
        let key = self.settings.lock_key;
        let mut last_ok = since;
        self.take_role("took the cluster role");
        loop {
            let shutdown = self.shutdown.clone();
            let session = self.session.as_mut().ok_or(SinkError::NotConnected)?;
            let mut paused = false;
            tokio::select! {
                _ = tokio::time::sleep_until((last_ok + interval).into()) => {}
                _ = session.wait_ended() => {}
                _ = shutdown.cancelled() => {}
                _ = pause_begins(&mut self.pause) => paused = true,
            }
            if paused {
                self.while_paused().await;
            }
            if self.shutting_down() {
                return Ok(Held::Shutdown);
            }
            let session = self.session.as_ref().ok_or(SinkError::NotConnected)?;
            if let Some(reason) = session.end_reason() {
                self.step_down("the lock session ended");
                return Ok(Held::SessionEnded(reason));
            }
            if last_ok.elapsed() >= lease {
                self.step_down("the last good heartbeat is too old; the lock may be gone");
            }
            let sent = Instant::now();
            // While holding, the answer must come before the lease runs out.
            let limit = match *self.holder.borrow() {
                true => (last_ok + lease).saturating_duration_since(sent),
                false => interval,
            };
            let check = query_bool(
                &session.client,
                STILL_HOLDS_SQL,
                key,
                limit,
                "cluster-role heartbeat",
            );
            match check.await {
                Ok(true) => {
                    last_ok = sent;
                    self.take_role("took the cluster role again: the lock was still held");
                }
                Ok(false) => {
                    self.locked = false;
                    self.step_down("the lock session no longer holds the lock");
                    return Ok(Held::LockLost);
                }
                Err(e) => {
                    self.step_down("the heartbeat failed or did not answer in time");
                    return Err(e);
                }
            }
        }
    }

    /// Sets the holder flag; true if that changed it. Receivers are woken only by a
    /// change.
    fn set_holder(&self, holds: bool) -> bool {
        self.holder.send_if_modified(|h| {
            let changed = *h != holds;
            *h = holds;
            changed
        })
    }

    fn take_role(&self, what: &'static str) {
        if self.set_holder(true) {
            tracing::info!(
                application_name = self.settings.application_name(),
                lock_key = self.settings.lock_key,
                "{what}"
            );
        }
    }

    /// Gives up the role: the flag first, then the log line.
    fn step_down(&self, why: &str) {
        if self.set_holder(false) {
            tracing::warn!(
                application_name = self.settings.application_name(),
                reason = why,
                "stepped down from the cluster role"
            );
        }
    }

    /// Shutdown: step down, unlock, close the session.
    async fn release(&mut self) {
        if self.set_holder(false) {
            tracing::info!("gave up the cluster role: shutting down");
        }
        let Some(session) = self.session.take() else {
            return;
        };
        if self.locked && session.end_reason().is_none() {
            let unlock = query_bool(
                &session.client,
                "SELECT pg_advisory_unlock($1)",
                self.settings.lock_key,
                self.settings.heartbeat_interval(),
                "unlocking the cluster-role lock",
            );
            match unlock.await {
                Ok(_) => tracing::debug!("cluster-role lock released"),
                Err(e) => {
                    tracing::debug!(error = %e, "unlocking failed; closing the session frees the lock")
                }
            }
        }
        self.locked = false;
        // Dropping the client closes the connection.
        drop(session);
    }

    fn shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// The test hook: does nothing at all while paused.
    async fn while_paused(&mut self) {
        if let Some(pause) = self.pause.as_mut() {
            // Sender gone: not paused any more.
            let _ = pause.wait_for(|p| !*p).await;
        }
    }
}

/// Resolves when the test hook pauses the election; never without the hook.
async fn pause_begins(pause: &mut Option<watch::Receiver<bool>>) {
    match pause {
        // A closed channel (sender gone) never pauses again.
        Some(rx) if rx.has_changed().is_ok() => {
            if rx.wait_for(|p| *p).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

/// One single-boolean query about `key`, bounded by `limit`.
async fn query_bool(
    client: &Client,
    sql: &str,
    key: i64,
    limit: Duration,
    step: &'static str,
) -> Result<bool, SinkError> {
    let row = tokio::time::timeout(limit, client.query_one(sql, &[&key]))
        .await
        .map_err(|_| SinkError::Timeout(step))?
        .map_err(SinkError::query(step))?;
    row.try_get(0).map_err(SinkError::query(step))
}

/// The wait before the next attempt; doubles it.
fn next_backoff(backoff: &mut Duration) -> Duration {
    let now = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    now
}

/// The server does not know `idle_session_timeout` (before PostgreSQL 14).
fn too_old(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNDEFINED_OBJECT && db.message().contains("idle_session_timeout")
    })
}
