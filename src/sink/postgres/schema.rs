//! `virtsync migrate` and the schema check at daemon start.
//!
//! Both modes get virtsync's own schema `virtsync` (schema_version, host_capabilities,
//! vm_fence) and the partial index on `(namespace, vm_name)` of the live rows that every
//! flush and lookup uses; `extended` also adds the `runtime_*` columns and their indexes
//! to the `vms` table.
//!
//! The queries the daemon runs here (`table_info`, `check`, `missing_key_index`) use
//! `query_typed`: unnamed statements with the parameter types given, so they also work
//! through a transaction-mode pooler (PgBouncer), where named prepared statements break.

use std::collections::HashMap;
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::SinkError;
use crate::columns::{Column, ColumnSet, Group};
use crate::config::SchemaMode;

pub const SCHEMA_VERSION: i32 = 1;

const CORE_DDL: &str = "
CREATE SCHEMA IF NOT EXISTS virtsync;
CREATE TABLE IF NOT EXISTS virtsync.schema_version (
    component  text PRIMARY KEY,
    version    integer NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS virtsync.host_capabilities (
    host_id       text PRIMARY KEY,
    hostname      text NOT NULL,
    data          jsonb NOT NULL,
    fingerprint   text NOT NULL,
    discovered_at timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS virtsync.vm_fence (
    namespace            text NOT NULL,
    vm_name              text NOT NULL,
    vm_resource_version  bigint,
    vmi_uid              text,
    vmi_resource_version bigint,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, vm_name)
);
";

/// The index every flush and lookup uses: live rows by `(namespace, vm_name)`. Created in
/// both modes; without it each flush scans the whole table.
pub const KEY_INDEX: &str = "virtsync_vms_live_key";

/// Indexes of the extended schema (docs/ARCHITECTURE.md, "Schema").
///
/// `idx_vms_namespace_vm_name` (a plain index on `(namespace, vm_name)`) used to be here;
/// [`KEY_INDEX`], created in both modes, replaces it. Databases migrated before keep the
/// old index: harmless, and virtsync never drops an index on the cloud API's table.
const EXTENDED_INDEXES: &[(&str, &str)] = &[
    ("idx_vms_runtime_primary_ip", "runtime_primary_ip"),
    ("idx_vms_runtime_node_name", "runtime_node_name"),
    ("idx_vms_runtime_guest_os_id", "runtime_guest_os_id"),
    ("idx_vms_runtime_phase", "runtime_phase"),
];

/// A table name as configured (`vms` or `schema.vms`), quoted for SQL.
pub fn quote_table(table: &str) -> String {
    table
        .split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// Every statement `migrate` runs, in order.
pub fn migration_statements(table: &str, mode: SchemaMode) -> Vec<String> {
    let mut out: Vec<String> = CORE_DDL
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let quoted = quote_table(table);
    // The index name is per schema: with `postgres.table = "app.vms"` it lands in `app`.
    // Not when the cloud API has a usable index of its own: a second one would only
    // slow its writes.
    out.push(format!(
        "DO $virtsync$ BEGIN IF NOT {usable} THEN \
         CREATE INDEX IF NOT EXISTS {KEY_INDEX} ON {quoted} (namespace, vm_name) \
         WHERE deleted_at IS NULL; END IF; END $virtsync$",
        usable = usable_key_index(&format!("to_regclass('{quoted}')"))
    ));
    if mode == SchemaMode::Extended {
        for c in ColumnSet::of_group(Group::Runtime).iter() {
            out.push(format!(
                "ALTER TABLE {quoted} ADD COLUMN IF NOT EXISTS {} {}",
                c.name(),
                c.sql_type()
            ));
        }
        for (name, cols) in EXTENDED_INDEXES {
            out.push(format!(
                "CREATE INDEX IF NOT EXISTS {name} ON {quoted} ({cols})"
            ));
        }
    }
    let component = match mode {
        SchemaMode::Compat => "core",
        SchemaMode::Extended => "extended",
    };
    for c in ["core", component] {
        out.push(format!(
            "INSERT INTO virtsync.schema_version (component, version) VALUES ('{c}', {SCHEMA_VERSION}) \
             ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version, applied_at = now() \
             WHERE virtsync.schema_version.version < EXCLUDED.version"
        ));
    }
    out
}

/// Runs the migration in one transaction with a bounded wait for locks, so it never
/// queues behind (and blocks) the cloud API's traffic for long.
pub async fn migrate(
    client: &mut Client,
    table: &str,
    mode: SchemaMode,
    lock_timeout: Duration,
) -> Result<usize, SinkError> {
    let tx = client
        .transaction()
        .await
        .map_err(SinkError::query("begin migration"))?;
    let ms = lock_timeout.as_millis().max(1);
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{ms}ms'"))
        .await
        .map_err(SinkError::query("set lock_timeout"))?;
    let found = tx
        .query_opt("SELECT to_regclass($1)::text", &[&table])
        .await
        .map_err(SinkError::query("look up table"))?
        .and_then(|r| r.get::<_, Option<String>>(0));
    if found.is_none() {
        return Err(SinkError::Schema(format!(
            "table {table} does not exist: virtsync updates the cloud API's existing VM table; check postgres.table and postgres.url"
        )));
    }
    let statements = migration_statements(table, mode);
    for s in &statements {
        tx.batch_execute(s)
            .await
            .map_err(SinkError::query("migration statement"))?;
    }
    tx.commit()
        .await
        .map_err(SinkError::query("commit migration"))?;
    Ok(statements.len())
}

/// Type and length of one column, as `information_schema.columns` gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnInfo {
    pub data_type: String,
    pub max_chars: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    pub quoted: String,
    pub columns: HashMap<String, ColumnInfo>,
}

impl TableInfo {
    pub fn has(&self, column: &str) -> bool {
        self.columns.contains_key(column)
    }
}

pub async fn table_info(client: &Client, table: &str) -> Result<Option<TableInfo>, SinkError> {
    let Some(row) = client
        .query_typed_opt(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
            &[(&table, Type::TEXT)],
        )
        .await
        .map_err(SinkError::query("look up table"))?
    else {
        return Ok(None);
    };
    let (schema, name): (String, String) = (row.get(0), row.get(1));
    // From the catalog by the table's oid (index lookups), as information_schema.columns
    // would name them: a domain's base type, the declared length of (var)char columns.
    // The view itself scans pg_class, which a fleet of daemons starting at once pays
    // for on every connection.
    let rows = client
        .query_typed(
            "SELECT a.attname::text, format_type(b.base, NULL)::text, \
               CASE WHEN b.base IN ('varchar'::regtype, 'bpchar'::regtype) AND b.typmod > 4 \
                 THEN b.typmod - 4 END::int4 \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             CROSS JOIN LATERAL (SELECT \
                 CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END AS base, \
                 CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod) b \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[(&table, Type::TEXT)],
        )
        .await
        .map_err(SinkError::query("read column information"))?;
    let columns = rows
        .iter()
        .map(|r| {
            let max: Option<i32> = r.get(2);
            (
                r.get::<_, String>(0),
                ColumnInfo {
                    data_type: r.get(1),
                    max_chars: max.and_then(|m| usize::try_from(m).ok()),
                },
            )
        })
        .collect();
    Ok(Some(TableInfo {
        quoted: format!("{}.{}", quote_table(&schema), quote_table(&name)),
        columns,
    }))
}

/// Whether the table lacks a usable index on `(namespace, vm_name)`: a valid btree index
/// whose first two key columns are `namespace`, `vm_name`, either not partial or partial
/// on exactly `deleted_at IS NULL`. Returns the warning to log when it does.
pub async fn missing_key_index(
    client: &Client,
    info: &TableInfo,
) -> Result<Option<String>, SinkError> {
    let usable: bool = client
        .query_typed_one(
            &format!("SELECT {}", usable_key_index("to_regclass($1)")),
            &[(&info.quoted, Type::TEXT)],
        )
        .await
        .map_err(SinkError::query("look up the (namespace, vm_name) index"))?
        .get(0);
    Ok((!usable).then(|| {
        format!(
            "table {} has no index on (namespace, vm_name): every flush and lookup scans the \
             whole table; run `virtsync migrate --config <your config>` (creates {KEY_INDEX})",
            info.quoted
        )
    }))
}

/// SQL: whether the table `regclass` (an SQL expression) has a valid btree index led by
/// `(namespace, vm_name)`, not partial or partial on exactly `deleted_at IS NULL`.
fn usable_key_index(regclass: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_index i \
         JOIN pg_class ic ON ic.oid = i.indexrelid \
         JOIN pg_am am ON am.oid = ic.relam \
         JOIN pg_attribute a0 ON a0.attrelid = i.indrelid AND a0.attnum = i.indkey[0] \
         JOIN pg_attribute a1 ON a1.attrelid = i.indrelid AND a1.attnum = i.indkey[1] \
         WHERE i.indrelid = {regclass} AND i.indisvalid AND am.amname = 'btree' \
           AND i.indnkeyatts >= 2 \
           AND a0.attname = 'namespace' AND a1.attname = 'vm_name' \
           AND (i.indpred IS NULL \
                OR pg_get_expr(i.indpred, i.indrelid) = '(deleted_at IS NULL)'))"
    )
}

