//! virtsync configuration: TOML file, `VIRTSYNC_*` environment overrides and
//! `--set key=value` overrides, merged in that order (later wins), then
//! deserialized and validated.
//!
//! Parsing is pure: the file text, the environment and the overrides are all
//! passed in. The only I/O in this module is [`read_password`].
//!
//! Every key is defined once, in `schema.rs`: its kind, default, bounds and the
//! comment operators read. The shipped, fully commented default configuration
//! `packaging/virtsync.toml` is rendered from it (`render.rs`; unit tests keep the
//! file, the raw structs and [`Config::defaults`] in step with it).
//!
//! Layout: this file holds the public types and entry points; `error.rs` the
//! error, `password.rs` [`read_password`]. The stages of
//! [`Config::parse`] are in `keys.rs` (schema lookups; unknown keys and
//! wrong TOML types), `overrides.rs` (environment and `--set`), `raw.rs`
//! (serde), `build.rs` (defaults and validation, with the validators in
//! `checks.rs`); `values.rs` parses durations and sizes. Each stage records its
//! problems and goes on, so that one run names every problem.

mod build;
mod changes;
mod checks;
mod error;
mod keys;
mod overrides;
mod password;
mod raw;
#[cfg(test)]
mod render;
mod schema;
mod values;

#[cfg(test)]
mod tests;

pub use crate::columns::{Owns, SchemaMode};
pub use checks::check_machine_name;
pub use error::ConfigError;
pub use password::read_password;
pub use values::{format_duration, parse_duration, parse_size};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Table;

use error::Problems;
use overrides::Origins;

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

/// How libvirt daemons are found. TOML: `"uri" | "kubevirt"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Locator {
    #[default]
    Uri,
    Kubevirt,
}

/// How log lines are written (`log.format`). TOML: `"auto" | "text" | "journal" | "json"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `journal` when stderr is connected to the journal (`$JOURNAL_STREAM`), else `text`.
    #[default]
    Auto,
    /// Human-readable lines on stderr, with timestamps (colours only on a terminal).
    Text,
    /// The journal's native protocol: a priority per level and the fields as journal fields.
    Journal,
    /// One JSON object per line on stderr.
    Json,
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

impl Choice for LogFormat {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("auto", LogFormat::Auto),
        ("text", LogFormat::Text),
        ("journal", LogFormat::Journal),
        ("json", LogFormat::Json),
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
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Read by `virtsync daemon` only (see `crate::logging`); the other commands log text.
    pub format: LogFormat,
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
    /// How often a running VMI's domain is looked at again.
    pub domain_check_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    pub url: Option<String>,
    pub owner_url: Option<String>,
    /// The cluster-role lock session's database, when `url` goes through a connection
    /// pooler: the session holds an advisory lock, so it must reach PostgreSQL directly.
    /// Default: `url`.
    pub lock_url: Option<String>,
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA certificates that sign the server's certificate (TLS);
    /// default: the system's trust store.
    pub ca_file: Option<PathBuf>,
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
    /// `idle_session_timeout` of the cluster-role lock session; the holder's heartbeat
    /// runs at a third of it.
    pub lock_idle_timeout: Duration,
    /// How often a standby tries to take the cluster-role lock.
    pub lock_retry_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub path: PathBuf,
    /// Bytes.
    pub cache_size: u64,
    /// Longest time a stored change may stay in memory only before an fsync (0: every
    /// commit is durable). A crash loses at most this much of the cache, which the
    /// relist after the restart derives again.
    pub sync_interval: Duration,
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
    /// The machine types discovery asks libvirt's domain capabilities for, per host
    /// architecture (as libvirt names it: `x86_64`, `aarch64`, …), in preference order:
    /// the first is the guests' machine unless the VMIs on this node run another one.
    /// Those the configuration names replace the defaults ([`default_machines`]) of
    /// their architecture; the others keep theirs.
    pub machines: BTreeMap<String, Vec<String>>,
}

impl CapabilitiesConfig {
    /// The machines configured for `arch` (empty: none, libvirt's default machine is
    /// asked for).
    pub fn machines_for(&self, arch: &str) -> &[String] {
        self.machines.get(arch).map_or(&[], Vec::as_slice)
    }
}

/// The machine types guests use by default on each architecture: KubeVirt's default
/// `q35` on x86_64, `virt` on aarch64 and riscv64, `s390-ccw-virtio` on s390x, `pseries`
/// on ppc64 and ppc64le. (libvirt's own default machine is often another one, e.g. `pc`
/// on x86_64, whose answers differ: no secure boot, 255 vCPUs.)
pub fn default_machines() -> BTreeMap<String, Vec<String>> {
    [
        ("x86_64", "q35"),
        ("aarch64", "virt"),
        ("s390x", "s390-ccw-virtio"),
        ("ppc64", "pseries"),
        ("ppc64le", "pseries"),
        ("riscv64", "virt"),
    ]
    .into_iter()
    .map(|(arch, machine)| (arch.to_owned(), vec![machine.to_owned()]))
    .collect()
}

const DEFAULT_SOCKET_TEMPLATE: &str =
    "{kubelet_root}/pods/{pod_uid}/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock";

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
                domain_check_interval: Duration::from_secs(30),
            },
            postgres: PostgresConfig {
                url: None,
                owner_url: None,
                lock_url: None,
                password_file: None,
                ca_file: None,
                schema: SchemaMode::Compat,
                table: "vms".to_owned(),
                batch_size: 500,
                flush_interval: Duration::from_millis(50),
                managed_refresh_interval: Duration::from_secs(30),
                resync_interval: Duration::from_secs(3600),
                connect_timeout: Duration::from_secs(10),
                lock_key: 0x7669_7274_7379_6e63,
                lock_timeout: Duration::from_secs(10),
                lock_idle_timeout: Duration::from_secs(15),
                lock_retry_interval: Duration::from_secs(2),
            },
            cache: CacheConfig {
                path: PathBuf::from("/var/lib/virtsync/state.redb"),
                // The records are mirrored in memory: redb's cache serves only the B-tree
                // pages a write touches (4 vs 32 MiB: same CPU, 18 MiB less RSS at 10k VMIs).
                cache_size: 4 << 20,
                sync_interval: Duration::from_secs(1),
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
                machines: default_machines(),
            },
            log: LogConfig {
                format: LogFormat::Auto,
            },
        }
    }

    /// `text` is the TOML file contents ("" = no file). `env.vars` override
    /// the file and `sets` (from `--set key=value`) override the environment.
    ///
    /// Reports every problem found, not only the first: a value with a problem is
    /// left out (the file's value or the default stays in its place) and the other
    /// keys are still checked. Only a TOML syntax error stops at once.
    pub fn parse(text: &str, env: &Env, sets: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut table = parse_toml(text)?;
        let mut problems = Problems::default();
        keys::check_file_shape(&mut table, &mut problems);
        let mut origins = Origins::default();
        overrides::apply_env(&mut table, &mut origins, &env.vars, &mut problems);
        overrides::apply_sets(&mut table, &mut origins, sets, &mut problems);
        let raw = raw::deserialize(table, &origins, &mut problems);
        let config = build::build(raw, env, &origins, &mut problems);
        match problems.into_error() {
            None => Ok(config),
            Some(e) => Err(e),
        }
    }

    /// For commands that need the database.
    pub fn require_postgres_url(&self) -> Result<&str, ConfigError> {
        self.postgres
            .url
            .as_deref()
            .ok_or_else(|| ConfigError::new("postgres.url", "required by this command"))
    }
}

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
