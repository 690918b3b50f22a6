//! Errors of the PostgreSQL sink and the one function that decides what to do about a
//! database error.

use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("connecting to PostgreSQL: {}", describe(.0))]
    Connect(#[source] tokio_postgres::Error),
    #[error("{step}: {}", describe(source))]
    Query {
        step: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database lacks what this configuration needs: an operator must act.
    #[error("not connected to PostgreSQL")]
    NotConnected,
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The local state store failed (e.g. a full disk): retried, never fatal.
    #[error("state store: {0}")]
    Store(#[from] crate::state::StoreError),
    #[error("{0}")]
    Schema(String),
    #[error("{0}")]
    Setup(String),
    /// The configuration lacks what the sink needs.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("postgres.url: {0}")]
    Url(#[source] tokio_postgres::Error),
}

impl SinkError {
    pub fn query(step: &'static str) -> impl FnOnce(tokio_postgres::Error) -> SinkError {
        move |source| SinkError::Query { step, source }
    }

    /// Problems that a restart cannot fix (exit code 2).
    pub fn is_setup_problem(&self) -> bool {
        matches!(
            self,
            SinkError::Schema(_) | SinkError::Setup(_) | SinkError::Config(_) | SinkError::Url(_)
        )
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            SinkError::Connect(_) | SinkError::NotConnected | SinkError::Timeout(_) => {
                ErrorClass::Connection
            }
            SinkError::Query { source, .. } => classify(source),
            SinkError::Store(_) => ErrorClass::Transient,
            SinkError::Schema(_)
            | SinkError::Setup(_)
            | SinkError::Config(_)
            | SinkError::Url(_) => ErrorClass::Fatal,
        }
    }

    /// The table or a column is not what the schema check found: check it again at the
    /// next connect.
    pub fn says_schema_changed(&self) -> bool {
        matches!(self, SinkError::Query { source, .. }
            if source.code() == Some(&SqlState::UNDEFINED_COLUMN)
                || source.code() == Some(&SqlState::UNDEFINED_TABLE))
    }

    /// A concurrent writer got there first: retry after a pause (the retry sees its data
    /// and the fence decides).
    pub fn is_serialization_failure(&self) -> bool {
        matches!(self, SinkError::Query { source, .. }
            if source.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
                || source.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED))
    }
}

/// What a database error means for the flusher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The connection is gone or unusable: keep the outbox, reconnect with backoff.
    Connection,
    /// Try the same batch again shortly (deadlock, lock timeout, serialization, overload).
    Transient,
    /// Something in the data: retry row by row, park the rows PostgreSQL refuses.
    Data,
    /// Nothing to retry (schema or permission problem): report and back off.
    Fatal,
}

/// The single place that decides "retry or give up" for PostgreSQL errors.
pub fn classify(e: &tokio_postgres::Error) -> ErrorClass {
    let Some(code) = e.code() else {
        // No SQLSTATE: I/O error, closed connection, timeout.
        return ErrorClass::Connection;
    };
    if *code == SqlState::INSUFFICIENT_PRIVILEGE || *code == SqlState::UNDEFINED_COLUMN {
        return ErrorClass::Fatal;
    }
    // A session on a demoted or read-only server: another connection may do better.
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        return ErrorClass::Connection;
    }
    // statement_timeout: the connection is fine, try again later.
    if *code == SqlState::QUERY_CANCELED {
        return ErrorClass::Transient;
    }
    match code.code().get(..2).unwrap_or("") {
        // cardinality, data exception, integrity constraint violation, program limit
        // (e.g. index row too large), raise_exception from triggers: something in the
        // rows, so row by row finds and parks the culprit
        "21" | "22" | "23" | "54" | "P0" => ErrorClass::Data,
        // connection exception, operator intervention (admin shutdown, cancel)
        "08" | "57" => ErrorClass::Connection,
        // transaction rollback, object not in prerequisite state, insufficient resources
        "40" | "55" | "53" => ErrorClass::Transient,
        _ => ErrorClass::Fatal,
    }
}

/// The message of a database error, with its detail, for parking and logs.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {}", db.code().code(), db.message());
            if let Some(c) = db.constraint() {
                s.push_str(&format!(" (constraint {c})"));
            }
            if let Some(d) = db.detail() {
                s.push_str(&format!("; {d}"));
            }
            s
        }
        // The top-level Display of a client-side error is terse ("error connecting to
        // server"); its source says why ("Connection refused").
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}