/// Names what is missing for this configuration and the command that adds it. A missing
/// `(namespace, vm_name)` index is only logged as a warning ([`missing_key_index`]).
pub async fn check(
    client: &Client,
    table: &str,
    mode: SchemaMode,
    writable: ColumnSet,
) -> Result<TableInfo, SinkError> {
    let info = table_info(client, table).await?.ok_or_else(|| {
        SinkError::Schema(format!(
            "table {table} not found in the database: check postgres.url and postgres.table"
        ))
    })?;
    let mut missing: Vec<&str> = ["id", "namespace", "vm_name", "deleted_at"]
        .into_iter()
        .filter(|c| !info.has(c))
        .collect();
    let base_missing = !missing.is_empty();
    missing.extend(writable.iter().map(Column::name).filter(|c| !info.has(c)));
    let fence = client
        .query_typed_one("SELECT to_regclass('virtsync.vm_fence') IS NOT NULL", &[])
        .await
        .map_err(SinkError::query("look up virtsync.vm_fence"))?
        .get::<_, bool>(0);
    if missing.is_empty() && fence {
        if let Some(warning) = missing_key_index(client, &info).await? {
            tracing::warn!(table = %info.quoted, "{warning}");
        }
        return Ok(info);
    }
    let mode_name = match mode {
        SchemaMode::Compat => "compat",
        SchemaMode::Extended => "extended",
    };
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "table {table} lacks columns {}",
            missing.join(", ")
        ));
    }
    if !fence {
        problems.push("table virtsync.vm_fence does not exist".to_string());
    }
    let fix = if base_missing {
        "this does not look like the cloud API's VM table: check postgres.table".to_string()
    } else {
        format!(
            "run `virtsync migrate --config <your config>` with postgres.schema = \"{mode_name}\"{}",
            if mode == SchemaMode::Extended {
                " (or set postgres.schema = \"compat\")"
            } else {
                ""
            }
        )
    };
    Err(SinkError::Schema(format!(
        "database schema does not match postgres.schema = \"{mode_name}\": {}; {fix}",
        problems.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE_KEY: &str = "CREATE INDEX IF NOT EXISTS virtsync_vms_live_key ON \"public\".\"vms\" \
                            (namespace, vm_name) WHERE deleted_at IS NULL";

    #[test]
    fn both_modes_create_the_partial_key_index() {
        for mode in [SchemaMode::Compat, SchemaMode::Extended] {
            let statements = migration_statements("public.vms", mode);
            assert_eq!(
                statements
                    .iter()
                    .filter(|s| s.contains(LIVE_KEY) && s.contains("IF NOT EXISTS (SELECT 1"))
                    .count(),
                1,
                "{mode:?}: {statements:#?}"
            );
        }
    }

    #[test]
    fn only_extended_touches_the_columns_and_the_old_plain_index_is_gone() {
        let compat = migration_statements("vms", SchemaMode::Compat);
        assert!(
            !compat.iter().any(|s| s.contains("ALTER TABLE")),
            "{compat:#?}"
        );
        let extended = migration_statements("vms", SchemaMode::Extended);
        assert!(extended.iter().any(|s| s.contains("idx_vms_runtime_phase")));
        assert!(
            !extended
                .iter()
                .any(|s| s.contains("idx_vms_namespace_vm_name")),
            "{extended:#?}"
        );
    }
}
