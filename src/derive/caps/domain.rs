//! The hypervisor type of a running domain (docs/ARCHITECTURE.md, "Sources"): the root
//! attribute `<domain type=...>`.

use serde::{Deserialize, Serialize};

use super::xml;

/// The `hypervisor_type` label of `kubevirt_vmi_hypervisor_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HypervisorType {
    #[serde(rename = "kvm")]
    Kvm,
    #[serde(rename = "qemu-tcg")]
    QemuTcg,
    #[serde(rename = "unknown")]
    Unknown,
}

impl HypervisorType {
    pub fn as_str(self) -> &'static str {
        match self {
            HypervisorType::Kvm => "kvm",
            HypervisorType::QemuTcg => "qemu-tcg",
            HypervisorType::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for HypervisorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `kvm` → `kvm`, `qemu` → `qemu-tcg`; any other type, no type, another root element or
/// a document the bounded reader refuses → `unknown`.
pub fn hypervisor_type(domain_xml: &str) -> HypervisorType {
    match xml::parse(domain_xml) {
        Ok(root) if root.name == "domain" => match root.attr("type") {
            Some("kvm") => HypervisorType::Kvm,
            Some("qemu") => HypervisorType::QemuTcg,
            _ => HypervisorType::Unknown,
        },
        _ => HypervisorType::Unknown,
    }
}
