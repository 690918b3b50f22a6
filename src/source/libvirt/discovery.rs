//! Raw host-capability discovery: every call on one warm connection, each
//! answer kept as the driver gave it (`Err` = the driver's reason, e.g. "not
//! supported"). Parsing is `derive::caps`'s job, except the host's architecture and
//! machine aliases, read from the capabilities to know which machines to ask about.
//!
//! Domain capabilities depend on the machine type: libvirt's default machine (asked
//! when none is named) is often not the guests' (on x86_64 it is `pc`, i440fx: no
//! secure boot, 255 vCPUs, IDE, where KubeVirt guests run `q35`). So discovery names
//! the machines: those the VMIs on this node run (most used first, at most
//! [`MAX_RUNNING_MACHINES`]), then `capabilities.machines` of the host's architecture,
//! each once by its canonical machine, each asked for kvm and for qemu (TCG). The guests'
//! machine is the first of them the capabilities list ([`MachinePlan::guest`]).
//!
//! Free pages per NUMA cell (the capabilities give only the counts) come from
//! `virNodeGetFreePages` ([`FreePagesPlan`]): every page size of the host CPU and of the
//! cells, over all cells in one call when the cells are numbered 0..n-1; else, or when
//! that call is refused for another reason than "not supported", one call per cell for
//! the sizes that cell lists.

use std::collections::BTreeMap;
use std::path::Path;

use virt::connect::Connect;

use super::connection::{LibvirtConnection, LibvirtError};
use crate::derive::caps::build::DomCapsAnswer;
use crate::derive::caps::{
    CapsDoc, CellFreePages, DiscoveryInput, Fetched, NodeInfo, parse_capabilities,
};

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

/// At most this many machine types the VMIs run are asked about (each costs two calls).
pub const MAX_RUNNING_MACHINES: usize = 4;

/// The virttypes each machine is asked for, in preference order.
pub const VIRTTYPES: [&str; 2] = ["kvm", "qemu"];

/// Which machines discovery asks libvirt's domain capabilities for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachinePlan {
    /// `capabilities.machines`: per host architecture, in preference order.
    pub configured: BTreeMap<String, Vec<String>>,
    /// The machine types the VMIs on this node run (`status.machine.type`), most used
    /// first. They come before the configured ones: the first is the guests' machine.
    pub running: Vec<String>,
}

impl MachinePlan {
    /// The default `capabilities.machines`, no VMI machine types.
    pub fn defaults() -> MachinePlan {
        MachinePlan {
            configured: crate::config::default_machines(),
            running: Vec::new(),
        }
    }

    /// The machines to ask about on a host whose capabilities are `caps` (`None`: not
    /// readable), in preference order: the VMIs' machine types, then those configured for
    /// the host's architecture; one name per canonical machine (`q35` and
    /// `pc-q35-7.2` are one machine when the capabilities say `q35` is its alias). The
    /// name kept is the first one met, as the VMI or the configuration spells it.
    /// `[None]` (libvirt's default machine) when there is nothing to name.
    pub fn machines(&self, caps: Option<&CapsDoc>) -> Vec<Option<String>> {
        let arch = caps.and_then(|c| c.arch.as_deref());
        let canonical = |name: &str| -> String {
            caps.and_then(|c| c.canonical_machine(arch, name))
                .unwrap_or(name)
                .to_owned()
        };
        let configured = arch
            .and_then(|a| self.configured.get(a))
            .map_or(&[][..], Vec::as_slice);
        let mut seen: Vec<String> = Vec::new();
        let mut out = Vec::new();
        let running = self.running.iter().take(MAX_RUNNING_MACHINES);
        for name in running.chain(configured) {
            let c = canonical(name);
            if !seen.contains(&c) {
                seen.push(c);
                out.push(Some(name.clone()));
            }
        }
        if out.is_empty() {
            out.push(None);
        }
        out
    }

