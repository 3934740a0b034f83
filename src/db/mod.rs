//! PostgreSQL access: the pool, the tenant transaction, migrations and the
//! boot-time isolation audit.
//!
//! The service connects as the runtime role (`tenantry_app`), which RLS
//! constrains; tenant data is reachable only through [`Db::with_tenant`],
//! which hands out a [`TenantTx`]. Migrations run separately, as the owner
//! role, through [`migrate::run`].

pub mod admin;
pub mod analytics;
pub mod audit;
pub mod local;
pub mod migrate;
mod share;
mod tenant_tx;

use std::{str::FromStr, sync::Arc, time::Duration};

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use secrecy::ExposeSecret;
use tokio_postgres::{IsolationLevel, NoTls};

use self::share::TenantShares;
pub use self::tenant_tx::TenantTx;
use crate::{
    config::DatabaseSettings,
    error::{ApiError, Result},
    limits::TenantLimits,
    tenant::{Tenant, TenantId},
};

/// Sets the tenant, the statement timeout and the tenant's quotas for the
/// current transaction only (`is_local = true`) and reads the tenant's
/// status, in one round trip. The settings are cleared by COMMIT or ROLLBACK,
/// so nothing carries over to the next user of the connection; the status
/// makes a suspension (or a purge) apply to the next request on every
/// instance, whatever their caches say. The quotas are read by the
/// `count_tenant_rows` trigger ('' is none).
const BIND_TRANSACTION_SQL: &str = "select set_config('app.tenant_id', $1, true), \
     set_config('statement_timeout', $2, true), set_config('app.max_users', $3, true), \
     set_config('app.max_notes', $4, true), tenant_state($5)";

/// What a tenant transaction expects of its tenant's registry row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The tenant exists and is active (every request).
    Active,
    /// The tenant does not exist yet: the transaction creates it (onboarding).
    New,
    /// Whatever its status, or none (operators export and purge suspended
    /// tenants, and import ones that do not exist yet).
    Any,
}

/// The service's handle on its database: a pool of runtime-role connections.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// `statement_timeout` for transactions without a plan (operator tools),
    /// in milliseconds, as text.
    statement_timeout_ms: String,
    /// Each tenant's share of the pool.
    shares: Arc<TenantShares>,
}

