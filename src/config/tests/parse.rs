//! Successful parsing: defaults, every key from every source, Kubernetes
//! access, the host name fallback.

use std::net::SocketAddr;

use super::*;
use crate::config::keys::env_name;
use crate::config::schema;

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
    assert_eq!(c.libvirt.domain_check_interval, Duration::from_secs(30));
    let p = &c.postgres;
    assert_eq!(
        (&p.url, &p.owner_url, &p.password_file, &p.ca_file),
        (&None, &None, &None, &None)
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
    assert_eq!(p.lock_idle_timeout, Duration::from_secs(15));
    assert_eq!(p.lock_retry_interval, Duration::from_secs(2));
    assert_eq!(c.cache.path, Path::new("/var/lib/virtsync/state.redb"));
    assert_eq!(c.cache.cache_size, 4 * 1024 * 1024);
    assert_eq!(c.api.socket, Path::new("/run/virtsync/virtsync.sock"));
    assert_eq!(c.api.admin_group, "virtsync-admin");
    assert_eq!(c.metrics.listen.to_string(), "127.0.0.1:9746");
    assert_eq!(c.capabilities.refresh_interval, Duration::from_secs(3600));
    let machines: Vec<(&str, Vec<&str>)> = c
        .capabilities
        .machines
        .iter()
        .map(|(arch, list)| (arch.as_str(), list.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        machines,
        [
            ("aarch64", vec!["virt"]),
            ("ppc64", vec!["pseries"]),
            ("ppc64le", vec!["pseries"]),
            ("riscv64", vec!["virt"]),
            ("s390x", vec!["s390-ccw-virtio"]),
            ("x86_64", vec!["q35"]),
        ]
    );
    assert_eq!(c.capabilities.machines_for("x86_64"), ["q35"]);
    assert!(c.capabilities.machines_for("loongarch64").is_empty());
    assert_eq!(c.log.format, LogFormat::Auto);
    // No file at all gives the defaults too.
    assert_eq!(parse_ok("", &[], &[]), c);
    assert_eq!(parse_ok("\n# nothing\n", &[], &[]), c);
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
    ("libvirt.domain_check_interval", r#""2s""#, "2s"),
    ("postgres.url", r#""postgres://virtsync@db/virtsync""#, "postgres://virtsync@db/virtsync"),
    ("postgres.owner_url", r#""host=db user=owner dbname=virtsync""#, "host=db user=owner dbname=virtsync"),
    ("postgres.lock_url", r#""host=db-direct user=virtsync dbname=virtsync""#, "host=db-direct user=virtsync dbname=virtsync"),
    ("postgres.password_file", r#""/etc/virtsync/pw""#, "/etc/virtsync/pw"),
    ("postgres.ca_file", r#""/etc/virtsync/ca.pem""#, "/etc/virtsync/ca.pem"),
    ("postgres.schema", r#""extended""#, "extended"),
    ("postgres.table", r#""sync.vm_rows""#, "sync.vm_rows"),
    ("postgres.batch_size", "10000", "10000"),
    ("postgres.flush_interval", r#""1s""#, "1s"),
    ("postgres.managed_refresh_interval", r#""1m30s""#, "1m30s"),
    ("postgres.resync_interval", r#""0s""#, "0s"),
    ("postgres.connect_timeout", r#""3s""#, "3s"),
    ("postgres.lock_key", "-42", "-42"),
    ("postgres.lock_timeout", r#""1m""#, "1m"),
    ("postgres.lock_idle_timeout", r#""1s""#, "1s"),
    ("postgres.lock_retry_interval", r#""250ms""#, "250ms"),
    ("cache.path", r#""/tmp/state.redb""#, "/tmp/state.redb"),
    ("cache.cache_size", r#""1GiB""#, "1GiB"),
    ("cache.sync_interval", r#""0s""#, "0s"),
    ("api.socket", r#""/tmp/v.sock""#, "/tmp/v.sock"),
    ("api.admin_group", r#""wheel""#, "wheel"),
    ("metrics.listen", r#""[::1]:9100""#, "[::1]:9100"),
    ("capabilities.refresh_interval", r#""5m""#, "5m"),
    ("capabilities.machines", r#"{ x86_64 = ["pc-q35-rhel9.2.0", "q35"], loongarch64 = ["virt"] }"#, "x86_64=pc-q35-rhel9.2.0, q35;loongarch64=virt"),
    ("log.format", r#""json""#, "json"),
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
            domain_check_interval: Duration::from_secs(2),
        },
        postgres: PostgresConfig {
            url: Some("postgres://virtsync@db/virtsync".to_owned()),
            owner_url: Some("host=db user=owner dbname=virtsync".to_owned()),
            lock_url: Some("host=db-direct user=virtsync dbname=virtsync".to_owned()),
            password_file: Some(PathBuf::from("/etc/virtsync/pw")),
            ca_file: Some(PathBuf::from("/etc/virtsync/ca.pem")),
            schema: SchemaMode::Extended,
            table: "sync.vm_rows".to_owned(),
            batch_size: 10_000,
            flush_interval: Duration::from_secs(1),
            managed_refresh_interval: Duration::from_secs(90),
            resync_interval: Duration::ZERO,
            connect_timeout: Duration::from_secs(3),
            lock_key: -42,
            lock_timeout: Duration::from_secs(60),
            lock_idle_timeout: Duration::from_secs(1),
            lock_retry_interval: Duration::from_millis(250),
        },
        cache: CacheConfig {
            path: PathBuf::from("/tmp/state.redb"),
            cache_size: 1 << 30,
            sync_interval: Duration::ZERO,
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
            // The architectures given replace their defaults; the others keep them.
            machines: {
                let mut m = crate::config::default_machines();
                m.insert(
                    "x86_64".to_owned(),
                    vec!["pc-q35-rhel9.2.0".to_owned(), "q35".to_owned()],
                );
                m.insert("loongarch64".to_owned(), vec!["virt".to_owned()]);
                m
            },
        },
        log: LogConfig {
            format: LogFormat::Json,
        },
    }
}

/// Renders (dotted key, TOML literal) pairs as a TOML document.
fn toml_doc(entries: &[(&str, &str)]) -> String {
    let mut top = String::new();
    let mut sections = String::new();
    for section in schema::sections() {
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
    for key in schema::keys().map(|spec| spec.key) {
        assert!(covered.contains(&key), "{key} is not covered by FULL");
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
fn log_format_values() {
    for (value, expected) in [
        ("auto", LogFormat::Auto),
        ("text", LogFormat::Text),
        ("journal", LogFormat::Journal),
        ("json", LogFormat::Json),
    ] {
        let file = parse_ok(&format!("[log]\nformat = {value:?}\n"), &[], &[]);
        assert_eq!(file.log.format, expected, "file: {value}");
        let env = parse_ok("", &[("VIRTSYNC_LOG_FORMAT", value)], &[]);
        assert_eq!(env.log.format, expected, "environment: {value}");
        let set = parse_ok("[log]\nformat = \"text\"\n", &[], &[("log.format", value)]);
        assert_eq!(set.log.format, expected, "--set: {value}");
    }
    // The environment overrides the file, --set overrides both.
    let c = parse_ok(
        "[log]\nformat = \"text\"\n",
        &[("VIRTSYNC_LOG_FORMAT", "journal")],
        &[],
    );
    assert_eq!(c.log.format, LogFormat::Journal);
    let c = parse_ok(
        "[log]\nformat = \"text\"\n",
        &[("VIRTSYNC_LOG_FORMAT", "journal")],
        &[("log.format", "json")],
    );
    assert_eq!(c.log.format, LogFormat::Json);
    // A changed format is reported by SIGHUP like every other setting.
    let before = parse_ok("", &[], &[]);
    assert_eq!(c.changed_keys(&before), ["log.format"]);
}

#[test]
fn sighup_names_the_changed_keys() {
    let before = parse_ok("", &[], &[]);
    let after = parse_ok(
        "node_name = \"other\"\n[postgres]\nbatch_size = 77\n[metrics]\nlisten = \"127.0.0.1:9999\"\n",
        &[],
        &[],
    );
    assert_eq!(
        after.changed_keys(&before),
        ["node_name", "postgres.batch_size", "metrics.listen"]
    );
    assert!(before.changed_keys(&before.clone()).is_empty());
}

#[test]
fn machines_per_arch() {
    // The table form of the shipped file and an inline table give the same.
    let table = parse_ok(
        "[capabilities.machines]\naarch64 = [\"virt-9.0\", \"virt\"]\n",
        &[],
        &[],
    );
    let inline = parse_ok(
        "[capabilities]\nmachines = { aarch64 = [\"virt-9.0\", \"virt\"] }\n",
        &[],
        &[],
    );
    assert_eq!(table, inline);
    assert_eq!(
        table.capabilities.machines_for("aarch64"),
        ["virt-9.0", "virt"]
    );
    assert_eq!(table.capabilities.machines_for("x86_64"), ["q35"]);
    // An empty table keeps every default.
    let empty = parse_ok("[capabilities.machines]\n", &[], &[]);
    assert_eq!(
        empty.capabilities.machines,
        crate::config::default_machines()
    );
    // An override replaces the file's table (then merged over the defaults like it).
    let c = parse_ok(
        "[capabilities.machines]\nx86_64 = [\"pc\"]\naarch64 = [\"virt-9.0\"]\n",
        &[("VIRTSYNC_CAPABILITIES_MACHINES", "aarch64=virt-8.2")],
        &[],
    );
    assert_eq!(c.capabilities.machines_for("aarch64"), ["virt-8.2"]);
    assert_eq!(c.capabilities.machines_for("x86_64"), ["q35"]);
    let c = parse_ok(
        "",
        &[],
        &[("capabilities.machines", " x86_64 = q35 , pc-q35-8.2 ; ")],
    );
    assert_eq!(c.capabilities.machines_for("x86_64"), ["q35", "pc-q35-8.2"]);
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
