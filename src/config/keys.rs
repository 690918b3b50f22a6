//! Looking keys up in the schema, environment variable names, and the checks that need
//! only the schema: unknown keys with "did you mean" hints and values of the wrong TOML
//! type.

use toml::{Table, Value};

use super::schema::{self, Kind};
use super::{ConfigError, Problems};

/// `VIRTSYNC_*` variables that belong to other code.
/// `VIRTSYNC_JOURNAL_SOCKET` is the journal socket's path (`crate::logging`; for tests).
pub(super) const IGNORED_ENV: &[&str] = &[
    "VIRTSYNC_FAILPOINT",
    "VIRTSYNC_CONFIG",
    "VIRTSYNC_LOG",
    "VIRTSYNC_JOURNAL_SOCKET",
];
pub(super) const ENV_PREFIX: &str = "VIRTSYNC_";

pub(super) fn key_kind(key: &str) -> Option<(&'static str, Kind)> {
    schema::spec(key).map(|spec| (spec.key, spec.kind))
}

pub(super) fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// The key whose environment variable is `upper` (an upper-cased name).
pub(super) fn env_key(upper: &str) -> Option<(&'static str, Kind)> {
    schema::keys()
        .find(|spec| env_name(spec.key) == upper)
        .map(|spec| (spec.key, spec.kind))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// Records unknown keys and values of the wrong TOML type, naming the key, and
/// removes them from `table` so that the later stages see only well-typed keys.
pub(super) fn check_file_shape(table: &mut Table, problems: &mut Problems) {
    // (top-level name, key within the section): what to remove.
    let mut bad: Vec<(String, Option<String>)> = Vec::new();
    for (name, value) in table.iter() {
        if schema::is_section(name) {
            let Value::Table(section) = value else {
                problems.add(
                    name,
                    ConfigError::new(
                        name.as_str(),
                        format!("expected a table, found {}", type_name(value)),
                    ),
                );
                bad.push((name.clone(), None));
                continue;
            };
            for (sub, v) in section {
                let key = format!("{name}.{sub}");
                if let Err(e) = check_key(&key, v) {
                    problems.add(&key, e);
                    bad.push((name.clone(), Some(sub.clone())));
                }
            }
        } else if let Err(e) = check_key(name, value) {
            problems.add(name, e);
            bad.push((name.clone(), None));
        }
    }
    for (name, sub) in bad {
        match sub {
            None => {
                table.remove(&name);
            }
            Some(sub) => {
                if let Some(Value::Table(section)) = table.get_mut(&name) {
                    section.remove(&sub);
                }
            }
        }
    }
}

fn check_key(key: &str, value: &Value) -> Result<(), ConfigError> {
    let Some((_, kind)) = key_kind(key) else {
        return Err(ConfigError::new(key, unknown_key_problem(key)));
    };
    let ok = match kind {
        Kind::Str | Kind::OptStr => value.is_str(),
        Kind::Int => value.is_integer(),
        Kind::Bool => value.is_bool(),
        Kind::List => value
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_str)),
        // Integers pass here so that deserialization can say "a unit is required".
        Kind::Duration | Kind::Size => value.is_str() || value.is_integer(),
        Kind::ArchLists => value.as_table().is_some_and(|t| {
            t.values().all(|v| {
                v.as_array()
                    .is_some_and(|items| items.iter().all(Value::is_str))
            })
        }),
    };
    if ok {
        return Ok(());
    }
    let expected = match kind {
        Kind::Str | Kind::OptStr => "a string",
        Kind::Int => "an integer",
        Kind::Bool => "a boolean (true or false)",
        Kind::List => "an array of strings",
        Kind::Duration => "a duration string such as \"30s\"",
        Kind::Size => "a size such as \"32MiB\" or a number of bytes",
        Kind::ArchLists => {
            "a table of machine lists per architecture, such as { x86_64 = [\"q35\"] }"
        }
    };
    let found = match (value, kind) {
        (Value::Array(items), Kind::List) => array_found(items),
        (Value::Table(t), Kind::ArchLists) => match t.iter().find(|(_, v)| {
            !v.as_array()
                .is_some_and(|items| items.iter().all(Value::is_str))
        }) {
            Some((arch, Value::Array(items))) => format!("{arch} = {}", array_found(items)),
            Some((arch, v)) => format!("{arch} = {}", type_name(v)),
            None => "a table".to_owned(),
        },
        _ => type_name(value).to_owned(),
    };
    Err(ConfigError::new(
        key,
        format!("expected {expected}, found {found}"),
    ))
}

/// What is wrong with an array that should hold strings only.
fn array_found(items: &[Value]) -> String {
    match items.iter().find(|v| !v.is_str()) {
        Some(item) => format!("an array containing {}", type_name(item)),
        None => "an array".to_owned(),
    }
}

fn unknown_key_problem(key: &str) -> String {
    let (section, name) = match key.rsplit_once('.') {
        Some((section, name)) if schema::is_section(section) => (Some(section), name),
        _ => (None, key),
    };
    let known: Vec<&str> = match section {
        Some(section) => schema::keys()
            .filter_map(|spec| spec.key.strip_prefix(section)?.strip_prefix('.'))
            .collect(),
        None => schema::keys()
            .map(|spec| spec.key)
            .filter(|k| !k.contains('.'))
            .chain(schema::sections())
            .collect(),
    };
    unknown_key(name, &known)
}

/// "unknown key (known keys: ...)", with a hint when `name` is close to one.
pub(super) fn unknown_key(name: &str, known: &[&str]) -> String {
    let hint = did_you_mean(name, known.iter().copied());
    format!("unknown key (known keys: {}){hint}", known.join(", "))
}

pub(super) fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let name = name.to_ascii_lowercase();
    candidates
        .map(|c| (edit_distance(&name, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("; did you mean {c}?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
