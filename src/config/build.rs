//! The raw structs, with defaults applied and every value validated, become a
//! [`Config`]; each invalid value is recorded and the default kept in its place.

use std::time::Duration;

use super::checks::{
    check_dns1123_subdomain, check_http_url, check_machines, check_namespaces, check_pg_url,
    check_table_name, check_template, non_empty_path, parse_owns,
};
use super::overrides::Origins;
use super::raw::RawConfig;
use super::schema::{self, Check};
use super::values::format_size;
use super::{Config, Env, Problems, format_duration, parse_choice};

/// Records each value's problem under its key and carries on, so that every
/// problem is found in one pass; a value with a problem is not applied.
struct Checker<'a> {
    o: &'a Origins,
    problems: &'a mut Problems,
}

impl Checker<'_> {
    fn fail(&mut self, key: &str, problem: impl Into<String>) {
        self.problems.add(key, self.o.err(key, problem));
    }

    /// The value when valid; otherwise records the problem.
    fn check<T>(&mut self, key: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(p) => {
                self.fail(key, p);
                None
            }
        }
    }

    /// Whether `key` already has a problem (from any stage).
    fn failed(&self, key: &str) -> bool {
        self.problems.has(key)
    }

    /// Sets `target` to `value` when it lies within the key's bounds.
    fn duration(&mut self, key: &str, value: Option<Duration>, target: &mut Duration) {
        let (min, max) = match schema::check(key) {
            Check::Duration { min, max } => (min, max),
            _ => (Duration::ZERO, None),
        };
        if let Some(v) = value
            && let Some(v) = self.check(key, duration_in(v, min, max))
        {
            *target = v;
        }
    }
}

fn duration_in(v: Duration, min: Duration, max: Option<Duration>) -> Result<Duration, String> {
    let shown = format_duration(v);
    if v < min {
        let need = if min == Duration::from_nanos(1) {
            "greater than 0s".to_owned()
        } else {
            format!("at least {}", format_duration(min))
        };
        return Err(format!("must be {need}, got {shown}"));
    }
    if let Some(max) = max
        && v > max
    {
        let max = format_duration(max);
        return Err(format!("must be at most {max}, got {shown}"));
    }
    Ok(v)
}

