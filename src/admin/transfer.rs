//! Export and import of one tenant: backup and recovery of a single tenant
//! without touching any other.
//!
//! # The format: `tenantry.tenant-export`, version 1
//!
//! UTF-8 NDJSON (one JSON object per line, `\n`-terminated), optionally
//! gzip-compressed as a whole:
//!
//! 1. a header: `{"format": "tenantry.tenant-export", "version": 1,
//!    "schema_version": 2, "exported_at": "...", "tenant": {..registry row..},
//!    "rows": {"tenant_domains": 1, "users": 3, ...}}`;
//! 2. one line per row, tables in [`EXPORT_ORDER`] (parents first), each
//!    `{"table": "users", "row": {..every column..}}`, the row exactly as
//!    PostgreSQL's `to_jsonb` renders it (password hashes included: the file
//!    is as sensitive as the database);
//! 3. an end line: `{"end": {"rows": {...}, "sha256": "..."}}`, the SHA-256
//!    of every byte before it. A file without it was cut short.
//!
//! An import restores into one transaction: all of the file or nothing. Into
//! the same tenant (same id, same slug: after a purge, or from a backup), or,
//! with `--as <slug>`, into a new tenant beside the original, with fresh ids
//! and every reference remapped; custom domains stay with the original then
//! (a domain belongs to one tenant) and are reported as skipped.
//! Rows of an older schema version import with the columns added since at
//! their defaults; a newer export is refused.

use std::{
    collections::{BTreeMap, HashMap},
    io::{BufRead, Write},
};

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Admin, TENANT_COLUMNS, TenantSummary};
use crate::{
    audit::{self, Action, Actor, Event},
    db::Consistency,
    db::TenantTx,
    domain::{Slug, TenantId},
    error::{ApiError, Result, ResultExt},
};

/// The `format` of the header line.
pub const FORMAT: &str = "tenantry.tenant-export";
/// The version of the format this build writes and reads.
pub const VERSION: u32 = 1;
/// Tenant tables in the order they are written and restored: a table comes
/// after every table it references. A test checks it names every table with
/// a `tenant_id` column.
pub const EXPORT_ORDER: &[&str] = &["tenant_domains", "users", "notes", "audit_events"];
/// Tenant tables whose rows are derived from the others and rebuilt by
/// triggers as an import inserts those (the usage counters behind plan
/// quotas), so they are neither written nor read.
pub const DERIVED_TABLES: &[&str] = &["usage_counters"];
/// Columns holding ids of the tenant's own rows, which an import `--as` a
/// new tenant replaces with fresh ids (consistently, so references still
/// match). A test checks every uuid column of a tenant table is listed.
pub const REMAPPED_COLUMNS: &[&str] = &["id", "user_id", "actor_id", "subject"];
/// Rows inserted per statement on import.
const IMPORT_BATCH: usize = 500;

/// The first line of an export.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    schema_version: i32,
    exported_at: DateTime<Utc>,
    tenant: Map<String, Value>,
    rows: BTreeMap<String, u64>,
}

/// The last line's content.
#[derive(Debug, Serialize, Deserialize)]
struct End {
    rows: BTreeMap<String, u64>,
    sha256: String,
}

/// What an export wrote.
#[derive(Debug, Serialize)]
pub struct ExportSummary {
    pub tenant: TenantSummary,
    pub rows: BTreeMap<String, u64>,
    /// Bytes written (before compression).
    pub bytes: u64,
}

/// What an import restored.
#[derive(Debug, Serialize)]
pub struct ImportSummary {
    pub tenant: TenantSummary,
    pub rows: BTreeMap<String, u64>,
    /// Custom domains in the file that were not imported (`--as`).
    pub skipped_domains: Vec<String>,
    /// With `--replace`: the rows the tenant had, per table, deleted in the
    /// same transaction as the import.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced: Option<BTreeMap<String, u64>>,
}

/// Where an import puts the file's tenant.
#[derive(Debug, Clone, Copy)]
pub enum ImportTarget<'a> {
    /// The exported tenant itself (same id and slug), which must not exist
    /// (after a purge, or into another database).
    Same,
    /// A new tenant with this slug beside the original: fresh ids, no
    /// custom domains.
    As(&'a Slug),
    /// The exported tenant itself, which exists and is suspended: its rows
    /// are replaced by the file's in one transaction, so a failed import
    /// leaves it exactly as it was (the restore of one tenant from a backup).
    Replace,
}

