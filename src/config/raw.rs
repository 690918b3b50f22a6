//! The merged TOML table deserialized into raw structs. Every field is
//! optional; defaults are applied in `build`. Types were already checked by
//! `keys::check_file_shape`, so serde mostly parses durations and sizes here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::{Table, Value};

use super::overrides::Origins;
use super::values::{self, parse_duration, parse_size};
use super::{Problems, one_line};

/// Deserializes `table`, recording each value that does not parse (naming the key
/// and its origin) and deserializing again without it.
pub(super) fn deserialize(mut table: Table, o: &Origins, problems: &mut Problems) -> RawConfig {
    loop {
        let e = match serde_path_to_error::deserialize::<_, RawConfig>(table.clone()) {
            Ok(raw) => return raw,
            Err(e) => e,
        };
        let segments = path_segments(e.path());
        let key = if segments.is_empty() {
            "config".to_owned()
        } else {
            segments.join(".")
        };
        problems.add(&key, o.err(&key, one_line(e.inner().message())));
        // Each round removes one value, so this ends; a problem that is not about one
        // value leaves the defaults.
        if !remove_path(&mut table, &segments) {
            return RawConfig::default();
        }
    }
}

fn path_segments(path: &serde_path_to_error::Path) -> Vec<String> {
    path.iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

/// Removes the value at `segments`; false when there is none.
fn remove_path(table: &mut Table, segments: &[String]) -> bool {
    match segments {
        [] => false,
        [last] => table.remove(last).is_some(),
        [first, rest @ ..] => match table.get_mut(first) {
            Some(Value::Table(inner)) => remove_path(inner, rest),
            _ => false,
        },
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) node_name: Option<String>,
    pub(super) role: Option<String>,
    pub(super) owns: Option<Vec<String>>,
    #[serde(default)]
    pub(super) kubernetes: RawKubernetes,
    #[serde(default)]
    pub(super) libvirt: RawLibvirt,
    #[serde(default)]
    pub(super) postgres: RawPostgres,
    #[serde(default)]
    pub(super) cache: RawCache,
    #[serde(default)]
    pub(super) api: RawApi,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
    #[serde(default)]
    pub(super) capabilities: RawCapabilities,
    #[serde(default)]
    pub(super) log: RawLog,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKubernetes {
    pub(super) kubeconfig: Option<PathBuf>,
    pub(super) url: Option<String>,
    pub(super) in_cluster: Option<bool>,
    pub(super) namespaces: Option<Vec<String>>,
    pub(super) label_selector: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLibvirt {
    pub(super) uri: Option<String>,
    pub(super) locator: Option<String>,
    pub(super) kubelet_root: Option<PathBuf>,
    pub(super) socket_template: Option<String>,
    #[serde(default, deserialize_with = "de_duration")]
    pub(super) domain_check_interval: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPostgres {
    pub(super) url: Option<String>,
    pub(super) owner_url: Option<String>,
    pub(super) lock_url: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) schema: Option<String>,
    pub(super) table: Option<String>,
    pub(super) batch_size: Option<i64>,
    #[serde(default, deserialize_with = "de_duration")]
    pub(super) flush_interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub(super) managed_refresh_interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub(super) resync_interval: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub(super) connect_timeout: Option<Duration>,
    pub(super) lock_key: Option<i64>,
    #[serde(default, deserialize_with = "de_duration")]
    pub(super) lock_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub(super) lock_idle_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub(super) lock_retry_interval: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    pub(super) path: Option<PathBuf>,
    #[serde(default, deserialize_with = "de_size")]
    pub(super) cache_size: Option<u64>,
    #[serde(default, deserialize_with = "de_duration")]
    pub(super) sync_interval: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    pub(super) socket: Option<PathBuf>,
    pub(super) admin_group: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapabilities {
    #[serde(default, deserialize_with = "de_duration")]
    pub(super) refresh_interval: Option<Duration>,
    pub(super) machines: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: Option<String>,
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
