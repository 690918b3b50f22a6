//! What the sink tells Prometheus: flush time, rows and columns written,
//! event → commit latency, errors by reason, the outbox gauges.

use std::time::Duration;

use super::error::{ErrorClass, SinkError};
use crate::metrics::Metrics;
use crate::model::{Timestamp, VmKey};
use crate::state::{Outcome, PendingDelta};

/// One batch written: `outcomes` as PostgreSQL answered, committed at `now`.
pub fn flushed(
    m: &Metrics,
    batch: &[PendingDelta],
    outcomes: &[(VmKey, u64, Outcome)],
    took: Duration,
    now: Timestamp,
) {
    m.flush_duration.observe(took.as_secs_f64());
    for (key, seq, outcome) in outcomes {
        match outcome {
            Outcome::Applied => {
                m.flush_rows.inc();
                let Some(d) = batch.iter().find(|d| &d.key == key && d.seq == *seq) else {
                    continue;
                };
                for column in d.columns.iter() {
                    m.field_updates.with_label_values(&[column.name()]).inc();
                }
                let waited = (now.unix_millis - d.enqueued_at.unix_millis).max(0);
                m.event_to_commit.observe(waited as f64 / 1000.0);
            }
            Outcome::Parked(_) => m.flush_errors.with_label_values(&["refused"]).inc(),
            Outcome::FencedOut | Outcome::RowMissing => {}
        }
    }
}

/// A failed flush or connection attempt.
pub fn failed(m: &Metrics, e: &SinkError) {
    let reason = match e.class() {
        ErrorClass::Connection => "connection",
        ErrorClass::Transient => "conflict",
        ErrorClass::Data | ErrorClass::Fatal => "other",
    };
    m.flush_errors.with_label_values(&[reason]).inc();
}
