//! The analytics role's handle on the database (`tenantry_analytics`): its
//! own pool, never the request path's, and one thing it can do: call
//! `tenant_usage()`, which visits each tenant under that tenant's own RLS
//! context, returns only counts and sizes, and records the call in the
//! platform audit log in the same transaction. The role has no privilege on
//! any table, so the numbers are all it can ever see.

use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use tokio_postgres::Row;
use utoipa::ToSchema;

use super::{build_pool, settle};
use crate::{
    config::DatabaseSettings,
    domain::{TenantId, TenantStatus},
    error::Result,
};

/// A pool of analytics-role connections.
#[derive(Clone)]
pub struct AnalyticsDb {
    pool: Pool,
}

/// One tenant's usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantUsage {
    pub tenant_id: TenantId,
    #[schema(example = "acme")]
    pub slug: String,
    pub plan: crate::domain::Plan,
    pub status: TenantStatus,
    pub users: i64,
    pub notes: i64,
    /// Bytes the tenant's rows take (users and notes, as stored).
    pub storage_bytes: i64,
    /// Successful sign-ins in the last 24 hours.
    pub logins_24h: i64,
}

/// Usage of every tenant, as of `at`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub at: DateTime<Utc>,
    pub tenants: Vec<TenantUsage>,
}

impl AnalyticsDb {
    /// Builds the pool for `ANALYTICS_DATABASE_URL`; connections open lazily.
    pub fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        Ok(Self {
            pool: build_pool(settings, "ANALYTICS_DATABASE_URL")?,
        })
    }

    /// Runs the isolation audit as the analytics role: it must not be able
    /// to get around RLS either.
    pub async fn audit(&self) -> anyhow::Result<()> {
        let client = self
            .pool
            .get()
            .await
            .context("could not connect as the analytics role (ANALYTICS_DATABASE_URL)")?;
        super::audit::check(&client).await?;
        // On Citus, tenant_usage() binds each tenant with SET LOCAL: this
        // role too needs it forwarded to the workers.
        super::citus::detect(&client, crate::config::CitusMode::Auto).await?;
        Ok(())
    }

    /// Every tenant's usage; `actor` and `request_id` go into the audit record.
    ///
    /// In an explicit transaction: on Citus, the `SET LOCAL` with which
    /// `tenant_usage` binds each tenant reaches the workers (where the rows
    /// are counted, under RLS) only inside a transaction block; outside one
    /// every count came back 0.
    pub async fn usage(&self, actor: &str, request_id: Option<&str>) -> Result<UsageReport> {
        let mut client = self.pool.get().await?;
        let outcome = async {
            let statement = client
                .prepare_cached(
                    "select tenant_id, slug, plan, status, users, notes, storage_bytes, logins_24h
                     from tenant_usage($1, $2)",
                )
                .await?;
            let tx = client.transaction().await?;
            let rows = tx.query(&statement, &[&actor, &request_id]).await?;
            tx.commit().await?;
            Ok(rows)
        }
        .await;
        let rows = settle(client, outcome)?;
        Ok(UsageReport {
            at: Utc::now(),
            tenants: rows.iter().map(usage_from_row).collect::<Result<_>>()?,
        })
    }
}

fn usage_from_row(row: &Row) -> Result<TenantUsage> {
    let status: String = row.try_get("status")?;
    Ok(TenantUsage {
        tenant_id: TenantId::from_uuid(row.try_get("tenant_id")?),
        slug: row.try_get("slug")?,
        plan: crate::domain::Plan::from_db(row.try_get("plan")?)?,
        status: TenantStatus::from_db(&status)?,
        users: row.try_get("users")?,
        notes: row.try_get("notes")?,
        storage_bytes: row.try_get("storage_bytes")?,
        logins_24h: row.try_get("logins_24h")?,
    })
}
