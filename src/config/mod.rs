//! virtsync configuration: TOML file, `VIRTSYNC_*` environment overrides and
//! `--set key=value` overrides, merged in that order (later wins), then
//! deserialized and validated.
//!
//! Parsing is pure: the file text, the environment and the overrides are all
//! passed in. The only I/O in this module is [`read_password`].
//!
//! The shipped, fully commented default configuration is
//! `packaging/virtsync.toml`; a unit test keeps it equal to [`Config::defaults`].

mod values;

pub use values::{format_duration, parse_duration, parse_size};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::{Table, Value};

/// The process environment, passed in so that parsing does no I/O.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Env {
    /// Default for `node_name`.
    pub hostname: String,
    /// All environment variables; only `VIRTSYNC_*` ones are looked at.
    pub vars: Vec<(String, String)>,
}

/// What this instance runs. TOML: `"node" | "cluster" | "all"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    Node,
    Cluster,
    #[default]
    All,
}

/// Which groups of columns this instance writes. TOML: a non-empty subset of
/// `["status", "legacy", "runtime"]` without duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owns {
    pub status: bool,
    pub legacy: bool,
    pub runtime: bool,
}

impl Default for Owns {
    fn default() -> Self {
        Owns {
            status: true,
            legacy: true,
            runtime: true,
        }
    }
}

/// Database schema flavour. TOML: `"compat" | "extended"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaMode {
    #[default]
    Compat,
    Extended,
}

/// How libvirt daemons are found. TOML: `"uri" | "kubevirt"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Locator {
    #[default]
    Uri,
    Kubevirt,
}

/// Enums written as lowercase strings in the configuration.
trait Choice: Copy + 'static {
    const CHOICES: &'static [(&'static str, Self)];
}

impl Choice for Role {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("node", Role::Node),
        ("cluster", Role::Cluster),
        ("all", Role::All),
    ];
}

impl Choice for SchemaMode {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("compat", SchemaMode::Compat),
        ("extended", SchemaMode::Extended),
    ];
}

impl Choice for Locator {
    const CHOICES: &'static [(&'static str, Self)] =
        &[("uri", Locator::Uri), ("kubevirt", Locator::Kubevirt)];
}

fn parse_choice<T: Choice>(value: &str) -> Result<T, String> {
    T::CHOICES
        .iter()
        .find(|(name, _)| *name == value)
        .map(|&(_, v)| v)
        .ok_or_else(|| {
            let names: Vec<String> = T::CHOICES.iter().map(|(n, _)| format!("{n:?}")).collect();
            format!("invalid value {value:?} (expected {})", names.join(", "))
        })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub node_name: String,
    pub role: Role,
    pub owns: Owns,
    pub kubernetes: KubernetesConfig,
    pub libvirt: LibvirtConfig,
    pub postgres: PostgresConfig,
    pub cache: CacheConfig,
    pub api: ApiConfig,
    pub metrics: MetricsConfig,
    pub capabilities: CapabilitiesConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    pub kubeconfig: Option<PathBuf>,
    pub url: Option<String>,
    pub in_cluster: bool,
    /// Empty = all namespaces.
    pub namespaces: Vec<String>,
    pub label_selector: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtConfig {
    pub uri: Option<String>,
    pub locator: Locator,
    pub kubelet_root: PathBuf,
    /// Placeholders: `{kubelet_root}`, `{pod_uid}`.
    pub socket_template: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    pub url: Option<String>,
    pub owner_url: Option<String>,
    pub password_file: Option<PathBuf>,
    pub schema: SchemaMode,
    pub table: String,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub managed_refresh_interval: Duration,
    /// Zero disables periodic anti-entropy, including the pass at start.
    pub resync_interval: Duration,
    pub connect_timeout: Duration,
    pub lock_key: i64,
    pub lock_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub path: PathBuf,
    /// Bytes.
    pub cache_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    pub socket: PathBuf,
    pub admin_group: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilitiesConfig {
    pub refresh_interval: Duration,
}

/// A configuration problem. `key` is the dotted key, decorated with where the
/// value came from when it was not the file (`VIRTSYNC_X (x)`, `--set x`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

const PASSWORD_HINT: &str =
    "put the password in postgres.password_file or $CREDENTIALS_DIRECTORY/postgres-password";
const DEFAULT_SOCKET_TEMPLATE: &str =
    "{kubelet_root}/pods/{pod_uid}/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock";
const TEMPLATE_PLACEHOLDERS: &[&str] = &["kubelet_root", "pod_uid"];
const MIN_CACHE_SIZE: u64 = 1 << 20;
const MAX_BATCH_SIZE: i64 = 10_000;

/// `VIRTSYNC_*` variables that belong to other code.
const IGNORED_ENV: &[&str] = &["VIRTSYNC_FAILPOINT", "VIRTSYNC_CONFIG", "VIRTSYNC_LOG"];
const ENV_PREFIX: &str = "VIRTSYNC_";

/// How an override value (environment or `--set`) is turned into TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    /// A string with no default; an empty override value unsets it.
    OptStr,
    Int,
    Bool,
    /// Array of strings; comma separated in overrides.
    List,
    Duration,
    Size,
}

const SECTIONS: &[&str] = &[
    "kubernetes",
    "libvirt",
    "postgres",
    "cache",
    "api",
    "metrics",
    "capabilities",
];

/// Every configuration key. Keep in sync with the Raw* structs and
/// packaging/virtsync.toml (both checked by tests).
const KEYS: &[(&str, Kind)] = &[
    ("node_name", Kind::OptStr),
    ("role", Kind::Str),
    ("owns", Kind::List),
    ("kubernetes.kubeconfig", Kind::OptStr),
    ("kubernetes.url", Kind::OptStr),
    ("kubernetes.in_cluster", Kind::Bool),
    ("kubernetes.namespaces", Kind::List),
    ("kubernetes.label_selector", Kind::OptStr),
    ("libvirt.uri", Kind::OptStr),
    ("libvirt.locator", Kind::Str),
    ("libvirt.kubelet_root", Kind::Str),
    ("libvirt.socket_template", Kind::Str),
    ("postgres.url", Kind::OptStr),
    ("postgres.owner_url", Kind::OptStr),
    ("postgres.password_file", Kind::OptStr),
    ("postgres.schema", Kind::Str),
    ("postgres.table", Kind::Str),
    ("postgres.batch_size", Kind::Int),
    ("postgres.flush_interval", Kind::Duration),
    ("postgres.managed_refresh_interval", Kind::Duration),
    ("postgres.resync_interval", Kind::Duration),
    ("postgres.connect_timeout", Kind::Duration),
    ("postgres.lock_key", Kind::Int),
    ("postgres.lock_timeout", Kind::Duration),
    ("cache.path", Kind::Str),
    ("cache.cache_size", Kind::Size),
    ("api.socket", Kind::Str),
    ("api.admin_group", Kind::Str),
    ("metrics.listen", Kind::Str),
    ("capabilities.refresh_interval", Kind::Duration),
];

fn key_kind(key: &str) -> Option<(&'static str, Kind)> {
    KEYS.iter().find(|(k, _)| *k == key).copied()
}

fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Where an overridden value came from; keys absent here come from the file.
#[derive(Debug, Default)]
struct Origins(HashMap<&'static str, String>);

impl Origins {
    fn label(&self, key: &str) -> String {
        match self.0.get(key) {
            Some(label) => label.clone(),
            None => key.to_owned(),
        }
    }

    fn err(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::new(self.label(key), problem)
    }
}

impl Config {
    pub fn defaults(env: &Env) -> Config {
        Config {
            node_name: env.hostname.trim().to_ascii_lowercase(),
            role: Role::All,
            owns: Owns::default(),
            kubernetes: KubernetesConfig {
                kubeconfig: None,
                url: None,
                in_cluster: false,
                namespaces: Vec::new(),
                label_selector: None,
            },
            libvirt: LibvirtConfig {
                uri: None,
                locator: Locator::Uri,
                kubelet_root: PathBuf::from("/var/lib/kubelet"),
                socket_template: DEFAULT_SOCKET_TEMPLATE.to_owned(),
            },
            postgres: PostgresConfig {
                url: None,
                owner_url: None,
                password_file: None,
                schema: SchemaMode::Compat,
                table: "vms".to_owned(),
                batch_size: 500,
                flush_interval: Duration::from_millis(50),
                managed_refresh_interval: Duration::from_secs(30),
                resync_interval: Duration::from_secs(3600),
                connect_timeout: Duration::from_secs(10),
                lock_key: 0x7669_7274_7379_6e63,
                lock_timeout: Duration::from_secs(10),
            },
            cache: CacheConfig {
                path: PathBuf::from("/var/lib/virtsync/state.redb"),
                cache_size: 32 << 20,
            },
            api: ApiConfig {
                socket: PathBuf::from("/run/virtsync/virtsync.sock"),
                admin_group: "virtsync-admin".to_owned(),
            },
            metrics: MetricsConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 9746)),
            },
            capabilities: CapabilitiesConfig {
                refresh_interval: Duration::from_secs(3600),
            },
        }
    }

    /// `text` is the TOML file contents ("" = no file). `env.vars` override
    /// the file and `sets` (from `--set key=value`) override the environment.
    pub fn parse(text: &str, env: &Env, sets: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut table = parse_toml(text)?;
        check_file_shape(&table)?;
        let mut origins = Origins::default();
        apply_env(&mut table, &mut origins, &env.vars)?;
        apply_sets(&mut table, &mut origins, sets)?;
        let raw: RawConfig = serde_path_to_error::deserialize(table).map_err(|e| {
            let key = path_key(e.path());
            origins.err(&key, one_line(e.inner().message()))
        })?;
        build(raw, env, &origins)
    }

    /// For commands that need the database.
    pub fn require_postgres_url(&self) -> Result<&str, ConfigError> {
        self.postgres
            .url
            .as_deref()
            .ok_or_else(|| ConfigError::new("postgres.url", "required by this command"))
    }
}

