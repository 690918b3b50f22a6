//! Raw host-capability discovery: every call on one warm connection, each
//! answer kept as the driver gave it (`Err` = the driver's reason, e.g. "not
//! supported"). Parsing is `derive::caps`'s job.

use virt::connect::Connect;

use super::connection::{LibvirtConnection, LibvirtError};
use crate::derive::caps::{DiscoveryInput, Fetched, NodeInfo};

/// The driver's answer or its reason for not giving one.
pub type Answer<T> = Result<T, String>;

/// A named object and its XML description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedXml {
    pub name: String,
    pub xml: Answer<String>,
    /// Pools and networks: running (not in their XML); node devices: always true.
    pub active: bool,
}

/// Everything discovery asked, raw.
#[derive(Clone, Debug)]
pub struct RawDiscovery {
    pub uri: String,
    pub capabilities: Answer<String>,
    /// `virConnectGetDomainCapabilities` with virttype `kvm` / `qemu` (read-write
    /// connection: libvirt refuses it on a read-only one).
    pub domain_capabilities_kvm: Answer<String>,
    pub domain_capabilities_qemu: Answer<String>,
    pub node_info: Answer<NodeInfo>,
    /// `virConnectGetType`, e.g. `QEMU`, `TEST`.
    pub driver_type: Answer<String>,
    /// `virConnectGetVersion` (hypervisor) and `virConnectGetLibVersion`, as
    /// `major * 1_000_000 + minor * 1000 + release`.
    pub hypervisor_version: Answer<u32>,
    pub lib_version: Answer<u32>,
    pub hostname: Answer<String>,
    pub storage_pools: Answer<Vec<NamedXml>>,
    pub networks: Answer<Vec<NamedXml>>,
    /// PCI node devices (SR-IOV PFs/VFs are among them).
    pub pci_devices: Answer<Vec<NamedXml>>,
}

fn reason(e: virt::error::Error) -> String {
    e.message().to_owned()
}

/// The driver's answer; a lost connection fails the whole discovery instead.
fn flat(r: Result<Answer<String>, LibvirtError>) -> Result<Answer<String>, LibvirtError> {
    match r {
        Ok(answer) => Ok(answer),
        Err(e) if e.connection_lost() => Err(e),
        Err(e) => Ok(Err(e.reason().to_owned())),
    }
}

/// The calls below keep each failure as that field's answer; a connection that died
/// meanwhile must instead fail the whole job, so the connection is dropped and reopened
/// and no answer from a dead connection is taken for the host's.
fn fail_if_dead(c: &Connect) -> Result<(), virt::error::Error> {
    if c.is_alive().unwrap_or(false) {
        Ok(())
    } else {
        Err(virt::error::Error::last_error())
    }
}

/// Runs every read-only discovery call in one blocking job.
fn read_only_part(c: &Connect) -> Result<RawDiscovery, virt::error::Error> {
    let node_info = c.node_info().map_err(reason).map(|n| NodeInfo {
        model: n.model,
        memory_kib: n.memory,
        cpus: n.cpus,
        mhz: n.mhz,
        nodes: n.nodes,
        sockets: n.sockets,
        cores: n.cores,
        threads: n.threads,
    });
    let storage_pools = c.list_all_storage_pools(0).map_err(reason).map(|pools| {
        pools
            .iter()
            .map(|p| NamedXml {
                name: p.name().unwrap_or_default(),
                xml: p.xml_desc(0).map_err(reason),
                active: p.is_active().unwrap_or(false),
            })
            .collect()
    });
    let networks = c.list_all_networks(0).map_err(reason).map(|nets| {
        nets.iter()
            .map(|n| NamedXml {
                name: n.name().unwrap_or_default(),
                xml: n.xml_desc(0).map_err(reason),
                active: n.is_active().unwrap_or(false),
            })
            .collect()
    });
    let pci_devices = c
        .list_all_node_devices(virt::sys::VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV)
        .map_err(reason)
        .map(|devs| {
            devs.iter()
                .map(|d| NamedXml {
                    name: d.name().unwrap_or_default(),
                    xml: d.xml_desc(0).map_err(reason),
                    active: true,
                })
                .collect()
        });
    fail_if_dead(c)?;
    Ok(RawDiscovery {
        uri: c.uri().unwrap_or_default(),
        capabilities: c.capabilities().map_err(reason),
        domain_capabilities_kvm: Err("not asked".into()),
        domain_capabilities_qemu: Err("not asked".into()),
        node_info,
        driver_type: c.driver_type().map_err(reason),
        hypervisor_version: c.hyp_version().map_err(reason),
        lib_version: c.lib_version().map_err(reason),
        hostname: c.hostname().map_err(reason),
        storage_pools,
        networks,
        pci_devices,
    })
}

/// Asks everything. `Err` when no connection could be used or it died during the calls
/// (after one retry on a fresh connection: libvirtd may have restarted since the last
/// discovery); a single call the driver refuses is recorded in its field.
pub async fn discover(conn: &LibvirtConnection) -> Result<RawDiscovery, LibvirtError> {
    match discover_once(conn).await {
        Err(e) if e.connection_lost() => {
            tracing::debug!(error = %e, "discovery lost its libvirt connection; once more after the reconnect");
            conn.wait_connected(RETRY_WAIT).await;
            discover_once(conn).await
        }
        other => other,
    }
}

/// How long a discovery that lost its connection waits for the reconnect.
const RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn discover_once(conn: &LibvirtConnection) -> Result<RawDiscovery, LibvirtError> {
    let mut raw = conn.call(read_only_part).await?;
    raw.uri = conn.uri().to_owned();
    let domcaps = |virttype: &'static str| {
        conn.call_rw(
            move |c| match c.domain_capabilities(None, None, None, Some(virttype), 0) {
                Ok(xml) => Ok(Ok(xml)),
                Err(e) => {
                    fail_if_dead(c)?;
                    Ok(Err(reason(e)))
                }
            },
        )
    };
    raw.domain_capabilities_kvm = flat(domcaps("kvm").await)?;
    raw.domain_capabilities_qemu = flat(domcaps("qemu").await)?;
    Ok(raw)
}

impl RawDiscovery {
    /// The parser's input: the same answers; an object whose XML could not be read
    /// makes its group partial, with the object named in the reason.
    pub fn into_input(self) -> DiscoveryInput {
        fn fetched(list: Answer<Vec<NamedXml>>, what: &str) -> Answer<Vec<Fetched>> {
            let list = list?;
            let mut out = Vec::with_capacity(list.len());
            for item in list {
                match item.xml {
                    Ok(xml) => out.push(Fetched {
                        xml,
                        active: item.active,
                    }),
                    Err(e) => return Err(format!("{what} {}: {e}", item.name)),
                }
            }
            Ok(out)
        }
        DiscoveryInput {
            hostname: self.hostname,
            capabilities: self.capabilities,
            domcaps_kvm: self.domain_capabilities_kvm,
            domcaps_qemu: self.domain_capabilities_qemu,
            node_info: self.node_info,
            hypervisor_type: self.driver_type,
            hypervisor_version: self.hypervisor_version.map(u64::from),
            libvirt_version: self.lib_version.map(u64::from),
            storage_pools: fetched(self.storage_pools, "storage pool"),
            networks: fetched(self.networks, "network"),
            node_devices: fetched(self.pci_devices, "node device")
                .map(|list| list.into_iter().map(|f| f.xml).collect()),
        }
    }
}
