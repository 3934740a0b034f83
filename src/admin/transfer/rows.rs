//! Writing an import's rows: batches of one table, inserted with one
//! multi-row `INSERT ... VALUES` each, every value typed by its column.

use std::collections::HashMap;

use serde_json::Value;

use crate::{
    db::TenantTx,
    error::{ApiError, Result},
};

/// Rows of one table waiting to be inserted.
#[derive(Default)]
pub(super) struct Batch {
    pub table: String,
    pub rows: Vec<Value>,
}

impl Batch {
    pub async fn flush(
        &mut self,
        tx: &TenantTx<'_>,
        columns: &mut HashMap<String, HashMap<String, String>>,
    ) -> Result<()> {
        if !self.rows.is_empty() {
            insert_rows(tx, &self.table, &self.rows, columns).await?;
            self.rows.clear();
        }
        Ok(())
    }
}

/// Inserts `rows` (JSON objects) into `table` (one of ours), naming only the
/// columns the rows have, so columns added since the export take their
/// defaults. A key that is not a column of the table is refused.
///
/// One multi-row `INSERT ... VALUES`, every value sent as text and cast to
/// its column's type. Not `INSERT ... SELECT ... FROM
/// jsonb_populate_recordset(..)`: Citus runs an INSERT ... SELECT into a
/// distributed table as a COPY into the shards, which row-level security
/// forbids ("COPY FROM not supported with row-level security"); a VALUES
/// list is routed to the tenant's shard as a plain INSERT.
pub(super) async fn insert_rows(
    tx: &TenantTx<'_>,
    table: &str,
    rows: &[Value],
    known: &mut HashMap<String, HashMap<String, String>>,
) -> Result<()> {
    if !known.contains_key(table) {
        known.insert(table.to_owned(), column_types(tx, table).await?);
    }
    let table_columns = &known[table];
    let mut names: Vec<&str> = rows
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|row| row.keys().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    if let Some(unknown) = names
        .iter()
        .find(|name| !table_columns.contains_key(**name))
    {
        return Err(ApiError::BadRequest(format!(
            "table {table} has no column {unknown:?} (exported by a newer tenantry?); nothing was imported"
        )));
    }
    let mut values: Vec<Option<String>> = Vec::with_capacity(rows.len() * names.len());
    let mut tuples = Vec::with_capacity(rows.len());
    for row in rows.iter().filter_map(Value::as_object) {
        let mut tuple = Vec::with_capacity(names.len());
        for name in &names {
            match row.get(*name) {
                // Absent from this row: the column's default.
                None => tuple.push("default".to_owned()),
                Some(value) => {
                    let column_type = &table_columns[*name];
                    values.push(as_text(value, column_type));
                    tuple.push(format!("${}::text::{column_type}", values.len()));
                }
            }
        }
        tuples.push(format!("({})", tuple.join(", ")));
    }
    let list = names
        .iter()
        .map(|name| format!("\"{name}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("insert into {table} ({list}) values {}", tuples.join(", "));
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
        .iter()
        .map(|value| value as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    tx.execute(&sql, &params).await?;
    Ok(())
}

/// The columns of `table` (ours) and their types, as `format_type` names them.
async fn column_types(tx: &TenantTx<'_>, table: &str) -> Result<HashMap<String, String>> {
    let found = tx
        .query(
            "select a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod)
             from pg_catalog.pg_attribute a
             where a.attrelid = pg_catalog.to_regclass('public.' || quote_ident($1))
               and a.attnum > 0 and not a.attisdropped",
            &[&table],
        )
        .await?;
    found
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// A JSON value as the text PostgreSQL parses into a column of
/// `column_type` (the inverse of `to_jsonb`): JSON text for `jsonb`
/// columns, strings as they are, numbers and booleans as written.
fn as_text(value: &Value, column_type: &str) -> Option<String> {
    match value {
        Value::Null => None,
        _ if column_type == "jsonb" => Some(value.to_string()),
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}
