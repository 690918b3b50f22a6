//! `virtsync ingest`: records in (JSON lines), through the same store and sink code as the
//! daemon, flushed to PostgreSQL. Used by support engineers to replay records and by the
//! crash-safety tests (a child process using the store).

use std::io::BufRead;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::config::Config;
use crate::daemon;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::model::{Observation, Timestamp};
use crate::sink::postgres::{FlushReport, PgSink, SinkError, SinkSettings};
use crate::state::{IngestReport, OwnerSettings, StateHandle};
use crate::{Error, Result};

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// File of JSON lines (`-` for stdin).
    pub file: String,
    /// Records per write transaction.
    #[arg(long, default_value_t = 500)]
    pub chunk: usize,
    /// Store only; do not flush to PostgreSQL.
    #[arg(long)]
    pub no_flush: bool,
    /// Give up flushing after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub flush_timeout: u64,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    lines: usize,
    rejected: usize,
    noop: usize,
    changed: usize,
    enqueued: usize,
    flushed_batches: usize,
    applied: usize,
    fenced: usize,
    missing: usize,
    parked: usize,
    pending: usize,
}

pub async fn run(cfg: &Config, password: Option<String>, args: &IngestArgs) -> Result<()> {
    let text = if args.file == "-" {
        let mut s = String::new();
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(Error::io("reading stdin"))?;
            s.push_str(&line);
            s.push('\n');
        }
        s
    } else {
        std::fs::read_to_string(&args.file).map_err(|source| Error::ReadFile {
            path: args.file.clone(),
            source,
        })?
    };
    let metrics = Metrics::new()?;
    let store = daemon::open_store(cfg).await?;
    // No source: the events channel is closed from the start.
    let events = tokio::sync::mpsc::channel(1).1;
    let settings = OwnerSettings::new(metrics.clone(), Health::default());
    let state = crate::state::spawn(store, events, settings)?;
    // Closed on every path, also after an error: closing syncs what was stored.
    let result = ingest_and_flush(cfg, password, args, &text, &state, metrics).await;
    let closed = state.close().await;
    let summary = result?;
    closed?;
    println!(
        "{}",
        serde_json::to_string(&summary).map_err(|e| Error::Other(e.to_string()))?
    );
    Ok(())
}

async fn ingest_and_flush(
    cfg: &Config,
    password: Option<String>,
    args: &IngestArgs,
    text: &str,
    state: &StateHandle,
    metrics: Metrics,
) -> Result<Summary> {
    let flush = !args.no_flush && cfg.postgres.url.is_some();
    let mut sink = match flush {
        true => {
            let settings = SinkSettings::from_config(cfg, password.as_deref())?;
            let mut sink = PgSink::new(settings, state.clone(), metrics, Timestamp::now);
            // As in the daemon: learn which VMs have rows first; if PostgreSQL is down,
            // changes are stored and the flush below retries.
            if let Err(e) = connect(&mut sink).await {
                if e.is_setup_problem() {
                    return Err(e.into());
                }
                tracing::warn!(error = %e, "PostgreSQL not reachable yet");
            }
            Some(sink)
        }
        false => None,
    };
    let mut summary = Summary::default();
    let mut chunk = Vec::with_capacity(args.chunk);
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        summary.lines += 1;
        match serde_json::from_str::<Observation>(line) {
            Ok(obs) => chunk.push(obs),
            Err(e) => {
                summary.rejected += 1;
                tracing::warn!(line = i + 1, error = %e, "record rejected");
            }
        }
        if chunk.len() >= args.chunk.max(1) {
            add(
                &mut summary,
                ingest(state, std::mem::take(&mut chunk)).await?,
            );
        }
    }
    add(&mut summary, ingest(state, chunk).await?);
    if let Some(sink) = sink.as_mut() {
        let report = flush_all(sink, state, args.flush_timeout).await?;
        summary.flushed_batches = report.batches;
        summary.applied = report.applied;
        summary.fenced = report.fenced;
        summary.missing = report.missing;
        summary.parked = report.parked;
    }
    summary.pending = state.snapshot().stats.pending;
    Ok(summary)
}

async fn ingest(state: &StateHandle, chunk: Vec<Observation>) -> Result<IngestReport> {
    if chunk.is_empty() {
        return Ok(IngestReport::default());
    }
    Ok(state.ingest(chunk).await?)
}

fn add(s: &mut Summary, r: IngestReport) {
    s.noop += r.noop;
    s.rejected += r.rejected;
    s.changed += r.changed;
    s.enqueued += r.enqueued;
}

/// Connects (retrying while PostgreSQL is down) and flushes until nothing is pending.
async fn connect(sink: &mut PgSink) -> std::result::Result<(), SinkError> {
    sink.connect().await?;
    sink.refresh_managed().await?;
    Ok(())
}

async fn flush_all(
    sink: &mut PgSink,
    state: &StateHandle,
    timeout_secs: u64,
) -> Result<FlushReport> {
    let now = Instant::now();
    let deadline = now
        .checked_add(Duration::from_secs(timeout_secs))
        .unwrap_or(now + Duration::from_secs(86_400));
    let mut total = FlushReport::default();
    loop {
        let attempt = async {
            if !sink.is_connected() {
                connect(sink).await?;
            }
            sink.flush_pending().await
        }
        .await;
        match attempt {
            Ok(r) => {
                total.merge(r);
                if state.snapshot().stats.pending == 0 {
                    return Ok(total);
                }
            }
            Err(e) if e.is_setup_problem() => return Err(e.into()),
            Err(e) => tracing::warn!(error = %e, "flush failed; retrying"),
        }
        if Instant::now() >= deadline {
            return Err(Error::Other(format!(
                "outbox not drained after {timeout_secs}s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
