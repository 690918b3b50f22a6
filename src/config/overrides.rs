//! Overrides from the environment (`VIRTSYNC_*`) and from `--set key=value`:
//! typing each override string by its key's kind and applying it to the TOML
//! table, remembering where each overridden value came from.

use std::collections::HashMap;

use toml::{Table, Value};

use super::keys::{self, ENV_PREFIX, IGNORED_ENV};
use super::schema::{self, Kind};
use super::{ConfigError, Problems};

/// Where an overridden value came from; keys absent here come from the file.
#[derive(Debug, Default)]
pub(super) struct Origins(HashMap<&'static str, String>);

impl Origins {
    fn label(&self, key: &str) -> String {
        match self.0.get(key) {
            Some(label) => label.clone(),
            None => key.to_owned(),
        }
    }

    pub(super) fn err(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::new(self.label(key), problem)
    }
}

/// Converts an override string to TOML by the key's kind. `None` = unset.
fn override_value(kind: Kind, raw: &str) -> Result<Option<Value>, String> {
    Ok(Some(match kind {
        Kind::Str | Kind::Duration | Kind::Size => Value::String(raw.to_owned()),
        Kind::OptStr if raw.is_empty() => return Ok(None),
        Kind::OptStr => Value::String(raw.to_owned()),
        Kind::Int => Value::Integer(
            parse_int(raw).ok_or_else(|| format!("expected an integer, found {raw:?}"))?,
        ),
        Kind::Bool => Value::Boolean(match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(format!("expected true or false, found {raw:?}")),
        }),
        Kind::List => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_owned()))
                .collect(),
        ),
        Kind::ArchLists => Value::Table(arch_lists(raw)?),
    }))
}

/// `x86_64=q35,pc-q35-8.2;aarch64=virt` → `{ x86_64 = ["q35", "pc-q35-8.2"], aarch64 =
/// ["virt"] }`. An architecture given twice is refused; the names are checked later.
fn arch_lists(raw: &str) -> Result<Table, String> {
    const SHAPE: &str = "expected ARCH=MACHINE[,MACHINE…][;ARCH=…], e.g. x86_64=q35;aarch64=virt";
    let mut table = Table::new();
    for part in raw.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((arch, machines)) = part.split_once('=') else {
            return Err(format!("{SHAPE}, found {part:?}"));
        };
        let arch = arch.trim();
        if arch.is_empty() {
            return Err(format!("{SHAPE}, found {part:?} (no architecture)"));
        }
        let list = machines
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(|m| Value::String(m.to_owned()))
            .collect();
        if table.insert(arch.to_owned(), Value::Array(list)).is_some() {
            return Err(format!("architecture {arch:?} is given twice"));
        }
    }
    if table.is_empty() {
        return Err(format!("{SHAPE}, found {raw:?}"));
    }
    Ok(table)
}

/// Decimal or 0x-prefixed hexadecimal, optional sign, `_` separators allowed.
fn parse_int(raw: &str) -> Option<i64> {
    let s = raw.trim();
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (radix, digits) = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(hex) => (16, hex),
        None => (10, body),
    };
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let signed = if negative {
        format!("-{digits}")
    } else {
        digits
    };
    i64::from_str_radix(&signed, radix).ok()
}

fn set_value(table: &mut Table, key: &str, value: Option<Value>) {
    let (target, name) = match key.split_once('.') {
        Some((section, name)) => {
            let entry = table
                .entry(section)
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            match entry.as_table_mut() {
                Some(t) => (t, name),
                None => return,
            }
        }
        None => (table, key),
    };
    match value {
        Some(v) => {
            target.insert(name.to_owned(), v);
        }
        None => {
            target.remove(name);
        }
    }
}

/// Applies the `VIRTSYNC_*` variables; one that is unknown or cannot be typed is
/// recorded and left out.
pub(super) fn apply_env(
    table: &mut Table,
    origins: &mut Origins,
    vars: &[(String, String)],
    problems: &mut Problems,
) {
    for (var, raw) in vars {
        let upper = var.to_ascii_uppercase();
        if !upper.starts_with(ENV_PREFIX) || IGNORED_ENV.contains(&upper.as_str()) {
            continue;
        }
        let Some((key, kind)) = keys::env_key(&upper) else {
            let known: Vec<String> = schema::keys().map(|s| keys::env_name(s.key)).collect();
            let hint = keys::did_you_mean(&upper, known.iter().map(String::as_str));
            problems.add(
                var,
                ConfigError::new(
                    var.as_str(),
                    format!(
                        "unknown virtsync environment variable (known: {}; ignored here: {}){hint}",
                        known.join(", "),
                        IGNORED_ENV.join(", ")
                    ),
                ),
            );
            continue;
        };
        let label = format!("{var} ({key})");
        if let Err(e) = apply(table, origins, key, kind, label, raw) {
            problems.add(key, e);
        }
    }
}

/// Applies the `--set` overrides; one that is unknown or cannot be typed is recorded
/// and left out.
pub(super) fn apply_sets(
    table: &mut Table,
    origins: &mut Origins,
    sets: &[(String, String)],
    problems: &mut Problems,
) {
    for (key, raw) in sets {
        let key = key.trim();
        let label = format!("--set {key}");
        let Some((key, kind)) = keys::key_kind(key) else {
            let known: Vec<&str> = schema::keys().map(|s| s.key).collect();
            problems.add(key, ConfigError::new(label, keys::unknown_key(key, &known)));
            continue;
        };
        if let Err(e) = apply(table, origins, key, kind, label, raw) {
            problems.add(key, e);
        }
    }
}

/// Types one override and stores it under `key`, labelled with its origin.
fn apply(
    table: &mut Table,
    origins: &mut Origins,
    key: &'static str,
    kind: Kind,
    label: String,
    raw: &str,
) -> Result<(), ConfigError> {
    let value = override_value(kind, raw).map_err(|p| ConfigError::new(label.as_str(), p))?;
    origins.0.insert(key, label);
    set_value(table, key, value);
    Ok(())
}
