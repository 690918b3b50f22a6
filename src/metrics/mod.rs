//! Prometheus metrics (DESIGN §7) in one registry, encoded in the classic text format
//! (0.0.4) that `promtool check metrics` accepts, and served by [`http`].

pub mod http;

use prometheus::{Encoder, GaugeVec, Opts, Registry, TextEncoder};

use crate::model::VmKey;

/// The exact name and labels of seed 004.
pub const HYPERVISOR_INFO: &str = "kubevirt_vmi_hypervisor_info";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("registering metric {name}: {source}")]
    Register {
        name: &'static str,
        source: prometheus::Error,
    },
    #[error("encoding metrics: {0}")]
    Encode(prometheus::Error),
    #[error("metrics.listen {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the metrics thread: {0}")]
    Thread(std::io::Error),
}

/// Every metric of the daemon. Cheap to clone (the metric handles are shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub hypervisor: HypervisorInfo,
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let info = GaugeVec::new(
            Opts::new(
                HYPERVISOR_INFO,
                "Hypervisor type of a running VMI's domain on this node (kvm, qemu-tcg, unknown)",
            ),
            &["namespace", "name", "node", "hypervisor_type"],
        )
        .map_err(|source| MetricsError::Register {
            name: HYPERVISOR_INFO,
            source,
        })?;
        registry
            .register(Box::new(info.clone()))
            .map_err(|source| MetricsError::Register {
                name: HYPERVISOR_INFO,
                source,
            })?;
        Ok(Metrics {
            registry,
            hypervisor: HypervisorInfo { gauge: info },
        })
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(MetricsError::Encode)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
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
            .with_label_values(&[key.namespace.as_str(), &key.name, node, hypervisor_type])
            .set(1.0);
    }

    /// Removes the VMI's series (it stopped, left the node, or its domain is gone).
    pub fn remove(&self, key: &VmKey, node: &str, hypervisor_type: &str) {
        // Absent already is fine: removal is idempotent for the caller.
        let _ = self.gauge.remove_label_values(&[
            key.namespace.as_str(),
            &key.name,
            node,
            hypervisor_type,
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