impl Admin {
    /// Writes tenant `slug` to `out` in the export format, from one consistent
    /// snapshot. The export is recorded in the tenant's trail (and so is in
    /// the file) only if the whole file was written to `out`; what happens
    /// to the file after that (renaming, syncing) is the caller's to report.
    pub async fn export_tenant(
        &self,
        slug: &str,
        out: &mut dyn Write,
        progress: &ProgressBar,
        request_id: Option<&str>,
    ) -> Result<ExportSummary> {
        let tenant = self.tenant(slug).await?;
        self.db
            .transaction(tenant.id, Consistency::Snapshot, async |tx| {
                audit::record(tx, request_id, &Event::new(Actor::Admin, Action::TenantExported, Some(tenant.slug.clone())))
                    .await?;
                let rows = count_export_rows(tx).await?;
                progress.set_length(rows.values().sum());
                let header = Header {
                    format: FORMAT.to_owned(),
                    version: VERSION,
                    schema_version: schema_version(tx).await?,
                    exported_at: Utc::now(),
                    tenant: registry_row(tx).await?,
                    rows: rows.clone(),
                };
                let mut file = HashingWriter::new(out);
                file.line(&header)?;
                for table in EXPORT_ORDER {
                    let stream = tx
                        .query_stream(
                            &format!("select to_jsonb(x) from {table} x where tenant_id = $1 order by {}", sort_key(table)),
                            &[tx.tenant_id().as_uuid()],
                        )
                        .await?;
                    let mut stream = std::pin::pin!(stream);
                    while let Some(row) = stream.try_next().await? {
                        let row: Value = row.try_get(0)?;
                        file.line(&json!({"table": table, "row": row}))?;
                        progress.inc(1);
                    }
                }
                let end = End { rows: rows.clone(), sha256: file.digest() };
                file.line(&json!({ "end": end }))?;
                file.flush()?;
                Ok(ExportSummary { tenant: tenant.clone(), rows, bytes: file.bytes })
            })
            .await
    }

    /// Restores an export read from `input` in one transaction, into
    /// `target` (see [`ImportTarget`]).
    pub async fn import_tenant(
        &self,
        input: &mut dyn BufRead,
        target: ImportTarget<'_>,
        progress: &ProgressBar,
        request_id: Option<&str>,
    ) -> Result<ImportSummary> {
        let mut reader = LineReader::new(input, progress);
        let header = read_header(&mut reader)?;
        let current = self.schema_version().await?;
        if header.schema_version > current {
            return Err(ApiError::BadRequest(format!(
                "the file was exported at schema version {}, this database is at {current}: migrate first",
                header.schema_version
            )));
        }
        let source = source_tenant_id(&header.tenant)?;
        let as_slug = match target {
            ImportTarget::As(slug) => Some(slug),
            ImportTarget::Same | ImportTarget::Replace => None,
        };
        let mut plan = ImportPlan::new(source, as_slug)?;
        let registry = plan.registry_row(header.tenant.clone());
        let slug = registry
            .get("slug")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let replacing = matches!(target, ImportTarget::Replace);
        if replacing {
            self.check_replaceable(plan.target, slug).await?;
        } else {
            self.check_free(plan.target, slug).await?;
        }
        self.db
            .transaction(plan.target, Consistency::PerStatement, async |tx| {
                let replaced = if replacing { Some(super::purge::clear_tenant(tx).await?) } else { None };
                insert_rows(tx, "tenants", std::slice::from_ref(&registry), &mut HashMap::new()).await?;
                let rows = plan.restore_rows(tx, &mut reader).await?;
                check_totals(&header.rows, &rows.seen, &rows.end, &rows.digest)?;
                let tenant = TenantSummary::from_row(
                    &tx.query_one(&format!("select {TENANT_COLUMNS} from tenants where id = $1"), &[tx.tenant_id().as_uuid()])
                        .await?,
                )?;
                let event = Event::new(Actor::Admin, Action::TenantImported, Some(tenant.slug.clone())).with_details(json!({
                    "source_tenant_id": source,
                    "exported_at": header.exported_at,
                    "schema_version": header.schema_version,
                    "rows": rows.seen,
                    "replaced": replaced,
                }));
                audit::record(tx, request_id, &event).await?;
                Ok(ImportSummary { tenant, rows: rows.seen, skipped_domains: plan.skipped_domains.clone(), replaced })
            })
            .await
            .on_constraint("tenants_slug_key", || ApiError::Conflict("this slug is already taken; import with --as <new-slug>"))
            .on_constraint("tenants_pkey", || {
                ApiError::Conflict("this tenant exists; suspend it and import with --replace, or beside it with --as <new-slug>")
            })
            .on_constraint("tenant_domains_pkey", || {
                ApiError::Conflict("a custom domain in the file belongs to another tenant now; remove it there first")
            })
    }

