//! Prometheus metrics (docs/ARCHITECTURE.md, "Metrics") in one registry, encoded in the
//! classic text format (0.0.4) that `promtool check metrics` accepts, and served by
//! [`http`].

pub mod http;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::model::VmKey;

/// The name KubeVirt's virt-handler would export the metric under (labels `namespace`,
/// `name`, `node`, `hypervisor_type`, as there).
pub const HYPERVISOR_INFO: &str = "kubevirt_vmi_hypervisor_info";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("registering metric {name}: {source}")]
    Register {
        name: &'static str,
        source: prometheus::Error,
    },
    #[error("encoding metrics: {0}")]
    Encode(#[source] prometheus::Error),
    #[error("metrics.listen {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the metrics thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Every metric of the daemon. Cheap to clone (the handles are shared).
/// Label values are bounded: sources, kinds, column names, reasons; the only per-VM
/// labels are those of `kubevirt_vmi_hypervisor_info`.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    described: std::sync::Arc<[MetricDescription]>,
    pub hypervisor: HypervisorInfo,
    /// `{source,kind}`: events received (kubernetes vm/vmi, libvirt domain looks).
    pub events: IntCounterVec,
    /// `{source}`: events that changed nothing (no write anywhere).
    pub noop_events: IntCounterVec,
    /// `{field}`: column values written to PostgreSQL.
    pub field_updates: IntCounterVec,
    pub outbox_pending: IntGauge,
    pub outbox_parked: IntGauge,
    pub outbox_oldest_age: Gauge,
    pub flush_duration: Histogram,
    pub flush_rows: IntCounter,
    /// `{reason}`: connection, refused (a row parked), conflict, other.
    pub flush_errors: IntCounterVec,
    pub event_to_commit: Histogram,
    pub drift_corrections: IntCounter,
    pub vms_with_runtime_details: IntGauge,
    /// `{field}`: share of the stored VM records with a value for the column.
    pub field_populated: GaugeVec,
    /// `{result}`: changed, unchanged, unavailable, failed.
    pub capabilities_refresh: IntCounterVec,
    /// `{source}`: kubernetes, libvirt, postgres; read from the connection conditions at
    /// each scrape ([`Metrics::encode_with`]).
    pub source_up: IntGaugeVec,
    pub cluster_role_holder: IntGauge,
    /// Batches the state file refused to store (retried until stored).
    pub state_write_errors: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// One metric the daemon may export, from its collector's descriptor: present in a
/// scrape only once it has a sample (a labelled vector without children is left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricDescription {
    pub name: String,
    pub help: String,
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`, as in `# TYPE`.
    pub kind: &'static str,
    /// The variable label names (none for a plain metric).
    pub labels: Vec<String>,
}

/// Registers metrics in one registry, naming the metric in any error, and describes
/// each.
struct Builder {
    registry: Registry,
    described: std::cell::RefCell<Vec<MetricDescription>>,
}

