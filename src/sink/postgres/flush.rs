//! The batched flush: one UPDATE statement per batch writing only the changed columns,
//! fenced by the source resourceVersions in `virtsync.vm_fence`, with `RETURNING` telling
//! which rows matched. A data error falls back to row-by-row under savepoints.

use std::fmt::Write as _;
use std::time::SystemTime;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, IsolationLevel, Transaction};

use super::error::{ErrorClass, SinkError, classify, describe};
use super::schema::TableInfo;
use super::session::{self, Limits};
use crate::columns::{self, Column, ColumnSet, Kind, Value};
use crate::failpoint;
use crate::model::{VmKey, VmRecord};
use crate::state::{Outcome, PendingDelta};

/// The flush statement for the columns this daemon writes, with its parameter types: it
/// is sent unnamed each time (`query_typed`), which a pooler in transaction mode allows.
#[derive(Clone, Debug)]
pub struct FlushSql {
    pub text: String,
    types: Vec<Type>,
    /// Locks the batch's live rows in key order before they are written.
    lock: String,
}

/// Builds the flush statement for the columns this daemon writes.
pub fn flush_sql(table: &TableInfo, writable: ColumnSet) -> FlushSql {
    let cols: Vec<Column> = writable.iter().collect();
    let mut types = vec![
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::INT8_ARRAY,
        Type::INT8_ARRAY,
        Type::INT8_ARRAY,
        Type::TEXT_ARRAY,
        Type::INT8_ARRAY,
    ];
    types.extend(cols.iter().map(|c| match c.kind() {
        Kind::Text => Type::TEXT_ARRAY,
        Kind::Int => Type::INT8_ARRAY,
        Kind::Bool => Type::BOOL_ARRAY,
        Kind::Time => Type::TIMESTAMPTZ_ARRAY,
    }));
    let mut unnest = String::from(
        "$1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::int8[]",
    );
    let mut names = String::from("ns, vm, vm_mask, vmi_mask, vm_rv, vmi_uid, vmi_rv");
    for (i, c) in cols.iter().enumerate() {
        let ty = match c.kind() {
            Kind::Text => "text[]",
            Kind::Int => "int8[]",
            Kind::Bool => "bool[]",
            Kind::Time => "timestamptz[]",
        };
        let _ = write!(unnest, ", ${}::{ty}", i + 8);
        let _ = write!(names, ", c_{}", c.name());
    }
    let mut set = String::new();
    for c in &cols {
        let _ = write!(
            set,
            "\"{n}\" = CASE WHEN g.eff & {bit} <> 0 THEN g.c_{n} ELSE t.\"{n}\" END, ",
            n = c.name(),
            bit = c.bit()
        );
    }
    if table.has("updated_at") {
        set.push_str("updated_at = now()");
    } else {
        set.truncate(set.len().saturating_sub(2));
    }
    let t = &table.quoted;
    let text = format!(
        "WITH d AS (SELECT * FROM unnest({unnest}) AS d({names})), \
         g AS (SELECT d.*, \
             (CASE WHEN d.vm_rv IS NULL OR f.vm_resource_version IS NULL OR d.vm_rv >= f.vm_resource_version THEN d.vm_mask ELSE 0 END) \
           | (CASE WHEN d.vmi_rv IS NULL OR f.vmi_resource_version IS NULL OR d.vmi_rv >= f.vmi_resource_version THEN d.vmi_mask ELSE 0 END) AS eff \
           FROM d LEFT JOIN LATERAL (SELECT f.vm_resource_version, f.vmi_resource_version \
             FROM virtsync.vm_fence f WHERE f.namespace = d.ns AND f.vm_name = d.vm OFFSET 0) f ON true), \
         u AS (UPDATE {t} AS t SET {set} FROM g \
           WHERE t.namespace = g.ns AND t.vm_name = g.vm AND t.deleted_at IS NULL AND g.eff <> 0 \
           RETURNING t.namespace, t.vm_name), \
         uk AS (SELECT DISTINCT namespace, vm_name FROM u), \
         fence AS (INSERT INTO virtsync.vm_fence AS f (namespace, vm_name, vm_resource_version, vmi_uid, vmi_resource_version, updated_at) \
           SELECT g.ns, g.vm, \
             CASE WHEN g.eff & g.vm_mask <> 0 THEN g.vm_rv END, \
             CASE WHEN g.eff & g.vmi_mask <> 0 THEN g.vmi_uid END, \
             CASE WHEN g.eff & g.vmi_mask <> 0 THEN g.vmi_rv END, now() \
           FROM g JOIN uk ON uk.namespace = g.ns AND uk.vm_name = g.vm ORDER BY g.ns, g.vm \
           ON CONFLICT (namespace, vm_name) DO UPDATE SET \
             vm_resource_version = GREATEST(f.vm_resource_version, EXCLUDED.vm_resource_version), \
             vmi_uid = CASE WHEN EXCLUDED.vmi_resource_version IS NOT NULL \
                 AND EXCLUDED.vmi_resource_version >= COALESCE(f.vmi_resource_version, 0) \
               THEN EXCLUDED.vmi_uid ELSE f.vmi_uid END, \
             vmi_resource_version = GREATEST(f.vmi_resource_version, EXCLUDED.vmi_resource_version), \
             updated_at = now()) \
         SELECT g.ns, g.vm, uk.vm_name IS NOT NULL AS written, \
           EXISTS (SELECT 1 FROM {t} t2 WHERE t2.namespace = g.ns AND t2.vm_name = g.vm AND t2.deleted_at IS NULL) AS live \
         FROM g LEFT JOIN uk ON uk.namespace = g.ns AND uk.vm_name = g.vm"
    );
    // The fence is read by one probe per key: `OFFSET 0` keeps the subquery from being
    // flattened into a join that the planner runs as a scan of the whole fence table
    // while its statistics are those of an empty one (measured: a fleet's first start
    // read the growing fence 8,000 rows per host).
    // Two writers whose batches share rows (the cluster-role holder's status and a
    // node's runtime columns of the same VMs) take the locks in the same order, so they
    // wait for each other instead of deadlocking. The fence rows are locked (in the
    // same order) only after all of them.
    let lock = format!(
        "SELECT 1 FROM {t} t WHERE t.deleted_at IS NULL AND (t.namespace, t.vm_name) IN \
         (SELECT * FROM unnest($1::text[], $2::text[])) ORDER BY t.namespace, t.vm_name FOR UPDATE"
    );
    FlushSql { text, types, lock }
}