    /// The guests' machine among `machines` (as [`machines`](Self::machines) gives them):
    /// the first the capabilities list for the host's architecture (by name or as a
    /// canonical machine). A VMI's machine type this libvirt does not know (the VMIs run
    /// in launchers with another QEMU) is still asked about, its refusal reported, but
    /// does not describe the guests here. The first machine when the capabilities list
    /// none of them or are not readable.
    pub fn guest(machines: &[Option<String>], caps: Option<&CapsDoc>) -> Option<String> {
        let arch = caps.and_then(|c| c.arch.as_deref());
        let known = |name: &str| {
            caps.into_iter()
                .flat_map(|c| c.guests.iter())
                .filter(|g| arch.is_none_or(|a| g.arch == a))
                .flat_map(|g| g.machines.iter())
                .any(|m| m.name == name || m.canonical.as_deref() == Some(name))
        };
        machines
            .iter()
            .flatten()
            .find(|m| known(m))
            .or_else(|| machines.first().and_then(Option::as_ref))
            .cloned()
    }
}

/// Host files read from sysfs: `Err` holds the I/O error text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFiles {
    /// `/sys/module/kvm_intel/parameters/nested`, as read (e.g. `Y\n`).
    pub kvm_intel_nested: Answer<String>,
    /// `/sys/module/kvm_amd/parameters/nested` (e.g. `1\n`).
    pub kvm_amd_nested: Answer<String>,
    /// `/sys/kernel/mm/ksm/run` (`0`, `1` or `2`).
    pub ksm_run: Answer<String>,
}

impl HostFiles {
    /// Reads the files under `root` (`/` on the host; a directory of copies in tests).
    pub fn read(root: &Path) -> HostFiles {
        let read = |path: &str| std::fs::read_to_string(root.join(path)).map_err(|e| e.to_string());
        HostFiles {
            kvm_intel_nested: read("sys/module/kvm_intel/parameters/nested"),
            kvm_amd_nested: read("sys/module/kvm_amd/parameters/nested"),
            ksm_run: read("sys/kernel/mm/ksm/run"),
        }
    }
}

/// Everything discovery asked, raw.
#[derive(Clone, Debug)]
pub struct RawDiscovery {
    pub uri: String,
    pub capabilities: Answer<String>,
    /// `virConnectGetDomainCapabilities` for each machine of the [`MachinePlan`] (the
    /// host's architecture named when known), kvm then qemu, in preference order
    /// (read-write connection: libvirt refuses it on a read-only one).
    pub domain_capabilities: Vec<DomCapsAnswer>,
    /// The machine the guests use ([`MachinePlan::guest`]; `None`: libvirt's default).
    pub guest_machine: Option<String>,
    /// The sysfs files of the host the daemon runs on.
    pub host_files: HostFiles,
    pub node_info: Answer<NodeInfo>,
    /// `virNodeGetFreePages` per NUMA cell ([`FreePagesPlan`]); "not asked" without
    /// cells.
    pub free_pages: Answer<Vec<CellFreePages>>,
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

/// The free-pages answer when the capabilities list no NUMA cells (or are unreadable).
const NOT_ASKED: &str = "not asked";

/// libvirt's remote driver refuses more than this many cells × page sizes in one call
/// (`REMOTE_NODE_MAX_CELLS`).
const MAX_FREE_PAGE_ENTRIES: usize = 1024;

/// Which free-page counts discovery asks `virNodeGetFreePages` for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FreePagesPlan {
    /// Every hugepage size (KiB) of the host CPU and of the cells, ascending. The base
    /// page size is not asked: its free count moves every second, and the capabilities
    /// would differ (and be written again) at every discovery.
    pub sizes: Vec<u32>,
    /// Each cell's id and the page sizes it lists, in document order.
    pub cells: Vec<(u32, Vec<u32>)>,
}

impl FreePagesPlan {
    /// The cells and page sizes of the capabilities. Sizes beyond `u32` KiB and cell ids
    /// beyond `i32` (what the call takes) are left out.
    pub fn of(caps: &CapsDoc) -> FreePagesPlan {
        let base = caps
            .page_sizes_kib
            .iter()
            .chain(
                caps.numa_cells
                    .iter()
                    .flat_map(|c| c.pages.iter().map(|p| &p.size_kib)),
            )
            .copied()
            .min()
            .unwrap_or(0);
        let size = |kib: u64| {
            u32::try_from(kib)
                .ok()
                .filter(|&k| k > 0 && u64::from(k) > base)
        };
        let cells: Vec<(u32, Vec<u32>)> = caps
            .numa_cells
            .iter()
            .filter(|c| i32::try_from(c.id).is_ok())
            .map(|c| {
                let mut sizes: Vec<u32> = c.pages.iter().filter_map(|p| size(p.size_kib)).collect();
                sizes.sort_unstable();
                sizes.dedup();
                (c.id, sizes)
            })
            .collect();
        let mut sizes: Vec<u32> = caps
            .page_sizes_kib
            .iter()
            .copied()
            .filter_map(size)
            .chain(cells.iter().flat_map(|(_, s)| s.iter().copied()))
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        FreePagesPlan { sizes, cells }
    }

