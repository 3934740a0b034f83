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
pub mod citus;
pub mod local;
pub mod migrate;
mod share;
pub mod statements;
mod tenant_tx;

use std::{
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use secrecy::ExposeSecret;
use tokio_postgres::{NoTls, types::ToSql};
use tracing::Instrument;
use uuid::Uuid;

use self::share::TenantShares;
pub use self::tenant_tx::TenantTx;
use crate::{
    config::DatabaseSettings,
    domain::{TenantId, TenantLimits},
    error::{ApiError, Result},
    telemetry,
    tenant::Tenant,
};

/// The first statement of every tenant transaction, sent in the same round
/// trip as its `BEGIN` (see [`Db::bound`]). `bind_tenant` (V4 migration) sets
/// the tenant with `SET LOCAL`, the statement timeout and the quotas
/// transaction-locally, and answers the tenant's status and the given
/// user's role. Everything it sets ends with the transaction, so nothing
/// carries over to the next user of the connection; the status makes a
/// suspension (or a purge) apply to the next request on every instance,
/// whatever their caches say.
const BIND_TENANT_SQL: &str =
    "select tenant_status, user_role from bind_tenant($1, $2, $3, $4, $5)";

/// The isolation level of a tenant transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// Every request.
    ReadCommitted,
    /// Exports: every statement sees the same snapshot.
    RepeatableRead,
}

