//! The files under `tests/fixtures/` as unit tests read them. A missing or unreadable
//! fixture fails the test with its full path.
#![allow(clippy::panic)]

use std::path::PathBuf;

/// The path of a fixture, relative to `tests/fixtures/`.
pub(crate) fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// A fixture's text.
pub(crate) fn text(rel: &str) -> String {
    let path = path(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A fixture parsed as JSON.
pub(crate) fn json(rel: &str) -> serde_json::Value {
    let path = path(rel);
    serde_json::from_str(&text(rel))
        .unwrap_or_else(|e| panic!("fixture {}: not JSON: {e}", path.display()))
}