    /// The number of cells when one call can ask every cell: the ids are 0..n-1, and
    /// n × sizes is within what the remote driver takes.
    fn all_at_once(&self) -> Option<u32> {
        let mut ids: Vec<u32> = self.cells.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        let numbered = ids.iter().enumerate().all(|(i, &id)| id as usize == i);
        let entries = ids.len().saturating_mul(self.sizes.len());
        (numbered && entries > 0 && entries <= MAX_FREE_PAGE_ENTRIES)
            .then(|| u32::try_from(ids.len()).ok())
            .flatten()
    }

    /// Asks the driver. The outer `Err`: the connection died (the whole discovery
    /// fails); the inner one: the driver's reason.
    fn ask(&self, c: &Connect) -> Result<Answer<Vec<CellFreePages>>, virt::error::Error> {
        if self.cells.is_empty() {
            return Ok(Err(NOT_ASKED.to_owned()));
        }
        let wide = |sizes: &[u32], counts: &[u64]| -> Vec<(u64, u64)> {
            sizes
                .iter()
                .zip(counts)
                .map(|(&s, &n)| (u64::from(s), n))
                .collect()
        };
        if let Some(n) = self.all_at_once() {
            match c.free_pages(&self.sizes, 0, n, 0) {
                Ok(counts) => {
                    return Ok(Ok(counts
                        .chunks(self.sizes.len())
                        .zip(0..n)
                        .map(|(counts, cell)| CellFreePages {
                            cell,
                            pages: wide(&self.sizes, counts),
                        })
                        .collect()));
                }
                Err(e) => {
                    fail_if_dead(c)?;
                    // Asked per cell instead (a size one cell lacks fails the call),
                    // unless the driver has no such call at all.
                    if e.code().is(virt::error::ErrorNumber::NoSupport) {
                        return Ok(Err(reason(e)));
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(self.cells.len());
        let mut refused = Vec::new();
        for (cell, sizes) in &self.cells {
            if sizes.is_empty() {
                continue;
            }
            match c.free_pages(sizes, *cell, 1, 0) {
                Ok(counts) => out.push(CellFreePages {
                    cell: *cell,
                    pages: wide(sizes, &counts),
                }),
                Err(e) => {
                    fail_if_dead(c)?;
                    if e.code().is(virt::error::ErrorNumber::NoSupport) {
                        return Ok(Err(reason(e)));
                    }
                    refused.push(format!("cell {cell}: {}", reason(e)));
                }
            }
        }
        Ok(if refused.is_empty() {
            Ok(out)
        } else {
            Err(refused.join("; "))
        })
    }
}

fn reason(e: virt::error::Error) -> String {
    e.message().to_owned()
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
        domain_capabilities: Vec::new(),
        guest_machine: None,
        host_files: HostFiles::read(Path::new("/")),
        node_info,
        free_pages: Err(NOT_ASKED.to_owned()),
        driver_type: c.driver_type().map_err(reason),
        hypervisor_version: c.hyp_version().map_err(reason),
        lib_version: c.lib_version().map_err(reason),
        hostname: c.hostname().map_err(reason),
        storage_pools,
        networks,
        pci_devices,
    })
}

/// Asks everything, naming the default `capabilities.machines` ([`discover_with`]).
pub async fn discover(conn: &LibvirtConnection) -> Result<RawDiscovery, LibvirtError> {
    discover_with(conn, &MachinePlan::defaults()).await
}

/// Asks everything, the domain capabilities for the machines of `plan`. `Err` when no
/// connection could be used or it died during the calls (after one retry on a fresh
/// connection: libvirtd may have restarted since the last discovery); a single call the
/// driver refuses is recorded in its field.
pub async fn discover_with(
    conn: &LibvirtConnection,
    plan: &MachinePlan,
) -> Result<RawDiscovery, LibvirtError> {
    match discover_once(conn, plan).await {
        Err(e) if e.connection_lost() => {
            tracing::debug!(error = %e, "discovery lost its libvirt connection; once more after the reconnect");
            conn.wait_connected(RETRY_WAIT).await;
            discover_once(conn, plan).await
        }
        other => other,
    }
}

/// How long a discovery that lost its connection waits for the reconnect.
const RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn discover_once(
    conn: &LibvirtConnection,
    plan: &MachinePlan,
) -> Result<RawDiscovery, LibvirtError> {
    let mut raw = conn.call(read_only_part).await?;
    raw.uri = conn.uri().to_owned();
    // The capabilities' architecture and machine aliases; unreadable: no architecture
    // is named, only the VMIs' machines (or libvirt's default one) are asked about.
    let caps = raw
        .capabilities
        .as_ref()
        .ok()
        .and_then(|text| parse_capabilities(text).ok());
    let free = caps.as_ref().map(FreePagesPlan::of).unwrap_or_default();
    raw.free_pages = match conn.call(move |c| free.ask(c)).await {
        Ok(answer) => answer,
        // A lost connection fails the whole discovery.
        Err(e) if e.connection_lost() => return Err(e),
        Err(e) => Err(e.reason().to_owned()),
    };
    let arch = caps.as_ref().and_then(|c| c.arch.clone());
    let machines = plan.machines(caps.as_ref());
    raw.guest_machine = MachinePlan::guest(&machines, caps.as_ref());
    let asked = machines.clone();
    let answers = conn.call_rw(move |c| {
        let mut answers = Vec::with_capacity(machines.len() * VIRTTYPES.len());
        for machine in &machines {
            for virttype in VIRTTYPES {
                let answer = match c.domain_capabilities(
                    None,
                    arch.as_deref(),
                    machine.as_deref(),
                    Some(virttype),
                    0,
                ) {
                    Ok(xml) => Ok(xml),
                    Err(e) => {
                        fail_if_dead(c)?;
                        Err(reason(e))
                    }
                };
                answers.push(DomCapsAnswer {
                    virttype: virttype.to_owned(),
                    machine: machine.clone(),
                    answer,
                });
            }
        }
        Ok(answers)
    });
    raw.domain_capabilities = match answers.await {
        Ok(answers) => answers,
        // A lost connection fails the whole discovery.
        Err(e) if e.connection_lost() => return Err(e),
        // The read-write connection could not be opened: every call refused alike.
        Err(e) => refused(&asked, e.reason()),
    };
    Ok(raw)
}

/// Every call of `machines` answered by the same refusal.
fn refused(machines: &[Option<String>], why: &str) -> Vec<DomCapsAnswer> {
    machines
        .iter()
        .flat_map(|machine| {
            VIRTTYPES.iter().map(move |virttype| DomCapsAnswer {
                virttype: (*virttype).to_owned(),
                machine: machine.clone(),
                answer: Err(why.to_owned()),
            })
        })
        .collect()
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
            domcaps: self.domain_capabilities,
            guest_machine: self.guest_machine,
            kvm_intel_nested: self.host_files.kvm_intel_nested,
            kvm_amd_nested: self.host_files.kvm_amd_nested,
            ksm_run: self.host_files.ksm_run,
            node_info: self.node_info,
            free_pages: self.free_pages,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    /// A host of `arch` whose guests of that arch list `machines` as (name, canonical).
    fn caps(arch: &str, machines: &[(&str, Option<&str>)]) -> CapsDoc {
        let list: String = machines
            .iter()
            .map(|(name, canonical)| match canonical {
                Some(c) => format!("<machine canonical='{c}' maxCpus='288'>{name}</machine>"),
                None => format!("<machine maxCpus='255'>{name}</machine>"),
            })
            .collect();
        let xml = format!(
            "<capabilities><host><cpu><arch>{arch}</arch></cpu></host>\
             <guest><os_type>hvm</os_type><arch name='i686'>\
             <machine canonical='pc-q35-1.0'>q35</machine></arch></guest>\
             <guest><os_type>hvm</os_type><arch name='{arch}'>{list}\
             <domain type='qemu'/><domain type='kvm'/></arch></guest></capabilities>"
        );
        parse_capabilities(&xml).unwrap()
    }

    fn names(v: &[Option<String>]) -> Vec<Option<&str>> {
        v.iter().map(Option::as_deref).collect()
    }

    #[test]
    fn machines_asked_for() {
        let x86 = caps(
            "x86_64",
            &[
                ("pc", Some("pc-i440fx-7.2")),
                ("pc-i440fx-7.2", None),
                ("q35", Some("pc-q35-7.2")),
                ("pc-q35-7.2", None),
                ("pc-q35-rhel9.2.0", None),
            ],
        );
        let plan = MachinePlan::defaults();
        assert_eq!(names(&plan.machines(Some(&x86))), [Some("q35")]);
        // The VMIs' machine types first; one name per canonical machine, as first met.
        let plan = MachinePlan {
            running: vec!["pc-q35-rhel9.2.0".into(), "pc-q35-7.2".into()],
            ..MachinePlan::defaults()
        };
        assert_eq!(
            names(&plan.machines(Some(&x86))),
            [Some("pc-q35-rhel9.2.0"), Some("pc-q35-7.2")]
        );
        // Configured: several, in order; the alias of the host's arch (not i686's).
        let plan = MachinePlan {
            configured: [(
                "x86_64".to_owned(),
                vec!["q35".into(), "pc".into(), "pc-i440fx-7.2".into()],
            )]
            .into(),
            running: vec!["pc-q35-1.0".into()],
        };
        assert_eq!(
            names(&plan.machines(Some(&x86))),
            [Some("pc-q35-1.0"), Some("q35"), Some("pc")]
        );
        // At most MAX_RUNNING_MACHINES of the VMIs' machine types.
        let plan = MachinePlan {
            running: (0..10).map(|i| format!("pc-q35-{i}.0")).collect(),
            ..MachinePlan::defaults()
        };
        let asked = plan.machines(Some(&x86));
        assert_eq!(asked.len(), MAX_RUNNING_MACHINES + 1);
        assert_eq!(asked.last().unwrap().as_deref(), Some("q35"));
        // Other architectures: their defaults; none configured: libvirt's default.
        let arm = caps("aarch64", &[("virt", Some("virt-7.2"))]);
        assert_eq!(
            names(&MachinePlan::defaults().machines(Some(&arm))),
            [Some("virt")]
        );
        let s390 = caps("s390x", &[]);
        assert_eq!(
            names(&MachinePlan::defaults().machines(Some(&s390))),
            [Some("s390-ccw-virtio")]
        );
        let loong = caps("loongarch64", &[("virt", None)]);
        assert_eq!(
            names(&MachinePlan::defaults().machines(Some(&loong))),
            [None]
        );
        // Capabilities not readable: the VMIs' machines, else libvirt's default.
        assert_eq!(names(&MachinePlan::defaults().machines(None)), [None]);
        let plan = MachinePlan {
            running: vec!["q35".into()],
            ..MachinePlan::defaults()
        };
        assert_eq!(names(&plan.machines(None)), [Some("q35")]);
    }

    #[test]
    fn the_guests_machine_is_the_first_this_libvirt_knows() {
        let x86 = caps(
            "x86_64",
            &[
                ("q35", Some("pc-q35-7.2")),
                ("pc-q35-7.2", None),
                ("pc", None),
            ],
        );
        let some = |names: &[&str]| -> Vec<Option<String>> {
            names.iter().map(|n| Some((*n).to_owned())).collect()
        };
        let guest = |names: &[&str], caps: Option<&CapsDoc>| MachinePlan::guest(&some(names), caps);
        // A VMI's machine type this libvirt does not list is skipped.
        assert_eq!(
            guest(&["pc-q35-rhel9.2.0", "q35"], Some(&x86)).as_deref(),
            Some("q35")
        );
        assert_eq!(
            guest(&["pc-q35-7.2", "q35"], Some(&x86)).as_deref(),
            Some("pc-q35-7.2")
        );
        assert_eq!(guest(&["pc", "q35"], Some(&x86)).as_deref(), Some("pc"));
        // None listed, or no capabilities: the first.
        assert_eq!(
            guest(&["pc-q35-rhel9.2.0", "virt"], Some(&x86)).as_deref(),
            Some("pc-q35-rhel9.2.0")
        );
        assert_eq!(
            guest(&["pc-q35-rhel9.2.0", "q35"], None).as_deref(),
            Some("pc-q35-rhel9.2.0")
        );
        assert_eq!(MachinePlan::guest(&[None], Some(&x86)), None);
    }

    #[test]
    fn host_files_as_read_or_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("sys/module/kvm_amd/parameters");
        std::fs::create_dir_all(&module).unwrap();
        std::fs::write(module.join("nested"), "1\n").unwrap();
        let ksm = dir.path().join("sys/kernel/mm/ksm");
        std::fs::create_dir_all(&ksm).unwrap();
        std::fs::write(ksm.join("run"), "0\n").unwrap();
        let files = HostFiles::read(dir.path());
        assert_eq!(files.kvm_amd_nested.as_deref(), Ok("1\n"));
        assert_eq!(files.ksm_run.as_deref(), Ok("0\n"));
        let missing = files.kvm_intel_nested.unwrap_err();
        assert!(missing.contains("No such file"), "{missing}");
    }

    #[test]
    fn free_pages_asked_for_every_size_and_cell() {
        let doc = |cells: &str| {
            parse_capabilities(&format!(
                "<capabilities><host><cpu><arch>x86_64</arch>\
                 <pages unit='KiB' size='4'/><pages unit='KiB' size='1048576'/></cpu>\
                 <topology><cells num='2'>{cells}</cells></topology></host></capabilities>"
            ))
            .unwrap()
        };
        let cell = |id: u32, sizes: &str| format!("<cell id='{id}'>{sizes}</cell>");
        let pages = "<pages unit='KiB' size='4'>100</pages><pages unit='MiB' size='2'>8</pages>";
        // The host CPU's hugepage sizes and the cells', over cells 0..n-1: one call. The
        // base (smallest) size is not asked: its free count moves all the time.
        let plan = FreePagesPlan::of(&doc(&(cell(0, pages) + &cell(1, pages))));
        assert_eq!(plan.sizes, [2048, 1_048_576]);
        assert_eq!(plan.cells, [(0, vec![2048]), (1, vec![2048])]);
        assert_eq!(plan.all_at_once(), Some(2));
        // Cells not numbered 0..n-1: per cell.
        let plan = FreePagesPlan::of(&doc(&(cell(0, pages) + &cell(2, pages))));
        assert_eq!(plan.all_at_once(), None);
        // No cells: nothing asked.
        let plan = FreePagesPlan::of(&doc(""));
        assert!(plan.cells.is_empty());
        assert_eq!(plan.all_at_once(), None);
        // More cells × sizes than the remote driver takes: per cell.
        let many: String = (0..600).map(|i| cell(i, pages)).collect();
        assert_eq!(FreePagesPlan::of(&doc(&many)).all_at_once(), None);
        // Only base pages: nothing to ask of any cell.
        let base_only = "<pages unit='KiB' size='4'>100</pages>";
        let plan = FreePagesPlan::of(
            &parse_capabilities(&format!(
                "<capabilities><host><cpu><arch>x86_64</arch><pages unit='KiB' size='4'/></cpu>\
                 <topology><cells num='1'>{}</cells></topology></host></capabilities>",
                cell(0, base_only)
            ))
            .unwrap(),
        );
        assert!(plan.sizes.is_empty());
        assert_eq!(plan.cells, [(0, vec![])]);
        assert_eq!(plan.all_at_once(), None);
    }

    #[test]
    fn a_refusal_answers_every_call() {
        let answers = refused(&[Some("q35".into()), None], "read-only connection");
        let got: Vec<(&str, Option<&str>, bool)> = answers
            .iter()
            .map(|a| (a.virttype.as_str(), a.machine.as_deref(), a.answer.is_err()))
            .collect();
        assert_eq!(
            got,
            [
                ("kvm", Some("q35"), true),
                ("qemu", Some("q35"), true),
                ("kvm", None, true),
                ("qemu", None, true)
            ]
        );
    }
}
