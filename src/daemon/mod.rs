//! The long-running daemon as a supervisor. [`Daemon::build`] opens, binds and checks
//! everything that can fail at start (the state file, the socket, the metrics port, the
//! settings of the sink and the election, the Kubernetes client). [`Daemon::run`] runs
//! the components, each in its own tracing span, under one cancellation tree, and stops
//! them in one order, written once in [`Daemon::stop`], within a bounded grace period.

mod components;
mod reload;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::api::ApiState;
use crate::columns::ColumnSet;
use crate::config::{Config, Role};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::metrics::http::MetricsServer;
use crate::model::Timestamp;
use crate::notify::Notifier;
use crate::sink::postgres::cluster_role::ClusterRoleSettings;
use crate::sink::postgres::{PgSink, SinkError, SinkSettings};
use crate::state::{OwnerSettings, StateEvent, StateHandle, Store, StoreOptions};
use crate::{Error, Result};

pub use reload::Reload;

/// How long closing (syncing) the state file may take at the end of a stop.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown may take to flush and close before giving up (the outbox keeps
/// whatever was not flushed).
pub const GRACE_PERIOD: Duration = Duration::from_secs(10);

pub fn store_options(cfg: &Config) -> StoreOptions {
    StoreOptions {
        path: cfg.cache.path.clone(),
        cache_size: cfg.cache.cache_size,
        sync_interval: cfg.cache.sync_interval,
        writable: ColumnSet::writable(&cfg.owns, cfg.postgres.schema),
    }
}

/// Opens the state file on a blocking thread and logs what was found.
pub async fn open_store(cfg: &Config) -> Result<Store> {
    let options = store_options(cfg);
    let (store, report) =
        tokio::task::spawn_blocking(move || Store::open(options, Timestamp::now()))
            .await
            .map_err(|source| Error::Task {
                what: "opening the state store",
                source,
            })??;
    tracing::info!(
        path = %cfg.cache.path.display(),
        records = report.records,
        outbox = report.outbox,
        managed = report.managed,
        skipped_rows = report.skipped_rows,
        "state store open"
    );
    Ok(store)
}

/// Everything opened and checked, nothing running yet but the state owner and the
/// metrics endpoint.
pub struct Daemon {
    cfg: Config,
    reload: Reload,
    metrics: Metrics,
    health: Health,
    notifier: Notifier,
    /// Serves until the daemon is dropped.
    _metrics_server: MetricsServer,
    state: StateHandle,
    /// The sources' way into the state (the owner stores what arrives here).
    events: mpsc::Sender<StateEvent>,
    /// Wakes the sink when deltas wait.
    enqueued: Arc<Notify>,
    /// A new cluster-role holder's request for an anti-entropy pass.
    resync: Arc<Notify>,
    /// Taken by `start`.
    api_listener: Option<UnixListener>,
    /// `None` without `postgres.url`.
    sink: Option<SinkSettings>,
    /// `None` for role = node or without PostgreSQL.
    election: Option<ClusterRoleSettings>,
    kube: Option<kube::Client>,
    hangup: tokio::signal::unix::Signal,
}

/// The cancellation tree: the root stops everything; each child one stage of the
/// shutdown order.
struct Tokens {
    root: CancellationToken,
    sources: CancellationToken,
    sink: CancellationToken,
    election: CancellationToken,
    api: CancellationToken,
}

impl Tokens {
    fn new() -> Tokens {
        let root = CancellationToken::new();
        Tokens {
            sources: root.child_token(),
            sink: root.child_token(),
            election: root.child_token(),
            api: root.child_token(),
            root,
        }
    }
}

/// The running components.
struct Running {
    sources: Vec<JoinHandle<()>>,
    sink: Option<JoinHandle<std::result::Result<(), SinkError>>>,
    election: Option<JoinHandle<std::result::Result<(), SinkError>>>,
    api: JoinHandle<()>,
}

/// Spawns `task` in a span named after the component.
fn spawn<T: Send + 'static>(
    component: &'static str,
    task: impl Future<Output = T> + Send + 'static,
) -> JoinHandle<T> {
    tokio::spawn(task.instrument(tracing::info_span!("component", name = component)))
}

