//! The daemon's components and how each is started: the libvirt side (hypervisor
//! probe, capability discovery), the KubeVirt source, the state gauges, and the health
//! conditions they report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::spawn;
use crate::Result;
use crate::api::CapabilityRefresh;
use crate::columns::ColumnSet;
use crate::config::{Config, Locator, Role};
use crate::health::{
    CACHE_READY, Health, KUBERNETES_CONNECTED, LIBVIRT_CONNECTED, POSTGRES_CONNECTED,
    STATE_WRITABLE,
};
use crate::metrics::Metrics;
use crate::model::Timestamp;
use crate::source::kube::ProbeLink;
use crate::source::kube::{self as kube_source, KubeSettings, KubeSource};
use crate::source::libvirt::host::{
    CapabilitySource, CapabilityTask, MachineSettings, run_capabilities,
};
use crate::source::libvirt::locator::DEFAULT_LINK_DIR;
use crate::source::libvirt::{ConnectionPool, HypervisorProbe, LibvirtConnection, ProbeSettings};
use crate::state::{StateEvent, StateHandle};

/// What every source is started with.
pub(super) struct Context<'a> {
    pub cfg: &'a Config,
    pub state: &'a StateHandle,
    pub metrics: &'a Metrics,
    pub health: &'a Health,
    /// The sources' branch of the cancellation tree.
    pub stop: &'a CancellationToken,
}

/// A file size limit (systemd `LimitFSIZE=`, RLIMIT_FSIZE) then fails the write with
/// EFBIG, handled like a full disk, instead of killing the daemon with SIGXFSZ.
pub(super) fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// The KubeVirt source on `client`, starting from the stored records.
pub(super) async fn kube_source(
    ctx: &Context<'_>,
    client: kube::Client,
    events: &mpsc::Sender<StateEvent>,
    probe: Option<ProbeLink>,
) -> Result<KubeSource> {
    let cfg = ctx.cfg;
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
    let last = ctx
        .state
        .snapshot()
        .records()
        .map(|(k, stored)| (k.clone(), Arc::clone(&stored.obs)))
        .collect();
    let mut source = KubeSource::new(client, settings, last, events.clone(), ctx.metrics.clone())?
        .with_health(ctx.health.clone());
    if let Some(probe) = probe {
        source = source.with_probe(probe);
    }
    Ok(source)
}

/// Reports the state file open, and whether the cache is ready: a node daemon with a
/// Kubernetes API waits for its first VMI list.
pub(super) fn report_cache(cfg: &Config, health: &Health, records: usize) {
    health.set(
        STATE_WRITABLE,
        true,
        "Opened",
        "the state file takes writes",
    );
    if kube_configured(cfg) && cfg.role != Role::Cluster {
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
}

fn kube_configured(cfg: &Config) -> bool {
    let k = &cfg.kubernetes;
    k.kubeconfig.is_some() || k.url.is_some() || k.in_cluster
}

/// The conditions `/readyz` waits for: the state file, and each configured source.
pub(super) fn expect_conditions(cfg: &Config, health: &Health) {
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
pub(super) async fn state_gauges(
    state: StateHandle,
    metrics: Metrics,
    writable: ColumnSet,
    mut holder: watch::Receiver<bool>,
    stopped: CancellationToken,
) {
    let mut tick = tokio::time::interval(STATE_GAUGES_INTERVAL);
    let mut election_over = false;
    loop {
        metrics
            .cluster_role_holder
            .set(i64::from(*holder.borrow_and_update()));
        tokio::select! {
            _ = tick.tick() => {
                let s = state.snapshot();
                metrics.set_record_gauges(s.records().map(|(_, stored)| &stored.record), writable);
                metrics.set_outbox(&s.stats, Timestamp::now());
            }
            changed = holder.changed(), if !election_over => election_over = changed.is_err(),
            _ = stopped.cancelled() => return,
        }
    }
}

/// The libvirt side: the hypervisor probe (node role) and host capability discovery.
pub(super) struct LibvirtTasks {
    pub probe_link: Option<ProbeLink>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// For `POST /v1/host/capabilities/refresh`.
    pub refresh: Option<CapabilityRefresh>,
}

/// Starts the hypervisor probe when this daemon watches its node's VMIs and has a libvirt
/// to ask (`libvirt.uri`, or the launchers in `kubevirt` mode), and capability discovery
/// on `libvirt.uri`, else (kubevirt mode) through a running launcher's libvirt.
pub(super) fn start_libvirt(ctx: &Context<'_>, changed: Arc<Notify>) -> LibvirtTasks {
    let (cfg, metrics, health) = (ctx.cfg, ctx.metrics, ctx.health);
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
        tasks.push(spawn(
            "libvirt-probe",
            probe.run(targets_rx, ctx.stop.clone()),
        ));
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
        state: ctx.state.clone(),
        interval: cfg.capabilities.refresh_interval,
        requested: request.clone(),
        changed,
        metrics: metrics.clone(),
        health: health.clone(),
        refreshed,
    };
    tasks.push(spawn(
        "capabilities",
        run_capabilities(task, ctx.stop.clone()),
    ));
    LibvirtTasks {
        probe_link,
        tasks,
        refresh: Some(CapabilityRefresh {
            request,
            refreshed: refreshed_rx,
        }),
    }
}
