//! Purging a tenant: the last stage of offboarding (suspend -> export ->
//! purge). Every row the tenant has in every tenant table goes, then its
//! registry row; nothing of any other tenant is touched (each statement runs
//! bound to the purged tenant, under RLS, and names it explicitly).
//!
//! A tenant of at most `batch_size` rows is purged in one transaction: all of
//! it or none of it. A larger one is purged in batches of `batch_size` rows,
//! one transaction each, so no transaction holds millions of row locks or
//! outlives the statement timeout; its registry row and whatever rows remain
//! go in a final transaction. A purge that stops half-way (crash, timeout,
//! lost connection) leaves a suspended tenant with fewer rows; running the
//! same purge again continues and ends in the same state as an uninterrupted
//! one. A tenant resumed in the meantime stops the purge.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::{Admin, TENANT_COLUMNS, TenantSummary};
use crate::{
    db::Consistency,
    db::TenantTx,
    domain::TenantStatus,
    error::{ApiError, Result},
};

/// Rows per purge transaction unless the caller says otherwise.
pub const DEFAULT_BATCH_SIZE: i64 = 5_000;

/// Every tenant table, children before the parents they reference: the order
/// rows can be deleted in. A test checks that it names every table with a
/// `tenant_id` column.
pub const PURGE_ORDER: &[&str] = &[
    "notes",
    "audit_events",
    "users",
    "usage_counters",
    "tenant_domains",
];

/// What a purge removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct PurgeReport {
    /// The registry row, as it was.
    pub tenant: TenantSummary,
    /// Rows deleted by this run, per table (a resumed purge counts only what
    /// was left).
    #[schema(example = json!({"notes": 120, "audit_events": 45, "users": 3, "tenant_domains": 1}))]
    pub deleted: BTreeMap<String, u64>,
    /// Transactions used: 1 for an atomic purge.
    pub transactions: u32,
}

impl Admin {
    /// Removes every row of the suspended tenant `slug`. See the module docs.
    pub async fn purge_tenant(
        &self,
        slug: &str,
        batch_size: i64,
        request_id: Option<&str>,
    ) -> Result<PurgeReport> {
        if batch_size < 1 {
            return Err(ApiError::invalid(
                "batch_size",
                "batch size must be at least 1",
            ));
        }
        let tenant = self.tenant(slug).await?;
        if tenant.status != TenantStatus::Suspended {
            return Err(ApiError::Conflict("suspend the tenant before purging it"));
        }
        let rows = self
            .db
            .transaction(tenant.id, Consistency::PerStatement, async |tx| {
                count_tenant_rows(&tx).await
            })
            .await?;
        let mut deleted: BTreeMap<String, u64> = PURGE_ORDER
            .iter()
            .map(|table| ((*table).to_owned(), 0))
            .collect();
        let mut transactions = 0;
        if rows > batch_size {
            self.record_platform_event(
                "tenant.purge_started",
                request_id,
                json!({"tenant_id": tenant.id, "slug": tenant.slug, "rows": rows, "batch_size": batch_size}),
            )
            .await?;
            for table in PURGE_ORDER {
                // A tenant's registry rows (its custom domains) are few, and
                // on Citus a reference table, where every copy would pick
                // its own rows for a LIMIT batch: they go whole, in the last
                // transaction below.
                if *table == "tenant_domains" {
                    continue;
                }
                loop {
                    let removed = self
                        .db
                        .transaction(tenant.id, Consistency::PerStatement, async |tx| {
                            lock_suspended(&tx).await?;
                            delete_batch(&tx, table, batch_size).await
                        })
                        .await?;
                    transactions += 1;
                    *deleted.entry((*table).to_owned()).or_default() += removed;
                    if removed < u64::try_from(batch_size).unwrap_or(u64::MAX) {
                        break;
                    }
                }
            }
        }
        transactions += 1;
        self.db
            .transaction(tenant.id, Consistency::PerStatement, async |tx| {
                let registry_row = lock_suspended(&tx).await?;
                for table in PURGE_ORDER {
                    let removed = delete_all(&tx, table).await?;
                    *deleted.entry((*table).to_owned()).or_default() += removed;
                }
                tx.execute(
                    "delete from tenants where id = $1",
                    &[tx.tenant_id().as_uuid()],
                )
                .await?;
                let report = PurgeReport {
                    tenant: registry_row,
                    deleted: deleted.clone(),
                    transactions,
                };
                // In the same transaction: a finished purge is always on record.
                tx.execute(
                    "insert into platform_audit_events (actor, action, request_id, details)
                     values ('admin', 'tenant.purged', $1, $2)",
                    &[
                        &request_id,
                        &json!({"tenant_id": report.tenant.id, "slug": report.tenant.slug, "deleted": report.deleted, "transactions": transactions}),
                    ],
                )
                .await?;
                Ok(report)
            })
            .await
    }

