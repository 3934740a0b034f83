//! Reading an export back into one tenant, in one transaction: all of the
//! file or nothing.

use std::{
    collections::{BTreeMap, HashMap},
    io::BufRead,
};

use indicatif::ProgressBar;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{
    EXPORT_ORDER, End, ImportSummary, ImportTarget, REMAPPED_COLUMNS,
    file::{LineReader, check_totals, parse_row_line, read_header, source_tenant_id},
    rows::{Batch, insert_rows},
};
use crate::{
    admin::{Admin, TENANT_COLUMNS, TenantSummary},
    audit::{self, Action, Actor, Event},
    db::{Consistency, TenantTx},
    domain::{ApiVersion, Slug, TenantId},
    error::{ApiError, Result, ResultExt},
};

/// Rows inserted per statement on import.
const IMPORT_BATCH: usize = 500;

impl Admin {
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
                let replaced = if replacing { Some(crate::admin::purge::clear_tenant(&tx).await?) } else { None };
                insert_rows(&tx, "tenants", std::slice::from_ref(&registry), &mut HashMap::new()).await?;
                let rows = plan.restore_rows(&tx, &mut reader).await?;
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
                audit::record(&tx, request_id, &event).await?;
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
        // Exported before V8: the tenant was served the first API version,
        // and keeps it rather than take the default of new tenants.
        tenant
            .entry("api_version")
            .or_insert_with(|| json!(ApiVersion::ALL[0]));
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