/// Reads the database password: `password_file` if set (it must be readable
/// and non-empty); else `<credentials_directory>/postgres-password` if it
/// exists; else `None`. Trailing line breaks are removed.
pub fn read_password(
    cfg: &PostgresConfig,
    credentials_directory: Option<&Path>,
) -> Result<Option<String>, ConfigError> {
    if let Some(path) = &cfg.password_file {
        return read_secret(path, "postgres.password_file").map(Some);
    }
    let Some(dir) = credentials_directory else {
        return Ok(None);
    };
    let path = dir.join("postgres-password");
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        _ => read_secret(&path, "$CREDENTIALS_DIRECTORY/postgres-password").map(Some),
    }
}

fn read_secret(path: &Path, key: &str) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ConfigError::new(key, format!("{} is not valid UTF-8", path.display())))?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(ConfigError::new(
            key,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(password.to_owned())
}

// ---------------------------------------------------------------------------
// Stage 1: TOML text -> table, shape check, overrides.

fn parse_toml(text: &str) -> Result<Table, ConfigError> {
    text.parse::<Table>().map_err(|e| {
        let msg = one_line(e.message());
        let problem = match e.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                format!("TOML syntax error at line {line}, column {column}: {msg}")
            }
            None => format!("TOML syntax error: {msg}"),
        };
        ConfigError::new("config", problem)
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn one_line(s: &str) -> String {
    s.trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
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

/// Rejects unknown keys and values of the wrong TOML type, naming the key.
fn check_file_shape(table: &Table) -> Result<(), ConfigError> {
    for (name, value) in table {
        if SECTIONS.contains(&name.as_str()) {
            let Value::Table(section) = value else {
                return Err(ConfigError::new(
                    name.as_str(),
                    format!("expected a table, found {}", type_name(value)),
                ));
            };
            for (sub, v) in section {
                check_key(&format!("{name}.{sub}"), v)?;
            }
        } else {
            check_key(name, value)?;
        }
    }
    Ok(())
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
    };
    let found = match value.as_array() {
        Some(items) if kind == Kind::List => match items.iter().find(|v| !v.is_str()) {
            Some(item) => format!("an array containing {}", type_name(item)),
            None => "an array".to_owned(),
        },
        _ => type_name(value).to_owned(),
    };
    Err(ConfigError::new(
        key,
        format!("expected {expected}, found {found}"),
    ))
}

fn unknown_key_problem(key: &str) -> String {
    let (section, name) = match key.rsplit_once('.') {
        Some((section, name)) if SECTIONS.contains(&section) => (Some(section), name),
        _ => (None, key),
    };
    let known: Vec<&str> = match section {
        Some(section) => KEYS
            .iter()
            .filter_map(|(k, _)| k.strip_prefix(section)?.strip_prefix('.'))
            .collect(),
        None => KEYS
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !k.contains('.'))
            .chain(SECTIONS.iter().copied())
            .collect(),
    };
    format!(
        "unknown key (known keys: {}){}",
        known.join(", "),
        did_you_mean(name, known.iter().copied())
    )
}

fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
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
    }))
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

fn apply_env(
    table: &mut Table,
    origins: &mut Origins,
    vars: &[(String, String)],
) -> Result<(), ConfigError> {
    for (var, raw) in vars {
        let upper = var.to_ascii_uppercase();
        if !upper.starts_with(ENV_PREFIX) || IGNORED_ENV.contains(&upper.as_str()) {
            continue;
        }
        let Some(&(key, kind)) = KEYS.iter().find(|(k, _)| env_name(k) == upper) else {
            let known: Vec<String> = KEYS.iter().map(|(k, _)| env_name(k)).collect();
            let hint = did_you_mean(&upper, known.iter().map(String::as_str));
            return Err(ConfigError::new(
                var.as_str(),
                format!(
                    "unknown virtsync environment variable (known: {}; ignored here: {}){hint}",
                    known.join(", "),
                    IGNORED_ENV.join(", ")
                ),
            ));
        };
        let label = format!("{var} ({key})");
        let value = override_value(kind, raw).map_err(|p| ConfigError::new(label.as_str(), p))?;
        origins.0.insert(key, label);
        set_value(table, key, value);
    }
    Ok(())
}

fn apply_sets(
    table: &mut Table,
    origins: &mut Origins,
    sets: &[(String, String)],
) -> Result<(), ConfigError> {
    for (key, raw) in sets {
        let key = key.trim();
        let label = format!("--set {key}");
        let Some((key, kind)) = key_kind(key) else {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            let hint = did_you_mean(key, known.iter().copied());
            return Err(ConfigError::new(
                label,
                format!("unknown key (known keys: {}){hint}", known.join(", ")),
            ));
        };
        let value = override_value(kind, raw).map_err(|p| ConfigError::new(label.as_str(), p))?;
        origins.0.insert(key, label);
        set_value(table, key, value);
    }
    Ok(())
}