pub(super) fn build(raw: RawConfig, env: &Env, o: &Origins, problems: &mut Problems) -> Config {
    let mut c = Config::defaults(env);
    let mut k = Checker { o, problems };

    // Top level.
    match raw.node_name {
        Some(name) => {
            if k.check("node_name", check_dns1123_subdomain(&name))
                .is_some()
            {
                c.node_name = name;
            }
        }
        // A node_name with a problem of its own was already reported.
        None if k.failed("node_name") => {}
        None => {
            if let Err(p) = check_dns1123_subdomain(&c.node_name) {
                k.fail(
                    "node_name",
                    format!("not set, and the host name is not usable: {p}; set node_name"),
                );
            }
        }
    }
    if let Some(v) = raw.role
        && let Some(role) = k.check("role", parse_choice(&v))
    {
        c.role = role;
    }
    if let Some(v) = raw.owns
        && let Some(owns) = k.check("owns", parse_owns(&v))
    {
        c.owns = owns;
    }

    // [kubernetes]
    let kube = raw.kubernetes;
    if let Some(v) = kube.kubeconfig
        && k.check("kubernetes.kubeconfig", non_empty_path(&v))
            .is_some()
    {
        c.kubernetes.kubeconfig = Some(v);
    }
    if let Some(v) = kube.url
        && k.check("kubernetes.url", check_http_url(&v)).is_some()
    {
        c.kubernetes.url = Some(v);
    }
    if let Some(v) = kube.in_cluster {
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
        k.fail(
            second,
            format!(
                "conflicts with {first}: set at most one of kubernetes.kubeconfig, \
                 kubernetes.url and kubernetes.in_cluster = true"
            ),
        );
    }
    if let Some(v) = kube.namespaces
        && k.check("kubernetes.namespaces", check_namespaces(&v))
            .is_some()
    {
        c.kubernetes.namespaces = v;
    }
    if let Some(v) = kube.label_selector {
        let parsed = crate::model::Selector::parse(&v).map(|_| ());
        if k.check("kubernetes.label_selector", parsed).is_some() {
            c.kubernetes.label_selector = Some(v);
        }
    }

    // [libvirt]
    let l = raw.libvirt;
    if let Some(v) = l.uri {
        if v.contains("://") {
            c.libvirt.uri = Some(v);
        } else {
            k.fail(
                "libvirt.uri",
                format!("invalid libvirt URI {v:?} (use e.g. qemu:///system)"),
            );
        }
    }
    if let Some(v) = l.locator
        && let Some(locator) = k.check("libvirt.locator", parse_choice(&v))
    {
        c.libvirt.locator = locator;
    }
    if let Some(v) = l.kubelet_root
        && k.check("libvirt.kubelet_root", non_empty_path(&v))
            .is_some()
    {
        c.libvirt.kubelet_root = v;
    }
    if let Some(v) = l.socket_template
        && k.check("libvirt.socket_template", check_template(&v))
            .is_some()
    {
        c.libvirt.socket_template = v;
    }
    k.duration(
        "libvirt.domain_check_interval",
        l.domain_check_interval,
        &mut c.libvirt.domain_check_interval,
    );

    // [postgres]
    let p = raw.postgres;
    if let Some(v) = p.url
        && k.check("postgres.url", check_pg_url(&v)).is_some()
    {
        c.postgres.url = Some(v);
    }
    if let Some(v) = p.owner_url
        && k.check("postgres.owner_url", check_pg_url(&v)).is_some()
    {
        c.postgres.owner_url = Some(v);
    }
    if let Some(v) = p.lock_url
        && k.check("postgres.lock_url", check_pg_url(&v)).is_some()
    {
        c.postgres.lock_url = Some(v);
    }
    if let Some(v) = p.password_file
        && k.check("postgres.password_file", non_empty_path(&v))
            .is_some()
    {
        c.postgres.password_file = Some(v);
    }
    if let Some(v) = p.ca_file
        && k.check("postgres.ca_file", non_empty_path(&v)).is_some()
    {
        c.postgres.ca_file = Some(v);
    }
    if let Some(v) = p.schema
        && let Some(schema) = k.check("postgres.schema", parse_choice(&v))
    {
        c.postgres.schema = schema;
    }
    if let Some(v) = p.table
        && k.check("postgres.table", check_table_name(&v)).is_some()
    {
        c.postgres.table = v;
    }
    if let Some(v) = p.batch_size {
        let (min, max) = match schema::check("postgres.batch_size") {
            Check::Int { min, max } => (min, max),
            _ => (1, i64::MAX),
        };
        let batch = usize::try_from(v)
            .ok()
            .filter(|_| (min..=max).contains(&v))
            .ok_or_else(|| format!("must be between {min} and {max}, got {v}"));
        if let Some(batch) = k.check("postgres.batch_size", batch) {
            c.postgres.batch_size = batch;
        }
    }
    let pg = &mut c.postgres;
    k.duration(
        "postgres.flush_interval",
        p.flush_interval,
        &mut pg.flush_interval,
    );
    k.duration(
        "postgres.managed_refresh_interval",
        p.managed_refresh_interval,
        &mut pg.managed_refresh_interval,
    );
    k.duration(
        "postgres.resync_interval",
        p.resync_interval,
        &mut pg.resync_interval,
    );
    k.duration(
        "postgres.connect_timeout",
        p.connect_timeout,
        &mut pg.connect_timeout,
    );
    k.duration(
        "postgres.lock_timeout",
        p.lock_timeout,
        &mut pg.lock_timeout,
    );
    k.duration(
        "postgres.lock_idle_timeout",
        p.lock_idle_timeout,
        &mut pg.lock_idle_timeout,
    );
    k.duration(
        "postgres.lock_retry_interval",
        p.lock_retry_interval,
        &mut pg.lock_retry_interval,
    );
    // A standby's session idles between tries: it must not be ended for idling.
    // Compared only when neither has a problem of its own (a rejected value is not
    // what the operator meant to compare with).
    let (retry, idle) = ("postgres.lock_retry_interval", "postgres.lock_idle_timeout");
    if pg.lock_retry_interval >= pg.lock_idle_timeout && !k.failed(retry) && !k.failed(idle) {
        let key = if p.lock_retry_interval.is_some() {
            retry
        } else {
            idle
        };
        k.fail(
            key,
            format!(
                "postgres.lock_retry_interval ({}) must be shorter than \
                 postgres.lock_idle_timeout ({})",
                format_duration(pg.lock_retry_interval),
                format_duration(pg.lock_idle_timeout)
            ),
        );
    }
    k.duration(
        "capabilities.refresh_interval",
        raw.capabilities.refresh_interval,
        &mut c.capabilities.refresh_interval,
    );
    if let Some(v) = raw.capabilities.machines
        && k.check("capabilities.machines", check_machines(&v))
            .is_some()
    {
        c.capabilities.machines.extend(v);
    }
    if let Some(v) = p.lock_key {
        c.postgres.lock_key = v;
    }

    // [cache]
    if let Some(v) = raw.cache.path
        && k.check("cache.path", non_empty_path(&v)).is_some()
    {
        c.cache.path = v;
    }
    if let Some(v) = raw.cache.cache_size {
        let min = match schema::check("cache.cache_size") {
            Check::SizeAtLeast(min) => min,
            _ => 0,
        };
        if v < min {
            k.fail(
                "cache.cache_size",
                format!(
                    "must be at least {} ({min} bytes), got {v} bytes",
                    format_size(min)
                ),
            );
        } else {
            c.cache.cache_size = v;
        }
    }
    k.duration(
        "cache.sync_interval",
        raw.cache.sync_interval,
        &mut c.cache.sync_interval,
    );

    // [api]
    if let Some(v) = raw.api.socket
        && k.check("api.socket", non_empty_path(&v)).is_some()
    {
        c.api.socket = v;
    }
    if let Some(v) = raw.api.admin_group {
        if v.trim().is_empty() {
            k.fail("api.admin_group", "must not be empty");
        } else {
            c.api.admin_group = v;
        }
    }

    // [metrics]
    if let Some(v) = raw.metrics.listen {
        match v.trim().parse() {
            Ok(listen) => c.metrics.listen = listen,
            Err(_) => k.fail(
                "metrics.listen",
                format!("invalid socket address {v:?} (use e.g. 127.0.0.1:9746 or [::1]:9746)"),
            ),
        }
    }

    // [log]
    if let Some(v) = raw.log.format
        && let Some(format) = k.check("log.format", parse_choice(&v))
    {
        c.log.format = format;
    }
    c
}
