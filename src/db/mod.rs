//! PostgreSQL access: the pool, the tenant transaction, migrations and the
//! boot-time isolation audit.
//!
//! The service connects as the runtime role (`tenantry_app`), which RLS
//! constrains; tenant data is reachable only through [`Db::transaction`],
//! which hands out a [`TenantTx`] to an [`Actor`] (see `transaction.rs`). Migrations run separately, as the owner
//! role, through [`migrate::run`].

mod actor;
pub mod admin;
pub mod analytics;
pub mod audit;
pub mod citus;
pub mod deadline;
mod in_flight;
pub mod local;
pub mod migrate;
mod share;
pub mod statements;
mod tenant_tx;
mod transaction;

use std::{str::FromStr, sync::Arc, time::Duration};

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use secrecy::ExposeSecret;
use tokio_postgres::NoTls;

use self::share::TenantShares;
pub use self::{
    actor::{Actor, Consistency},
    tenant_tx::TenantTx,
};
use crate::{
    config::DatabaseSettings,
    error::{ApiError, Result},
};

/// The service's handle on its database: a pool of runtime-role connections.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// `statement_timeout` for transactions without a plan (operator tools).
    statement_timeout: Duration,
    /// Each tenant's share of the pool.
    shares: Arc<TenantShares>,
    /// The tenant transactions running now.
    in_flight: Arc<in_flight::InFlight>,
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
            statement_timeout: settings.statement_timeout,
            shares: Arc::new(TenantShares::new(
                settings.pool_size,
                settings.tenant_queue_timeout,
            )),
            in_flight: Arc::default(),
        })
    }

    /// Cancels, in the database, the statements of every tenant transaction
    /// still running (at the drain deadline, before the process exits), so
    /// that none of them commits after the service is gone; answers how
    /// many there were. See `in_flight.rs`.
    pub async fn cancel_in_flight(&self) -> usize {
        self.in_flight.cancel_all().await
    }

    /// Waits until the statements of abandoned transactions are cancelled
    /// (see `in_flight.rs`); the request deadline's 503 waits for it.
    pub async fn settle_cancellations(&self) {
        self.in_flight.settle().await;
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

    /// Forgets idle tenants' shares of the pool (see `db/share.rs`).
    pub fn sweep_idle_shares(&self) {
        self.shares.sweep();
    }

    /// Tenants whose share of the pool is tracked (requests in flight, or
    /// not swept yet).
    pub fn tracked_shares(&self) -> usize {
        self.shares.len()
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
    //
    // plan_cache_mode is left at PostgreSQL's default (custom plans for a
    // prepared statement's first five runs, then the generic plan if it is
    // no dearer). Forcing custom plans also replanned, on every call, each
    // statement inside bind_request, the counting trigger and every foreign
    // key check (docs/BENCHMARKS.md has what that cost). What it once
    // guarded against, a generic plan reading a note by id through the
    // owner index in a large tenant, is ruled out by the queries' shape
    // instead (`(user_id = $2) is true`, see api/notes.rs); tests/api/
    // plans.rs checks the generic plan of every request-path query, and
    // the settled plan of a note by id in the largest tenant.
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
    // (bind_tenant sets it with SET LOCAL, see transaction.rs), a transaction
    // cut short closes its connection, and broken connections are detached
    // (see settle); Clean would cost seven statements per checkout.
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
