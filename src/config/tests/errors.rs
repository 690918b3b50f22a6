//! Every error names the key, and the problem says what is wrong.

use super::*;

/// (file, env, --set, expected key, expected words in the problem)
type ErrorCase = (
    &'static str,
    Vars,
    Vars,
    &'static str,
    &'static [&'static str],
);

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
    ("[kubernetes]\nlabel_selector = \"tier in web\"", &[], &[], "kubernetes.label_selector", &["invalid label selector requirement \"tier in web\""]),
    // Durations and sizes.
    ("[postgres]\nflush_interval = \"5 parsecs\"", &[], &[], "postgres.flush_interval", &["invalid duration \"5 parsecs\" (use e.g. 500ms, 30s, 5m, 1h)"]),
    ("[postgres]\nflush_interval = 200", &[], &[], "postgres.flush_interval", &["invalid duration", "unit is required"]),
    ("[capabilities]\nrefresh_interval = \"60\"", &[], &[], "capabilities.refresh_interval", &["unit is required"]),
    ("[postgres]\nlock_timeout = \"99999999999999999999d\"", &[], &[], "postgres.lock_timeout", &["too large"]),
    ("[cache]\ncache_size = \"32 parsecs\"", &[], &[], "cache.cache_size", &["invalid size \"32 parsecs\""]),
    ("[cache]\ncache_size = -1", &[], &[], "cache.cache_size", &["must not be negative"]),
    ("[cache]\ncache_size = \"512KiB\"", &[], &[], "cache.cache_size", &["at least 1MiB"]),
    ("[cache]\nsync_interval = \"2m\"", &[], &[], "cache.sync_interval", &["at most 1m"]),
    // Ranges.
    ("[postgres]\nbatch_size = 0", &[], &[], "postgres.batch_size", &["between 1 and 10000", "got 0"]),
    ("[postgres]\nbatch_size = 10001", &[], &[], "postgres.batch_size", &["between 1 and 10000"]),
    ("[postgres]\nbatch_size = -1", &[], &[], "postgres.batch_size", &["between 1 and 10000"]),
    ("[postgres]\nflush_interval = \"0s\"", &[], &[], "postgres.flush_interval", &["at least 1ms", "got 0s"]),
    ("[postgres]\nflush_interval = \"1h1ms\"", &[], &[], "postgres.flush_interval", &["at most 1h", "got 1h1ms"]),
    ("[postgres]\nmanaged_refresh_interval = \"500ms\"", &[], &[], "postgres.managed_refresh_interval", &["at least 1s"]),
    ("[postgres]\nconnect_timeout = \"0s\"", &[], &[], "postgres.connect_timeout", &["greater than 0s"]),
    ("[capabilities]\nrefresh_interval = \"0s\"", &[], &[], "capabilities.refresh_interval", &["greater than 0s"]),
    ("[postgres]\nlock_idle_timeout = \"999ms\"", &[], &[], "postgres.lock_idle_timeout", &["at least 1s", "got 999ms"]),
    ("[postgres]\nlock_idle_timeout = \"1h1s\"", &[], &[], "postgres.lock_idle_timeout", &["at most 1h"]),
    ("[postgres]\nlock_idle_timeout = \"15\"", &[], &[], "postgres.lock_idle_timeout", &["unit is required"]),
    ("[postgres]\nlock_idle_timeout = \"soon\"", &[], &[], "postgres.lock_idle_timeout", &["invalid duration \"soon\""]),
    ("", &[("VIRTSYNC_POSTGRES_LOCK_IDLE_TIMEOUT", "0s")], &[], "VIRTSYNC_POSTGRES_LOCK_IDLE_TIMEOUT (postgres.lock_idle_timeout)", &["at least 1s"]),
    ("[postgres]\nlock_retry_interval = \"50ms\"", &[], &[], "postgres.lock_retry_interval", &["at least 100ms"]),
    ("[postgres]\nlock_retry_interval = 2", &[], &[], "postgres.lock_retry_interval", &["unit is required"]),
    ("[postgres]\nlock_retry_interval = \"15s\"", &[], &[], "postgres.lock_retry_interval", &["must be shorter than postgres.lock_idle_timeout (15s)"]),
    ("[postgres]\nlock_idle_timeout = \"2s\"", &[], &[], "postgres.lock_idle_timeout", &["postgres.lock_retry_interval (2s) must be shorter"]),
    ("[postgres]\nlock_idle_timeout = \"3s\"", &[], &[("postgres.lock_retry_interval", "3s")], "--set postgres.lock_retry_interval", &["must be shorter"]),
    // Enums and lists.
    ("role = \"leader\"", &[], &[], "role", &["invalid value \"leader\"", "\"node\", \"cluster\", \"all\""]),
    ("[postgres]\nschema = \"Compat\"", &[], &[], "postgres.schema", &["invalid value", "\"compat\""]),
    ("[libvirt]\nlocator = \"magic\"", &[], &[], "libvirt.locator", &["invalid value", "\"kubevirt\""]),
    ("owns = []", &[], &[], "owns", &["must not be empty"]),
    ("owns = [\"status\", \"status\"]", &[], &[], "owns", &["duplicate", "status"]),
    ("owns = [\"everything\"]", &[], &[], "owns", &["invalid value \"everything\""]),
    ("[log]\nformat = \"syslog\"", &[], &[], "log.format", &["invalid value \"syslog\"", "(expected \"auto\", \"text\", \"journal\", \"json\")"]),
    ("[log]\nformat = \"JSON\"", &[], &[], "log.format", &["invalid value \"JSON\""]),
    ("[log]\nformat = 1", &[], &[], "log.format", &["expected a string, found an integer"]),
    ("[log]\nlevel = \"debug\"", &[], &[], "log.level", &["unknown key (known keys: format)"]),
    ("", &[("VIRTSYNC_LOG_FORMAT", "journald")], &[], "VIRTSYNC_LOG_FORMAT (log.format)", &["invalid value \"journald\""]),
    ("", &[], &[("log.format", "")], "--set log.format", &["invalid value \"\""]),
    // capabilities.machines.
    ("[capabilities]\nmachines = [\"q35\"]", &[], &[], "capabilities.machines", &["expected a table of machine lists per architecture", "found an array"]),
    ("[capabilities.machines]\nx86_64 = \"q35\"", &[], &[], "capabilities.machines", &["expected a table of machine lists", "found x86_64 = a string"]),
    ("[capabilities.machines]\nx86_64 = [\"q35\", 1]", &[], &[], "capabilities.machines", &["found x86_64 = an array containing an integer"]),
    ("[capabilities.machines]\nx86_64 = []", &[], &[], "capabilities.machines", &["x86_64: must list at least one machine type"]),
    ("[capabilities.machines]\nx86_64 = [\"\"]", &[], &[], "capabilities.machines", &["x86_64: \"\" is not a machine type name"]),
    ("[capabilities.machines]\nx86_64 = [\"q35 --foo\"]", &[], &[], "capabilities.machines", &["\"q35 --foo\" is not a machine type name", "ASCII letters, digits"]),
    ("[capabilities.machines]\nx86_64 = [\"-q35\"]", &[], &[], "capabilities.machines", &["not a machine type name", "starting with a letter or digit"]),
    ("[capabilities.machines]\nx86_64 = [\"q35/../x\"]", &[], &[], "capabilities.machines", &["not a machine type name"]),
    ("[capabilities.machines]\nx86_64 = [\"pc-q35-rhel9.2.0-0123456789-0123456789-0123456789-0123456789-0123\"]", &[], &[], "capabilities.machines", &["at most 64 characters"]),
    ("[capabilities.machines]\nx86_64 = [\"q35\", \"q35\"]", &[], &[], "capabilities.machines", &["x86_64: duplicate machine type \"q35\""]),
    ("[capabilities.machines]\nX86_64 = [\"q35\"]", &[], &[], "capabilities.machines", &["\"X86_64\" is not an architecture name"]),
    ("[capabilities.machines]\n\"x86-64\" = [\"q35\"]", &[], &[], "capabilities.machines", &["\"x86-64\" is not an architecture name"]),
    ("[capabilities.machines]\nx86_64 = []\naarch64 = [\"v irt\"]", &[], &[], "capabilities.machines", &["aarch64: \"v irt\" is not", "; x86_64: must list at least one"]),
    ("", &[("VIRTSYNC_CAPABILITIES_MACHINES", "q35")], &[], "VIRTSYNC_CAPABILITIES_MACHINES (capabilities.machines)", &["expected ARCH=MACHINE", "\"q35\""]),
    ("", &[("VIRTSYNC_CAPABILITIES_MACHINES", "")], &[], "VIRTSYNC_CAPABILITIES_MACHINES (capabilities.machines)", &["expected ARCH=MACHINE"]),
    ("", &[], &[("capabilities.machines", "x86_64=q35;x86_64=pc")], "--set capabilities.machines", &["architecture \"x86_64\" is given twice"]),
    ("", &[], &[("capabilities.machines", "=q35")], "--set capabilities.machines", &["no architecture"]),
    ("", &[], &[("capabilities.machines", "x86_64=")], "--set capabilities.machines", &["x86_64: must list at least one machine type"]),
    ("", &[], &[("capabilities.machines", "x86_64=q35 pc")], "--set capabilities.machines", &["\"q35 pc\" is not a machine type name"]),
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
    ("[libvirt]\ndomain_check_interval = \"10ms\"", &[], &[], "libvirt.domain_check_interval", &["at least 100ms"]),
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
        assert!(err.more.is_empty(), "one problem only: {msg}");
        assert_eq!(err.key, *key, "{msg}");
        assert_eq!(msg, format!("{}: {}", err.key, err.problem));
        for word in *words {
            assert!(err.problem.contains(word), "{msg:?} lacks {word:?}");
        }
        assert!(!msg.contains('\n'), "multi-line: {msg:?}");
        assert!(!msg.contains("s3cret"), "leaks the password: {msg:?}");
    }
}