impl Daemon {
    pub async fn build(cfg: Config, password: Option<String>, reload: Reload) -> Result<Daemon> {
        components::ignore_file_size_signal();
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(Error::io("installing the SIGHUP handler"))?;
        let metrics = Metrics::new()?;
        let health = Health::new(Timestamp::now);
        components::expect_conditions(&cfg, &health);
        let metrics_server =
            crate::metrics::http::serve(cfg.metrics.listen, metrics.clone(), health.clone())?;
        tracing::info!(addr = %metrics_server.addr, "metrics at http://{}/metrics", metrics_server.addr);
        let notifier = Notifier::from_env(|k| std::env::var(k).ok(), std::process::id());
        notifier.send("STATUS=opening the state file");
        let store = open_store(&cfg).await?;
        let records = store.records().count();
        let (events, rx) = mpsc::channel::<StateEvent>(4096);
        let owner = OwnerSettings::new(metrics.clone(), health.clone());
        let (enqueued, resync) = (owner.enqueued.clone(), owner.resync.clone());
        let state = crate::state::spawn(store, rx, owner)?;
        let api_listener = crate::api::server::bind(&cfg.api.socket)?;
        tracing::info!(socket = %cfg.api.socket.display(), "socket API listening");
        components::report_cache(&cfg, &health, records);
        let sink = match cfg.postgres.url {
            Some(_) => Some(SinkSettings::from_config(&cfg, password.as_deref())?),
            None => {
                tracing::info!(
                    "no postgres.url configured: changes are kept in the local state only"
                );
                None
            }
        };
        let election = match (cfg.role, &cfg.postgres.url) {
            (Role::Node, _) | (_, None) => None,
            _ => Some(ClusterRoleSettings::from_config(&cfg, password.as_deref())?),
        };
        let kube = crate::source::kube::client_from_config(&cfg.kubernetes).await?;
        Ok(Daemon {
            cfg,
            reload,
            metrics,
            health,
            notifier,
            _metrics_server: metrics_server,
            state,
            events,
            enqueued,
            resync,
            api_listener: Some(api_listener),
            sink,
            election,
            kube,
            hangup,
        })
    }

    /// Runs until `shutdown` resolves (with the signal's name), or until the sink or
    /// the election stop on a problem an operator must fix; then stops in order.
    pub async fn run(mut self, shutdown: impl Future<Output = &'static str>) -> Result<()> {
        let tokens = Tokens::new();
        let mut running = self.start(&tokens).await?;
        tracing::info!(node = %self.cfg.node_name, role = ?self.cfg.role, "virtsync running");
        // The state file is open and the endpoints are bound: systemd may order others now.
        self.notifier.send(&format!(
            "READY=1\nSTATUS=running as {} ({:?} role)",
            self.cfg.node_name, self.cfg.role
        ));
        tokio::pin!(shutdown);
        let failed = loop {
            break tokio::select! {
                _ = self.hangup.recv() => {
                    reload::reread_config(&self.cfg, &self.reload, &self.notifier);
                    continue;
                }
                signal = &mut shutdown => {
                    tracing::info!(signal, "shutting down");
                    None
                }
                result = join_some(&mut running.sink) => Some(result),
                // The election returns only on a problem an operator must fix (e.g. a
                // server without idle_session_timeout): stop like for a broken sink.
                result = join_some(&mut running.election) => Some(result),
            };
        };
        self.stop(&tokens, running).await?;
        match failed {
            Some(Ok(Err(e))) => Err(e.into()),
            Some(Err(source)) => Err(Error::Task {
                what: "a component task failed",
                source,
            }),
            Some(Ok(Ok(()))) | None => Ok(()),
        }
    }

