//! Session settings that survive a connection pooler in transaction mode: no startup
//! `options` (PgBouncer refuses them with 08P01) and no named statements (each
//! transaction may run on another server connection). Every bounded step runs in a
//! transaction that sets its own limits with `SET LOCAL`; statements are sent unnamed
//! (`query_typed`).

use std::time::Duration;

use tokio_postgres::{Client, IsolationLevel, Transaction};

use super::SinkError;

/// How long one statement may run at all (row-lock waits: `postgres.lock_timeout`).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The bounded waits of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A row lock held by someone else must not stall every other VM's changes
    /// (55P03 is retried).
    pub lock_timeout: Duration,
    /// A stuck statement is cancelled (57014 is retried).
    pub statement_timeout: Duration,
    /// A writer that stops between statements (frozen, SIGSTOP, a paused VM) would keep
    /// its row locks for as long as it is stopped, and every other daemon's changes to
    /// those rows would wait behind it: PostgreSQL ends such a session after
    /// `postgres.lock_idle_timeout`, the same bound after which a frozen holder loses
    /// the cluster role.
    pub idle_in_transaction_timeout: Duration,
}

impl Limits {
    pub fn new(lock_timeout: Duration, idle_in_transaction_timeout: Duration) -> Limits {
        Limits {
            lock_timeout,
            statement_timeout: STATEMENT_TIMEOUT,
            idle_in_transaction_timeout,
        }
    }

    /// The `SET LOCAL` statements, sent as one simple query.
    pub fn set_local(&self) -> String {
        let ms = |d: Duration| d.as_millis().max(1);
        format!(
            "SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'; \
             SET LOCAL idle_in_transaction_session_timeout = '{}ms'",
            ms(self.lock_timeout),
            ms(self.statement_timeout),
            ms(self.idle_in_transaction_timeout)
        )
    }
}

/// Starts a transaction with these limits (`isolation`: the server default when `None`).
pub async fn begin<'a>(
    client: &'a mut Client,
    limits: &Limits,
    isolation: Option<IsolationLevel>,
) -> Result<Transaction<'a>, SinkError> {
    let mut builder = client.build_transaction();
    if let Some(level) = isolation {
        builder = builder.isolation_level(level);
    }
    let tx = builder
        .start()
        .await
        .map_err(SinkError::query("begin transaction"))?;
    tx.batch_execute(&limits.set_local())
        .await
        .map_err(SinkError::query("set transaction limits"))?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_set_per_transaction_in_milliseconds() {
        let l = Limits::new(Duration::from_millis(1500), Duration::from_secs(15));
        assert_eq!(
            l.set_local(),
            "SET LOCAL lock_timeout = '1500ms'; SET LOCAL statement_timeout = '60000ms'; \
             SET LOCAL idle_in_transaction_session_timeout = '15000ms'"
        );
        // Zero would mean "no limit" to PostgreSQL: the shortest limit is 1 ms.
        assert!(
            Limits::new(Duration::ZERO, Duration::ZERO)
                .set_local()
                .contains("lock_timeout = '1ms'")
        );
    }
}
