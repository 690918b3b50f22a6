//! Building blocks for sink tests: a migrated SSVirt-shaped database, a store on a temp
//! file, a sink on both, and records to feed them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::Client;
use virtsync::columns::ColumnSet;
use virtsync::config::{Config, Env, Owns, SchemaMode};
use virtsync::health::Health;
use virtsync::metrics::Metrics;
use virtsync::model::{
    LegacyOrigin, Observation, RuntimeDetails, SourceVersions, Timestamp, VmKey, VmRecord, VmStatus,
};
use virtsync::sink::postgres::{PgSink, SinkSettings, schema};
use virtsync::state::{OwnerSettings, StateEvent, StateHandle, Store, StoreOptions};

use super::pg::{self, PgCluster};
use super::ssvirt;

pub const ALL_OWNED: Owns = Owns {
    status: true,
    legacy: true,
    runtime: true,
};

/// A fresh database with the `vms` table, the column log and `virtsync migrate` applied.
pub struct Db {
    pub url: String,
    pub client: Client,
    pub mode: SchemaMode,
}

impl Db {
    pub async fn new(cluster: &PgCluster, prefix: &str, mode: SchemaMode) -> Db {
        let url = cluster.create_database(prefix);
        let mut client = pg::connect(&url).await;
        client.batch_execute(ssvirt::CREATE_VMS).await.unwrap();
        client
            .batch_execute(ssvirt::CREATE_COLUMN_LOG)
            .await
            .unwrap();
        schema::migrate(&mut client, "vms", mode, Duration::from_secs(5))
            .await
            .unwrap();
        Db { url, client, mode }
    }

    pub async fn add_rows(&self, names: impl IntoIterator<Item = String>) {
        for n in names {
            ssvirt::insert_vm(&self.client, "ns", &n).await;
        }
    }

    /// Selected columns of every live row, by vm_name, as text.
    pub async fn rows(&self, columns: &[&str]) -> BTreeMap<String, Vec<Option<String>>> {
        let select: Vec<String> = columns.iter().map(|c| format!("{c}::text")).collect();
        let sql = format!(
            "SELECT vm_name, {} FROM vms WHERE deleted_at IS NULL ORDER BY vm_name",
            select.join(", ")
        );
        self.client
            .query(sql.as_str(), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let vals = (1..=columns.len()).map(|i| r.get(i)).collect();
                (r.get::<_, String>(0), vals)
            })
            .collect()
    }

    /// The sink's settings through the daemon's own path (`SinkSettings::from_config`).
    pub fn settings(&self) -> SinkSettings {
        self.settings_with(|_| {})
    }

    pub fn settings_with(&self, adjust: impl FnOnce(&mut Config)) -> SinkSettings {
        let mut cfg = Config::defaults(&Env {
            hostname: "test-node".into(),
            vars: Vec::new(),
        });
        cfg.owns = ALL_OWNED;
        cfg.postgres.url = Some(self.url.clone());
        cfg.postgres.schema = self.mode;
        cfg.postgres.flush_interval = Duration::from_millis(10);
        cfg.postgres.managed_refresh_interval = Duration::from_millis(300);
        cfg.postgres.resync_interval = Duration::ZERO;
        adjust(&mut cfg);
        SinkSettings::from_config(&cfg, None).unwrap()
    }
}

pub fn open_store(dir: &tempfile::TempDir, mode: SchemaMode) -> StateHandle {
    open_store_syncing(dir, mode, std::time::Duration::from_secs(1))
}

/// `open_store` with another `cache.sync_interval` (zero: every commit reaches the disk).
pub fn open_store_syncing(
    dir: &tempfile::TempDir,
    mode: SchemaMode,
    sync_interval: std::time::Duration,
) -> StateHandle {
    // No source: the events channel is closed from the start.
    own(store_at(dir, mode, sync_interval), mpsc::channel(1).1)
}

/// The store a daemon with these settings would open.
pub fn store_at(
    dir: &tempfile::TempDir,
    mode: SchemaMode,
    sync_interval: std::time::Duration,
) -> Store {
    let options = StoreOptions {
        path: dir.path().join("state.redb"),
        cache_size: 4 << 20,
        sync_interval,
        writable: ColumnSet::writable(&ALL_OWNED, mode),
    };
    Store::open(options, Timestamp::now()).unwrap().0
}

/// The state owner on `store`, storing what arrives on `events`, with its own metrics.
pub fn own(store: Store, events: mpsc::Receiver<StateEvent>) -> StateHandle {
    let settings = OwnerSettings::new(Metrics::new().unwrap(), Health::default());
    virtsync::state::spawn(store, events, settings).unwrap()
}

/// A sink with its own (empty) metrics registry.
pub fn sink(settings: SinkSettings, state: &StateHandle) -> PgSink {
    PgSink::new(
        settings,
        state.clone(),
        Metrics::new().unwrap(),
        Timestamp::now,
    )
}

pub async fn connected_sink(db: &Db, store: &StateHandle) -> PgSink {
    connected_sink_with(db.settings(), store).await
}

/// A sink with these settings, connected, its managed set read.
pub async fn connected_sink_with(settings: SinkSettings, store: &StateHandle) -> PgSink {
    let mut sink = sink(settings, store);
    sink.connect().await.unwrap();
    sink.refresh_managed().await.unwrap();
    sink
}

/// A running VM's record with the given values; resourceVersions from `rv`.
pub fn running(name: &str, cpu: i64, mem: i64, ip: &str, rv: i64) -> Observation {
    let mut r = VmRecord::new(&VmKey::new("ns", name));
    r.status = Some(VmStatus::PoweredOn);
    r.cpu_count = Some(cpu);
    r.memory_mb = Some(mem);
    r.guest_os = Some("Fedora Linux 40".into());
    r.runtime_details = Some(Arc::new(RuntimeDetails {
        cpu_cores: Some(cpu),
        cpu_sockets: Some(1),
        cpu_threads: Some(1),
        primary_ip: Some(ip.into()),
        phase: Some("Running".into()),
        node_name: Some("node-a".into()),
        agent_connected: Some(true),
        ..RuntimeDetails::default()
    }));
    Observation {
        record: r,
        versions: SourceVersions {
            vm_resource_version: Some(rv),
            vmi_uid: Some(format!("uid-{name}")),
            vmi_resource_version: Some(rv),
            legacy_origin: LegacyOrigin::Vmi,
            runtime_unknown: false,
        },
    }
}

pub async fn ingest(store: &StateHandle, batch: &[Observation]) -> virtsync::state::IngestReport {
    store.ingest(batch.to_vec()).await.unwrap()
}
