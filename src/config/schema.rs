//! The configuration schema: every key once, with its kind (which TOML type the file
//! must use and how an override string is typed), its default as the shipped file writes
//! it, the bounds `build` enforces and the comment the shipped file shows above it.
//!
//! The rest follows from it: the known keys and their environment variables (`keys.rs`,
//! `overrides.rs`), the bounds checked in `build.rs`, and `packaging/virtsync.toml`,
//! rendered by `render.rs`. Tests check the rest against it: each default parsed alone
//! gives [`super::Config::defaults`], every key reaches the raw structs, the comments
//! name the bounds, and the checked-in file is what `render.rs` makes of the schema.

mod general;
mod local;
mod postgres;

use std::time::Duration;

/// How an override value (environment or `--set`) is turned into TOML, and which TOML
/// type the file must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Str,
    /// A string with no default; an empty override value unsets it.
    OptStr,
    Int,
    Bool,
    /// Array of strings; comma separated in overrides.
    List,
    /// A table of string arrays, one per CPU architecture (`capabilities.machines`);
    /// `arch=a,b;arch=c` in overrides.
    ArchLists,
    Duration,
    Size,
}

/// A key's default, as TOML. Read by the renderer of the shipped file, which only the
/// tests run.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))]
pub(super) enum Preset {
    /// A value: `500`, `"30s"`, `["status", "legacy"]`.
    Toml(&'static str),
    /// A table value, one `name = value` line each; written as its own `[table]`.
    Table(&'static [&'static str]),
    /// No fixed default (none, or one computed at start, such as the host name): the
    /// shipped file shows `example` commented out.
    Unset { example: &'static str },
}

/// The bounds of a value, checked in `build` once the value has its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// None beyond the type (or a check of its own in `build`).
    None,
    Duration {
        min: Duration,
        max: Option<Duration>,
    },
    Int {
        min: i64,
        max: i64,
    },
    /// Bytes.
    SizeAtLeast(u64),
}

#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub(super) struct KeySpec {
    /// Dotted: `postgres.batch_size`, or `role` at the top level.
    pub(super) key: &'static str,
    pub(super) kind: Kind,
    pub(super) default: Preset,
    /// What the shipped file sets instead of the default (TOML): a packaged install is
    /// one host of a fleet.
    pub(super) shipped: Option<&'static str>,
    pub(super) check: Check,
    /// The comment above the key in the shipped file, one line each: what it does, then
    /// `Default:` and `Accepted:`.
    pub(super) doc: &'static [&'static str],
}

impl KeySpec {
    /// The fields most keys leave alone.
    const BASE: KeySpec = KeySpec {
        key: "",
        kind: Kind::Str,
        default: Preset::Unset { example: "" },
        shipped: None,
        check: Check::None,
        doc: &[],
    };

    /// The key within its section (`batch_size`).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fn name(&self) -> &'static str {
        self.key.rsplit_once('.').map_or(self.key, |(_, name)| name)
    }
}

/// A `[section]` of the file and its keys; the top-level keys have the name "".
#[derive(Debug)]
pub(super) struct Section {
    pub(super) name: &'static str,
    pub(super) keys: &'static [KeySpec],
}

/// Every key, in the order of the shipped file and of the "known keys" lists.
pub(super) const SCHEMA: &[Section] = &[
    general::TOP,
    general::KUBERNETES,
    general::LIBVIRT,
    postgres::POSTGRES,
    local::CACHE,
    local::API,
    local::METRICS,
    local::CAPABILITIES,
    local::LOG,
];

pub(super) fn keys() -> impl Iterator<Item = &'static KeySpec> {
    SCHEMA.iter().flat_map(|section| section.keys.iter())
}

pub(super) fn spec(key: &str) -> Option<&'static KeySpec> {
    keys().find(|spec| spec.key == key)
}

/// The names of the `[section]`s.
pub(super) fn sections() -> impl Iterator<Item = &'static str> {
    SCHEMA
        .iter()
        .map(|section| section.name)
        .filter(|name| !name.is_empty())
}

pub(super) fn is_section(name: &str) -> bool {
    sections().any(|section| section == name)
}

/// The bounds of a key's values; none for a key without [`Check`].
pub(super) fn check(key: &str) -> Check {
    spec(key).map_or(Check::None, |spec| spec.check)
}

const POSITIVE: Duration = Duration::from_nanos(1);
const HOUR: Duration = Duration::from_secs(3600);

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
