//! Overrides: precedence of file, environment and `--set`, and how
//! environment variables are read.

use super::*;
use crate::config::keys::{IGNORED_ENV, env_name};
use crate::config::schema;

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
        ("VIRTSYNC_JOURNAL_SOCKET", "/run/systemd/journal/socket"),
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
    let mut names: Vec<String> = schema::keys().map(|s| env_name(s.key)).collect();
    names.extend(IGNORED_ENV.iter().map(|s| (*s).to_owned()));
    let count = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), count);
    assert!(names.contains(&"VIRTSYNC_POSTGRES_BATCH_SIZE".to_owned()));
    assert!(names.contains(&"VIRTSYNC_NODE_NAME".to_owned()));
    assert!(names.contains(&"VIRTSYNC_CACHE_PATH".to_owned()));
}