    /// The schema version of the database.
    async fn schema_version(&self) -> Result<i32> {
        let rows = self
            .db
            .query(
                "select coalesce(max(version), 0) from schema_migrations",
                &[],
            )
            .await?;
        Ok(rows
            .first()
            .map(|row| row.try_get(0))
            .transpose()?
            .unwrap_or_default())
    }

    /// Before replacing tenant `target` (see [`ImportTarget::Replace`]): it
    /// exists under the file's slug and is suspended (the lock taken in the
    /// import's transaction checks it again).
    async fn check_replaceable(&self, target: TenantId, slug: &str) -> Result<()> {
        let rows = self
            .db
            .query(
                "select slug, status from tenants where id = $1",
                &[target.as_uuid()],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Err(ApiError::NotFound(
                "the file's tenant does not exist here; import it without --replace",
            ));
        };
        if row.try_get::<_, &str>("slug")? != slug {
            return Err(ApiError::Conflict(
                "the tenant has another slug here than in the file; import beside it with --as <new-slug>",
            ));
        }
        if row.try_get::<_, &str>("status")? != "suspended" {
            return Err(ApiError::Conflict("suspend the tenant before replacing it"));
        }
        Ok(())
    }

    /// A clear conflict before any work when the target id or slug is taken.
    async fn check_free(&self, target: TenantId, slug: &str) -> Result<()> {
        let rows = self
            .db
            .query(
                "select id from tenants where id = $1 or slug = $2",
                &[target.as_uuid(), &slug],
            )
            .await?;
        match rows.first() {
            None => Ok(()),
            Some(row) if row.try_get::<_, Uuid>(0)? == *target.as_uuid() => {
                Err(ApiError::Conflict(
                    "this tenant exists; suspend it and import with --replace, or beside it with --as <new-slug>",
                ))
            }
            Some(_) => Err(ApiError::Conflict(
                "this slug is already taken; import with --as <new-slug>",
            )),
        }
    }
}

/// Rows per table, in export order.
async fn count_export_rows(tx: &TenantTx<'_>) -> Result<BTreeMap<String, u64>> {
    let mut rows = BTreeMap::new();
    for table in EXPORT_ORDER {
        let row = tx
            .query_one(
                &format!("select count(*) from {table} where tenant_id = $1"),
                &[tx.tenant_id().as_uuid()],
            )
            .await?;
        rows.insert(
            (*table).to_owned(),
            u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or_default(),
        );
    }
    Ok(rows)
}

async fn schema_version(tx: &TenantTx<'_>) -> Result<i32> {
    let row = tx
        .query_one(
            "select coalesce(max(version), 0) from schema_migrations",
            &[],
        )
        .await?;
    Ok(row.try_get(0)?)
}

async fn registry_row(tx: &TenantTx<'_>) -> Result<Map<String, Value>> {
    let row = tx
        .query_one(
            "select to_jsonb(t) from tenants t where id = $1",
            &[tx.tenant_id().as_uuid()],
        )
        .await?;
    match row.try_get::<_, Value>(0)? {
        Value::Object(map) => Ok(map),
        _ => Err(anyhow::anyhow!("to_jsonb did not return an object").into()),
    }
}

/// A stable order, so two exports of the same data are the same file.
fn sort_key(table: &str) -> &'static str {
    if table == "tenant_domains" {
        "domain"
    } else {
        "id"
    }
}

/// Writes lines and hashes every byte it writes.
struct HashingWriter<'a> {
    out: &'a mut dyn Write,
    hasher: Sha256,
    bytes: u64,
}

impl<'a> HashingWriter<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        Self {
            out,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    fn line(&mut self, value: &impl Serialize) -> Result<()> {
        let mut line = serde_json::to_vec(value).map_err(anyhow::Error::from)?;
        line.push(b'\n');
        self.hasher.update(&line);
        self.bytes += line.len() as u64;
        self.out.write_all(&line).map_err(write_error)
    }

    fn digest(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(write_error)
    }
}

