//! The shipped `packaging/virtsync.toml` is what the schema renders, and matches the
//! code. `VIRTSYNC_BLESS=1 cargo test --lib config::tests::packaging` rewrites it from
//! the schema; without it a file that differs fails the test, also in CI.

use super::*;
use crate::config::keys::key_kind;
use crate::config::render;
use crate::config::schema::{self, Kind};

const SHIPPED: &str = include_str!("../../../packaging/virtsync.toml");
const SHIPPED_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/virtsync.toml");

#[test]
fn shipped_file_is_rendered_from_the_schema() {
    let rendered = render::shipped_file();
    if std::env::var_os("VIRTSYNC_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(SHIPPED_PATH, &rendered).unwrap_or_else(|e| panic!("{SHIPPED_PATH}: {e}"));
        return;
    }
    if rendered != SHIPPED {
        let line = rendered
            .lines()
            .zip(SHIPPED.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| rendered.lines().count().min(SHIPPED.lines().count()));
        panic!(
            "packaging/virtsync.toml differs from what src/config/schema.rs renders, first at \
             line {}:\n  rendered: {:?}\n  file:     {:?}\n(VIRTSYNC_BLESS=1 cargo test --lib \
             config::tests::packaging writes it; check it in)",
            line + 1,
            rendered.lines().nth(line),
            SHIPPED.lines().nth(line)
        );
    }
}

#[test]
fn shipped_file_is_the_defaults_but_for_the_fleet_role() {
    for hostname in ["node-1", "Worker-2.Example.COM"] {
        let env = Env {
            hostname: hostname.to_owned(),
            vars: Vec::new(),
        };
        // The one deliberate difference: a packaged install is one host of a fleet,
        // where only the named candidates take part in the cluster-role election.
        let mut fleet = Config::defaults(&env);
        fleet.role = Role::Node;
        match Config::parse(SHIPPED, &env, &[]) {
            Ok(c) => assert_eq!(c, fleet),
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
    // Inside the table of a key whose value is a table (`[capabilities.machines]`):
    // its entries are the value, not keys.
    let mut in_value_table = false;
    for line in SHIPPED.lines() {
        let line = line.trim();
        if line.is_empty() {
            comment.clear();
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            in_value_table = key_kind(name).is_some();
            if in_value_table {
                assert!(
                    comment.contains("Default:"),
                    "{name}: no \"Default:\" comment"
                );
                assert!(
                    comment.contains("Accepted:"),
                    "{name}: no \"Accepted:\" comment"
                );
                seen.push(name.to_owned());
            }
            comment.clear();
        } else if in_value_table {
            assert!(
                line.starts_with('#') || line.contains(" = ["),
                "{section}: {line:?} is not a list entry"
            );
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
    let all: Vec<String> = schema::keys().map(|s| s.key.to_owned()).collect();
    assert_eq!(
        seen, all,
        "packaging/virtsync.toml must list every key, in schema order"
    );
}