fn path_key(path: &serde_path_to_error::Path) -> String {
    let parts: Vec<&str> = path
        .iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    if parts.is_empty() {
        "config".to_owned()
    } else {
        parts.join(".")
    }
}

// ---------------------------------------------------------------------------
// Stage 2: typed deserialization. Every field is optional; defaults are
// applied in `build`. Types were already checked, so serde mostly parses
// durations and sizes here.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node_name: Option<String>,
    role: Option<String>,
    owns: Option<Vec<String>>,
    #[serde(default)]
    kubernetes: RawKubernetes,
    #[serde(default)]
    libvirt: RawLibvirt,
    #[serde(default)]
    postgres: RawPostgres,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    capabilities: RawCapabilities,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKubernetes {
    kubeconfig: Option<PathBuf>,
    url: Option<String>,
    in_cluster: Option<bool>,
    namespaces: Option<Vec<String>>,
    label_selector: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLibvirt {
    uri: Option<String>,
    locator: Option<String>,
    kubelet_root: Option<PathBuf>,
    socket_template: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    url: Option<String>,
    owner_url: Option<String>,
    password_file: Option<PathBuf>,
    schema: Option<String>,
    table: Option<String>,
    batch_size: Option<i64>,
    #[serde(default, deserialize_with = "de_duration")]
    flush_interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    managed_refresh_interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    resync_interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    connect_timeout: Option<Duration>,
    lock_key: Option<i64>,
    #[serde(default, deserialize_with = "de_duration")]
    lock_timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCache {
    path: Option<PathBuf>,
    #[serde(default, deserialize_with = "de_size")]
    cache_size: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    socket: Option<PathBuf>,
    admin_group: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCapabilities {
    #[serde(default, deserialize_with = "de_duration")]
    refresh_interval: Option<Duration>,
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration such as \"30s\"")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            parse_duration(s).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            Err(E::custom(values::duration_unit_required(&v.to_string())))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Err(E::custom(values::duration_unit_required(&v.to_string())))
        }
    }
    d.deserialize_any(V).map(Some)
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a size such as \"32MiB\" or a number of bytes")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
            parse_size(s).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v)
                .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
    }
    d.deserialize_any(V).map(Some)
}

// ---------------------------------------------------------------------------
// Stage 3: defaults + validation.

fn build(raw: RawConfig, env: &Env, o: &Origins) -> Result<Config, ConfigError> {
    let mut c = Config::defaults(env);
    let check = |key: &str, result: Result<(), String>| result.map_err(|p| o.err(key, p));

    // Top level.
    match raw.node_name {
        Some(name) => {
            check("node_name", check_dns1123_subdomain(&name))?;
            c.node_name = name;
        }
        None => check_dns1123_subdomain(&c.node_name).map_err(|p| {
            o.err(
                "node_name",
                format!("not set, and the host name is not usable: {p}; set node_name"),
            )
        })?,
    }
    if let Some(v) = raw.role {
        c.role = parse_choice(&v).map_err(|p| o.err("role", p))?;
    }
    if let Some(v) = raw.owns {
        c.owns = parse_owns(&v).map_err(|p| o.err("owns", p))?;
    }

    // [kubernetes]
    let k = raw.kubernetes;
    if let Some(v) = k.kubeconfig {
        check("kubernetes.kubeconfig", non_empty_path(&v))?;
        c.kubernetes.kubeconfig = Some(v);
    }
    if let Some(v) = k.url {
        check("kubernetes.url", check_http_url(&v))?;
        c.kubernetes.url = Some(v);
    }
    if let Some(v) = k.in_cluster {
        c.kubernetes.in_cluster = v;
    }
    let sources: Vec<&str> = [
        (c.kubernetes.kubeconfig.is_some(), "kubernetes.kubeconfig"),
        (c.kubernetes.url.is_some(), "kubernetes.url"),
        (c.kubernetes.in_cluster, "kubernetes.in_cluster"),
    ]
    .into_iter()
    .filter_map(|(set, key)| set.then_some(key))
    .collect();
    if let [first, second, ..] = sources.as_slice() {
        return Err(o.err(
            second,
            format!(
                "conflicts with {first}: set at most one of kubernetes.kubeconfig, \
                 kubernetes.url and kubernetes.in_cluster = true"
            ),
        ));
    }
    if let Some(v) = k.namespaces {
        check("kubernetes.namespaces", check_namespaces(&v))?;
        c.kubernetes.namespaces = v;
    }
    if let Some(v) = k.label_selector {
        c.kubernetes.label_selector = Some(v);
    }

    // [libvirt]
    let l = raw.libvirt;
    if let Some(v) = l.uri {
        if !v.contains("://") {
            return Err(o.err(
                "libvirt.uri",
                format!("invalid libvirt URI {v:?} (use e.g. qemu:///system)"),
            ));
        }
        c.libvirt.uri = Some(v);
    }
    if let Some(v) = l.locator {
        c.libvirt.locator = parse_choice(&v).map_err(|p| o.err("libvirt.locator", p))?;
    }
    if let Some(v) = l.kubelet_root {
        check("libvirt.kubelet_root", non_empty_path(&v))?;
        c.libvirt.kubelet_root = v;
    }
    if let Some(v) = l.socket_template {
        check("libvirt.socket_template", check_template(&v))?;
        c.libvirt.socket_template = v;
    }

    // [postgres]
    let p = raw.postgres;
    if let Some(v) = p.url {
        check("postgres.url", check_pg_url(&v))?;
        c.postgres.url = Some(v);
    }
    if let Some(v) = p.owner_url {
        check("postgres.owner_url", check_pg_url(&v))?;
        c.postgres.owner_url = Some(v);
    }
    if let Some(v) = p.password_file {
        check("postgres.password_file", non_empty_path(&v))?;
        c.postgres.password_file = Some(v);
    }
    if let Some(v) = p.schema {
        c.postgres.schema = parse_choice(&v).map_err(|e| o.err("postgres.schema", e))?;
    }
    if let Some(v) = p.table {
        check("postgres.table", check_table_name(&v))?;
        c.postgres.table = v;
    }
    if let Some(v) = p.batch_size {
        c.postgres.batch_size = usize::try_from(v)
            .ok()
            .filter(|_| (1..=MAX_BATCH_SIZE).contains(&v))
            .ok_or_else(|| {
                o.err(
                    "postgres.batch_size",
                    format!("must be between 1 and {MAX_BATCH_SIZE}, got {v}"),
                )
            })?;
    }
    let positive = Duration::from_nanos(1);
    let hour = Duration::from_secs(3600);
    let pg = &mut c.postgres;
    set_duration(
        o,
        "postgres.flush_interval",
        p.flush_interval,
        &mut pg.flush_interval,
        Duration::from_millis(1),
        Some(hour),
    )?;
    set_duration(
        o,
        "postgres.managed_refresh_interval",
        p.managed_refresh_interval,
        &mut pg.managed_refresh_interval,
        Duration::from_secs(1),
        None,
    )?;
    set_duration(
        o,
        "postgres.resync_interval",
        p.resync_interval,
        &mut pg.resync_interval,
        Duration::ZERO,
        None,
    )?;
    set_duration(
        o,
        "postgres.connect_timeout",
        p.connect_timeout,
        &mut pg.connect_timeout,
        positive,
        None,
    )?;
    set_duration(
        o,
        "postgres.lock_timeout",
        p.lock_timeout,
        &mut pg.lock_timeout,
        Duration::ZERO,
        None,
    )?;
    set_duration(
        o,
        "capabilities.refresh_interval",
        raw.capabilities.refresh_interval,
        &mut c.capabilities.refresh_interval,
        positive,
        None,
    )?;
    if let Some(v) = p.lock_key {
        c.postgres.lock_key = v;
    }

    // [cache]
    if let Some(v) = raw.cache.path {
        check("cache.path", non_empty_path(&v))?;
        c.cache.path = v;
    }
    if let Some(v) = raw.cache.cache_size {
        if v < MIN_CACHE_SIZE {
            return Err(o.err(
                "cache.cache_size",
                format!("must be at least 1MiB ({MIN_CACHE_SIZE} bytes), got {v} bytes"),
            ));
        }
        c.cache.cache_size = v;
    }

    // [api]
    if let Some(v) = raw.api.socket {
        check("api.socket", non_empty_path(&v))?;
        c.api.socket = v;
    }
    if let Some(v) = raw.api.admin_group {
        if v.trim().is_empty() {
            return Err(o.err("api.admin_group", "must not be empty"));
        }
        c.api.admin_group = v;
    }

    // [metrics]
    if let Some(v) = raw.metrics.listen {
        c.metrics.listen = v.trim().parse().map_err(|_| {
            o.err(
                "metrics.listen",
                format!("invalid socket address {v:?} (use e.g. 127.0.0.1:9746 or [::1]:9746)"),
            )
        })?;
    }
    Ok(c)
}