impl Builder {
    fn add<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        name: &'static str,
        made: Result<M, prometheus::Error>,
    ) -> Result<M, MetricsError> {
        let m = made
            .and_then(|m| {
                self.registry.register(Box::new(m.clone()))?;
                Ok(m)
            })
            .map_err(|source| MetricsError::Register { name, source })?;
        let kinds = m.collect();
        for (desc, family) in m.desc().into_iter().zip(&kinds) {
            use prometheus::proto::MetricType;
            self.described.borrow_mut().push(MetricDescription {
                name: desc.fq_name.clone(),
                help: desc.help.clone(),
                kind: match family.get_field_type() {
                    MetricType::COUNTER => "counter",
                    MetricType::GAUGE => "gauge",
                    MetricType::HISTOGRAM => "histogram",
                    MetricType::SUMMARY => "summary",
                    MetricType::UNTYPED => "untyped",
                },
                labels: desc.variable_labels.clone(),
            });
        }
        Ok(m)
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

fn hist(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(buckets.to_vec())
}

/// Seconds: from a few ms (one flush interval) to minutes (an outage).
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
const FLUSH_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let b = Builder {
            registry: Registry::new(),
            described: std::cell::RefCell::new(Vec::new()),
        };
        let info = b.add(
                HYPERVISOR_INFO,
                GaugeVec::new(
                    opts(
                        HYPERVISOR_INFO,
                        "Hypervisor type of a running VMI's domain on this node (kvm, qemu-tcg, unknown)",
                    ),
                    &["namespace", "name", "node", "hypervisor_type"],
                ),
            )?;
        let build = b.add(
            "virtsync_build_info",
            IntGaugeVec::new(
                opts(
                    "virtsync_build_info",
                    "The running virtsync version (always 1)",
                ),
                &["version"],
            ),
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Ok(Metrics {
            hypervisor: HypervisorInfo { gauge: info },
            events: b.add(
                "virtsync_events_total",
                IntCounterVec::new(
                    opts("virtsync_events_total", "Events received from the sources"),
                    &["source", "kind"],
                ),
            )?,
            noop_events: b.add(
                "virtsync_noop_events_total",
                IntCounterVec::new(
                    opts(
                        "virtsync_noop_events_total",
                        "Events that changed no stored record (nothing written anywhere)",
                    ),
                    &["source"],
                ),
            )?,
            field_updates: b.add(
                "virtsync_vm_field_updates_total",
                IntCounterVec::new(
                    opts(
                        "virtsync_vm_field_updates_total",
                        "Column values of vms rows written to PostgreSQL",
                    ),
                    &["field"],
                ),
            )?,
            outbox_pending: b.add(
                "virtsync_outbox_pending",
                IntGauge::with_opts(opts(
                    "virtsync_outbox_pending",
                    "VM changes waiting to be written to PostgreSQL",
                )),
            )?,
            outbox_parked: b.add(
                "virtsync_outbox_parked",
                IntGauge::with_opts(opts(
                    "virtsync_outbox_parked",
                    "VM changes PostgreSQL refused, waiting for a new change or an operator",
                )),
            )?,
            outbox_oldest_age: b.add(
                "virtsync_outbox_oldest_age_seconds",
                Gauge::with_opts(opts(
                    "virtsync_outbox_oldest_age_seconds",
                    "Age of the oldest pending change (0 when none waits)",
                )),
            )?,
            flush_duration: b.add(
                "virtsync_flush_duration_seconds",
                Histogram::with_opts(hist(
                    "virtsync_flush_duration_seconds",
                    "Time to write one batch to PostgreSQL (one transaction)",
                    FLUSH_BUCKETS,
                )),
            )?,
            flush_rows: b.add(
                "virtsync_flush_rows_total",
                IntCounter::with_opts(opts(
                    "virtsync_flush_rows_total",
                    "vms rows updated by flushes",
                )),
            )?,
            flush_errors: b.add(
                "virtsync_flush_errors_total",
                IntCounterVec::new(
                    opts(
                        "virtsync_flush_errors_total",
                        "Failed flushes (connection, conflict, other) and refused rows (refused)",
                    ),
                    &["reason"],
                ),
            )?,
            event_to_commit: b.add(
                "virtsync_event_to_commit_seconds",
                Histogram::with_opts(hist(
                    "virtsync_event_to_commit_seconds",
                    "From a change's event being received to its PostgreSQL commit",
                    LATENCY_BUCKETS,
                )),
            )?,
            drift_corrections: b.add(
                "virtsync_drift_corrections_total",
                IntCounter::with_opts(opts(
                    "virtsync_drift_corrections_total",
                    "Rows found different from the sources by anti-entropy and queued again",
                )),
            )?,
            vms_with_runtime_details: b.add(
                "virtsync_vms_with_runtime_details",
                IntGauge::with_opts(opts(
                    "virtsync_vms_with_runtime_details",
                    "Stored VM records with runtime details (a VMI runs)",
                )),
            )?,
            field_populated: b.add(
                "virtsync_vm_field_populated_ratio",
                GaugeVec::new(
                    opts(
                        "virtsync_vm_field_populated_ratio",
                        "Share of stored VM records with a value for the column (0..1)",
                    ),
                    &["field"],
                ),
            )?,
            capabilities_refresh: b.add(
                "virtsync_host_capabilities_refresh_total",
                IntCounterVec::new(
                    opts(
                        "virtsync_host_capabilities_refresh_total",
                        "Host capability discoveries by result",
                    ),
                    &["result"],
                ),
            )?,
            source_up: b.add(
                "virtsync_source_up",
                IntGaugeVec::new(
                    opts(
                        "virtsync_source_up",
                        "1 while the source answers (kubernetes, libvirt, postgres)",
                    ),
                    &["source"],
                ),
            )?,
            cluster_role_holder: b.add(
                "virtsync_cluster_role_holder",
                IntGauge::with_opts(opts(
                    "virtsync_cluster_role_holder",
                    "1 while this daemon holds the cluster role",
                )),
            )?,
            state_write_errors: b.add(
                "virtsync_state_write_errors_total",
                IntCounter::with_opts(opts(
                    "virtsync_state_write_errors_total",
                    "Attempts to store events in the state file that failed (e.g. a full disk); retried",
                )),
            )?,
            described: b.described.take().into(),
            registry: b.registry.clone(),
        })
    }

    /// Every metric registered, whether or not it has a sample yet, in registration
    /// order (from the collectors' descriptors; the dashboards and alert rules of
    /// `packaging/` are checked against this list).
    pub fn descriptions(&self) -> &[MetricDescription] {
        &self.described
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(MetricsError::Encode)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// [`Metrics::encode`], after reading the connection conditions of `health` into
    /// `virtsync_source_up` (a source not reported yet has no series).
    pub fn encode_with(&self, health: &crate::health::Health) -> Result<String, MetricsError> {
        for (source, up) in health.sources_up() {
            self.source_up
                .with_label_values(&[source])
                .set(i64::from(up));
        }
        self.encode()
    }

    /// Sets the outbox gauges from the store's numbers.
    pub fn set_outbox(&self, stats: &crate::state::OutboxStats, now: crate::model::Timestamp) {
        self.outbox_pending.set(to_i64(stats.pending));
        self.outbox_parked.set(to_i64(stats.parked));
        let age = stats.oldest_enqueued.map_or(0.0, |t| {
            (now.unix_millis - t.unix_millis).max(0) as f64 / 1000.0
        });
        self.outbox_oldest_age.set(age);
    }

    /// Sets the gauges that describe the stored records: how many have runtime details,
    /// and per writable column the share with a value.
    pub fn set_record_gauges<'a>(
        &self,
        records: impl Iterator<Item = &'a crate::model::VmRecord>,
        columns: crate::columns::ColumnSet,
    ) {
        use crate::columns::{Value, value};
        let mut total = 0usize;
        let mut with_runtime = 0usize;
        let mut populated = vec![0usize; crate::columns::Column::ALL.len()];
        for record in records {
            total += 1;
            with_runtime += usize::from(record.runtime_details.is_some());
            for (i, column) in crate::columns::Column::ALL.iter().enumerate() {
                if columns.contains(*column) && value(record, *column) != Value::Null {
                    populated[i] += 1;
                }
            }
        }
        self.vms_with_runtime_details.set(to_i64(with_runtime));
        for (i, column) in crate::columns::Column::ALL.iter().enumerate() {
            if columns.contains(*column) {
                let ratio = if total == 0 {
                    0.0
                } else {
                    populated[i] as f64 / total as f64
                };
                self.field_populated
                    .with_label_values(&[column.name()])
                    .set(ratio);
            }
        }
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `kubevirt_vmi_hypervisor_info{namespace,name,node,hypervisor_type} 1`: one series per
/// VMI running on this node whose domain was found.
#[derive(Clone)]
pub struct HypervisorInfo {
    gauge: GaugeVec,
}

impl HypervisorInfo {
    /// Sets the VMI's series to `hypervisor_type`, replacing one with another type.
    pub fn set(&self, key: &VmKey, node: &str, previous: Option<&str>, hypervisor_type: &str) {
        if let Some(old) = previous.filter(|old| *old != hypervisor_type) {
            self.remove(key, node, old);
        }
        self.gauge
            .with_label_values(&[&key.namespace, &key.name, node, hypervisor_type])
            .set(1.0);
    }

    /// Removes the VMI's series (it stopped, left the node, or its domain is gone).
    pub fn remove(&self, key: &VmKey, node: &str, hypervisor_type: &str) {
        // Absent already is fine: removal is idempotent for the caller.
        let _ = self
            .gauge
            .remove_label_values(&[&key.namespace, &key.name, node, hypervisor_type]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_list_metrics_without_samples_too() {
        let m = Metrics::new().unwrap();
        let d = m.descriptions();
        let find = |name: &str| d.iter().find(|d| d.name == name).unwrap();
        let info = find(HYPERVISOR_INFO);
        assert_eq!(info.kind, "gauge");
        assert_eq!(
            info.labels,
            ["namespace", "name", "node", "hypervisor_type"]
        );
        assert_eq!(find("virtsync_source_up").labels, ["source"]);
        assert_eq!(find("virtsync_event_to_commit_seconds").kind, "histogram");
        assert_eq!(find("virtsync_state_write_errors_total").kind, "counter");
        assert!(find("virtsync_outbox_pending").labels.is_empty());
        // Every family of a scrape is described, with the same type.
        let text = m.encode().unwrap();
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = line.split_once(' ').unwrap();
            assert_eq!(find(name).kind, kind, "{line}");
        }
        assert!(!text.contains(HYPERVISOR_INFO), "no child yet: {text}");
    }

    #[test]
    fn hypervisor_series_are_set_replaced_and_removed() {
        let m = Metrics::new().unwrap();
        let a = VmKey::new("ns", "a");
        let b = VmKey::new("ns", "b");
        m.hypervisor.set(&a, "node-1", None, "unknown");
        m.hypervisor.set(&a, "node-1", Some("unknown"), "kvm");
        m.hypervisor.set(&b, "node-1", None, "qemu-tcg");
        let text = m.encode().unwrap();
        assert!(
            text.contains("# TYPE kubevirt_vmi_hypervisor_info gauge"),
            "{text}"
        );
        assert!(text.contains(r#"kubevirt_vmi_hypervisor_info{hypervisor_type="kvm",name="a",namespace="ns",node="node-1"} 1"#), "{text}");
        assert!(text.contains(r#"kubevirt_vmi_hypervisor_info{hypervisor_type="qemu-tcg",name="b",namespace="ns",node="node-1"} 1"#), "{text}");
        assert!(!text.contains(r#"hypervisor_type="unknown""#), "{text}");
        m.hypervisor.remove(&a, "node-1", "kvm");
        m.hypervisor.remove(&a, "node-1", "kvm");
        let text = m.encode().unwrap();
        assert!(!text.contains(r#"name="a""#), "{text}");
        assert!(text.contains(r#"name="b""#), "{text}");
    }
}