impl Isolation {
    fn begin(self) -> &'static str {
        match self {
            Self::ReadCommitted => "BEGIN ISOLATION LEVEL READ COMMITTED",
            Self::RepeatableRead => "BEGIN ISOLATION LEVEL REPEATABLE READ",
        }
    }
}

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
    /// `statement_timeout` for transactions without a plan (operator tools).
    statement_timeout: Duration,
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
            statement_timeout: settings.statement_timeout,
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
        self.with_tenant_as(tenant, None, work).await
    }

    /// Like [`Db::with_tenant`], on behalf of `caller`, whose current role is
    /// read in the statement that binds the transaction and judged before
    /// anything commits (see [`Caller`]).
    pub async fn with_tenant_as<T>(
        &self,
        tenant: &Tenant,
        caller: Option<Caller<'_>>,
        work: impl AsyncFnOnce(&TenantTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let limits = tenant.policy().limits();
        let _share = self
            .shares
            .acquire(tenant.id(), limits.max_db_connections)
            .await?;
        let binding = Binding {
            tenant: tenant.id(),
            expect: Expect::Active,
            isolation: Isolation::ReadCommitted,
            limits: Some(limits),
            caller,
        };
        self.bound(binding, work).await
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
        let binding = Binding {
            tenant,
            expect: Expect::New,
            isolation: Isolation::ReadCommitted,
            limits: Some(limits),
            caller: None,
        };
        self.bound(binding, work).await
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

    /// The one place a [`TenantTx`] is made: a transaction bound as
    /// `binding` says, then `work`, then COMMIT.
    ///
    /// `BEGIN`, the bind statement and (unless the caller's role must be
    /// judged first) `work`'s first statement go out together: tokio-postgres
    /// sends requests in the order they are first polled, `join!` polls in
    /// order, and the server runs them in that order, so no statement of
    /// `work` can run before the tenant is set. Binding thus costs no round
    /// trip of its own. The tenant's status and the caller's role are judged
    /// before COMMIT; if either says no, everything `work` did is rolled back
    /// and its result dropped.
    /// If the future is dropped mid-transaction (a cancelled request), the
    /// connection is closed rather than returned to the pool: the server
    /// rolls back, and no later request can inherit an open transaction.
    ///
    /// Traced as a `tenant transaction` span (its statements are child spans,
    /// see [`TenantTx`]) and timed as `tenantry.db.tenant_transaction.duration`.
    async fn bound<T>(
        &self,
        binding: Binding<'_>,
        work: impl AsyncFnOnce(&TenantTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let tenant = binding.tenant;
        let span = tracing::info_span!(
            "tenant transaction",
            otel.kind = "client",
            db.system.name = "postgresql",
            db.operation.name = "TRANSACTION",
            tenant.id = %tenant,
        );
        let outcome = async {
            let checkout = Checkout(Some(self.pool.get().await?));
            let outcome = match checkout.client() {
                Some(client) => self.in_transaction(client, &binding, work).await,
                None => Err(anyhow::anyhow!("the checked-out connection is gone").into()),
            };
            if let Err(error) = &outcome {
                forget_stale_plans(&self.pool, error);
            }
            checkout.finish(outcome).await
        }
        .instrument(span)
        .await;
        telemetry::metrics::tenant_transaction(tenant, outcome.is_ok(), started.elapsed());
        outcome
    }

    async fn in_transaction<T>(
        &self,
        client: &Object,
        binding: &Binding<'_>,
        work: impl AsyncFnOnce(&TenantTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let tenant = binding.tenant;
        let quota = |value: Option<u64>| value.and_then(|n| i64::try_from(n).ok());
        let (timeout_ms, max_users, max_notes) = match binding.limits {
            Some(limits) => (
                limits.statement_timeout.as_millis(),
                quota(limits.max_users),
                quota(limits.max_notes),
            ),
            None => (self.statement_timeout.as_millis(), None, None),
        };
        let timeout_ms = i32::try_from(timeout_ms).unwrap_or(i32::MAX);
        let bind = client.prepare_cached(BIND_TENANT_SQL).await?;
        let user = binding.caller.as_ref().map(|caller| caller.user);
        let params: [&(dyn ToSql + Sync); 5] =
            [tenant.as_uuid(), &timeout_ms, &max_users, &max_notes, &user];
        let begin = client.batch_execute(binding.isolation.begin());
        let bind = client.query_one(&bind, &params);
        let tx = TenantTx::new(client, tenant);
        let value = if binding.work_may_start_first() {
            let (begun, bound, worked) = tokio::join!(begin, bind, work(&tx));
            begun?;
            binding.verdict(&bound?)?;
            worked?
        } else {
            let (begun, bound) = tokio::join!(begin, bind);
            begun?;
            binding.verdict(&bound?)?;
            work(&tx).await?
        };
        client.batch_execute("COMMIT").await?;
        Ok(value)
    }
}

/// On whose behalf a tenant transaction runs: a user whose current role
/// (`None`: no such user in the tenant any more) `admit` judges before
/// anything commits.
pub struct Caller<'a> {
    pub user: &'a Uuid,
    pub admit: &'a (dyn Fn(Option<&str>) -> Result<()> + Sync),
    /// Whether `work` may run before the verdict (and be rolled back if it
    /// is no): true when the work is the same whatever the caller's role;
    /// false for work only some roles may even attempt.
    pub work_before_verdict: bool,
}

/// How a tenant transaction is bound.
struct Binding<'a> {
    tenant: TenantId,
    expect: Expect,
    isolation: Isolation,
    /// The plan's statement timeout and quotas; none for operators (the
    /// pool's statement timeout, no quotas).
    limits: Option<&'a TenantLimits>,
    /// On whose behalf, if a user's.
    caller: Option<Caller<'a>>,
}

impl Binding<'_> {
    fn work_may_start_first(&self) -> bool {
        self.caller
            .as_ref()
            .is_none_or(|caller| caller.work_before_verdict)
    }

    /// Judges the bind statement's answer: the tenant's status against
    /// `expect`, then the caller's role.
    fn verdict(&self, bound: &tokio_postgres::Row) -> Result<()> {
        let tenant = self.tenant;
        let state: Option<String> = bound.try_get("tenant_status")?;
        match (self.expect, state.as_deref()) {
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
        match &self.caller {
            Some(caller) => (caller.admit)(bound.try_get::<_, Option<&str>>("user_role")?),
            None => Ok(()),
        }
    }
}

/// A connection checked out for one tenant transaction. Dropped before
/// [`Checkout::finish`] (the request was cancelled mid-transaction), it
/// closes the connection instead of returning it to the pool.
struct Checkout(Option<Object>);

impl Checkout {
    fn client(&self) -> Option<&Object> {
        self.0.as_ref()
    }

    /// Ends the checkout after `outcome`: a failed transaction is rolled
    /// back first; a connection that is broken, or cannot roll back, is
    /// closed instead of returned to the pool.
    async fn finish<T>(mut self, outcome: Result<T>) -> Result<T> {
        let Some(client) = self.0.take() else {
            return outcome;
        };
        let rolled_back = match &outcome {
            Err(error) if !error.is_connection_broken() => {
                client.batch_execute("ROLLBACK").await.is_ok()
            }
            _ => true,
        };
        if !rolled_back {
            tracing::warn!("closing a database connection that could not roll back");
            drop(Object::take(client));
            return outcome;
        }
        // A broken connection is detached here, like every other checkout's.
        settle(client, outcome)
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(Object::take(client));
        }
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
    // plan_cache_mode: tenants differ in size by orders of magnitude, and a
    // prepared statement's generic plan is costed for the average tenant. In
    // the throughput benchmark's Zipf data it read a note by id through the
    // owner index, visiting every note of the largest tenant's user (25 ms
    // p99); planned with the actual tenant, the same statement uses the
    // primary key. Custom plans cost a few microseconds of planning each.
    let ours = format!(
        "-c statement_timeout={} -c idle_in_transaction_session_timeout={} \
         -c plan_cache_mode=force_custom_plan",
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
