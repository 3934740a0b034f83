//! The tenant transaction: the one way to reach tenant data.
//!
//! [`Db::transaction`] takes an [`Actor`], who is acting and in which tenant,
//! and that decides everything the transaction checks as it binds: whether
//! the tenant must be active (or not exist yet), whether a user must still
//! exist or be an owner, which plan limits apply. A caller states who it is;
//! it cannot choose which checks to skip.

use std::time::Instant;

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tracing::Instrument;

use super::{Db, TenantTx, forget_stale_plans, settle};
use crate::{
    domain::{Role, TenantId, TenantLimits, UserId},
    error::{ApiError, Result},
    telemetry,
};

/// The first statement of every tenant transaction, sent in the same round
/// trip as its `BEGIN` (see [`Db::transaction`]). `bind_tenant` (V4
/// migration) sets the tenant with `SET LOCAL`, the statement timeout and the
/// quotas transaction-locally, and answers the tenant's status and the given
/// user's role. Everything it sets ends with the transaction, so nothing
/// carries over to the next user of the connection; the status makes a
/// suspension (or a purge) apply to the next request on every instance,
/// whatever their caches say.
const BIND_TENANT_SQL: &str =
    "select tenant_status, user_role from bind_tenant($1, $2, $3, $4, $5)";

/// Who acts in a tenant transaction, and in which tenant.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// Someone on the tenant's host without a token (sign-in, registration):
    /// the tenant must be active, and its plan's limits apply.
    Visitor {
        tenant: TenantId,
        limits: &'a TenantLimits,
    },
    /// A signed-in user: as a visitor, and the user must still exist in the
    /// tenant (401 otherwise, and whatever the work did is rolled back).
    User {
        tenant: TenantId,
        user: UserId,
        limits: &'a TenantLimits,
    },
    /// A signed-in user acting as the tenant's owner: as a user, and the
    /// user's current role must be owner (403 for a member), judged before
    /// the work starts.
    Owner {
        tenant: TenantId,
        user: UserId,
        limits: &'a TenantLimits,
    },
    /// Onboarding: the tenant must not exist yet; the work creates it, bound
    /// to it from the first statement.
    Founder {
        tenant: TenantId,
        limits: &'a TenantLimits,
    },
    /// An operator: any status, no plan limits. Only
    /// [`super::admin::AdminDb`] makes one, so the runtime role's pool never
    /// runs an operator's transaction.
    Operator(Operator),
}

/// An operator's transaction (see [`Actor::Operator`]).
#[derive(Debug, Clone, Copy)]
pub struct Operator {
    tenant: TenantId,
    consistency: Consistency,
}

impl Operator {
    /// Only the admin role's handle makes these.
    pub(super) fn new(tenant: TenantId, consistency: Consistency) -> Self {
        Self {
            tenant,
            consistency,
        }
    }
}

/// What an operator's statements see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Each statement its own snapshot (`READ COMMITTED`), as requests do.
    PerStatement,
    /// One snapshot for the whole transaction (`REPEATABLE READ`): an export
    /// is consistent even while the tenant keeps writing.
    Snapshot,
}

/// What a tenant transaction expects of its tenant's registry row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Active,
    New,
    Any,
}

impl Actor<'_> {
    fn tenant(&self) -> TenantId {
        match *self {
            Self::Visitor { tenant, .. }
            | Self::User { tenant, .. }
            | Self::Owner { tenant, .. }
            | Self::Founder { tenant, .. } => tenant,
            Self::Operator(operator) => operator.tenant,
        }
    }

    fn limits(&self) -> Option<&TenantLimits> {
        match *self {
            Self::Visitor { limits, .. }
            | Self::User { limits, .. }
            | Self::Owner { limits, .. }
            | Self::Founder { limits, .. } => Some(limits),
            Self::Operator(_) => None,
        }
    }

    fn user(&self) -> Option<UserId> {
        match *self {
            Self::User { user, .. } | Self::Owner { user, .. } => Some(user),
            _ => None,
        }
    }

    fn expect(&self) -> Expect {
        match self {
            Self::Visitor { .. } | Self::User { .. } | Self::Owner { .. } => Expect::Active,
            Self::Founder { .. } => Expect::New,
            Self::Operator(_) => Expect::Any,
        }
    }

    /// Whether requests of this actor share the tenant's slice of the pool
    /// (operators and onboarding do not: neither is the tenant's traffic).
    fn takes_a_share(&self) -> bool {
        matches!(
            self,
            Self::Visitor { .. } | Self::User { .. } | Self::Owner { .. }
        )
    }

    /// Whether the work may start before the verdict (and be rolled back if
    /// it is no): not for an owner's work, which a member must not even
    /// attempt.
    fn work_may_start_first(&self) -> bool {
        !matches!(self, Self::Owner { .. })
    }

    fn begin(&self) -> &'static str {
        match self {
            Self::Operator(Operator {
                consistency: Consistency::Snapshot,
                ..
            }) => "BEGIN ISOLATION LEVEL REPEATABLE READ",
            _ => "BEGIN ISOLATION LEVEL READ COMMITTED",
        }
    }

    /// Judges the bind statement's answer: the tenant's status, then the
    /// user's current role.
    fn verdict(&self, bound: &tokio_postgres::Row) -> Result<()> {
        let tenant = self.tenant();
        let status: Option<String> = bound.try_get("tenant_status")?;
        match (self.expect(), status.as_deref()) {
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
        let role = bound
            .try_get::<_, Option<&str>>("user_role")?
            .map(Role::from_db)
            .transpose()?;
        match (self, role) {
            (Self::User { .. } | Self::Owner { .. }, None) => Err(ApiError::Unauthorized),
            (Self::Owner { .. }, Some(Role::Owner)) => Ok(()),
            (Self::Owner { .. }, Some(_)) => {
                Err(ApiError::Forbidden("only the tenant's owner may do this"))
            }
            _ => Ok(()),
        }
    }
}

