//! Storage pools, networks and node devices, from the XML libvirt returns for each
//! (`virStoragePoolGetXMLDesc`, `virNetworkGetXMLDesc`, `virNodeDeviceGetXMLDesc`).
//! Whether a pool or network is active is not in its XML: the source passes it along.

use serde::{Deserialize, Serialize};

use super::ParseError;
use super::values::{expect_root, to_bytes};
use super::xml::{self, Element};

/// A storage pool XML document with its `virStoragePoolIsActive` answer (likewise for
/// networks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub xml: String,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoragePool {
    pub name: String,
    /// `dir`, `logical`, `rbd`, …
    pub pool_type: String,
    pub capacity_bytes: Option<u64>,
    pub allocation_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub bridge: Option<String>,
    /// `nat`, `route`, `bridge`, `hostdev`, …; `null` for an isolated network (no
    /// `<forward>`).
    pub forward_mode: Option<String>,
    pub active: bool,
}

/// An SR-IOV physical function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalFunction {
    /// Node device name, e.g. `pci_0000_02_00_0`.
    pub name: String,
    /// PCI address `dddd:bb:ss.f`.
    pub address: Option<String>,
    /// `maxCount` of `virt_functions`.
    pub max_vfs: Option<u32>,
    /// VF addresses listed (the VFs currently enabled).
    pub vf_count: usize,
}

/// What a node device is, as far as SR-IOV goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SriovRole {
    PhysicalFunction(PhysicalFunction),
    VirtualFunction {
        name: String,
    },
    /// Not a PCI device, or a PCI device with neither capability.
    Neither,
}

fn sized(el: &Element, name: &str) -> Result<Option<u64>, ParseError> {
    match el.child(name) {
        Some(c) => Ok(Some(to_bytes(&c.text, c.attr("unit"), 1, name)?)),
        None => Ok(None),
    }
}

/// Parses a `<pool>` document.
pub fn parse_storage_pool(xml_text: &str, active: bool) -> Result<StoragePool, ParseError> {
    let root = xml::parse(xml_text)?;
    expect_root(&root, "pool")?;
    Ok(StoragePool {
        name: root
            .child_text("name")
            .ok_or(ParseError::Missing("pool name"))?
            .to_string(),
        pool_type: root.attr("type").unwrap_or_default().to_string(),
        capacity_bytes: sized(&root, "capacity")?,
        allocation_bytes: sized(&root, "allocation")?,
        available_bytes: sized(&root, "available")?,
        active,
    })
}

/// Parses a `<network>` document.
pub fn parse_network(xml_text: &str, active: bool) -> Result<Network, ParseError> {
    let root = xml::parse(xml_text)?;
    expect_root(&root, "network")?;
    Ok(Network {
        name: root
            .child_text("name")
            .ok_or(ParseError::Missing("network name"))?
            .to_string(),
        bridge: root
            .child("bridge")
            .and_then(|b| b.attr("name"))
            .map(str::to_string),
        forward_mode: root
            .child("forward")
            .map(|f| f.attr("mode").unwrap_or("nat").to_string()),
        active,
    })
}

fn pci_address(el: &Element) -> Option<String> {
    let hex = |name: &str| {
        let v = el.attr(name)?.trim();
        u32::from_str_radix(v.trim_start_matches("0x"), 16).ok()
    };
    Some(format!(
        "{:04x}:{:02x}:{:02x}.{:x}",
        hex("domain")?,
        hex("bus")?,
        hex("slot")?,
        hex("function")?
    ))
}

/// Parses a `<device>` document for its SR-IOV role.
pub fn parse_node_device(xml_text: &str) -> Result<SriovRole, ParseError> {
    let root = xml::parse(xml_text)?;
    expect_root(&root, "device")?;
    let name = root
        .child_text("name")
        .ok_or(ParseError::Missing("device name"))?
        .to_string();
    let Some(pci) = root
        .children_named("capability")
        .find(|c| c.attr("type") == Some("pci"))
    else {
        return Ok(SriovRole::Neither);
    };
    let sub = |kind: &str| {
        pci.children_named("capability")
            .find(|c| c.attr("type") == Some(kind))
    };
    if let Some(vfs) = sub("virt_functions") {
        let address = {
            // <domain>0</domain><bus>2</bus>… in decimal.
            let n = |k: &str| pci.child_text(k).and_then(|v| v.parse::<u32>().ok());
            match (n("domain"), n("bus"), n("slot"), n("function")) {
                (Some(d), Some(b), Some(s), Some(f)) => {
                    Some(format!("{d:04x}:{b:02x}:{s:02x}.{f:x}"))
                }
                _ => None,
            }
        };
        let max_vfs = vfs.attr("maxCount").and_then(|v| v.trim().parse().ok());
        let vf_count = vfs
            .children_named("address")
            .filter_map(pci_address)
            .count();
        if max_vfs.is_some_and(|m: u32| m > 0) || vf_count > 0 {
            return Ok(SriovRole::PhysicalFunction(PhysicalFunction {
                name,
                address,
                max_vfs,
                vf_count,
            }));
        }
    }
    if sub("phys_function").is_some_and(|p| p.child("address").is_some()) {
        return Ok(SriovRole::VirtualFunction { name });
    }
    Ok(SriovRole::Neither)
}