impl Db {
    /// Builds the pool. Connections are opened lazily, so this does not touch
    /// the network; [`Db::ping`] does.
    pub fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        Self::connect_as(settings, "DATABASE_URL")
    }

    /// Builds a pool for the role in `settings.url`, which is named
    /// `variable` in errors (another role's handle, e.g. the admin role's).
    fn connect_as(settings: &DatabaseSettings, variable: &str) -> anyhow::Result<Self> {
        Ok(Self {
            pool: build_pool(settings, variable)?,
            statement_timeout_ms: settings.statement_timeout.as_millis().to_string(),
            shares: Arc::new(TenantShares::new(
                settings.pool_size,
                settings.tenant_queue_timeout,
            )),
        })
    }

    /// The underlying pool, for tenant-less work: the registry lookup,
    /// readiness and the boot audit. Never for tenant data.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Checks that a connection can be made and answers, within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<()> {
        let check = async {
            let client = self.pool.get().await?;
            let answered = client
                .simple_query("select 1")
                .await
                .map(drop)
                .map_err(ApiError::from);
            settle(client, answered)
        };
        tokio::time::timeout(timeout, check)
            .await
            .map_err(|_| ApiError::Unavailable(anyhow::anyhow!("readiness check timed out")))?
    }

    /// Runs `work` in one transaction whose RLS context is `tenant`, an active
    /// tenant (otherwise 404 for a tenant that no longer exists, 403 for a
    /// suspended one, before `work` runs), within the tenant's plan: at most
    /// its share of the pool's connections (429 `tenant_busy` after waiting
    /// `TENANT_DB_QUEUE_TIMEOUT_MS` for one), its statement timeout, and its
    /// quotas (403 `quota_exceeded`).
    ///
    /// This is the only way to reach tenant data: query functions take a
    /// [`TenantTx`], and the only place one is made is here, after the tenant
    /// was set. The setting is transaction-local, so the pooled connection goes
    /// back clean whether `work` succeeds (COMMIT), fails or is cancelled (the
    /// dropped transaction rolls back).
    pub async fn with_tenant<T>(
        &self,
        tenant: &Tenant,
        work: impl AsyncFnOnce(&TenantTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let limits = tenant.policy().limits();
        let _share = self
            .shares
            .acquire(tenant.id(), limits.max_db_connections)
            .await?;
        self.bound(
            tenant.id(),
            Expect::Active,
            IsolationLevel::ReadCommitted,
            Some(limits),
            work,
        )
        .await
    }

    /// Like [`Db::with_tenant`], for a tenant that `work` creates (onboarding):
    /// the transaction is bound to the new id from its first statement, so the
    /// tenant and its first rows are written together or not at all.
    pub async fn with_new_tenant<T>(
        &self,
        tenant: TenantId,
        limits: &TenantLimits,
        work: impl AsyncFnOnce(&TenantTx<'_>) -> Result<T>,
    ) -> Result<T> {
        self.bound(
            tenant,
            Expect::New,
            IsolationLevel::ReadCommitted,
            Some(limits),
            work,
        )
        .await
    }

    /// Forgets idle tenants' shares of the pool (see [`share`]).
    pub fn sweep_idle_shares(&self) {
        self.shares.sweep();
    }

    /// Tenants whose share of the pool is tracked (requests in flight, or
    /// not swept yet).
    pub fn tracked_shares(&self) -> usize {
        self.shares.len()
    }

    /// The one place a [`TenantTx`] is made: a transaction at `isolation`,
    /// bound to `tenant`, whose status is checked against `expect`, under the
    /// statement timeout and quotas of `limits` (none: the pool's timeout and
    /// no quotas, for operators).
    async fn bound<T>(
        &self,
        tenant: TenantId,
        expect: Expect,
        isolation: IsolationLevel,
        limits: Option<&TenantLimits>,
        work: impl AsyncFnOnce(&TenantTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut client = self.pool.get().await?;
        let outcome = self
            .in_transaction(&mut client, tenant, expect, isolation, limits, work)
            .await;
        if let Err(error) = &outcome {
            forget_stale_plans(&self.pool, error);
        }
        settle(client, outcome)
    }

    async fn in_transaction<T>(
        &self,
        client: &mut Object,
        tenant: TenantId,
        expect: Expect,
        isolation: IsolationLevel,
        limits: Option<&TenantLimits>,
        work: impl AsyncFnOnce(&TenantTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let quota = |value: Option<u64>| value.map(|n| n.to_string()).unwrap_or_default();
        let (timeout_ms, max_users, max_notes) = match limits {
            Some(limits) => (
                limits.statement_timeout.as_millis().to_string(),
                quota(limits.max_users),
                quota(limits.max_notes),
            ),
            None => (
                self.statement_timeout_ms.clone(),
                String::new(),
                String::new(),
            ),
        };
        let transaction = client
            .build_transaction()
            .isolation_level(isolation)
            .start()
            .await?;
        let bind = transaction.prepare_cached(BIND_TRANSACTION_SQL).await?;
        let row = transaction
            .query_one(
                &bind,
                &[
                    &tenant.to_string(),
                    &timeout_ms,
                    &max_users,
                    &max_notes,
                    tenant.as_uuid(),
                ],
            )
            .await?;
        let state: Option<String> = row.try_get(4)?;
        match (expect, state.as_deref()) {
            (Expect::Active, Some("active")) | (Expect::New, None) | (Expect::Any, _) => {}
            (Expect::Active, Some("suspended")) => return Err(ApiError::TenantSuspended),
            (Expect::Active, None) => return Err(ApiError::UnknownTenant),
            (Expect::New, Some(_)) => {
                return Err(anyhow::anyhow!("tenant {tenant} already exists").into());
            }
            (Expect::Active, Some(other)) => {
                return Err(anyhow::anyhow!("tenant {tenant} has unknown status {other:?}").into());
            }
        }
        let tx = TenantTx::new(transaction, tenant);
        let value = work(&tx).await?;
        tx.commit().await?;
        Ok(value)
    }
}

/// A pool for the role in `settings.url` (named `variable` in errors).
/// Connections are opened lazily.
pub(crate) fn build_pool(settings: &DatabaseSettings, variable: &str) -> anyhow::Result<Pool> {
    let mut config = tokio_postgres::Config::from_str(settings.url.expose_secret())
        .with_context(|| format!("{variable} is not a valid PostgreSQL connection string"))?;
    config.application_name("tenantry");
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(settings.connect_timeout);
    }
    // Defaults for anything outside a tenant transaction (the registry
    // lookup, readiness): a bound on runaway statements and on a transaction
    // left idle by a bug. Appended, so options given in the URL are kept (and
    // win: the server applies the last value of a repeated -c).
    let ours = format!(
        "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
        settings.statement_timeout.as_millis(),
        settings.statement_timeout.as_millis() * 2
    );
    let options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{ours} {given}"),
        _ => ours,
    };
    config.options(options);
    // Fast recycling is safe because tenant state never outlives a transaction
    // (see BIND_TRANSACTION_SQL), a dropped tokio-postgres Transaction rolls
    // back, and broken connections are detached (see settle); Clean would cost
    // seven statements per checkout.
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .wait_timeout(Some(settings.pool_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(settings.connect_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .context("could not build the database pool")
}

/// Returns a connection to the pool, unless `outcome` says the connection
/// itself is broken (killed backend, closed socket): then it is detached and
/// dropped, so the next request cannot be handed a dead connection before its
/// driver task has noticed (Fast recycling only checks `is_closed`).
pub(crate) fn settle<T>(client: Object, outcome: Result<T>) -> Result<T> {
    if outcome.as_ref().is_err_and(ApiError::is_connection_broken) {
        tracing::warn!("dropping a broken database connection");
        drop(Object::take(client));
    }
    outcome
}

/// After a migration changed a result type, every pooled connection holds
/// statements prepared for the old type. Dropping all the caches lets each
/// connection prepare afresh: the request that noticed gets a retryable 503,
/// the following ones succeed.
pub(crate) fn forget_stale_plans(pool: &Pool, error: &crate::error::ApiError) {
    if error.is_stale_plan() {
        tracing::warn!("a prepared statement outlived a schema change; clearing statement caches");
        pool.manager().statement_caches.clear();
    }
}
