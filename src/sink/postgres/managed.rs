//! Which VMs have a live row (the managed set), and anti-entropy: reading the managed rows
//! and turning any difference from the stored records into deltas.
//!
//! A daemon reads only the rows of the VMs it holds records of, by their keys (indexed
//! lookups, [`KEY_PAGE`] keys per statement); only the cluster-role holder reads the
//! whole table. So the rows one host reads follow its own VMs, not the fleet's.

use std::collections::HashMap;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row};

use super::SinkError;
use super::schema::TableInfo;
use super::session::{self, Limits};
use crate::columns::{self, Column, ColumnSet, Group, Kind, Value};
use crate::model::{VmKey, VmRecord};

/// Keys per lookup statement.
pub const KEY_PAGE: usize = 1000;

/// Runs one read in a transaction with the session limits (pooler-safe: `SET LOCAL`, an
/// unnamed statement).
async fn read(
    client: &mut Client,
    limits: &Limits,
    step: &'static str,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> Result<Vec<Row>, SinkError> {
    let tx = session::begin(client, limits, None).await?;
    let rows = tx
        .query_typed(sql, params)
        .await
        .map_err(SinkError::query(step))?;
    tx.commit().await.map_err(SinkError::query(step))?;
    Ok(rows)
}

/// The key arrays of a page of keys.
fn key_arrays(keys: &[VmKey]) -> (Vec<&str>, Vec<&str>) {
    keys.iter().map(|k| (&*k.namespace, &*k.name)).unzip()
}

fn live_rows_from(rows: &[Row]) -> impl Iterator<Item = (VmKey, String)> + '_ {
    rows.iter().map(|r| {
        let key = VmKey::new(r.get::<_, String>(0), r.get::<_, String>(1));
        (key, r.get::<_, Option<String>>(2).unwrap_or_default())
    })
}

/// Live rows of the whole table (the cluster-role holder): key → row id (the smallest,
/// should the cloud API hold duplicates, so the answer is stable from one refresh to the
/// next).
pub async fn live_rows(
    client: &mut Client,
    limits: &Limits,
    table: &TableInfo,
) -> Result<HashMap<VmKey, String>, SinkError> {
    let sql = format!(
        "SELECT namespace::text, vm_name::text, min(id::text) FROM {} \
         WHERE deleted_at IS NULL AND namespace IS NOT NULL AND vm_name IS NOT NULL \
         GROUP BY 1, 2",
        table.quoted
    );
    let rows = read(client, limits, "read managed VMs", &sql, &[]).await?;
    Ok(live_rows_from(&rows).collect())
}

/// Live rows of these keys only, as [`live_rows`] gives them.
pub async fn live_rows_of(
    client: &mut Client,
    limits: &Limits,
    table: &TableInfo,
    keys: &[VmKey],
) -> Result<HashMap<VmKey, String>, SinkError> {
    let sql = format!(
        "SELECT t.namespace::text, t.vm_name::text, min(t.id::text) FROM {} t \
         JOIN unnest($1::text[], $2::text[]) AS k(ns, n) ON t.namespace = k.ns AND t.vm_name = k.n \
         WHERE t.deleted_at IS NULL GROUP BY 1, 2",
        table.quoted
    );
    let mut out = HashMap::with_capacity(keys.len());
    for page in keys.chunks(KEY_PAGE) {
        let (ns, names) = key_arrays(page);
        let rows = read(
            client,
            limits,
            "look up managed VMs",
            &sql,
            &[(&ns, Type::TEXT_ARRAY), (&names, Type::TEXT_ARRAY)],
        )
        .await?;
        out.extend(live_rows_from(&rows));
    }
    Ok(out)
}

/// The compared columns: what we write, minus bookkeeping.
fn compared(writable: ColumnSet) -> Vec<Column> {
    writable
        .iter()
        .filter(|c| *c != Column::RuntimeVmiUpdatedAt)
        .collect()
}

/// One page of managed rows, keyset-paginated by (namespace, vm_name).
pub struct Page {
    pub rows: Vec<(VmKey, Vec<RowValue>)>,
    pub last: Option<VmKey>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowValue {
    Null,
    Text(String),
    Int(i64),
    Bool(bool),
}

impl RowValue {
    fn as_value(&self) -> Value<'_> {
        match self {
            RowValue::Null => Value::Null,
            RowValue::Text(s) => Value::Text(s),
            RowValue::Int(i) => Value::Int(*i),
            RowValue::Bool(b) => Value::Bool(*b),
        }
    }
}

/// The compared columns as a select list (after the key columns).
fn select_list(cols: &[Column], prefix: &str) -> String {
    cols.iter()
        .map(|c| match c.kind() {
            Kind::Int => format!(", {prefix}\"{}\"::int8", c.name()),
            Kind::Text => format!(", {prefix}\"{}\"::text", c.name()),
            Kind::Bool | Kind::Time => format!(", {prefix}\"{}\"", c.name()),
        })
        .collect()
}