fn write_error(error: std::io::Error) -> ApiError {
    anyhow::Error::from(error)
        .context("could not write the export")
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Reads lines, numbering them, hashing them, and reporting bytes read.
struct LineReader<'a> {
    input: &'a mut dyn BufRead,
    progress: &'a ProgressBar,
    hasher: Sha256,
    number: u64,
    buffer: Vec<u8>,
}

impl<'a> LineReader<'a> {
    fn new(input: &'a mut dyn BufRead, progress: &'a ProgressBar) -> Self {
        Self {
            input,
            progress,
            hasher: Sha256::new(),
            number: 0,
            buffer: Vec::new(),
        }
    }

    /// The next line parsed as JSON, and the digest of everything before it;
    /// `None` at the end of the input.
    fn next(&mut self) -> Result<Option<(Value, String)>> {
        self.buffer.clear();
        let read = self
            .input
            .read_until(b'\n', &mut self.buffer)
            .map_err(|error| ApiError::BadRequest(format!("could not read the file: {error}")))?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        self.progress.inc(read as u64);
        let before = hex(&self.hasher.clone().finalize());
        self.hasher.update(&self.buffer);
        if self.buffer.last() != Some(&b'\n') {
            return Err(self.invalid("the line is cut short (truncated file?)"));
        }
        let value = serde_json::from_slice(&self.buffer)
            .map_err(|error| self.invalid(&format!("not valid JSON ({error})")))?;
        Ok(Some((value, before)))
    }

    fn invalid(&self, problem: &str) -> ApiError {
        ApiError::BadRequest(format!("line {}: {problem}", self.number))
    }
}

fn read_header(reader: &mut LineReader<'_>) -> Result<Header> {
    let (value, _) = reader
        .next()?
        .ok_or_else(|| ApiError::BadRequest("the file is empty".to_owned()))?;
    if value.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(reader.invalid(&format!(
            "not a tenant export (expected a header with \"format\": \"{FORMAT}\")"
        )));
    }
    match value.get("version").and_then(Value::as_u64) {
        Some(version) if version == u64::from(VERSION) => {}
        Some(version) => {
            return Err(reader.invalid(&format!("export format version {version} is not supported; this tenantry reads version {VERSION}")));
        }
        None => return Err(reader.invalid("the header has no format version")),
    }
    serde_json::from_value(value)
        .map_err(|error| reader.invalid(&format!("the header is malformed ({error})")))
}

fn source_tenant_id(tenant: &Map<String, Value>) -> Result<Uuid> {
    tenant
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| {
            ApiError::BadRequest("line 1: the header's tenant has no valid id".to_owned())
        })
}

/// Where the rows go and how they change on the way.
struct ImportPlan {
    source: Uuid,
    target: TenantId,
    /// `--as`: the new slug; ids are remapped.
    new_slug: Option<String>,
    ids: HashMap<Uuid, Uuid>,
    skipped_domains: Vec<String>,
}

/// What the rows of a file added up to.
struct RestoredRows {
    seen: BTreeMap<String, u64>,
    end: End,
    /// The digest of everything before the end line.
    digest: String,
}

impl ImportPlan {
    fn new(source: Uuid, as_slug: Option<&Slug>) -> Result<Self> {
        let (target, new_slug) = match as_slug {
            None => (TenantId::from_uuid(source), None),
            Some(slug) if slug.is_reserved() => {
                return Err(ApiError::Conflict("this slug is not available"));
            }
            Some(slug) => (
                TenantId::from_uuid(Uuid::now_v7()),
                Some(slug.as_str().to_owned()),
            ),
        };
        Ok(Self {
            source,
            target,
            new_slug,
            ids: HashMap::new(),
            skipped_domains: Vec::new(),
        })
    }

    /// The registry row to insert.
    fn registry_row(&self, mut tenant: Map<String, Value>) -> Value {
        if let Some(slug) = &self.new_slug {
            tenant.insert("id".to_owned(), json!(self.target));
            tenant.insert("slug".to_owned(), json!(slug));
            // A new tenant: created now, and not the answer to the original's
            // onboarding request.
            for column in ["created_at", "idempotency_key", "request_sha256"] {
                tenant.remove(column);
            }
        }
        Value::Object(tenant)
    }

