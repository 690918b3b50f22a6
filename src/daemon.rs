//! Wiring of the long-running daemon: the state store, the writer task that sources feed,
//! the PostgreSQL sink, and an orderly shutdown on SIGTERM/SIGINT with a bounded grace
//! period.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use crate::api::{ApiState, CapabilityRefresh};
use crate::columns::ColumnSet;
use crate::config::{Config, Locator, Role};
use crate::health::{
    CACHE_READY, Health, KUBERNETES_CONNECTED, LIBVIRT_CONNECTED, POSTGRES_CONNECTED,
    STATE_WRITABLE,
};
use crate::metrics::Metrics;
use crate::model::Timestamp;
use crate::notify::Notifier;
use crate::sink::postgres::cluster_role::{ClusterRoleSettings, run_cluster_role};
use crate::sink::postgres::{PgSink, SinkSettings};
use crate::source::kube::ProbeLink;
use crate::source::kube::{self as kube_source, KubeSettings, KubeSource};
use crate::source::libvirt::host::{
    CapabilitySource, CapabilityTask, MachineSettings, run_capabilities,
};
use crate::source::libvirt::locator::DEFAULT_LINK_DIR;
use crate::source::libvirt::{ConnectionPool, HypervisorProbe, LibvirtConnection, ProbeSettings};
use crate::state::writer::{self, SharedStore, WriterOptions, lock};
use crate::state::{StateEvent, Store, StoreOptions};
use crate::{Error, Result, shutdown};

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
pub async fn open_store(cfg: &Config) -> Result<SharedStore> {
    let options = store_options(cfg);
    let (store, report) =
        tokio::task::spawn_blocking(move || Store::open(options, Timestamp::now()))
            .await
            .map_err(|e| Error::Other(format!("opening the state store: {e}")))??;
    tracing::info!(
        path = %cfg.cache.path.display(),
        records = report.records,
        outbox = report.outbox,
        managed = report.managed,
        skipped_rows = report.skipped_rows,
        "state store open"
    );
    Ok(Arc::new(Mutex::new(store)))
}

/// A file size limit (systemd `LimitFSIZE=`, RLIMIT_FSIZE) then fails the write with
/// EFBIG, handled like a full disk, instead of killing the daemon with SIGXFSZ.
fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Reads the configuration again (SIGHUP): the same file, environment and flags as at
/// start.
pub type Reload = Box<dyn Fn() -> Result<Config> + Send>;

