//! Writing one tenant to the export format, from one consistent snapshot.

use std::{collections::BTreeMap, io::Write};

use chrono::Utc;
use futures_util::TryStreamExt;
use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{EXPORT_ORDER, End, ExportSummary, FORMAT, Header, VERSION, hex};
use crate::{
    admin::Admin,
    audit::{self, Action, Actor, Event},
    db::{Consistency, TenantTx},
    error::{ApiError, Result},
};

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
                audit::record(&tx, request_id, &Event::new(Actor::Admin, Action::TenantExported, Some(tenant.slug.clone())))
                    .await?;
                let rows = count_export_rows(&tx).await?;
                progress.set_length(rows.values().sum());
                let header = Header {
                    format: FORMAT.to_owned(),
                    version: VERSION,
                    schema_version: schema_version(&tx).await?,
                    exported_at: Utc::now(),
                    tenant: registry_row(&tx).await?,
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