/// Fits text values to their columns: longer values (often guest-controlled, such as an
/// OS pretty name) are cut to the column's length and NUL characters (which PostgreSQL
/// text cannot hold) removed, so one odd value never blocks the rest of the row.
/// Returns what was changed, for the log.
pub fn sanitize(record: &mut VmRecord, columns: ColumnSet, table: &TableInfo) -> Vec<String> {
    let mut changed = Vec::new();
    for c in columns.iter() {
        let max = table.columns.get(c.name()).and_then(|i| i.max_chars);
        let Value::Text(text) = columns::value(record, c) else {
            continue;
        };
        // Read first, written only when it does not fit: a record's runtime details are
        // shared and copied on write.
        let Some(fitted) = fit(text, max, c.name(), &mut changed) else {
            continue;
        };
        if let Some(slot) = columns::text_mut(record, c) {
            *slot = fitted;
        }
    }
    changed
}

/// `text` without NUL characters and cut to `max` characters, or `None` when it fits
/// as it is; each change is noted for the log.
fn fit(text: &str, max: Option<usize>, column: &str, notes: &mut Vec<String>) -> Option<String> {
    let mut fitted = None;
    if text.contains('\0') {
        fitted = Some(text.replace('\0', ""));
        notes.push(format!("{column}: NUL characters removed"));
    }
    if let Some(max) = max {
        let current = fitted.as_deref().unwrap_or(text);
        if let Some((cut, _)) = current.char_indices().nth(max) {
            fitted = Some(current[..cut].to_string());
            notes.push(format!("{column}: cut to the column's {max} characters"));
        }
    }
    fitted
}

/// Checks a delta's numbers against the column's constraints before it is sent; a
/// violation parks the delta with the reason.
pub fn validate(delta: &PendingDelta, table: &TableInfo) -> Result<(), String> {
    for c in delta.columns.iter() {
        if let Value::Int(v) = columns::value(&delta.record, c) {
            if c.must_be_positive() && v <= 0 {
                return Err(format!("{}: {v} is not > 0", c.name()));
            }
            let max = match table.columns.get(c.name()).map(|i| i.data_type.as_str()) {
                Some("smallint") => i64::from(i16::MAX),
                Some("integer") => i64::from(i32::MAX),
                _ => i64::MAX,
            };
            if v > max || v < -max {
                return Err(format!("{}: {v} does not fit the column", c.name()));
            }
        }
    }
    Ok(())
}

enum Array<'a> {
    Text(Vec<Option<&'a str>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Time(Vec<Option<SystemTime>>),
}

impl Array<'_> {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Array::Text(v) => v,
            Array::Int(v) => v,
            Array::Bool(v) => v,
            Array::Time(v) => v,
        }
    }
}

