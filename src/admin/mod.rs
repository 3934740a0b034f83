//! Tenant lifecycle operations for operators: one implementation, used by the
//! `tenantry tenants|domains ...` CLI and by the `/admin` HTTP API.
//!
//! Everything here runs as the admin role ([`AdminDb`]), which is still
//! subject to RLS: tenant data is touched one tenant per transaction. Every
//! change to a tenant is recorded in that tenant's audit trail (actor
//! `admin`) in the same transaction; a purge, which removes the trail too, is
//! recorded in the platform audit log.
//!
//! | module      | operations                                                  |
//! |-------------|-------------------------------------------------------------|
//! | [`tenants`] | create (idempotent), list, show, change plan, suspend, resume |
//! | [`purge`]   | remove every row of a suspended tenant                      |
//! | [`backfill`]| data migrations by ring, resumable (`tenantry migrate backfill`) |
//! | [`domains`] | add, list, remove, verify by DNS TXT record                 |
//! | [`transfer`]| export to and import from the NDJSON format                 |
//! | [`tfvars`]  | Terraform's `tenants` variable from the registry            |
//! | [`commands`]| the CLI: `tenantry tenants|domains ...`, `tenantry stats`    |

pub mod backfill;
pub mod commands;
pub mod domains;
pub mod purge;
pub mod tenants;
pub mod tfvars;
pub mod transfer;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Row;
use utoipa::ToSchema;

use self::domains::DnsVerifier;
use crate::{
    config::OpsSettings,
    db::{
        admin::AdminDb,
        analytics::{AnalyticsDb, UsageReport},
    },
    domain::{ApiVersion, Plan, Ring, Slug, TenantId, TenantStatus, host::BaseDomain},
    error::{ApiError, Result},
};

/// What the admin operations need.
#[derive(Clone)]
pub struct Admin {
    pub db: AdminDb,
    /// Usage statistics, when `ANALYTICS_DATABASE_URL` is set.
    pub analytics: Option<AnalyticsDb>,
    pub base_domain: BaseDomain,
    pub dns: DnsVerifier,
}

/// A tenant's registry row.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TenantSummary {
    pub id: TenantId,
    #[schema(example = "acme")]
    pub slug: String,
    #[schema(example = "Acme Corporation")]
    pub name: String,
    pub plan: Plan,
    pub status: TenantStatus,
    /// The release ring whose revision serves the tenant.
    pub ring: Ring,
    /// The API version its requests are answered in unless they name one.
    pub api_version: ApiVersion,
    pub created_at: DateTime<Utc>,
}

/// The columns [`TenantSummary::from_row`] reads.
pub const TENANT_COLUMNS: &str = "id, slug, name, plan, status, ring, api_version, created_at";

impl TenantSummary {
    /// Reads [`TENANT_COLUMNS`].
    pub fn from_row(row: &Row) -> Result<Self> {
        let status: String = row.try_get("status")?;
        Ok(Self {
            id: TenantId::from_uuid(row.try_get("id")?),
            slug: row.try_get("slug")?,
            name: row.try_get("name")?,
            plan: Plan::from_db(row.try_get("plan")?)?,
            status: TenantStatus::from_db(&status)?,
            ring: Ring::from_db(row.try_get("ring")?)?,
            api_version: ApiVersion::from_db(row.try_get("api_version")?),
            created_at: row.try_get("created_at")?,
        })
    }
}

impl Admin {
    /// Builds the pools (connections open lazily) and the DNS resolver.
    pub fn connect(ops: &OpsSettings, base_domain: BaseDomain) -> anyhow::Result<Self> {
        Ok(Self {
            db: AdminDb::connect(&ops.admin_database)?,
            analytics: ops
                .analytics_database
                .as_ref()
                .map(AnalyticsDb::connect)
                .transpose()?,
            base_domain,
            dns: DnsVerifier::new(ops.dns_resolver)?,
        })
    }

    /// Runs the isolation audit as the admin role and, if configured, the
    /// analytics role: like the runtime role, neither may get around RLS.
    /// Operators' tools refuse to run otherwise, as the service does.
    pub async fn audit_roles(&self) -> anyhow::Result<()> {
        let admin = self
            .db
            .pool()
            .get()
            .await
            .context("could not connect as the admin role (ADMIN_DATABASE_URL)")?;
        crate::db::audit::check(&admin).await?;
        // On Citus, this role's tenant transactions bind with SET LOCAL too.
        crate::db::citus::detect(&admin, crate::config::CitusMode::Auto).await?;
        if let Some(analytics) = &self.analytics {
            analytics.audit().await?;
        }
        Ok(())
    }

    /// Every tenant's usage, through the analytics role; recorded in the
    /// platform audit log by the database itself.
    pub async fn usage(&self, actor: &str, request_id: Option<&str>) -> Result<UsageReport> {
        let analytics = self.analytics.as_ref().ok_or(ApiError::NotFound(
            "usage statistics are not enabled (ANALYTICS_DATABASE_URL)",
        ))?;
        analytics.usage(actor, request_id).await
    }

    /// The tenant called `slug`, or 404. The slug is parsed first: one no
    /// tenant can have (a NUL byte, upper case, a space) never reaches SQL,
    /// and is answered like any other unknown slug.
    pub async fn tenant(&self, slug: &str) -> Result<TenantSummary> {
        let slug = Slug::parse(slug).map_err(|_| ApiError::NotFound("tenant not found"))?;
        let slug = slug.as_str();
        let rows = self
            .db
            .query(
                &format!("select {TENANT_COLUMNS} from tenants where slug = $1"),
                &[&slug],
            )
            .await?;
        rows.first()
            .map(TenantSummary::from_row)
            .transpose()?
            .ok_or(ApiError::NotFound("tenant not found"))
    }
}