impl Db {
    /// Runs `work` in one transaction of `actor`'s tenant, bound to it, with
    /// the checks `actor` calls for: the tenant's status (404 for a tenant
    /// that no longer exists, 403 for a suspended one), the user's existence
    /// (401) or ownership (403), and within a tenant's plan at most its
    /// share of the pool's connections (429 `tenant_busy` after waiting
    /// `TENANT_DB_QUEUE_TIMEOUT_MS`), its statement timeout and its quotas
    /// (403 `quota_exceeded`).
    ///
    /// This is the only way to reach tenant data: query functions take a
    /// [`TenantTx`], and the only place one is made is here, after the tenant
    /// was set. The setting is transaction-local, so the pooled connection
    /// goes back clean whether `work` succeeds (COMMIT), fails or is
    /// cancelled (the connection is closed and the server rolls back).
    ///
    /// `BEGIN`, the bind statement and (unless an owner's role must be judged
    /// first) `work`'s first statement go out together: tokio-postgres sends
    /// a request when its future is first polled, and `join!` in `biased`
    /// mode polls its futures in the order written, so no statement of
    /// `work` can run before the tenant is set, and binding costs no round
    /// trip of its own. If the verdict is no, everything `work` did is rolled
    /// back and its result dropped.
    ///
    /// Traced as a `tenant transaction` span (its statements are child
    /// spans, see [`TenantTx`]) and timed as
    /// `tenantry.db.tenant_transaction.duration`.
    pub async fn transaction<T>(
        &self,
        actor: Actor<'_>,
        work: impl AsyncFnOnce(&TenantTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let tenant = actor.tenant();
        let _share = match actor.limits() {
            Some(limits) if actor.takes_a_share() => Some(
                self.shares
                    .acquire(tenant, limits.max_db_connections)
                    .await?,
            ),
            _ => None,
        };
        let started = Instant::now();
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
                Some(client) => self.in_transaction(client, &actor, work).await,
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
        actor: &Actor<'_>,
        work: impl AsyncFnOnce(&TenantTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let tenant = actor.tenant();
        let quota = |value: Option<u64>| value.and_then(|n| i64::try_from(n).ok());
        let (timeout_ms, max_users, max_notes) = match actor.limits() {
            Some(limits) => (
                limits.statement_timeout.as_millis(),
                quota(limits.max_users),
                quota(limits.max_notes),
            ),
            None => (self.statement_timeout.as_millis(), None, None),
        };
        let timeout_ms = i32::try_from(timeout_ms).unwrap_or(i32::MAX);
        let bind = client.prepare_cached(BIND_TENANT_SQL).await?;
        let user = actor.user();
        let user = user.as_ref().map(UserId::as_uuid);
        let params: [&(dyn ToSql + Sync); 5] =
            [tenant.as_uuid(), &timeout_ms, &max_users, &max_notes, &user];
        let begin = client.batch_execute(actor.begin());
        let bind = client.query_one(&bind, &params);
        let tx = TenantTx::new(client, tenant);
        let value = if actor.work_may_start_first() {
            let (begun, bound, worked) = tokio::join!(biased; begin, bind, work(&tx));
            begun?;
            actor.verdict(&bound?)?;
            worked?
        } else {
            let (begun, bound) = tokio::join!(biased; begin, bind);
            begun?;
            actor.verdict(&bound?)?;
            work(&tx).await?
        };
        client.batch_execute("COMMIT").await?;
        Ok(value)
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