    /// Starts every component under its token.
    async fn start(&mut self, tokens: &Tokens) -> Result<Running> {
        let (holder, election) = match self.election.take() {
            Some(settings) => {
                let (tx, rx) = watch::channel(false);
                let task = crate::sink::postgres::cluster_role::run_cluster_role(
                    settings,
                    tx,
                    tokens.election.clone(),
                );
                (rx, Some(spawn("election", task)))
            }
            None if self.cfg.role == Role::Node => (watch::channel(false).1, None),
            None => {
                tracing::info!("no PostgreSQL to elect with: this daemon holds the cluster role");
                // The receiver keeps the last value once the sender is gone: held for good.
                (watch::channel(true).1, None)
            }
        };
        let host_changed = Arc::new(Notify::new());
        let mut resync_api = None;
        let sink = self.sink.take().map(|settings| {
            let sink = PgSink::new(
                settings,
                self.state.clone(),
                self.metrics.clone(),
                Timestamp::now,
            )
            .with_resync_trigger(self.resync.clone())
            .with_cluster_role(holder.clone())
            .with_host_trigger(host_changed.clone())
            .with_health(self.health.clone());
            resync_api = Some((self.resync.clone(), sink.resync_status()));
            spawn("sink", sink.run(self.enqueued.clone(), tokens.sink.clone()))
        });
        let ctx = components::Context {
            cfg: &self.cfg,
            state: &self.state,
            metrics: &self.metrics,
            health: &self.health,
            stop: &tokens.sources,
        };
        let libvirt = components::start_libvirt(&ctx, host_changed);
        let mut sources = libvirt.tasks;
        sources.push(spawn(
            "gauges",
            components::state_gauges(
                self.state.clone(),
                self.metrics.clone(),
                store_options(&self.cfg).writable,
                holder.clone(),
                tokens.sources.clone(),
            ),
        ));
        let api_state = ApiState {
            node: self.cfg.node_name.clone(),
            role: self.cfg.role,
            admin_group: self.cfg.api.admin_group.clone(),
            version: env!("CARGO_PKG_VERSION"),
            started: Timestamp::now(),
            state: self.state.clone(),
            health: self.health.clone(),
            holder: holder.clone(),
            resync: resync_api,
            capabilities: libvirt.refresh,
        };
        // The socket API answers until the very end (status while flushing).
        let listener = self
            .api_listener
            .take()
            .ok_or_else(|| Error::Other("the daemon was started twice".into()))?;
        let api = spawn(
            "api",
            crate::api::server::serve(
                listener,
                self.cfg.api.socket.clone(),
                api_state,
                tokens.api.clone(),
            ),
        );
        if let Some(client) = self.kube.take() {
            let source =
                components::kube_source(&ctx, client, &self.events, libvirt.probe_link).await?;
            sources.push(spawn(
                "kubernetes",
                source.run(holder, tokens.sources.clone()),
            ));
        } else {
            tracing::warn!(
                "no Kubernetes API configured (kubernetes.kubeconfig, url or in_cluster): the KubeVirt source is off"
            );
        }
        sources.push(spawn(
            "watchdog",
            crate::notify::run_watchdog(
                self.notifier.clone(),
                self.health.clone(),
                tokens.sources.clone(),
            ),
        ));
        Ok(Running {
            sources,
            sink,
            election,
            api,
        })
    }

    /// The order of a clean shutdown: the inputs stop and what they sent is stored; the
    /// sink flushes that; the cluster role is given up (after the last flush of its
    /// records); all within the grace period. Then the socket API stops and the state
    /// file is closed.
    async fn stop(self, tokens: &Tokens, running: Running) -> Result<()> {
        self.notifier
            .send("STOPPING=1\nSTATUS=stopping: flushing what is pending");
        let Running {
            sources,
            sink,
            election,
            api,
        } = running;
        tokens.sources.cancel();
        drop(self.events);
        let finish = async {
            for task in sources {
                let _ = task.await;
            }
            self.state.sources_done().await;
            tokens.sink.cancel();
            if let Some(sink) = sink {
                if let Ok(Err(e)) = sink.await {
                    tracing::warn!(error = %e, "sink ended with an error during shutdown");
                }
            }
            tokens.election.cancel();
            if let Some(election) = election {
                if let Ok(Err(e)) = election.await {
                    tracing::warn!(error = %e, "cluster-role election ended with an error");
                }
            }
        };
        if tokio::time::timeout(GRACE_PERIOD, finish).await.is_err() {
            tracing::warn!(
                grace = ?GRACE_PERIOD,
                "shutdown grace period over; unflushed changes stay in the outbox"
            );
        }
        let stats = self.state.snapshot().stats;
        tracing::info!(
            pending = stats.pending,
            parked = stats.parked,
            "stopped; pending changes are kept for the next start"
        );
        tokens.root.cancel();
        let _ = api.await;
        // A state file stuck in I/O must not hold the stop forever; what was not synced
        // is derived again by the relist after the next start.
        match tokio::time::timeout(CLOSE_TIMEOUT, self.state.close()).await {
            Ok(closed) => Ok(closed?),
            Err(_) => Err(Error::Other(format!(
                "closing the state file did not finish within {CLOSE_TIMEOUT:?}"
            ))),
        }
    }
}

/// Waits for a task that may not exist (then never).
async fn join_some<T>(
    task: &mut Option<JoinHandle<T>>,
) -> std::result::Result<T, tokio::task::JoinError> {
    match task.as_mut() {
        Some(handle) => {
            let result = handle.await;
            *task = None;
            result
        }
        None => std::future::pending().await,
    }
}
