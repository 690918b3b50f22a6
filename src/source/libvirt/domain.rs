//! Hypervisor type of a running domain: the root `<domain type=...>`, read
//! with the bounded XML parser of `derive::caps` (the same code as `inspect domain`).

use super::connection::{LibvirtConnection, LibvirtError};
use super::locator::DomainLocation;
use super::pool::ConnectionPool;
use crate::derive::caps::{HypervisorType, hypervisor_type};

/// The mapped hypervisor type of `domain` on `conn`: `Ok(None)` when there is no such
/// domain (gone), `Ok(Some(kvm|qemu-tcg|unknown))` otherwise.
pub async fn domain_type_on(
    conn: &LibvirtConnection,
    domain: &str,
) -> Result<Option<HypervisorType>, LibvirtError> {
    let name = domain.to_owned();
    let xml = conn
        .call(move |c| c.lookup_domain_by_name(&name)?.xml_desc(0))
        .await;
    match xml {
        Ok(xml) => Ok(Some(hypervisor_type(&xml))),
        Err(e) if e.is_no_domain() => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`domain_type_on`] for a located domain, opening or reusing the pool's connection.
pub async fn domain_type(
    pool: &ConnectionPool,
    location: &DomainLocation,
) -> Result<Option<HypervisorType>, LibvirtError> {
    domain_type_on(&pool.get(&location.uri), &location.domain).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_fixtures() {
        for (file, want) in [
            ("domain-kvm-live.xml", "kvm"),
            ("domain-qemu-live.xml", "qemu-tcg"),
            ("test-driver-domain.xml", "unknown"),
        ] {
            let xml = crate::test_fixtures::text(&format!("libvirt/real/{file}"));
            assert_eq!(hypervisor_type(&xml).as_str(), want, "{file}");
        }
    }
}