pub async fn run(cfg: Config, password: Option<String>, reload: Reload) -> Result<()> {
    ignore_file_size_signal();
    let mut signals = shutdown::ShutdownSignals::install()
        .map_err(|e| Error::Other(format!("installing signal handlers: {e}")))?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| Error::Other(format!("installing the SIGHUP handler: {e}")))?;
    let metrics = Metrics::new()?;
    let health = Health::new(Some(metrics.clone()), Timestamp::now);
    expect_conditions(&cfg, &health);
    let metrics_server =
        crate::metrics::http::serve(cfg.metrics.listen, metrics.clone(), health.clone())?;
    tracing::info!(addr = %metrics_server.addr, "metrics at http://{}/metrics", metrics_server.addr);
    let notifier = Notifier::from_env(|k| std::env::var(k).ok(), std::process::id());
    notifier.send("STATUS=opening the state file");
    let store = open_store(&cfg).await?;
    let api_listener = crate::api::server::bind(&cfg.api.socket)?;
    tracing::info!(socket = %cfg.api.socket.display(), "socket API listening");
    let records = lock(&store).records().count();
    health.set(
        STATE_WRITABLE,
        true,
        "Opened",
        "the state file takes writes",
    );
    if kube_configured(&cfg) && cfg.role != Role::Cluster {
        let message =
            format!("state file open ({records} records); waiting for the first VMI list");
        health.set(CACHE_READY, false, "Listing", &message);
    } else {
        health.set(
            CACHE_READY,
            true,
            "Opened",
            &format!("state file open ({records} records)"),
        );
    }
    // Sources will get clones of `events`; until they exist the pipeline idles. The
    // writer ends when every sender is gone.
    let (events, rx) = mpsc::channel::<StateEvent>(4096);
    let enqueued = Arc::new(Notify::new());
    // A new cluster-role holder asks for anti-entropy once its first VM list is stored.
    let resync = Arc::new(Notify::new());
    let writer_options = WriterOptions {
        resync: Some(resync.clone()),
        metrics: Some(metrics.clone()),
        health: Some(health.clone()),
        ..WriterOptions::default()
    };
    let writer = tokio::spawn(writer::run(
        store.clone(),
        rx,
        writer_options,
        enqueued.clone(),
        Timestamp::now,
    ));
    let (stop, stopped) = watch::channel(false);
    let (holder, mut election) = cluster_role(&cfg, password.as_deref(), stopped.clone())?;
    // The socket API answers until the very end (status while flushing).
    let (stop_api, stopped_api) = watch::channel(false);
    let host_changed = Arc::new(Notify::new());
    let mut resync_api = None;
    let mut sink = match cfg.postgres.url {
        Some(_) => {
            let settings = SinkSettings::from_config(&cfg, password.as_deref())?;
            let sink = PgSink::new(settings, store.clone(), Timestamp::now)
                .with_resync_trigger(resync.clone())
                .with_cluster_role(holder.clone())
                .with_host_trigger(host_changed.clone())
                .with_metrics(metrics.clone())
                .with_health(health.clone());
            resync_api = Some((resync.clone(), sink.resync_status()));
            Some(tokio::spawn(sink.run(enqueued.clone(), stopped.clone())))
        }
        None => {
            tracing::info!("no postgres.url configured: changes are kept in the local state only");
            None
        }
    };
    let (stop_sources, sources_stopped) = watch::channel(false);
    let sources_stopped_for_watchdog = sources_stopped.clone();
    let libvirt = start_libvirt(
        &cfg,
        &store,
        &metrics,
        &health,
        host_changed,
        &sources_stopped,
    );
    let gauges = tokio::spawn(state_gauges(
        store.clone(),
        metrics.clone(),
        store_options(&cfg).writable,
        holder.clone(),
        sources_stopped.clone(),
    ));
    let api_state = ApiState {
        node: cfg.node_name.clone(),
        role: cfg.role,
        admin_group: cfg.api.admin_group.clone(),
        version: env!("CARGO_PKG_VERSION"),
        started: Timestamp::now(),
        store: store.clone(),
        health: health.clone(),
        holder: holder.clone(),
        resync: resync_api,
        capabilities: libvirt.refresh.clone(),
        enqueued: enqueued.clone(),
    };
    let api = tokio::spawn(crate::api::server::serve(
        api_listener,
        cfg.api.socket.clone(),
        api_state,
        stopped_api,
    ));
    let source = start_kube_source(
        &cfg,
        &store,
        &events,
        holder,
        libvirt.probe_link,
        (&metrics, &health),
        sources_stopped,
    )
    .await?;
    tracing::info!(node = %cfg.node_name, role = ?cfg.role, "virtsync running");
    // The state file is open and the endpoints are bound: systemd may order others now.
    notifier.send(&format!(
        "READY=1\nSTATUS=running as {} ({:?} role)",
        cfg.node_name, cfg.role
    ));
    let watchdog = tokio::spawn(crate::notify::run_watchdog(
        notifier.clone(),
        health.clone(),
        sources_stopped_for_watchdog,
    ));
    let sink_failed = loop {
        break tokio::select! {
            _ = hangup.recv() => {
                reread_config(&cfg, &reload, &notifier);
                continue;
            }
            sig = signals.received() => {
                tracing::info!(signal = sig, "shutting down");
                None
            }
            result = async {
                match sink.as_mut() {
                    Some(handle) => handle.await,
                    None => std::future::pending().await,
                }
            } => {
                sink = None;
                Some(result)
            }
            // The election returns only on a problem an operator must fix (e.g. a server
            // without idle_session_timeout): stop like for a broken sink.
            result = async {
                match election.as_mut() {
                    Some(handle) => handle.await,
                    None => std::future::pending().await,
                }
            } => {
                election = None;
                Some(result)
            }
        };
    };
    // Stop the inputs first and let the writer store what it has, then let the sink
    // flush that, all within the grace period.
    notifier.send("STOPPING=1\nSTATUS=stopping: flushing what is pending");
    let _ = stop_sources.send(true);
    let _ = watchdog.await;
    drop(events);
    let finish = async {
        if let Some(source) = source {
            let _ = source.await;
        }
        for task in libvirt.tasks {
            let _ = task.await;
        }
        let _ = gauges.await;
        let _ = writer.await;
        let _ = stop.send(true);
        let sink_error = match sink {
            Some(handle) => handle.await.ok().and_then(|r| r.err()),
            None => None,
        };
        // Last: give the cluster role up (after the last flush of its records).
        if let Some(election) = election {
            if let Ok(Err(e)) = election.await {
                tracing::warn!(error = %e, "cluster-role election ended with an error");
            }
        }
        sink_error
    };
    // (The metrics endpoint stays up until the very end, then stops with the process.)
    match tokio::time::timeout(GRACE_PERIOD, finish).await {
        Ok(Some(e)) => tracing::warn!(error = %e, "sink ended with an error during shutdown"),
        Ok(None) => {}
        Err(_) => tracing::warn!(
            grace = ?GRACE_PERIOD,
            "shutdown grace period over; unflushed changes stay in the outbox"
        ),
    }
    let stats = lock(&store).outbox_stats();
    tracing::info!(
        pending = stats.pending,
        parked = stats.parked,
        "stopped; pending changes are kept for the next start"
    );
    let _ = stop_api.send(true);
    let _ = api.await;
    if let Ok(store) = Arc::try_unwrap(store) {
        let store = store.into_inner().unwrap_or_else(|p| p.into_inner());
        store.close()?;
    }
    match sink_failed {
        Some(Ok(Err(e))) => Err(e.into()),
        Some(Err(join)) => Err(Error::Other(format!("sink task failed: {join}"))),
        Some(Ok(Ok(()))) | None => Ok(()),
    }
}

