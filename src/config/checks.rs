//! Validators for single values. Each returns the "problem" half of a
//! `ConfigError`; the caller adds the key.

use std::path::Path;
use std::str::FromStr;

use super::Owns;

const PASSWORD_HINT: &str =
    "put the password in postgres.password_file or $CREDENTIALS_DIRECTORY/postgres-password";
const TEMPLATE_PLACEHOLDERS: &[&str] = &["kubelet_root", "pod_uid"];

pub(super) fn parse_owns(items: &[String]) -> Result<Owns, String> {
    const NAMES: &str = "\"status\", \"legacy\", \"runtime\"";
    if items.is_empty() {
        return Err(format!("must not be empty (list one or more of {NAMES})"));
    }
    let mut owns = Owns {
        status: false,
        legacy: false,
        runtime: false,
    };
    for item in items {
        let flag = match item.as_str() {
            "status" => &mut owns.status,
            "legacy" => &mut owns.legacy,
            "runtime" => &mut owns.runtime,
            _ => return Err(format!("invalid value {item:?} (expected {NAMES})")),
        };
        if *flag {
            return Err(format!("duplicate value {item:?}"));
        }
        *flag = true;
    }
    Ok(owns)
}

fn is_dns1123_label(label: &str) -> bool {
    let b = label.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

pub(super) fn check_dns1123_subdomain(name: &str) -> Result<(), String> {
    if name.len() <= 253 && name.split('.').all(is_dns1123_label) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid DNS-1123 subdomain (lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit, at most 253 characters)"
        ))
    }
}

pub(super) fn check_namespaces(names: &[String]) -> Result<(), String> {
    for (i, name) in names.iter().enumerate() {
        if name.len() > 63 || !is_dns1123_label(name) {
            return Err(format!(
                "{name:?} is not a valid namespace name (DNS-1123 label: lowercase letters, \
                 digits and '-', at most 63 characters)"
            ));
        }
        if names[..i].contains(name) {
            return Err(format!("duplicate namespace {name:?}"));
        }
    }
    Ok(())
}

pub(super) fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(()),
        _ => Err(format!(
            "invalid URL {url:?} (must start with http:// or https:// followed by a host)"
        )),
    }
}

pub(super) fn non_empty_path(p: &Path) -> Result<(), String> {
    if p.as_os_str().is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(())
    }
}

pub(super) fn check_template(template: &str) -> Result<(), String> {
    if template.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let known = || {
        TEMPLATE_PLACEHOLDERS
            .iter()
            .map(|p| format!("{{{p}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        if rest[i..].starts_with('}') {
            return Err(format!("unmatched '}}' (placeholders: {})", known()));
        }
        let after = &rest[i + 1..];
        let Some(end) = after.find('}') else {
            return Err(format!("unclosed '{{' (placeholders: {})", known()));
        };
        let name = &after[..end];
        if !TEMPLATE_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} (placeholders: {})",
                known()
            ));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

pub(super) fn check_table_name(name: &str) -> Result<(), String> {
    let ident_ok = |part: &str| {
        let mut chars = part.chars();
        part.len() <= 63
            && chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() <= 2 && parts.iter().all(|p| ident_ok(p)) {
        Ok(())
    } else {
        Err(format!(
            "invalid table name {name:?} (use \"name\" or \"schema.name\"; each part starts with \
             a letter or '_', then letters, digits or '_', at most 63 characters)"
        ))
    }
}

pub(super) fn check_pg_url(url: &str) -> Result<(), String> {
    if url.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    let parsed = tokio_postgres::Config::from_str(url).map_err(|e| {
        // The error's Display is generic; the cause says what is wrong. Neither
        // echoes the input, which could contain a password.
        let reason = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
        format!("invalid PostgreSQL URL: {reason}")
    })?;
    if parsed.get_password().is_some() {
        return Err(format!("must not contain a password: {PASSWORD_HINT}"));
    }
    Ok(())
}

/// Longest machine or architecture name accepted (libvirt's longest are ~30 characters,
/// e.g. `pc-i440fx-rhel7.6.0`, `s390-ccw-virtio-rhel9.6.0`).
const MAX_MACHINE_NAME: usize = 64;

/// A QEMU machine type as libvirt names it (`q35`, `pc-q35-rhel9.2.0`, `virt-9.0`,
/// `s390-ccw-virtio`): ASCII letters, digits, '-', '_' and '.', starting with a letter or
/// digit, at most 64 characters.
pub fn check_machine_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = b.len() <= MAX_MACHINE_NAME
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a machine type name (ASCII letters, digits, '-', '_' and '.', \
             starting with a letter or digit, at most {MAX_MACHINE_NAME} characters)"
        ))
    }
}

/// `capabilities.machines`: architecture names as libvirt writes them (`x86_64`,
/// `aarch64`, `s390x`, `ppc64le`: lowercase letters, digits and '_'), each with a
/// non-empty list of machine names without duplicates. Every problem found, joined.
pub(super) fn check_machines(
    machines: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for (arch, list) in machines {
        let arch_ok = !arch.is_empty()
            && arch.len() <= MAX_MACHINE_NAME
            && arch
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
        if !arch_ok {
            problems.push(format!(
                "{arch:?} is not an architecture name (lowercase letters, digits and '_', \
                 as libvirt writes them: x86_64, aarch64, s390x, ppc64le)"
            ));
            continue;
        }
        if list.is_empty() {
            problems.push(format!("{arch}: must list at least one machine type"));
        }
        for (i, name) in list.iter().enumerate() {
            if let Err(p) = check_machine_name(name) {
                problems.push(format!("{arch}: {p}"));
            } else if list[..i].contains(name) {
                problems.push(format!("{arch}: duplicate machine type {name:?}"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
