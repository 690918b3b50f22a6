//! What a daemon is configured to write: which column groups (`owns`) and which layout
//! of the table (`postgres.schema`). The configuration parses them; the columns decide
//! with them what is writable.

/// Which groups of columns this instance writes. TOML: a non-empty subset of
/// `["status", "legacy", "runtime"]` without duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owns {
    pub status: bool,
    pub legacy: bool,
    pub runtime: bool,
}

impl Default for Owns {
    fn default() -> Self {
        Owns {
            status: true,
            legacy: true,
            runtime: true,
        }
    }
}

/// Database schema flavour. TOML: `"compat" | "extended"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaMode {
    #[default]
    Compat,
    Extended,
}
