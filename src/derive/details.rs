//! The VMI's network and volume details: the primary IP address and the stable JSON text
//! of `runtime_network_interfaces` and `runtime_volume_details`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use super::objects::{Interface, Volume, VolumeStatus};

/// An address worth showing as "the" address of a VM: not link-local (`fe80::/10`,
/// `169.254/16`), not loopback, not unspecified. An optional `/prefix` or IPv6 `%zone` is
/// ignored; anything that does not parse is skipped.
pub fn usable_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let text = text.split_once('/').map_or(text, |(a, _)| a);
    let text = text.split_once('%').map_or(text, |(a, _)| a);
    let ip: IpAddr = text.parse().ok()?;
    let usable = match ip {
        IpAddr::V4(v4) => !(v4.is_link_local() || v4.is_loopback() || v4.is_unspecified()),
        IpAddr::V6(v6) => {
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            !(link_local || v6.is_loopback() || v6.is_unspecified())
        }
    };
    usable.then_some(ip)
}

/// The first interface (in order) with a usable address; within it the first usable IPv4
/// address, else the first usable IPv6 one. Both `ipAddresses` and `ipAddress` count
/// (`ipAddresses` first). Printed in the standard text form.
pub fn primary_ip(interfaces: &[Interface]) -> Option<String> {
    interfaces.iter().find_map(|iface| {
        let candidates: Vec<IpAddr> = iface
            .ip_addresses
            .iter()
            .chain(iface.ip_address.iter())
            .filter_map(|a| usable_ip(a))
            .collect();
        candidates
            .iter()
            .find(|ip| ip.is_ipv4())
            .or_else(|| candidates.first())
            .map(IpAddr::to_string)
    })
}

/// One element of `runtime_network_interfaces`. Field order here is the key order of the
/// JSON text; absent values are written as `null`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InterfaceDetail<'a> {
    name: Option<&'a str>,
    interface_name: Option<&'a str>,
    mac: Option<&'a str>,
    ip_addresses: Vec<&'a str>,
    info_source: Option<&'a str>,
}

/// One element of `runtime_volume_details` (same conventions).
#[derive(Serialize)]
struct VolumeDetail<'a> {
    name: Option<&'a str>,
    target: Option<&'a str>,
    phase: Option<&'a str>,
    size: Option<i64>,
    claim: Option<&'a str>,
}

fn text(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// JSON array text of the interfaces in their reported order; `None` when there are none.
/// `ipAddresses` is the reported list, or `[ipAddress]` when only that is reported.
pub fn interfaces_json(interfaces: &[Interface]) -> Option<String> {
    if interfaces.is_empty() {
        return None;
    }
    let details: Vec<InterfaceDetail<'_>> = interfaces
        .iter()
        .map(|i| InterfaceDetail {
            name: text(&i.name),
            interface_name: text(&i.interface_name),
            mac: text(&i.mac),
            ip_addresses: if i.ip_addresses.is_empty() {
                text(&i.ip_address).into_iter().collect()
            } else {
                i.ip_addresses.iter().map(String::as_str).collect()
            },
            info_source: text(&i.info_source),
        })
        .collect();
    serde_json::to_string(&details).ok()
}

/// JSON array text of the volume statuses in their reported order; `None` when there are
/// none. `claim` is `persistentVolumeClaimInfo.claimName`, else the claim or DataVolume
/// the spec volume of the same name refers to (a DataVolume's PVC has its name).
pub fn volumes_json(statuses: &[VolumeStatus], spec_volumes: &[Volume]) -> Option<String> {
    if statuses.is_empty() {
        return None;
    }
    let by_name: BTreeMap<&str, &Volume> = spec_volumes
        .iter()
        .filter_map(|v| Some((v.name.as_deref()?, v)))
        .collect();
    let details: Vec<VolumeDetail<'_>> = statuses
        .iter()
        .map(|s| {
            let from_status = s
                .persistent_volume_claim_info
                .as_ref()
                .and_then(|c| text(&c.claim_name));
            let from_spec = || {
                let v = by_name.get(s.name.as_deref()?)?;
                v.persistent_volume_claim
                    .as_ref()
                    .and_then(|c| text(&c.claim_name))
                    .or_else(|| v.data_volume.as_ref().and_then(|d| text(&d.name)))
            };
            VolumeDetail {
                name: text(&s.name),
                target: text(&s.target),
                phase: text(&s.phase),
                size: s.size,
                claim: from_status.or_else(from_spec),
            }
        })
        .collect();
    serde_json::to_string(&details).ok()
}