/// One page of the whole table (the cluster-role holder's pass), after `after`.
pub async fn read_page(
    client: &mut Client,
    limits: &Limits,
    table: &TableInfo,
    writable: ColumnSet,
    after: Option<&VmKey>,
    limit: i64,
) -> Result<Page, SinkError> {
    let cols = compared(writable);
    let select = select_list(&cols, "");
    let (ns, name) = after.map(|k| (&*k.namespace, &*k.name)).unwrap_or(("", ""));
    let first = after.is_none();
    let sql = format!(
        "SELECT namespace::text, vm_name::text{select} FROM {} \
         WHERE deleted_at IS NULL AND namespace IS NOT NULL AND vm_name IS NOT NULL \
           AND ($1 OR (namespace, vm_name) > ($2::text, $3::text)) \
         ORDER BY namespace, vm_name LIMIT $4",
        table.quoted
    );
    let rows = read(
        client,
        limits,
        "anti-entropy read",
        &sql,
        &[
            (&first, Type::BOOL),
            (&ns, Type::TEXT),
            (&name, Type::TEXT),
            (&limit, Type::INT8),
        ],
    )
    .await?;
    Ok(page_of(&rows, &cols))
}

/// The rows of these keys (a node daemon's pass over its own VMs), at most [`KEY_PAGE`].
pub async fn read_rows_of(
    client: &mut Client,
    limits: &Limits,
    table: &TableInfo,
    writable: ColumnSet,
    keys: &[VmKey],
) -> Result<Page, SinkError> {
    let cols = compared(writable);
    let select = select_list(&cols, "t.");
    let sql = format!(
        "SELECT t.namespace::text, t.vm_name::text{select} FROM {} t \
         JOIN unnest($1::text[], $2::text[]) AS k(ns, n) ON t.namespace = k.ns AND t.vm_name = k.n \
         WHERE t.deleted_at IS NULL ORDER BY t.namespace, t.vm_name",
        table.quoted
    );
    let (ns, names) = key_arrays(keys);
    let rows = read(
        client,
        limits,
        "anti-entropy read",
        &sql,
        &[(&ns, Type::TEXT_ARRAY), (&names, Type::TEXT_ARRAY)],
    )
    .await?;
    Ok(page_of(&rows, &cols))
}

fn page_of(rows: &[Row], cols: &[Column]) -> Page {
    let mut page = Page {
        rows: Vec::with_capacity(rows.len()),
        last: None,
    };
    for r in rows {
        let key = VmKey::new(r.get::<_, String>(0), r.get::<_, String>(1));
        let values = cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let i = i + 2;
                match c.kind() {
                    Kind::Int => r
                        .get::<_, Option<i64>>(i)
                        .map_or(RowValue::Null, RowValue::Int),
                    Kind::Text => r
                        .get::<_, Option<String>>(i)
                        .map_or(RowValue::Null, RowValue::Text),
                    Kind::Bool => r
                        .get::<_, Option<bool>>(i)
                        .map_or(RowValue::Null, RowValue::Bool),
                    Kind::Time => RowValue::Null,
                }
            })
            .collect();
        page.last = Some(key.clone());
        page.rows.push((key, values));
    }
    page
}

/// Columns where the row differs from our record. A status/legacy value we do not know
/// (NULL in the record) is not drift: we never erase what the cloud API put there.
pub fn drift(record: &VmRecord, row: &[RowValue], writable: ColumnSet) -> ColumnSet {
    compared(writable)
        .into_iter()
        .zip(row)
        .filter(|(c, v)| {
            let ours = columns::value(record, *c);
            if ours == Value::Null && c.group() != Group::Runtime {
                return false;
            }
            ours != v.as_value()
        })
        .map(|(c, _)| c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RuntimeDetails, VmStatus};
    use std::sync::Arc;

    #[test]
    fn unknown_legacy_values_are_not_drift_but_runtime_ones_are() {
        let mut r = VmRecord::new(&VmKey::new("ns", "vm"));
        r.status = Some(VmStatus::PoweredOn);
        r.runtime_details = Some(Arc::new(RuntimeDetails {
            phase: Some("Running".into()),
            ..RuntimeDetails::default()
        }));
        let writable = [
            Column::Status,
            Column::GuestOs,
            Column::RuntimePhase,
            Column::RuntimeNodeName,
        ]
        .into_iter()
        .collect();
        let row = vec![
            RowValue::Text("POWERED_OFF".into()),
            RowValue::Text("Windows".into()),
            RowValue::Text("Running".into()),
            RowValue::Text("node-x".into()),
        ];
        assert_eq!(
            drift(&r, &row, writable).names(),
            vec!["status", "runtime_node_name"]
        );
    }
}
