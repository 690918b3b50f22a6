//! Which VMs have a live row (the managed set), and anti-entropy: reading the managed rows
//! page by page and turning any difference from the stored records into deltas.

use std::collections::HashMap;

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::SinkError;
use super::schema::TableInfo;
use crate::columns::{self, Column, ColumnSet, Group, Kind, Value};
use crate::model::{VmKey, VmRecord};

/// Live rows: key → row id (the smallest, should the cloud API hold duplicates, so the
/// answer is stable from one refresh to the next).
pub async fn live_rows(
    client: &Client,
    table: &TableInfo,
) -> Result<HashMap<VmKey, String>, SinkError> {
    let sql = format!(
        "SELECT namespace::text, vm_name::text, min(id::text) FROM {} \
         WHERE deleted_at IS NULL AND namespace IS NOT NULL AND vm_name IS NOT NULL \
         GROUP BY 1, 2",
        table.quoted
    );
    let rows = client
        .query(sql.as_str(), &[])
        .await
        .map_err(SinkError::query("read managed VMs"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let key = VmKey::new(r.get::<_, String>(0), r.get::<_, String>(1));
            (key, r.get::<_, Option<String>>(2).unwrap_or_default())
        })
        .collect())
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

pub async fn read_page(
    client: &Client,
    table: &TableInfo,
    writable: ColumnSet,
    after: Option<&VmKey>,
    limit: i64,
) -> Result<Page, SinkError> {
    let cols = compared(writable);
    let select: Vec<String> = cols
        .iter()
        .map(|c| match c.kind() {
            Kind::Int => format!("\"{}\"::int8", c.name()),
            Kind::Text => format!("\"{}\"::text", c.name()),
            Kind::Bool | Kind::Time => format!("\"{}\"", c.name()),
        })
        .collect();
    let select = if select.is_empty() {
        String::new()
    } else {
        format!(", {}", select.join(", "))
    };
    let (ns, name) = after.map(|k| (&*k.namespace, &*k.name)).unwrap_or(("", ""));
    let first = after.is_none();
    let sql = format!(
        "SELECT namespace::text, vm_name::text{select} FROM {} \
         WHERE deleted_at IS NULL AND namespace IS NOT NULL AND vm_name IS NOT NULL \
           AND ($1 OR (namespace, vm_name) > ($2::text, $3::text)) \
         ORDER BY namespace, vm_name LIMIT $4",
        table.quoted
    );
    let params: [&(dyn ToSql + Sync); 4] = [&first, &ns, &name, &limit];
    let rows = client
        .query(sql.as_str(), &params)
        .await
        .map_err(SinkError::query("anti-entropy read"))?;
    let mut page = Page {
        rows: Vec::with_capacity(rows.len()),
        last: None,
    };
    for r in &rows {
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
    Ok(page)
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
