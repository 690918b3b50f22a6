//! The libvirt source (docs/ARCHITECTURE.md, "Sources"): connections, the domain locator,
//! the hypervisor type of running domains, and raw host-capability discovery.

pub mod connection;
pub mod discovery;
pub mod domain;
pub mod host;
pub mod hypervisor;
pub mod locator;
pub mod pool;

pub use connection::{ConnState, LibvirtConnection, LibvirtError};
pub use discovery::{
    FreePagesPlan, HostFiles, MachinePlan, NamedXml, RawDiscovery, discover, discover_with,
};
pub use domain::{domain_type, domain_type_on};
pub use hypervisor::{HypervisorFound, HypervisorProbe, ProbeSettings, TargetUpdate};
pub use locator::{DomainLocation, LocateError, locate, locate_on_host};
pub use pool::ConnectionPool;