/// The bound parameters of one flush, column-wise.
struct Params<'a> {
    ns: Vec<&'a str>,
    vm: Vec<&'a str>,
    vm_mask: Vec<i64>,
    vmi_mask: Vec<i64>,
    vm_rv: Vec<Option<i64>>,
    vmi_uid: Vec<Option<&'a str>>,
    vmi_rv: Vec<Option<i64>>,
    values: Vec<Array<'a>>,
}

impl<'a> Params<'a> {
    fn new(deltas: &[&'a PendingDelta], writable: ColumnSet) -> Params<'a> {
        let cols: Vec<Column> = writable.iter().collect();
        let mut p = Params {
            ns: Vec::with_capacity(deltas.len()),
            vm: Vec::with_capacity(deltas.len()),
            vm_mask: Vec::with_capacity(deltas.len()),
            vmi_mask: Vec::with_capacity(deltas.len()),
            vm_rv: Vec::with_capacity(deltas.len()),
            vmi_uid: Vec::with_capacity(deltas.len()),
            vmi_rv: Vec::with_capacity(deltas.len()),
            values: cols
                .iter()
                .map(|c| match c.kind() {
                    Kind::Text => Array::Text(Vec::with_capacity(deltas.len())),
                    Kind::Int => Array::Int(Vec::with_capacity(deltas.len())),
                    Kind::Bool => Array::Bool(Vec::with_capacity(deltas.len())),
                    Kind::Time => Array::Time(Vec::with_capacity(deltas.len())),
                })
                .collect(),
        };
        for d in deltas {
            let origin = d.versions.legacy_origin;
            let send = d.columns.intersect(writable);
            let (mut vm_mask, mut vmi_mask) = (0u64, 0u64);
            for c in send.iter() {
                if c.fenced_by_vmi(origin) {
                    vmi_mask |= c.bit();
                } else {
                    vm_mask |= c.bit();
                }
            }
            p.ns.push(&d.key.namespace);
            p.vm.push(&d.key.name);
            p.vm_mask.push(vm_mask as i64);
            p.vmi_mask.push(vmi_mask as i64);
            p.vm_rv.push(d.versions.vm_resource_version);
            p.vmi_uid.push(d.versions.vmi_uid.as_deref());
            p.vmi_rv.push(d.versions.vmi_resource_version);
            for (c, array) in cols.iter().zip(p.values.iter_mut()) {
                let v = if send.contains(*c) {
                    columns::value(&d.record, *c)
                } else {
                    Value::Null
                };
                match (array, v) {
                    (Array::Text(a), Value::Text(s)) => a.push(Some(s)),
                    (Array::Text(a), _) => a.push(None),
                    (Array::Int(a), Value::Int(i)) => a.push(Some(i)),
                    (Array::Int(a), _) => a.push(None),
                    (Array::Bool(a), Value::Bool(b)) => a.push(Some(b)),
                    (Array::Bool(a), _) => a.push(None),
                    (Array::Time(a), Value::Time(t)) => a.push(Some(t.to_system_time())),
                    (Array::Time(a), _) => a.push(None),
                }
            }
        }
        p
    }

    fn refs<'s>(&'s self, sql: &FlushSql) -> Vec<(&'s (dyn ToSql + Sync), Type)> {
        let mut out: Vec<&(dyn ToSql + Sync)> = vec![
            &self.ns,
            &self.vm,
            &self.vm_mask,
            &self.vmi_mask,
            &self.vm_rv,
            &self.vmi_uid,
            &self.vmi_rv,
        ];
        out.extend(self.values.iter().map(Array::as_sql));
        out.into_iter().zip(sql.types.iter().cloned()).collect()
    }

    /// Takes the row locks of the batch, in key order (see `begin`).
    async fn lock_rows(
        &self,
        tx: &Transaction<'_>,
        sql: &FlushSql,
    ) -> Result<(), tokio_postgres::Error> {
        tx.query_typed(
            &sql.lock,
            &[(&self.ns, Type::TEXT_ARRAY), (&self.vm, Type::TEXT_ARRAY)],
        )
        .await?;
        Ok(())
    }
}

/// Outcome of each row from the statement's result rows.
fn outcomes(rows: &[tokio_postgres::Row], deltas: &[&PendingDelta]) -> Vec<(VmKey, u64, Outcome)> {
    let mut by_key = std::collections::HashMap::new();
    for r in rows {
        let (ns, vm, written, live): (String, String, bool, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let outcome = match (written, live) {
            (true, _) => Outcome::Applied,
            (false, true) => Outcome::FencedOut,
            (false, false) => Outcome::RowMissing,
        };
        by_key.insert(VmKey::new(ns, vm), outcome);
    }
    deltas
        .iter()
        .map(|d| {
            let o = by_key.remove(&d.key).unwrap_or(Outcome::RowMissing);
            (d.key.clone(), d.seq, o)
        })
        .collect()
}

/// Writes a batch in one transaction. A data error rolls back and retries row by row
/// under savepoints so only the refused rows are parked.
pub async fn write_batch(
    client: &mut Client,
    sql: &FlushSql,
    limits: &Limits,
    writable: ColumnSet,
    deltas: &[&PendingDelta],
) -> Result<Vec<(VmKey, u64, Outcome)>, SinkError> {
    let params = Params::new(deltas, writable);
    let result = {
        let tx = begin(client, limits).await?;
        async {
            params.lock_rows(&tx, sql).await?;
            let rows = tx.query_typed(&sql.text, &params.refs(sql)).await?;
            failpoint::hit("before_pg_commit");
            // Deferred constraints report at COMMIT: a data error of this batch too.
            tx.commit().await?;
            failpoint::hit("after_pg_commit");
            Ok::<_, tokio_postgres::Error>(rows)
        }
        .await
    };
    match result {
        Ok(rows) => Ok(outcomes(&rows, deltas)),
        Err(e) if classify(&e) == ErrorClass::Data => {
            tracing::warn!(error = %describe(&e), rows = deltas.len(), "batch refused; retrying row by row");
            write_rows(client, sql, limits, writable, deltas).await
        }
        Err(e) => Err(SinkError::Query {
            step: "flush",
            source: e,
        }),
    }
}

/// READ COMMITTED, and the batch's rows locked (in key order) by a statement of their
/// own before the flush statement: every virtsync writer of a row holds its lock while
/// it reads the fence and writes, so the flush statement's snapshot, taken after the
/// locks, sees the last committed fence and row. (Without the locks first, READ
/// COMMITTED's row re-check after a wait would write older data over newer; REPEATABLE
/// READ instead failed every flush that had waited for a lock with a serialization
/// error, again and again while two writers shared rows.)
async fn begin<'a>(client: &'a mut Client, limits: &Limits) -> Result<Transaction<'a>, SinkError> {
    session::begin(client, limits, Some(IsolationLevel::ReadCommitted)).await
}