/// (file, env, --set, every problem expected: key and words, in the order reported)
type AllCase = (
    &'static str,
    Vars,
    Vars,
    &'static [(&'static str, &'static str)],
);

/// Every problem is reported, not only the first: unknown keys and wrong types
/// (in key order), then bad overrides, then values that do not parse, then failed
/// checks (in the order of the keys' sections).
#[rustfmt::skip]
const ALL: &[AllCase] = &[
    // One of each stage in one file.
    (
        "nodename = \"x\"\nrole = \"leader\"\n[postgres]\nbatch_size = \"500\"\nflush_interval = \"5 parsecs\"\nlock_timeout = \"soon\"\ntable = \"1vms\"\n[metrics]\nlisten = \"localhost\"\n",
        &[], &[],
        &[
            ("nodename", "unknown key"),
            ("postgres.batch_size", "expected an integer, found a string"),
            ("postgres.flush_interval", "invalid duration \"5 parsecs\""),
            ("postgres.lock_timeout", "invalid duration \"soon\""),
            ("role", "invalid value \"leader\""),
            ("postgres.table", "invalid table name"),
            ("metrics.listen", "invalid socket address"),
        ],
    ),
    // Environment and --set problems with the file's, each labelled with its origin.
    (
        "[cache]\ncache_size = \"512KiB\"\n",
        &[("VIRTSYNC_POSTGRES_BATCHSIZE", "1"), ("VIRTSYNC_KUBERNETES_IN_CLUSTER", "maybe"), ("VIRTSYNC_OWNS", "everything")],
        &[("postgres.flush_interval", "5 parsecs"), ("postgres.nope", "1"), ("postgres.batch_size", "x")],
        &[
            ("VIRTSYNC_POSTGRES_BATCHSIZE", "did you mean VIRTSYNC_POSTGRES_BATCH_SIZE?"),
            ("VIRTSYNC_KUBERNETES_IN_CLUSTER (kubernetes.in_cluster)", "expected true or false"),
            ("--set postgres.nope", "unknown key"),
            ("--set postgres.batch_size", "expected an integer"),
            ("--set postgres.flush_interval", "invalid duration"),
            ("VIRTSYNC_OWNS (owns)", "invalid value \"everything\""),
            ("cache.cache_size", "at least 1MiB"),
        ],
    ),
    // Every range check of the same section.
    (
        "[postgres]\nbatch_size = 0\nflush_interval = \"0s\"\nconnect_timeout = \"0s\"\nlock_idle_timeout = \"2h\"\nurl = \"\"\n",
        &[], &[],
        &[
            ("postgres.url", "must not be empty"),
            ("postgres.batch_size", "between 1 and 10000"),
            ("postgres.flush_interval", "at least 1ms"),
            ("postgres.connect_timeout", "greater than 0s"),
            ("postgres.lock_idle_timeout", "at most 1h"),
        ],
    ),
    // A rejected value is not compared with another key: the lock intervals are not
    // compared while one of them is invalid, an empty kubeconfig conflicts with nothing.
    (
        "[postgres]\nlock_idle_timeout = \"soon\"\nlock_retry_interval = \"20s\"\n[kubernetes]\nkubeconfig = \"\"\nurl = \"https://k\"\n",
        &[], &[],
        &[
            ("postgres.lock_idle_timeout", "invalid duration \"soon\""),
            ("kubernetes.kubeconfig", "must not be empty"),
        ],
    ),
    // A syntax error stops at once: nothing after it can be read.
    ("role = \"leader\"\n[postgres\n", &[], &[], &[("config", "TOML syntax error at line 2")]),
];

