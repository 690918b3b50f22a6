//! `packaging/virtsync.toml`, rendered from the schema: a header on the file's syntax,
//! then every key in schema order under its comment, set to its default (or commented
//! out when it has none). `VIRTSYNC_BLESS=1 cargo test --lib config::tests::packaging`
//! writes the file; without it a test fails when the checked-in file differs.

use std::fmt::Write as _;

use super::schema::{KeySpec, Preset, SCHEMA};

/// The comment at the top of the file: the syntax every key shares.
const HEADER: &[&str] = &[
    "virtsync configuration",
    "",
    "Every key is listed with its default value. Keys that have no default are",
    "commented out. Unknown keys are an error.",
    "",
    "Overrides, later wins:",
    "  1. this file",
    "  2. environment variables VIRTSYNC_<SECTION>_<KEY>, or VIRTSYNC_<KEY> for",
    "     top-level keys (e.g. VIRTSYNC_POSTGRES_BATCH_SIZE=1000,",
    "     VIRTSYNC_NODE_NAME=worker-1). Lists are comma separated",
    "     (VIRTSYNC_OWNS=status,legacy). An empty value unsets a key that has no",
    "     default.",
    "  3. command line: --set postgres.batch_size=1000 (same value syntax as the",
    "     environment).",
    "",
    r#"Durations are strings with a unit: "500ms", "30s", "5m", "1h", "1d", or"#,
    r#"combinations such as "1m30s". Units: ns, us, ms, s, m, h, d. A bare number"#,
    "is an error.",
    r#"Sizes: "512KiB", "32MiB", "1GiB" (powers of 1024), "10KB", "10MB", "1GB""#,
    "(powers of 1000), or a plain number of bytes.",
];

/// The shipped configuration file.
pub(super) fn shipped_file() -> String {
    let mut out = String::new();
    comment(&mut out, HEADER);
    for section in SCHEMA {
        if !section.name.is_empty() {
            let _ = write!(out, "\n[{}]\n", section.name);
        }
        for (i, spec) in section.keys.iter().enumerate() {
            // Keys are apart by an empty line; the first of a section follows its header.
            if i > 0 || section.name.is_empty() {
                out.push('\n');
            }
            out.push_str(&entry(spec, spec.shipped));
        }
    }
    out
}

/// One key as the file writes it: its comment, then `value` (TOML), else its default.
pub(super) fn entry(spec: &KeySpec, value: Option<&str>) -> String {
    let mut out = String::new();
    comment(&mut out, spec.doc);
    let name = spec.name();
    match (value, spec.default) {
        (Some(value), _) | (None, Preset::Toml(value)) => {
            let _ = writeln!(out, "{name} = {value}");
        }
        (None, Preset::Table(lines)) => {
            let _ = writeln!(out, "[{}]", spec.key);
            for line in lines {
                let _ = writeln!(out, "{line}");
            }
        }
        (None, Preset::Unset { example }) => {
            let _ = writeln!(out, "# {name} = {example}");
        }
    }
    out
}

fn comment(out: &mut String, lines: &[&str]) {
    for line in lines {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {line}");
        }
    }
}