fn set_duration(
    o: &Origins,
    key: &str,
    value: Option<Duration>,
    target: &mut Duration,
    min: Duration,
    max: Option<Duration>,
) -> Result<(), ConfigError> {
    let Some(v) = value else {
        return Ok(());
    };
    let shown = format_duration(v);
    if v < min {
        let need = if min == Duration::from_nanos(1) {
            "greater than 0s".to_owned()
        } else {
            format!("at least {}", format_duration(min))
        };
        return Err(o.err(key, format!("must be {need}, got {shown}")));
    }
    if let Some(max) = max
        && v > max
    {
        let max = format_duration(max);
        return Err(o.err(key, format!("must be at most {max}, got {shown}")));
    }
    *target = v;
    Ok(())
}

fn parse_owns(items: &[String]) -> Result<Owns, String> {
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

fn check_dns1123_subdomain(name: &str) -> Result<(), String> {
    if name.len() <= 253 && name.split('.').all(is_dns1123_label) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid DNS-1123 subdomain (lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit, at most 253 characters)"
        ))
    }
}

fn check_namespaces(names: &[String]) -> Result<(), String> {
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

fn check_http_url(url: &str) -> Result<(), String> {
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

fn non_empty_path(p: &Path) -> Result<(), String> {
    if p.as_os_str().is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(())
    }
}

fn check_template(template: &str) -> Result<(), String> {
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

fn check_table_name(name: &str) -> Result<(), String> {
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

fn check_pg_url(url: &str) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../packaging/virtsync.toml");

    fn env_with(vars: &[(&str, &str)]) -> Env {
        Env {
            hostname: "Node-1".to_owned(),
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        env_with(items).vars
    }

    fn parse(
        text: &str,
        vars: &[(&str, &str)],
        sets: &[(&str, &str)],
    ) -> Result<Config, ConfigError> {
        Config::parse(text, &env_with(vars), &pairs(sets))
    }

    fn parse_ok(text: &str, vars: &[(&str, &str)], sets: &[(&str, &str)]) -> Config {
        match parse(text, vars, sets) {
            Ok(c) => c,
            Err(e) => panic!("unexpected error: {e}\n--- input:\n{text}"),
        }
    }

    #[test]
    fn defaults() {
        let c = Config::defaults(&env_with(&[]));
        assert_eq!(c.node_name, "node-1");
        assert_eq!(c.role, Role::All);
        assert_eq!(
            c.owns,
            Owns {
                status: true,
                legacy: true,
                runtime: true
            }
        );
        assert_eq!(c.kubernetes.kubeconfig, None);
        assert_eq!(c.kubernetes.url, None);
        assert!(!c.kubernetes.in_cluster);
        assert!(c.kubernetes.namespaces.is_empty());
        assert_eq!(c.kubernetes.label_selector, None);
        assert_eq!(c.libvirt.uri, None);
        assert_eq!(c.libvirt.locator, Locator::Uri);
        assert_eq!(c.libvirt.kubelet_root, Path::new("/var/lib/kubelet"));
        assert_eq!(
            c.libvirt.socket_template,
            "{kubelet_root}/pods/{pod_uid}/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock"
        );
        let p = &c.postgres;
        assert_eq!(
            (&p.url, &p.owner_url, &p.password_file),
            (&None, &None, &None)
        );
        assert_eq!(p.schema, SchemaMode::Compat);
        assert_eq!(p.table, "vms");
        assert_eq!(p.batch_size, 500);
        assert_eq!(p.flush_interval, Duration::from_millis(50));
        assert_eq!(p.managed_refresh_interval, Duration::from_secs(30));
        assert_eq!(p.resync_interval, Duration::from_secs(3600));
        assert_eq!(p.connect_timeout, Duration::from_secs(10));
        assert_eq!(p.lock_key, 0x7669727473796e63);
        assert_eq!(p.lock_timeout, Duration::from_secs(10));
        assert_eq!(c.cache.path, Path::new("/var/lib/virtsync/state.redb"));
        assert_eq!(c.cache.cache_size, 32 * 1024 * 1024);
        assert_eq!(c.api.socket, Path::new("/run/virtsync/virtsync.sock"));
        assert_eq!(c.api.admin_group, "virtsync-admin");
        assert_eq!(c.metrics.listen.to_string(), "127.0.0.1:9746");
        assert_eq!(c.capabilities.refresh_interval, Duration::from_secs(3600));
        // No file at all gives the defaults too.
        assert_eq!(parse_ok("", &[], &[]), c);
        assert_eq!(parse_ok("\n# nothing\n", &[], &[]), c);
    }

    #[test]
    fn shipped_file_is_the_defaults() {
        for hostname in ["node-1", "Worker-2.Example.COM"] {
            let env = Env {
                hostname: hostname.to_owned(),
                vars: Vec::new(),
            };
            match Config::parse(SHIPPED, &env, &[]) {
                Ok(c) => assert_eq!(c, Config::defaults(&env)),
                Err(e) => panic!("packaging/virtsync.toml: {e}"),
            }
        }
    }

    /// Every key appears in the shipped file (set, or commented out when it
    /// has no default), under the right section, with a comment giving its default.
    #[test]
    fn shipped_file_documents_every_key() {
        let mut section = String::new();
        let mut comment = String::new();
        let mut seen = Vec::new();
        for line in SHIPPED.lines() {
            let line = line.trim();
            if line.is_empty() {
                comment.clear();
            } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                comment.clear();
            } else {
                let body = line.strip_prefix("# ").unwrap_or(line);
                match body.split_once(" = ") {
                    Some((k, _)) if k.chars().all(|c| c.is_ascii_lowercase() || c == '_') => {
                        let key = if section.is_empty() {
                            k.to_owned()
                        } else {
                            format!("{section}.{k}")
                        };
                        assert!(
                            comment.contains("Default:"),
                            "{key}: no \"Default:\" comment"
                        );
                        assert!(
                            comment.contains("Accepted:"),
                            "{key}: no \"Accepted:\" comment"
                        );
                        let kind = key_kind(&key).map(|(_, kind)| kind);
                        assert!(kind.is_some(), "{key} is documented but unknown");
                        // Keys without a default are commented out, the others are set.
                        assert_eq!(line.starts_with('#'), kind == Some(Kind::OptStr), "{key}");
                        seen.push(key);
                    }
                    _ => comment.push_str(line),
                }
            }
        }
        let all: Vec<String> = KEYS.iter().map(|(k, _)| (*k).to_owned()).collect();
        assert_eq!(
            seen, all,
            "packaging/virtsync.toml must list every key, in KEYS order"
        );
    }

    /// (key, TOML literal, override string) for every key except
    /// kubernetes.kubeconfig and kubernetes.in_cluster, which conflict with
    /// kubernetes.url and are covered by `kubernetes_sources`.
    #[rustfmt::skip]
    const FULL: &[(&str, &str, &str)] = &[
        ("node_name", r#""worker-7.example.com""#, "worker-7.example.com"),
        ("role", r#""node""#, "node"),
        ("owns", r#"["status", "runtime"]"#, "status, runtime"),
        ("kubernetes.url", r#""https://10.0.0.1:6443""#, "https://10.0.0.1:6443"),
        ("kubernetes.namespaces", r#"["vms", "team-a"]"#, "vms,team-a"),
        ("kubernetes.label_selector", r#""app=vm,tier!=test""#, "app=vm,tier!=test"),
        ("libvirt.uri", r#""qemu+unix:///system""#, "qemu+unix:///system"),
        ("libvirt.locator", r#""kubevirt""#, "kubevirt"),
        ("libvirt.kubelet_root", r#""/srv/kubelet""#, "/srv/kubelet"),
        ("libvirt.socket_template", r#""{kubelet_root}/p/{pod_uid}/s""#, "{kubelet_root}/p/{pod_uid}/s"),
        ("postgres.url", r#""postgres://virtsync@db/virtsync""#, "postgres://virtsync@db/virtsync"),
        ("postgres.owner_url", r#""host=db user=owner dbname=virtsync""#, "host=db user=owner dbname=virtsync"),
        ("postgres.password_file", r#""/etc/virtsync/pw""#, "/etc/virtsync/pw"),
        ("postgres.schema", r#""extended""#, "extended"),
        ("postgres.table", r#""sync.vm_rows""#, "sync.vm_rows"),
        ("postgres.batch_size", "10000", "10000"),
        ("postgres.flush_interval", r#""1s""#, "1s"),
        ("postgres.managed_refresh_interval", r#""1m30s""#, "1m30s"),
        ("postgres.resync_interval", r#""0s""#, "0s"),
        ("postgres.connect_timeout", r#""3s""#, "3s"),
        ("postgres.lock_key", "-42", "-42"),
        ("postgres.lock_timeout", r#""1m""#, "1m"),
        ("cache.path", r#""/tmp/state.redb""#, "/tmp/state.redb"),
        ("cache.cache_size", r#""1GiB""#, "1GiB"),
        ("api.socket", r#""/tmp/v.sock""#, "/tmp/v.sock"),
        ("api.admin_group", r#""wheel""#, "wheel"),
        ("metrics.listen", r#""[::1]:9100""#, "[::1]:9100"),
        ("capabilities.refresh_interval", r#""5m""#, "5m"),
    ];

    fn full_expected() -> Config {
        Config {
            node_name: "worker-7.example.com".to_owned(),
            role: Role::Node,
            owns: Owns {
                status: true,
                legacy: false,
                runtime: true,
            },
            kubernetes: KubernetesConfig {
                kubeconfig: None,
                url: Some("https://10.0.0.1:6443".to_owned()),
                in_cluster: false,
                namespaces: vec!["vms".to_owned(), "team-a".to_owned()],
                label_selector: Some("app=vm,tier!=test".to_owned()),
            },
            libvirt: LibvirtConfig {
                uri: Some("qemu+unix:///system".to_owned()),
                locator: Locator::Kubevirt,
                kubelet_root: PathBuf::from("/srv/kubelet"),
                socket_template: "{kubelet_root}/p/{pod_uid}/s".to_owned(),
            },
            postgres: PostgresConfig {
                url: Some("postgres://virtsync@db/virtsync".to_owned()),
                owner_url: Some("host=db user=owner dbname=virtsync".to_owned()),
                password_file: Some(PathBuf::from("/etc/virtsync/pw")),
                schema: SchemaMode::Extended,
                table: "sync.vm_rows".to_owned(),
                batch_size: 10_000,
                flush_interval: Duration::from_secs(1),
                managed_refresh_interval: Duration::from_secs(90),
                resync_interval: Duration::ZERO,
                connect_timeout: Duration::from_secs(3),
                lock_key: -42,
                lock_timeout: Duration::from_secs(60),
            },
            cache: CacheConfig {
                path: PathBuf::from("/tmp/state.redb"),
                cache_size: 1 << 30,
            },
            api: ApiConfig {
                socket: PathBuf::from("/tmp/v.sock"),
                admin_group: "wheel".to_owned(),
            },
            metrics: MetricsConfig {
                listen: SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 9100)),
            },
            capabilities: CapabilitiesConfig {
                refresh_interval: Duration::from_secs(300),
            },
        }
    }

    /// Renders (dotted key, TOML literal) pairs as a TOML document.
    fn toml_doc(entries: &[(&str, &str)]) -> String {
        let mut top = String::new();
        let mut sections = String::new();
        for section in SECTIONS {
            let mut body = String::new();
            for (key, literal) in entries {
                if let Some(name) = key.strip_prefix(section).and_then(|k| k.strip_prefix('.')) {
                    body.push_str(&format!("{name} = {literal}\n"));
                }
            }
            if !body.is_empty() {
                sections.push_str(&format!("\n[{section}]\n{body}"));
            }
        }
        for (key, literal) in entries.iter().filter(|(k, _)| !k.contains('.')) {
            top.push_str(&format!("{key} = {literal}\n"));
        }
        top + &sections
    }

    #[test]
    fn every_key_settable_from_file_env_and_set() {
        let mut covered: Vec<&str> = FULL.iter().map(|(k, _, _)| *k).collect();
        covered.extend(["kubernetes.kubeconfig", "kubernetes.in_cluster"]);
        for (key, _) in KEYS {
            assert!(covered.contains(key), "{key} is not covered by FULL");
        }
        let expected = full_expected();
        let file: Vec<(&str, &str)> = FULL.iter().map(|(k, lit, _)| (*k, *lit)).collect();
        assert_eq!(parse_ok(&toml_doc(&file), &[], &[]), expected, "from file");
        let names: Vec<String> = FULL.iter().map(|(k, _, _)| env_name(k)).collect();
        let vars: Vec<(&str, &str)> = names
            .iter()
            .zip(FULL)
            .map(|(n, (_, _, v))| (n.as_str(), *v))
            .collect();
        assert_eq!(parse_ok("", &vars, &[]), expected, "from the environment");
        let sets: Vec<(&str, &str)> = FULL.iter().map(|(k, _, v)| (*k, *v)).collect();
        assert_eq!(parse_ok("", &[], &sets), expected, "from --set");
    }

    #[test]
    fn kubernetes_sources() {
        let c = parse_ok("[kubernetes]\nkubeconfig = \"/etc/kube.conf\"", &[], &[]);
        assert_eq!(
            c.kubernetes.kubeconfig,
            Some(PathBuf::from("/etc/kube.conf"))
        );
        let c = parse_ok("[kubernetes]\nin_cluster = true", &[], &[]);
        assert!(c.kubernetes.in_cluster);
        let c = parse_ok("", &[("VIRTSYNC_KUBERNETES_IN_CLUSTER", "yes")], &[]);
        assert!(c.kubernetes.in_cluster);
        let c = parse_ok("", &[], &[("kubernetes.kubeconfig", "/k")]);
        assert_eq!(c.kubernetes.kubeconfig, Some(PathBuf::from("/k")));
        // An override can replace the file's choice by unsetting it.
        let c = parse_ok(
            "[kubernetes]\nkubeconfig = \"/etc/kube.conf\"",
            &[("VIRTSYNC_KUBERNETES_KUBECONFIG", "")],
            &[("kubernetes.in_cluster", "true")],
        );
        assert_eq!(
            (c.kubernetes.kubeconfig, c.kubernetes.in_cluster),
            (None, true)
        );
    }

    #[test]
    fn precedence_file_env_set() {
        let file = "[postgres]\nbatch_size = 100\ntable = \"file_t\"";
        const ENV: Vars = &[
            ("VIRTSYNC_POSTGRES_BATCH_SIZE", "200"),
            ("VIRTSYNC_POSTGRES_TABLE", "env_t"),
        ];
        const SET: Vars = &[("postgres.batch_size", "300")];
        let cases: &[(Vars, Vars, usize, &str)] = &[
            (&[], &[], 100, "file_t"),
            (ENV, &[], 200, "env_t"),
            (&[], SET, 300, "file_t"),
            (ENV, SET, 300, "env_t"),
        ];
        for (vars, sets, batch, table) in cases {
            let c = parse_ok(file, vars, sets);
            assert_eq!(
                (c.postgres.batch_size, c.postgres.table.as_str()),
                (*batch, *table)
            );
        }
        // Dotted keys at the top level of the file work like sections.
        assert_eq!(
            parse_ok("postgres.batch_size = 7", &[], &[])
                .postgres
                .batch_size,
            7
        );
        // Later duplicates win, within the environment and within --set.
        let c = parse_ok(
            "",
            &[("VIRTSYNC_ROLE", "node"), ("VIRTSYNC_ROLE", "cluster")],
            &[("owns", "legacy"), ("owns", "status,legacy")],
        );
        assert_eq!(c.role, Role::Cluster);
        assert_eq!(
            c.owns,
            Owns {
                status: true,
                legacy: true,
                runtime: false
            }
        );
    }

    #[test]
    fn environment_handling() {
        let defaults = Config::defaults(&env_with(&[]));
        // Variables of other code, and non-virtsync variables, are ignored.
        let ignored = [
            ("VIRTSYNC_FAILPOINT", "db_write=panic"),
            ("VIRTSYNC_CONFIG", "/etc/virtsync/virtsync.toml"),
            ("VIRTSYNC_LOG", "debug"),
            ("virtsync_log", "debug"),
            ("PATH", "/usr/bin"),
            ("VIRTSYNCX_ROLE", "bogus"),
            ("CREDENTIALS_DIRECTORY", "/run/credentials/virtsync.service"),
        ];
        assert_eq!(parse_ok("", &ignored, &[]), defaults);
        // Names are case-insensitive.
        let c = parse_ok(
            "",
            &[
                ("virtsync_postgres_batch_size", "7"),
                ("Virtsync_Node_Name", "n2"),
            ],
            &[],
        );
        assert_eq!((c.postgres.batch_size, c.node_name.as_str()), (7, "n2"));
        // Integers: hex, sign, separators.
        let cases: &[(&str, i64)] = &[
            ("0x10", 16),
            ("-5", -5),
            ("+5", 5),
            ("1_000", 1000),
            (" 9 ", 9),
        ];
        for (raw, want) in cases {
            let c = parse_ok("", &[("VIRTSYNC_POSTGRES_LOCK_KEY", raw)], &[]);
            assert_eq!(c.postgres.lock_key, *want, "{raw}");
        }
        // An empty value unsets a key without default; node_name falls back to the host name.
        let c = parse_ok(
            "node_name = \"x\"\n[postgres]\nurl = \"host=db\"",
            &[("VIRTSYNC_POSTGRES_URL", ""), ("VIRTSYNC_NODE_NAME", "")],
            &[],
        );
        assert_eq!((c.postgres.url, c.node_name.as_str()), (None, "node-1"));
        // An empty list is an empty list.
        let c = parse_ok(
            "[kubernetes]\nnamespaces = [\"a\"]",
            &[("VIRTSYNC_KUBERNETES_NAMESPACES", "")],
            &[],
        );
        assert!(c.kubernetes.namespaces.is_empty());
        // Sizes may be given as a TOML integer or a plain number of bytes.
        assert_eq!(
            parse_ok("[cache]\ncache_size = 2097152", &[], &[])
                .cache
                .cache_size,
            2 << 20
        );
        let c = parse_ok("", &[("VIRTSYNC_CACHE_CACHE_SIZE", "2097152")], &[]);
        assert_eq!(c.cache.cache_size, 2 << 20);
    }

    #[test]
    fn env_names_are_unique() {
        let mut names: Vec<String> = KEYS.iter().map(|(k, _)| env_name(k)).collect();
        names.extend(IGNORED_ENV.iter().map(|s| (*s).to_owned()));
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
        assert!(names.contains(&"VIRTSYNC_POSTGRES_BATCH_SIZE".to_owned()));
        assert!(names.contains(&"VIRTSYNC_NODE_NAME".to_owned()));
        assert!(names.contains(&"VIRTSYNC_CACHE_PATH".to_owned()));
    }

    /// (file, env, --set, expected key, expected words in the problem)
    type ErrorCase = (
        &'static str,
        Vars,
        Vars,
        &'static str,
        &'static [&'static str],
    );
    type Vars = &'static [(&'static str, &'static str)];

    #[rustfmt::skip]
    const ERRORS: &[ErrorCase] = &[
        // Unknown keys.
        ("[postgres]\nflush_intervall = \"1s\"", &[], &[], "postgres.flush_intervall", &["unknown key (known keys: url, owner_url,", "did you mean flush_interval?"]),
        ("[postgress]\nurl = \"host=db\"", &[], &[], "postgress", &["unknown key", "postgres"]),
        ("nodename = \"x\"", &[], &[], "nodename", &["unknown key", "node_name"]),
        ("[metrics.extra]\nx = 1", &[], &[], "metrics.extra", &["unknown key", "listen"]),
        // Wrong types.
        ("postgres = 5", &[], &[], "postgres", &["expected a table, found an integer"]),
        ("[postgres]\nbatch_size = \"500\"", &[], &[], "postgres.batch_size", &["expected an integer, found a string"]),
        ("[postgres]\nbatch_size = 1.5", &[], &[], "postgres.batch_size", &["expected an integer, found a float"]),
        ("[kubernetes]\nin_cluster = \"yes\"", &[], &[], "kubernetes.in_cluster", &["expected a boolean", "found a string"]),
        ("owns = \"status\"", &[], &[], "owns", &["expected an array of strings, found a string"]),
        ("owns = [\"status\", 1]", &[], &[], "owns", &["found an array containing an integer"]),
        ("[api]\nsocket = 1", &[], &[], "api.socket", &["expected a string, found an integer"]),
        ("[postgres]\nflush_interval = true", &[], &[], "postgres.flush_interval", &["expected a duration", "found a boolean"]),
        // Durations and sizes.
        ("[postgres]\nflush_interval = \"5 parsecs\"", &[], &[], "postgres.flush_interval", &["invalid duration \"5 parsecs\" (use e.g. 500ms, 30s, 5m, 1h)"]),
        ("[postgres]\nflush_interval = 200", &[], &[], "postgres.flush_interval", &["invalid duration", "unit is required"]),
        ("[capabilities]\nrefresh_interval = \"60\"", &[], &[], "capabilities.refresh_interval", &["unit is required"]),
        ("[postgres]\nlock_timeout = \"99999999999999999999d\"", &[], &[], "postgres.lock_timeout", &["too large"]),
        ("[cache]\ncache_size = \"32 parsecs\"", &[], &[], "cache.cache_size", &["invalid size \"32 parsecs\""]),
        ("[cache]\ncache_size = -1", &[], &[], "cache.cache_size", &["must not be negative"]),
        ("[cache]\ncache_size = \"512KiB\"", &[], &[], "cache.cache_size", &["at least 1MiB"]),
        // Ranges.
        ("[postgres]\nbatch_size = 0", &[], &[], "postgres.batch_size", &["between 1 and 10000", "got 0"]),
        ("[postgres]\nbatch_size = 10001", &[], &[], "postgres.batch_size", &["between 1 and 10000"]),
        ("[postgres]\nbatch_size = -1", &[], &[], "postgres.batch_size", &["between 1 and 10000"]),
        ("[postgres]\nflush_interval = \"0s\"", &[], &[], "postgres.flush_interval", &["at least 1ms", "got 0s"]),
        ("[postgres]\nflush_interval = \"1h1ms\"", &[], &[], "postgres.flush_interval", &["at most 1h", "got 1h1ms"]),
        ("[postgres]\nmanaged_refresh_interval = \"500ms\"", &[], &[], "postgres.managed_refresh_interval", &["at least 1s"]),
        ("[postgres]\nconnect_timeout = \"0s\"", &[], &[], "postgres.connect_timeout", &["greater than 0s"]),
        ("[capabilities]\nrefresh_interval = \"0s\"", &[], &[], "capabilities.refresh_interval", &["greater than 0s"]),
        // Enums and lists.
        ("role = \"leader\"", &[], &[], "role", &["invalid value \"leader\"", "\"node\", \"cluster\", \"all\""]),
        ("[postgres]\nschema = \"Compat\"", &[], &[], "postgres.schema", &["invalid value", "\"compat\""]),
        ("[libvirt]\nlocator = \"magic\"", &[], &[], "libvirt.locator", &["invalid value", "\"kubevirt\""]),
        ("owns = []", &[], &[], "owns", &["must not be empty"]),
        ("owns = [\"status\", \"status\"]", &[], &[], "owns", &["duplicate", "status"]),
        ("owns = [\"everything\"]", &[], &[], "owns", &["invalid value \"everything\""]),
        // Names and identifiers.
        ("node_name = \"Node_1\"", &[], &[], "node_name", &["DNS-1123"]),
        ("node_name = \"-a\"", &[], &[], "node_name", &["DNS-1123"]),
        ("node_name = \"a..b\"", &[], &[], "node_name", &["DNS-1123"]),
        ("node_name = \"\"", &[], &[], "node_name", &["DNS-1123"]),
        ("[postgres]\ntable = \"1vms\"", &[], &[], "postgres.table", &["invalid table name"]),
        ("[postgres]\ntable = \"a.b.c\"", &[], &[], "postgres.table", &["invalid table name"]),
        ("[postgres]\ntable = \"vm-rows\"", &[], &[], "postgres.table", &["invalid table name"]),
        ("[postgres]\ntable = \"a234567890123456789012345678901234567890123456789012345678901234\"", &[], &[], "postgres.table", &["at most 63"]),
        ("[kubernetes]\nnamespaces = [\"Team\"]", &[], &[], "kubernetes.namespaces", &["namespace"]),
        ("[kubernetes]\nnamespaces = [\"a\", \"a\"]", &[], &[], "kubernetes.namespaces", &["duplicate"]),
        // Kubernetes access.
        ("[kubernetes]\nkubeconfig = \"/k\"\nurl = \"https://k\"", &[], &[], "kubernetes.url", &["conflicts with kubernetes.kubeconfig", "at most one"]),
        ("[kubernetes]\nurl = \"https://k\"\nin_cluster = true", &[], &[], "kubernetes.in_cluster", &["conflicts with kubernetes.url"]),
        ("[kubernetes]\nkubeconfig = \"/k\"", &[("VIRTSYNC_KUBERNETES_IN_CLUSTER", "true")], &[], "VIRTSYNC_KUBERNETES_IN_CLUSTER (kubernetes.in_cluster)", &["conflicts"]),
        ("[kubernetes]\nurl = \"ftp://k\"", &[], &[], "kubernetes.url", &["http:// or https://"]),
        ("[kubernetes]\nurl = \"https://\"", &[], &[], "kubernetes.url", &["http:// or https://"]),
        ("[kubernetes]\nkubeconfig = \"\"", &[], &[], "kubernetes.kubeconfig", &["must not be empty"]),
        // libvirt.
        ("[libvirt]\nuri = \"system\"", &[], &[], "libvirt.uri", &["invalid libvirt URI"]),
        ("[libvirt]\nsocket_template = \"/x/{pod}/s\"", &[], &[], "libvirt.socket_template", &["unknown placeholder {pod}"]),
        ("[libvirt]\nsocket_template = \"/x/{pod_uid/s\"", &[], &[], "libvirt.socket_template", &["unclosed"]),
        ("[libvirt]\nsocket_template = \"/x/pod_uid}/s\"", &[], &[], "libvirt.socket_template", &["unmatched"]),
        // PostgreSQL URLs.
        ("[postgres]\nurl = \"postgres://u@h:notaport/db\"", &[], &[], "postgres.url", &["invalid PostgreSQL URL", "port"]),
        ("[postgres]\nurl = \"host=db bogus=1\"", &[], &[], "postgres.url", &["invalid PostgreSQL URL", "unknown option"]),
        ("[postgres]\nurl = \"\"", &[], &[], "postgres.url", &["must not be empty"]),
        ("[postgres]\nurl = \"postgres://u:s3cret@h/db\"", &[], &[], "postgres.url", &["password", "put the password in postgres.password_file or $CREDENTIALS_DIRECTORY/postgres-password"]),
        ("[postgres]\nurl = \"postgresql://u@h/db?password=s3cret\"", &[], &[], "postgres.url", &["password_file"]),
        ("[postgres]\nurl = \"host=h user=u password=s3cret\"", &[], &[], "postgres.url", &["password_file"]),
        ("[postgres]\nowner_url = \"postgres://o:s3cret@h/db\"", &[], &[], "postgres.owner_url", &["password_file"]),
        ("", &[("VIRTSYNC_POSTGRES_URL", "postgres://u:s3cret@h/db")], &[], "VIRTSYNC_POSTGRES_URL (postgres.url)", &["password_file"]),
        // Other values.
        ("[metrics]\nlisten = \"localhost\"", &[], &[], "metrics.listen", &["invalid socket address \"localhost\""]),
        ("[api]\nadmin_group = \"\"", &[], &[], "api.admin_group", &["must not be empty"]),
        ("[cache]\npath = \"\"", &[], &[], "cache.path", &["must not be empty"]),
        // TOML syntax.
        ("role = \"all\"\n[postgres\nurl = 1", &[], &[], "config", &["TOML syntax error at line 2, column 10"]),
        ("role = ", &[], &[], "config", &["TOML syntax error at line 1, column"]),
        ("role = \"all\"\nrole = \"node\"", &[], &[], "config", &["line 2", "duplicate"]),
        ("[postgres]\nurl = \"x", &[], &[], "config", &["line 2"]),
        // Environment.
        ("", &[("VIRTSYNC_POSTGRES_BATCH_SIZE", "abc")], &[], "VIRTSYNC_POSTGRES_BATCH_SIZE (postgres.batch_size)", &["expected an integer", "\"abc\""]),
        ("", &[("VIRTSYNC_POSTGRES_BATCH_SIZE", "0")], &[], "VIRTSYNC_POSTGRES_BATCH_SIZE (postgres.batch_size)", &["between 1 and 10000"]),
        ("", &[("VIRTSYNC_POSTGRES_FLUSH_INTERVAL", "5 parsecs")], &[], "VIRTSYNC_POSTGRES_FLUSH_INTERVAL (postgres.flush_interval)", &["invalid duration \"5 parsecs\""]),
        ("", &[("VIRTSYNC_KUBERNETES_IN_CLUSTER", "maybe")], &[], "VIRTSYNC_KUBERNETES_IN_CLUSTER (kubernetes.in_cluster)", &["expected true or false"]),
        ("", &[("VIRTSYNC_OWNS", ",")], &[], "VIRTSYNC_OWNS (owns)", &["must not be empty"]),
        ("", &[("VIRTSYNC_POSTGRES_BATCHSIZE", "1")], &[], "VIRTSYNC_POSTGRES_BATCHSIZE", &["unknown", "did you mean VIRTSYNC_POSTGRES_BATCH_SIZE?"]),
        ("", &[("VIRTSYNC_FAILPOINTS", "x")], &[], "VIRTSYNC_FAILPOINTS", &["unknown"]),
        // The environment's error wins over an invalid file value it replaces.
        ("[postgres]\nbatch_size = 0", &[("VIRTSYNC_POSTGRES_BATCH_SIZE", "20000")], &[], "VIRTSYNC_POSTGRES_BATCH_SIZE (postgres.batch_size)", &["between"]),
        // --set.
        ("", &[], &[("postgres.batch_size", "abc")], "--set postgres.batch_size", &["expected an integer"]),
        ("", &[], &[("postgres.flush_interval", "5 parsecs")], "--set postgres.flush_interval", &["invalid duration"]),
        ("", &[], &[("postgres.batchsize", "1")], "--set postgres.batchsize", &["unknown key", "did you mean postgres.batch_size?"]),
        ("", &[], &[("postgres", "1")], "--set postgres", &["unknown key"]),
        ("", &[("VIRTSYNC_POSTGRES_URL", "host=db")], &[("postgres.url", "host=db password=x")], "--set postgres.url", &["password_file"]),
    ];

    #[test]
    fn errors_name_the_key() {
        for (text, vars, sets, key, words) in ERRORS {
            let err = match parse(text, vars, sets) {
                Ok(c) => panic!("no error for {text:?} {vars:?} {sets:?}: {c:?}"),
                Err(e) => e,
            };
            let msg = err.to_string();
            assert_eq!(err.key, *key, "{msg}");
            assert_eq!(msg, format!("{}: {}", err.key, err.problem));
            for word in *words {
                assert!(err.problem.contains(word), "{msg:?} lacks {word:?}");
            }
            assert!(!msg.contains('\n'), "multi-line: {msg:?}");
            assert!(!msg.contains("s3cret"), "leaks the password: {msg:?}");
        }
    }

    #[test]
    fn node_name_from_hostname() {
        let bad = Env {
            hostname: "bad_host".to_owned(),
            vars: Vec::new(),
        };
        let err = Config::parse("", &bad, &[])
            .err()
            .map(|e| (e.key, e.problem));
        assert!(
            matches!(&err, Some((k, p)) if k == "node_name" && p.contains("host name")),
            "{err:?}"
        );
        // Setting node_name makes the host name irrelevant.
        let c = Config::parse("node_name = \"ok\"", &bad, &[]).map(|c| c.node_name);
        assert_eq!(c.ok().as_deref(), Some("ok"));
        let empty = Env::default();
        assert!(Config::parse("", &empty, &[]).is_err());
    }

    #[test]
    fn require_postgres_url() {
        let c = parse_ok("", &[], &[]);
        let err = c.require_postgres_url().err().map(|e| (e.key, e.problem));
        assert_eq!(
            err,
            Some((
                "postgres.url".to_owned(),
                "required by this command".to_owned()
            ))
        );
        let c = parse_ok("[postgres]\nurl = \"postgres://u@db/x\"", &[], &[]);
        assert_eq!(c.require_postgres_url().ok(), Some("postgres://u@db/x"));
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("virtsync-config-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }

        fn file(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).expect("write temp file");
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn pg_with(password_file: Option<PathBuf>) -> PostgresConfig {
        let mut pg = Config::defaults(&Env::default()).postgres;
        pg.password_file = password_file;
        pg
    }

    #[test]
    fn password_file() {
        let dir = TempDir::new("pwfile");
        let ok: &[(&str, &str)] = &[
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret", "s3cret"),
            ("with space \n\n", "with space "),
        ];
        for (contents, want) in ok {
            let pg = pg_with(Some(dir.file("pw", contents)));
            assert_eq!(
                read_password(&pg, None).ok().flatten().as_deref(),
                Some(*want),
                "{contents:?}"
            );
        }
        // password_file wins over the credentials directory.
        let creds = TempDir::new("pwfile-creds");
        creds.file("postgres-password", "other\n");
        let pg = pg_with(Some(dir.file("pw", "mine\n")));
        assert_eq!(
            read_password(&pg, Some(&creds.0)).ok().flatten().as_deref(),
            Some("mine")
        );

        let bad: &[(Option<&str>, &[&str])] = &[
            (None, &["cannot read", "missing"]),
            (Some(""), &["is empty"]),
            (Some("\n"), &["is empty"]),
            (Some("\r\n"), &["is empty"]),
        ];
        for (contents, words) in bad {
            let path = match contents {
                Some(c) => dir.file("bad", c),
                None => dir.0.join("missing"),
            };
            let err = read_password(&pg_with(Some(path)), Some(&creds.0)).err();
            let Some(err) = err else {
                panic!("no error for {contents:?}")
            };
            assert_eq!(err.key, "postgres.password_file");
            for word in *words {
                assert!(err.problem.contains(word), "{err} lacks {word:?}");
            }
        }
        // A directory cannot be read as a file: the OS error is reported.
        let err = read_password(&pg_with(Some(dir.0.clone())), None)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.starts_with("postgres.password_file: cannot read")));
    }

    #[test]
    fn password_from_credentials_directory() {
        let creds = TempDir::new("creds");
        let pg = pg_with(None);
        assert_eq!(read_password(&pg, None).ok(), Some(None));
        assert_eq!(
            read_password(&pg, Some(&creds.0)).ok(),
            Some(None),
            "no credential file"
        );
        creds.file("postgres-password", "from-systemd\n");
        assert_eq!(
            read_password(&pg, Some(&creds.0)).ok().flatten().as_deref(),
            Some("from-systemd")
        );
        creds.file("postgres-password", "");
        let err = read_password(&pg, Some(&creds.0))
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("postgres-password") && e.contains("is empty")));
    }
}