type Election = tokio::task::JoinHandle<std::result::Result<(), crate::sink::postgres::SinkError>>;

/// The cluster-role election: through PostgreSQL's advisory lock when a database is
/// configured; a daemon without one holds the role alone (a single host or a lab).
fn cluster_role(
    cfg: &Config,
    password: Option<&str>,
    stopped: watch::Receiver<bool>,
) -> Result<(watch::Receiver<bool>, Option<Election>)> {
    if cfg.role == Role::Node {
        return Ok((watch::channel(false).1, None));
    }
    if cfg.postgres.url.is_none() {
        tracing::info!("no PostgreSQL to elect with: this daemon holds the cluster role");
        // The source keeps the last value once the sender is gone: held for good.
        return Ok((watch::channel(true).1, None));
    }
    let settings = ClusterRoleSettings::from_config(cfg, password)?;
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(run_cluster_role(settings, tx, stopped));
    Ok((rx, Some(handle)))
}

/// Starts the KubeVirt source when a Kubernetes API is configured.
async fn start_kube_source(
    cfg: &Config,
    store: &SharedStore,
    events: &mpsc::Sender<StateEvent>,
    holder: watch::Receiver<bool>,
    probe: Option<ProbeLink>,
    (metrics, health): (&Metrics, &Health),
    stopped: watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let client = kube_source::client_from_config(&cfg.kubernetes)
        .await
        .map_err(|e| Error::Kubernetes(e.to_string()))?;
    let Some(client) = client else {
        tracing::warn!(
            "no Kubernetes API configured (kubernetes.kubeconfig, url or in_cluster): the KubeVirt source is off"
        );
        return Ok(None);
    };
    let settings = KubeSettings {
        node: cfg.node_name.clone(),
        node_role: cfg.role != Role::Cluster,
        cluster_role: cfg.role != Role::Node,
        namespaces: cfg.kubernetes.namespaces.clone(),
        label_selector: cfg.kubernetes.label_selector.clone(),
    };
    if settings.node_role {
        kube_source::check_node(&client, &cfg.node_name).await;
    }
    let last = lock(store)
        .records()
        .map(|(k, stored)| (k.clone(), Arc::clone(&stored.obs)))
        .collect();
    let mut source = KubeSource::new(client, settings, last, events.clone())
        .map_err(|e| Error::Kubernetes(e.to_string()))?
        .with_metrics(metrics.clone())
        .with_health(health.clone());
    if let Some(probe) = probe {
        source = source.with_probe(probe);
    }
    Ok(Some(tokio::spawn(source.run(holder, stopped))))
}

/// SIGHUP: reads the configuration again and says what changed. Nothing is applied
/// while running: every changed key needs a restart, and the log says which.
fn reread_config(running: &Config, reload: &Reload, notifier: &Notifier) {
    notifier.send("RELOADING=1");
    match reload() {
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the configuration does not load; still running with the one from the start")
        }
        Ok(new) => {
            let changed = running.changed_keys(&new);
            if changed.is_empty() {
                tracing::info!("SIGHUP: configuration re-read; nothing changed");
            } else {
                let changed = changed.join(", ");
                tracing::warn!(
                    changed,
                    "SIGHUP: configuration re-read; these settings changed and take effect only after a restart (systemctl restart virtsync)"
                );
            }
        }
    }
    notifier.send("READY=1");
}

fn kube_configured(cfg: &Config) -> bool {
    let k = &cfg.kubernetes;
    k.kubeconfig.is_some() || k.url.is_some() || k.in_cluster
}

