//! The raw structs, with defaults applied and every value validated, become a
//! [`Config`].

use std::time::Duration;

use super::checks::{
    check_dns1123_subdomain, check_http_url, check_namespaces, check_pg_url, check_table_name,
    check_template, non_empty_path, parse_owns,
};
use super::overrides::Origins;
use super::raw::RawConfig;
use super::{Config, ConfigError, Env, format_duration, parse_choice};

const MIN_CACHE_SIZE: u64 = 1 << 20;
const MAX_BATCH_SIZE: i64 = 10_000;

pub(super) fn build(raw: RawConfig, env: &Env, o: &Origins) -> Result<Config, ConfigError> {
    let mut c = Config::defaults(env);

    // Top level.
    match raw.node_name {
        Some(name) => {
            o.check("node_name", check_dns1123_subdomain(&name))?;
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
        c.role = o.check("role", parse_choice(&v))?;
    }
    if let Some(v) = raw.owns {
        c.owns = o.check("owns", parse_owns(&v))?;
    }

    // [kubernetes]
    let k = raw.kubernetes;
    if let Some(v) = k.kubeconfig {
        o.check("kubernetes.kubeconfig", non_empty_path(&v))?;
        c.kubernetes.kubeconfig = Some(v);
    }
    if let Some(v) = k.url {
        o.check("kubernetes.url", check_http_url(&v))?;
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
        o.check("kubernetes.namespaces", check_namespaces(&v))?;
        c.kubernetes.namespaces = v;
    }
    if let Some(v) = k.label_selector {
        let parsed = crate::source::kube::Selector::parse(&v).map(|_| ());
        o.check("kubernetes.label_selector", parsed)?;
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
        c.libvirt.locator = o.check("libvirt.locator", parse_choice(&v))?;
    }
    if let Some(v) = l.kubelet_root {
        o.check("libvirt.kubelet_root", non_empty_path(&v))?;
        c.libvirt.kubelet_root = v;
    }
    if let Some(v) = l.socket_template {
        o.check("libvirt.socket_template", check_template(&v))?;
        c.libvirt.socket_template = v;
    }
    set_duration(
        o,
        "libvirt.domain_check_interval",
        l.domain_check_interval,
        &mut c.libvirt.domain_check_interval,
        Duration::from_millis(100),
        None,
    )?;

    // [postgres]
    let p = raw.postgres;
    if let Some(v) = p.url {
        o.check("postgres.url", check_pg_url(&v))?;
        c.postgres.url = Some(v);
    }
    if let Some(v) = p.owner_url {
        o.check("postgres.owner_url", check_pg_url(&v))?;
        c.postgres.owner_url = Some(v);
    }
    if let Some(v) = p.password_file {
        o.check("postgres.password_file", non_empty_path(&v))?;
        c.postgres.password_file = Some(v);
    }
    if let Some(v) = p.ca_file {
        o.check("postgres.ca_file", non_empty_path(&v))?;
        c.postgres.ca_file = Some(v);
    }
    if let Some(v) = p.schema {
        c.postgres.schema = o.check("postgres.schema", parse_choice(&v))?;
    }
    if let Some(v) = p.table {
        o.check("postgres.table", check_table_name(&v))?;
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
        "postgres.lock_idle_timeout",
        p.lock_idle_timeout,
        &mut pg.lock_idle_timeout,
        Duration::from_secs(1),
        Some(hour),
    )?;
    set_duration(
        o,
        "postgres.lock_retry_interval",
        p.lock_retry_interval,
        &mut pg.lock_retry_interval,
        Duration::from_millis(100),
        Some(hour),
    )?;
    // A standby's session idles between tries: it must not be ended for idling.
    if pg.lock_retry_interval >= pg.lock_idle_timeout {
        let key = if p.lock_retry_interval.is_some() {
            "postgres.lock_retry_interval"
        } else {
            "postgres.lock_idle_timeout"
        };
        return Err(o.err(
            key,
            format!(
                "postgres.lock_retry_interval ({}) must be shorter than \
                 postgres.lock_idle_timeout ({})",
                format_duration(pg.lock_retry_interval),
                format_duration(pg.lock_idle_timeout)
            ),
        ));
    }
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
        o.check("cache.path", non_empty_path(&v))?;
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
    set_duration(
        o,
        "cache.sync_interval",
        raw.cache.sync_interval,
        &mut c.cache.sync_interval,
        Duration::ZERO,
        Some(Duration::from_secs(60)),
    )?;

    // [api]
    if let Some(v) = raw.api.socket {
        o.check("api.socket", non_empty_path(&v))?;
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