#[test]
fn every_problem_is_reported() {
    for (text, vars, sets, want) in ALL {
        let err = match parse(text, vars, sets) {
            Ok(c) => panic!("no error for {text:?}: {c:?}"),
            Err(e) => e,
        };
        let got = err.problems();
        let keys: Vec<&str> = got.iter().map(|(k, _)| *k).collect();
        let want_keys: Vec<&str> = want.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, want_keys, "{text:?}: {err}");
        for ((key, problem), (_, words)) in got.iter().zip(want.iter()) {
            assert!(
                problem.contains(words),
                "{key}: {problem:?} lacks {words:?}"
            );
            assert!(!problem.contains('\n'), "multi-line: {problem:?}");
        }
        // One line: the problems joined.
        let joined: Vec<String> = got.iter().map(|(k, p)| format!("{k}: {p}")).collect();
        assert_eq!(err.to_string(), joined.join("; "));
        // The list round-trips through its parts.
        let parts = err.clone().into_list();
        assert_eq!(parts.len(), want.len());
        assert!(parts.iter().all(|p| p.more.is_empty()));
        assert_eq!(ConfigError::from_list(parts).as_ref(), Some(&err));
    }
}

#[test]
fn a_node_name_with_a_problem_is_not_replaced_by_the_host_name() {
    let bad_host = Env {
        hostname: "bad_host".to_owned(),
        vars: Vec::new(),
    };
    let err = Config::parse("node_name = 5", &bad_host, &[]).err();
    let problems: Vec<(String, String)> = err
        .iter()
        .flat_map(|e| e.problems())
        .map(|(k, p)| (k.to_owned(), p.to_owned()))
        .collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "node_name");
    assert!(problems[0].1.contains("expected a string"), "{problems:?}");
}

#[test]
fn errors_combine() {
    let a = ConfigError::new("a", "x");
    let b = ConfigError::new("b", "y").and(vec![ConfigError::new("c", "z")]);
    let all = a.and(vec![b]);
    assert_eq!(all.problems(), vec![("a", "x"), ("b", "y"), ("c", "z")]);
    assert_eq!(all.to_string(), "a: x; b: y; c: z");
    assert_eq!(ConfigError::from_list(Vec::new()), None);
}