/// The conditions `/readyz` waits for: the state file, and each configured source.
fn expect_conditions(cfg: &Config, health: &Health) {
    health.expect(CACHE_READY, "opening the state file");
    health.expect(STATE_WRITABLE, "opening the state file");
    if kube_configured(cfg) {
        health.expect(KUBERNETES_CONNECTED, "not connected yet");
    }
    if cfg.postgres.url.is_some() {
        health.expect(POSTGRES_CONNECTED, "not connected yet");
    }
    if cfg.libvirt.uri.is_some() {
        health.expect(LIBVIRT_CONNECTED, "not connected yet");
    }
}

/// How often the gauges computed over all stored records are brought up to date.
const STATE_GAUGES_INTERVAL: Duration = Duration::from_secs(15);

/// Keeps the gauges that describe the whole state (records, cluster role) current.
async fn state_gauges(
    store: SharedStore,
    metrics: Metrics,
    writable: ColumnSet,
    mut holder: watch::Receiver<bool>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(STATE_GAUGES_INTERVAL);
    let mut election_over = false;
    loop {
        metrics
            .cluster_role_holder
            .set(i64::from(*holder.borrow_and_update()));
        tokio::select! {
            _ = tick.tick() => {
                let s = lock(&store);
                metrics.set_record_gauges(s.records().map(|(_, stored)| &stored.record), writable);
                metrics.set_outbox(&s.outbox_stats(), Timestamp::now());
            }
            changed = holder.changed(), if !election_over => election_over = changed.is_err(),
            _ = stopped.changed() => return,
        }
    }
}

/// The libvirt side: the hypervisor probe (node role) and host capability discovery.
struct LibvirtTasks {
    probe_link: Option<ProbeLink>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// For `POST /v1/host/capabilities/refresh`.
    refresh: Option<CapabilityRefresh>,
}

/// Starts the hypervisor probe when this daemon watches its node's VMIs and has a libvirt
/// to ask (`libvirt.uri`, or the launchers in `kubevirt` mode), and capability discovery
/// on `libvirt.uri`, else (kubevirt mode) through a running launcher's libvirt.
fn start_libvirt(
    cfg: &Config,
    store: &SharedStore,
    metrics: &Metrics,
    health: &Health,
    changed: Arc<Notify>,
    stopped: &watch::Receiver<bool>,
) -> LibvirtTasks {
    let kubevirt_mode = cfg.libvirt.locator == Locator::Kubevirt;
    let mut tasks = Vec::new();
    let pool = Arc::new(ConnectionPool::new());
    let probe_link = if cfg.role != Role::Cluster && (cfg.libvirt.uri.is_some() || kubevirt_mode) {
        let (targets, targets_rx) = mpsc::unbounded_channel();
        let (found_tx, found) = mpsc::unbounded_channel();
        let settings = ProbeSettings {
            libvirt: cfg.libvirt.clone(),
            node: cfg.node_name.clone(),
            link_dir: PathBuf::from(DEFAULT_LINK_DIR),
            check_interval: cfg.libvirt.domain_check_interval,
        };
        let probe = HypervisorProbe::new(settings, pool.clone(), metrics.clone(), found_tx)
            .with_health(health.clone());
        tasks.push(tokio::spawn(probe.run(targets_rx, stopped.clone())));
        Some(ProbeLink { targets, found })
    } else {
        tracing::info!(
            "no libvirt to ask (libvirt.uri not set, locator = uri): hypervisor types are not looked up"
        );
        None
    };
    let source = match (&cfg.libvirt.uri, kubevirt_mode) {
        (Some(uri), _) => CapabilitySource::Host(LibvirtConnection::new(uri.clone())),
        (None, true) => CapabilitySource::Launchers(pool),
        (None, false) => {
            tracing::info!("no libvirt.uri configured: host capability discovery is off");
            return LibvirtTasks {
                probe_link,
                tasks,
                refresh: None,
            };
        }
    };
    let (refreshed, refreshed_rx) = watch::channel(0);
    let request = Arc::new(Notify::new());
    let task = CapabilityTask {
        source,
        machines: MachineSettings {
            configured: cfg.capabilities.machines.clone(),
            node_name: cfg.node_name.clone(),
        },
        store: store.clone(),
        interval: cfg.capabilities.refresh_interval,
        requested: request.clone(),
        changed,
        metrics: metrics.clone(),
        health: health.clone(),
        refreshed,
    };
    tasks.push(tokio::spawn(run_capabilities(task, stopped.clone())));
    LibvirtTasks {
        probe_link,
        tasks,
        refresh: Some(CapabilityRefresh {
            request,
            refreshed: refreshed_rx,
        }),
    }
}
