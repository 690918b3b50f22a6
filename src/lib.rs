//! virtsync: keeps the PostgreSQL VM records of a self-service cloud API in sync with
//! what KubeVirt and libvirt report, writing only real changes.
//!
//! Pipeline: sources → derive (pure) → state (redb: last record + outbox) → sinks.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
// A std lock held across an await stalls every task queued behind it.
#![deny(clippy::await_holding_lock)]

pub mod api;
pub mod cli;
pub mod columns;
pub mod config;
pub mod daemon;
pub mod derive;
pub mod failpoint;
pub mod health;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod state;
/// The fixtures under `tests/fixtures/`, read the same way as the integration tests do.
#[cfg(test)]
#[path = "../tests/support/fixtures.rs"]
mod test_fixtures;

/// Errors named after the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("reading {path}: {source}")]
    ReadFile {
        path: String,
        source: std::io::Error,
    },
    #[error("state store: {0}")]
    Store(#[from] state::StoreError),
    #[error("kubernetes: {0}")]
    Kubernetes(#[from] source::kube::ClientError),
    #[error("postgres: {0}")]
    Postgres(#[from] sink::postgres::SinkError),
    #[error("socket API: {0}")]
    Api(#[from] api::server::ApiError),
    #[error("metrics: {0}")]
    Metrics(#[from] metrics::MetricsError),
    /// A file given to `virtsync inspect` that cannot be read or derived.
    #[error("{path}: {problem}")]
    Inspect { path: String, problem: String },
    #[error("input line {line}: {problem}")]
    Input { line: usize, problem: String },
    /// A command line that cannot be carried out as written.
    #[error("{0}")]
    Usage(String),
    /// A system call at start (signal handlers, the runtime) or on a file.
    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        source: std::io::Error,
    },
    /// A task that was to produce something ended without (it panicked).
    #[error("{what}: {source}")]
    Task {
        what: &'static str,
        source: tokio::task::JoinError,
    },
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// `map_err` for a failed system call.
    pub fn io(step: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { step, source }
    }
}

impl Error {
    /// Process exit code: 2 for usage/configuration problems an operator must fix, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Inspect { .. } | Error::Usage(_) => 2,
            Error::Postgres(e) if e.is_setup_problem() => 2,
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
