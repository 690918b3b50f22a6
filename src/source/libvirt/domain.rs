//! Hypervisor type of a running domain (DESIGN §3): the root `<domain type=...>`.
//!
//! TEMPORARY: [`root_domain_type`] is a tiny bounded scan for the root element's `type`
//! attribute, kept behind one function until the real parser
//! (`derive::caps::domain::hypervisor_type`) replaces it.

use super::connection::{LibvirtConnection, LibvirtError};
use super::locator::DomainLocation;
use super::pool::ConnectionPool;

/// The hypervisor type values of the metric/record.
pub const KVM: &str = "kvm";
pub const QEMU_TCG: &str = "qemu-tcg";
pub const UNKNOWN: &str = "unknown";

/// `kvm` → `kvm`, `qemu` → `qemu-tcg`, anything else or nothing → `unknown`.
pub fn map_domain_type(raw: Option<&str>) -> &'static str {
    match raw {
        Some("kvm") => KVM,
        Some("qemu") => QEMU_TCG,
        _ => UNKNOWN,
    }
}

/// Longest prefix scanned for the root element (libvirt puts it first).
const SCAN_LIMIT: usize = 4096;

/// The `type` attribute of the root `<domain ...>` start tag, if the document starts with
/// one (after an optional XML declaration, comments and whitespace). Temporary.
pub fn root_domain_type(xml: &str) -> Option<String> {
    let head = match xml.char_indices().nth(SCAN_LIMIT) {
        Some((i, _)) => &xml[..i],
        None => xml,
    };
    let mut rest = head.trim_start_matches('\u{feff}');
    // Skip the prolog: declarations, processing instructions, comments, whitespace.
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("<?") {
            rest = &r[r.find("?>")? + 2..];
        } else if let Some(r) = rest.strip_prefix("<!--") {
            rest = &r[r.find("-->")? + 3..];
        } else {
            break;
        }
    }
    let tag = rest.strip_prefix("<domain")?;
    if !tag.starts_with(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/') {
        return None;
    }
    let tag = &tag[..tag.find('>')?];
    // Attributes: name = 'value' | "value".
    let mut attrs = tag.trim_end_matches('/');
    loop {
        attrs = attrs.trim_start();
        if attrs.is_empty() {
            return None;
        }
        let eq = attrs.find('=')?;
        let name = attrs[..eq].trim();
        let after = attrs[eq + 1..].trim_start();
        let quote = after.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let body = &after[1..];
        let end = body.find(quote)?;
        if name == "type" {
            return Some(body[..end].to_owned());
        }
        attrs = &body[end + 1..];
    }
}

/// The mapped hypervisor type of `domain` on `conn`: `Ok(None)` when there is no such
/// domain (gone), `Ok(Some(kvm|qemu-tcg|unknown))` otherwise.
pub async fn domain_type_on(
    conn: &LibvirtConnection,
    domain: &str,
) -> Result<Option<String>, LibvirtError> {
    let name = domain.to_owned();
    let xml = conn
        .call(move |c| c.lookup_domain_by_name(&name)?.xml_desc(0))
        .await;
    match xml {
        Ok(xml) => Ok(Some(
            map_domain_type(root_domain_type(&xml).as_deref()).to_owned(),
        )),
        Err(e) if e.is_no_domain() => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`domain_type_on`] for a located domain, opening or reusing the pool's connection.
pub async fn domain_type(
    pool: &ConnectionPool,
    location: &DomainLocation,
) -> Result<Option<String>, LibvirtError> {
    domain_type_on(&pool.get(&location.uri), &location.domain).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_types() {
        assert_eq!(map_domain_type(Some("kvm")), "kvm");
        assert_eq!(map_domain_type(Some("qemu")), "qemu-tcg");
        assert_eq!(map_domain_type(Some("test")), "unknown");
        assert_eq!(map_domain_type(None), "unknown");
    }

    #[test]
    fn reads_root_type() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "<domain type='kvm' id='1'>\n<name>x</name></domain>",
                Some("kvm"),
            ),
            (
                "<?xml version=\"1.0\"?>\n<!-- c > -->\n<domain id=\"2\" type=\"qemu\">",
                Some("qemu"),
            ),
            ("<domain\ntype = 'test'>", Some("test")),
            ("<domain id='1'><os type='hvm'/></domain>", None),
            ("<domainsnapshot type='kvm'>", None),
            ("<other><domain type='kvm'/></other>", None),
            ("<domain type='kvm", None),
            ("", None),
            ("<domain type=kvm>", None),
        ];
        for (xml, want) in cases {
            assert_eq!(root_domain_type(xml).as_deref(), *want, "{xml:?}");
        }
    }

    #[test]
    fn real_fixtures() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/fixtures/libvirt/real"
        );
        for (file, want) in [
            ("domain-kvm-live.xml", "kvm"),
            ("domain-qemu-live.xml", "qemu"),
            ("test-driver-domain.xml", "test"),
        ] {
            let xml = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
            assert_eq!(root_domain_type(&xml).as_deref(), Some(want), "{file}");
        }
    }
}
