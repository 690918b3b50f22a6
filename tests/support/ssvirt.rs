//! An SSVirt-shaped `vms` table plus test-only change auditing and statistics helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

/// The `vms` table as the self-service cloud API (SSVirt) has it, from the example DDL
/// in `packaging/`, so the tests run exactly the SQL users are shown.
pub const CREATE_VMS: &str = include_str!("../../packaging/ssvirt-vms.sql");

/// Test-only audit: one `vms_column_log` row per column whose value an UPDATE
/// changed (OLD.col IS DISTINCT FROM NEW.col). Generic over the row's columns
/// via to_jsonb, so columns added later with ALTER TABLE are covered too.
pub const CREATE_COLUMN_LOG: &str = r#"
CREATE TABLE vms_column_log (
    id          bigserial PRIMARY KEY,
    vm_id       text,
    column_name text NOT NULL,
    old_value   text,
    new_value   text,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION vms_column_log_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO vms_column_log (vm_id, column_name, old_value, new_value)
    SELECT NEW.id, coalesce(n.key, o.key), o.value #>> '{}', n.value #>> '{}'
    FROM jsonb_each(to_jsonb(OLD)) AS o
    FULL JOIN jsonb_each(to_jsonb(NEW)) AS n ON n.key = o.key
    WHERE o.value IS DISTINCT FROM n.value;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER vms_column_log_trg AFTER UPDATE ON vms
    FOR EACH ROW EXECUTE FUNCTION vms_column_log_fn();
"#;

static VM_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A unique URN-shaped id: `urn:vcloud:vm:<pid>-0000-4000-8000-<counter>`.
pub fn new_vm_id() -> String {
    let n = VM_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "urn:vcloud:vm:{:08x}-0000-4000-8000-{n:012x}",
        std::process::id()
    )
}

/// Inserts a live VM row (status POWERED_OFF, 1 CPU, 1024 MB); returns its id.
pub async fn insert_vm(client: &Client, namespace: &str, vm_name: &str) -> String {
    let id = new_vm_id();
    client
        .execute(
            "INSERT INTO vms (id, name, description, vapp_id, vm_name, namespace, status, \
             cpu_count, memory_mb, guest_os) \
             VALUES ($1, $2, '', $3, $2, $4, 'POWERED_OFF', 1, 1024, 'rhel9')",
            &[
                &id,
                &vm_name,
                &"urn:vcloud:vapp:00000000-0000-4000-8000-000000000001",
                &namespace,
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("insert vm {namespace}/{vm_name}: {e:?}"));
    id
}

/// GORM-style soft delete (sets only `deleted_at`); returns the number of rows hit.
pub async fn soft_delete(client: &Client, namespace: &str, vm_name: &str) -> u64 {
    client
        .execute(
            "UPDATE vms SET deleted_at = now() \
             WHERE namespace = $1 AND vm_name = $2 AND deleted_at IS NULL",
            &[&namespace, &vm_name],
        )
        .await
        .unwrap_or_else(|e| panic!("soft delete {namespace}/{vm_name}: {e:?}"))
}

/// Distinct (vm_id, column_name) pairs from `vms_column_log`, sorted.
pub async fn column_changes(client: &Client) -> Vec<(String, String)> {
    client
        .query(
            "SELECT DISTINCT coalesce(vm_id, ''), column_name FROM vms_column_log ORDER BY 1, 2",
            &[],
        )
        .await
        .expect("read vms_column_log")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The distinct set of column names changed since the last `clear_column_log`.
pub async fn changed_columns(client: &Client) -> BTreeSet<String> {
    column_changes(client)
        .await
        .into_iter()
        .map(|(_, c)| c)
        .collect()
}

pub async fn clear_column_log(client: &Client) {
    client
        .batch_execute("TRUNCATE vms_column_log")
        .await
        .expect("truncate vms_column_log");
}

/// sum(calls) of pg_stat_statements entries of the current database whose text
/// contains `needle` (case-insensitive), excluding queries on pg_stat_statements
/// itself. pg_stat_statements is updated at executor end: no flush needed.
pub async fn statements_touching(client: &Client, needle: &str) -> i64 {
    statement_stat(client, "calls", needle).await
}

/// sum(rows) (rows processed) of the same statements as `statements_touching`:
/// an immediate alternative to n_tup_upd for "how many rows did UPDATEs hit".
pub async fn statement_rows_touching(client: &Client, needle: &str) -> i64 {
    statement_stat(client, "rows", needle).await
}

async fn statement_stat(client: &Client, column: &str, needle: &str) -> i64 {
    let sql = format!(
        "SELECT coalesce(sum({column}), 0)::bigint FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND query ILIKE '%' || $1 || '%' \
           AND query NOT ILIKE '%pg_stat_statements%'"
    );
    client
        .query_one(sql.as_str(), &[&needle])
        .await
        .expect("query pg_stat_statements")
        .get(0)
}

/// pg_stat_statements_reset() restricted to the current database, so tests
/// sharing a cluster do not wipe each other's counters.
pub async fn reset_statements(client: &Client) {
    client
        .batch_execute(
            "SELECT pg_stat_statements_reset(0, \
             (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
        )
        .await
        .expect("pg_stat_statements_reset");
}

/// pg_stat_user_tables.n_tup_upd for `table` (in the current database).
///
/// Cumulative stats are flushed by each backend when it goes idle, but at most
/// once per second; a backend that flushed less than 1 s ago postpones the next
/// flush by up to 10 s (PostgreSQL 15 PGSTAT_IDLE_INTERVAL). This forces the
/// flush of *this* connection's pending counts, then polls until the value has
/// been stable for 0.5 s (max 15 s). Updates made by *other* connections that
/// flushed recently may still arrive up to 10 s later — unless those
/// connections are closed first (a backend flushes on exit). For exact,
/// immediate counts prefer the column log or `statement_rows_touching`.
pub async fn n_tup_upd(client: &Client, table: &str) -> i64 {
    client
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .expect("pg_stat_force_next_flush");
    let read = || read_n_tup_upd(client, table);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut value = read().await;
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_millis(500) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let v = read().await;
        if v != value {
            value = v;
            since = Instant::now();
        }
    }
    value
}

/// Polls n_tup_upd until it reaches at least `min` (max `timeout`); returns the last value.
pub async fn wait_n_tup_upd_at_least(
    client: &Client,
    table: &str,
    min: i64,
    timeout: Duration,
) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        client
            .batch_execute("SELECT pg_stat_force_next_flush()")
            .await
            .expect("pg_stat_force_next_flush");
        let v = read_n_tup_upd(client, table).await;
        if v >= min || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn read_n_tup_upd(client: &Client, table: &str) -> i64 {
    client
        .query_one(
            "SELECT coalesce(sum(n_tup_upd), 0)::bigint FROM pg_stat_user_tables \
             WHERE relname = $1",
            &[&table],
        )
        .await
        .expect("read pg_stat_user_tables")
        .get(0)
}