    /// Whether a batched purge of `tenant` started and has not finished
    /// since (a tenant restored under its old id after a finished purge is
    /// not one).
    pub(super) async fn purge_unfinished(&self, tenant: &TenantSummary) -> Result<bool> {
        let rows = self
            .db
            .query(
                "select exists (
                     select from platform_audit_events started
                     where started.action = 'tenant.purge_started' and started.details->>'tenant_id' = $1
                       and not exists (
                           select from platform_audit_events finished
                           where finished.action = 'tenant.purged' and finished.details->>'tenant_id' = $1
                             and finished.at >= started.at))",
                &[&tenant.id.to_string()],
            )
            .await?;
        Ok(rows
            .first()
            .map(|row| row.try_get(0))
            .transpose()?
            .unwrap_or(false))
    }

    /// Appends to the platform audit log (actions that are no one tenant's,
    /// or that outlive the tenant's own trail).
    pub async fn record_platform_event(
        &self,
        action: &str,
        request_id: Option<&str>,
        details: serde_json::Value,
    ) -> Result<()> {
        self.db
            .query(
                "insert into platform_audit_events (actor, action, request_id, details) values ('admin', $1, $2, $3)",
                &[&action, &request_id, &details],
            )
            .await?;
        Ok(())
    }
}

/// Deletes every row of `tx`'s tenant, which must be suspended (it is
/// locked first), registry row included, and returns the rows deleted per
/// table: a purge in one transaction, for an import that replaces the
/// tenant in the same transaction (it all commits, or none of it).
pub(super) async fn clear_tenant(tx: &TenantTx<'_>) -> Result<BTreeMap<String, u64>> {
    lock_suspended(tx).await?;
    let mut deleted = BTreeMap::new();
    for table in PURGE_ORDER {
        deleted.insert((*table).to_owned(), delete_all(tx, table).await?);
    }
    tx.execute(
        "delete from tenants where id = $1",
        &[tx.tenant_id().as_uuid()],
    )
    .await?;
    Ok(deleted)
}

/// Locks the registry row of `tx`'s tenant and checks it is still suspended:
/// a tenant resumed (or purged by someone else) meanwhile stops the purge.
async fn lock_suspended(tx: &TenantTx<'_>) -> Result<TenantSummary> {
    let row = tx
        .query_opt(
            &format!("select {TENANT_COLUMNS} from tenants where id = $1 for update"),
            &[tx.tenant_id().as_uuid()],
        )
        .await?
        .ok_or(ApiError::NotFound("tenant not found"))?;
    let tenant = TenantSummary::from_row(&row)?;
    if tenant.status != TenantStatus::Suspended {
        return Err(ApiError::Conflict(
            "the tenant is no longer suspended; the purge stopped",
        ));
    }
    Ok(tenant)
}

/// All rows of `tx`'s tenant in the tenant tables.
async fn count_tenant_rows(tx: &TenantTx<'_>) -> Result<i64> {
    let mut total = 0;
    for table in PURGE_ORDER {
        let row = tx
            .query_one(
                &format!("select count(*) from {table} where tenant_id = $1"),
                &[tx.tenant_id().as_uuid()],
            )
            .await?;
        total += row.try_get::<_, i64>(0)?;
    }
    Ok(total)
}

/// Deletes up to `limit` of the tenant's rows of `table` (ours, never input),
/// found by physical address so each batch is one index scan and a TID scan.
async fn delete_batch(tx: &TenantTx<'_>, table: &str, limit: i64) -> Result<u64> {
    Ok(tx
        .execute(
            &format!(
                "delete from {table} where tenant_id = $1
                 and ctid = any(array(select ctid from {table} where tenant_id = $1 limit $2))"
            ),
            &[tx.tenant_id().as_uuid(), &limit],
        )
        .await?)
}

async fn delete_all(tx: &TenantTx<'_>, table: &str) -> Result<u64> {
    Ok(tx
        .execute(
            &format!("delete from {table} where tenant_id = $1"),
            &[tx.tenant_id().as_uuid()],
        )
        .await?)
}
