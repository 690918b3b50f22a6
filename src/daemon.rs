//! Wiring of the long-running daemon: the state store, the writer task that sources feed,
//! the PostgreSQL sink, and an orderly shutdown on SIGTERM/SIGINT with a bounded grace
//! period.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use crate::columns::ColumnSet;
use crate::config::Config;
use crate::model::Timestamp;
use crate::sink::postgres::{PgSink, SinkSettings};
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

pub async fn run(cfg: Config, password: Option<String>) -> Result<()> {
    let mut signals = shutdown::ShutdownSignals::install()
        .map_err(|e| Error::Other(format!("installing signal handlers: {e}")))?;
    let store = open_store(&cfg).await?;
    // Sources will get clones of `events`; until they exist the pipeline idles. The
    // writer ends when every sender is gone.
    let (events, rx) = mpsc::channel::<StateEvent>(4096);
    let enqueued = Arc::new(Notify::new());
    let writer = tokio::spawn(writer::run(
        store.clone(),
        rx,
        WriterOptions::default(),
        enqueued.clone(),
        Timestamp::now,
    ));
    let (stop, stopped) = watch::channel(false);
    let mut sink = match cfg.postgres.url {
        Some(_) => {
            let settings = SinkSettings::from_config(&cfg, password.as_deref())?;
            let sink = PgSink::new(settings, store.clone(), Timestamp::now);
            Some(tokio::spawn(sink.run(enqueued.clone(), stopped)))
        }
        None => {
            tracing::info!("no postgres.url configured: changes are kept in the local state only");
            None
        }
    };
    tracing::info!(node = %cfg.node_name, "virtsync running");
    let sink_failed = tokio::select! {
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
    };
    // Stop the inputs first and let the writer store what it has, then let the sink
    // flush that, all within the grace period.
    drop(events);
    let finish = async {
        let _ = writer.await;
        let _ = stop.send(true);
        if let Some(handle) = sink {
            return handle.await.ok().and_then(|r| r.err());
        }
        None
    };
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