async fn write_rows(
    client: &mut Client,
    sql: &FlushSql,
    limits: &Limits,
    writable: ColumnSet,
    deltas: &[&PendingDelta],
) -> Result<Vec<(VmKey, u64, Outcome)>, SinkError> {
    let mut tx = begin(client, limits).await?;
    Params::new(deltas, writable)
        .lock_rows(&tx, sql)
        .await
        .map_err(SinkError::query("lock rows"))?;
    // Deferred constraints must fire inside each row's savepoint, not at COMMIT.
    tx.batch_execute("SET CONSTRAINTS ALL IMMEDIATE")
        .await
        .map_err(SinkError::query("set constraints immediate"))?;
    let mut out = Vec::with_capacity(deltas.len());
    for d in deltas {
        let one = [*d];
        let params = Params::new(&one, writable);
        let sp = tx
            .savepoint("virtsync_row")
            .await
            .map_err(SinkError::query("savepoint"))?;
        match sp.query_typed(&sql.text, &params.refs(sql)).await {
            Ok(rows) => {
                sp.commit()
                    .await
                    .map_err(SinkError::query("release savepoint"))?;
                out.extend(outcomes(&rows, &one));
            }
            Err(e) if classify(&e) == ErrorClass::Data => {
                sp.rollback()
                    .await
                    .map_err(SinkError::query("rollback to savepoint"))?;
                tracing::warn!(vm = %d.key, error = %describe(&e), "delta parked");
                out.push((d.key.clone(), d.seq, Outcome::Parked(describe(&e))));
            }
            Err(e) => {
                return Err(SinkError::Query {
                    step: "row-by-row flush",
                    source: e,
                });
            }
        }
    }
    failpoint::hit("before_pg_commit");
    tx.commit()
        .await
        .map_err(SinkError::query("commit flush"))?;
    failpoint::hit("after_pg_commit");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn text_is_fitted_only_when_it_does_not_fit() {
        let mut notes = Vec::new();
        assert_eq!(fit("Ubuntu 24.04", Some(50), "guest_os", &mut notes), None);
        assert_eq!(fit("any length", None, "guest_os", &mut notes), None);
        assert!(notes.is_empty());
        // NULs go first, then the cut counts characters, not bytes.
        let fitted = fit("a\0bé\0cd", Some(3), "guest_os", &mut notes);
        assert_eq!(fitted.as_deref(), Some("abé"));
        assert_eq!(
            notes,
            [
                "guest_os: NUL characters removed",
                "guest_os: cut to the column's 3 characters"
            ]
        );
    }
}