    /// Reads row lines up to the end line, inserting them in batches.
    async fn restore_rows(
        &mut self,
        tx: &TenantTx<'_>,
        reader: &mut LineReader<'_>,
    ) -> Result<RestoredRows> {
        let mut seen: BTreeMap<String, u64> = EXPORT_ORDER
            .iter()
            .map(|table| ((*table).to_owned(), 0))
            .collect();
        let mut columns: HashMap<String, HashMap<String, String>> = HashMap::new();
        let mut batch = Batch::default();
        let mut position = 0;
        loop {
            let Some((value, digest)) = reader.next()? else {
                return Err(ApiError::BadRequest(format!(
                    "the file ends at line {} without its end line (truncated?); nothing was imported",
                    reader.number
                )));
            };
            if let Some(end) = value.get("end") {
                batch.flush(tx, &mut columns).await?;
                let end: End = serde_json::from_value(end.clone())
                    .map_err(|error| reader.invalid(&format!("malformed end line ({error})")))?;
                if reader.next()?.is_some() {
                    return Err(reader.invalid("data after the end line"));
                }
                return Ok(RestoredRows { seen, end, digest });
            }
            let (table, row) = parse_row_line(value).map_err(|problem| reader.invalid(&problem))?;
            let index = EXPORT_ORDER
                .iter()
                .position(|known| *known == table)
                .ok_or_else(|| reader.invalid(&format!("unknown table {table:?}")))?;
            if index < position {
                return Err(reader.invalid(&format!(
                    "rows of {table} after rows of {}",
                    EXPORT_ORDER[position]
                )));
            }
            position = index;
            *seen.entry(table.clone()).or_default() += 1;
            let Some(row) = self
                .adapt(&table, row)
                .map_err(|problem| reader.invalid(&problem))?
            else {
                continue;
            };
            if batch.table != table || batch.rows.len() >= IMPORT_BATCH {
                batch.flush(tx, &mut columns).await?;
                batch.table = table;
            }
            batch.rows.push(row);
        }
    }

    /// Checks the row belongs to the exported tenant and rewrites it for the
    /// target; `None` for a row not imported.
    fn adapt(
        &mut self,
        table: &str,
        mut row: Map<String, Value>,
    ) -> std::result::Result<Option<Value>, String> {
        let owner = row
            .get("tenant_id")
            .and_then(Value::as_str)
            .and_then(|id| id.parse::<Uuid>().ok());
        if owner != Some(self.source) {
            return Err(format!("a {table} row of another tenant than the header's"));
        }
        if self.new_slug.is_none() {
            return Ok(Some(Value::Object(row)));
        }
        if table == "tenant_domains" {
            self.skipped_domains.push(
                row.get("domain")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            );
            return Ok(None);
        }
        row.insert("tenant_id".to_owned(), json!(self.target));
        for column in REMAPPED_COLUMNS {
            let old = row
                .get(*column)
                .and_then(Value::as_str)
                .and_then(|id| id.parse::<Uuid>().ok());
            if let Some(old) = old {
                let new = *self.ids.entry(old).or_insert_with(Uuid::now_v7);
                row.insert((*column).to_owned(), json!(new));
            }
        }
        Ok(Some(Value::Object(row)))
    }
}

fn parse_row_line(value: Value) -> std::result::Result<(String, Map<String, Value>), String> {
    let Value::Object(mut line) = value else {
        return Err("expected a JSON object".to_owned());
    };
    match (line.remove("table"), line.remove("row")) {
        (Some(Value::String(table)), Some(Value::Object(row))) => Ok((table, row)),
        _ => Err("expected {\"table\": ..., \"row\": {...}} or the end line".to_owned()),
    }
}

fn check_totals(
    header: &BTreeMap<String, u64>,
    seen: &BTreeMap<String, u64>,
    end: &End,
    digest: &str,
) -> Result<()> {
    if end.sha256 != digest {
        return Err(ApiError::BadRequest(
            "the file's checksum does not match its content (corrupted or edited); nothing was imported".to_owned(),
        ));
    }
    let counted = |rows: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        rows.iter()
            .filter(|(_, n)| **n > 0)
            .map(|(t, n)| (t.clone(), *n))
            .collect()
    };
    if counted(header) != counted(seen) || counted(&end.rows) != counted(seen) {
        return Err(ApiError::BadRequest(format!(
            "the file announces {header:?} rows but holds {seen:?}; nothing was imported"
        )));
    }
    Ok(())
}

/// Rows of one table waiting to be inserted.
#[derive(Default)]
struct Batch {
    table: String,
    rows: Vec<Value>,
}

impl Batch {
    async fn flush(
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
async fn insert_rows(
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
