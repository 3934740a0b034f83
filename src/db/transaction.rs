//! The tenant transaction: the one way to reach tenant data.
//!
//! [`Db::transaction`] takes an [`Actor`], who is acting and in which tenant,
//! and that decides everything the transaction checks as it binds: whether
//! the tenant must be active (or not exist yet), whether a user must still
//! exist or be an owner, which plan limits apply. A caller states who it is;
//! it cannot choose which checks to skip.

use std::{sync::Arc, time::Instant};

use deadpool_postgres::Object;
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;
use tracing::Instrument;

use super::{
    Db, TenantTx,
    actor::Actor,
    deadline, forget_stale_plans,
    in_flight::{InFlight, Registration},
    settle,
};
use crate::{
    domain::UserId,
    error::{ApiError, Result},
    telemetry,
};

/// The first statement of every tenant transaction, sent in the same round
/// trip as its `BEGIN` (see [`Db::transaction`]). `bind_request` (V7
/// migration) calls `bind_tenant` (V4), which sets the tenant with `SET
/// LOCAL`, the statement timeout and the quotas transaction-locally, and
/// answers the tenant's status and the given user's role; `bind_request`
/// then raises an error (SQLSTATE class `TB`) when the acting party's
/// requirement is not met, which aborts the transaction in the database
/// itself. Everything it sets ends with the transaction, so nothing carries
/// over to the next user of the connection; the status makes a suspension
/// (or a purge) apply to the next request on every instance, whatever
/// their caches say.
const BIND_REQUEST_SQL: &str =
    "select tenant_status, user_role from bind_request($1, $2, $3, $4, $5, $6)";

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
    /// trip of its own. When `work` ends with a `TenantTx::last_*`
    /// statement, `COMMIT` follows it in the same round trip; that is safe
    /// because `bind_request` refuses in the database (an error aborts the
    /// transaction, so the `COMMIT` is a `ROLLBACK`), and the verdict is
    /// also checked here. If it is no, the request gets its 401, 403 or 404
    /// and nothing `work` did is kept.
    ///
    /// Traced as a `tenant transaction` span (its statements are child
    /// spans, see [`TenantTx`]) and timed as
    /// `tenantry.db.tenant_transaction.duration`.
    pub async fn transaction<T>(
        &self,
        actor: Actor<'_>,
        work: impl AsyncFnOnce(TenantTx<'_>) -> Result<T>,
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
            let checkout = Checkout::new(self.pool.get().await?, &self.in_flight);
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
        work: impl AsyncFnOnce(TenantTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let quota = |value: Option<u64>| value.and_then(|n| i64::try_from(n).ok());
        let (timeout, max_users, max_notes) = match actor.limits() {
            Some(limits) => (
                limits.statement_timeout,
                quota(limits.max_users),
                quota(limits.max_notes),
            ),
            None => (self.statement_timeout, None, None),
        };
        // Within a request, the database gives up before the deadline does
        // (see deadline.rs); a statement it cancels for that is the deadline's 503.
        let budget = deadline::statement_budget().filter(|budget| *budget < timeout);
        let timeout_ms = budget.unwrap_or(timeout).as_millis();
        let timeout_ms = i32::try_from(timeout_ms).unwrap_or(i32::MAX);
        let binding = Binding {
            timeout_ms,
            max_users,
            max_notes,
        };
        Self::pipeline(client, actor, binding, work)
            .await
            .map_err(|error| {
                if budget.is_some() && error.is_cancelled_statement() {
                    ApiError::Timeout
                } else {
                    error
                }
            })
    }

    /// BEGIN, `bind_request` and (unless an owner's role must be judged
    /// first) the work, pipelined; then COMMIT, right behind the work's last
    /// statement when it has one.
    async fn pipeline<T>(
        client: &Object,
        actor: &Actor<'_>,
        binding: Binding,
        work: impl AsyncFnOnce(TenantTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let tenant = actor.tenant();
        let Binding {
            timeout_ms,
            max_users,
            max_notes,
        } = binding;
        let bind = client.prepare_cached(BIND_REQUEST_SQL).await?;
        let user = actor.user();
        let user = user.as_ref().map(UserId::as_uuid);
        let requirement = actor.requirement();
        let params: [&(dyn ToSql + Sync); 6] = [
            tenant.as_uuid(),
            &timeout_ms,
            &max_users,
            &max_notes,
            &user,
            &requirement,
        ];
        let begin = client.batch_execute(actor.begin());
        let bind = client.query_one(&bind, &params);
        let (last_sent, last_gone_out) = oneshot::channel();
        let tx = TenantTx::new(client, tenant, last_sent);
        // COMMIT right behind the work's last statement, if it has one
        // (`TenantTx::last_*`); otherwise after the work, below.
        let commit_behind_last = async {
            match last_gone_out.await {
                Ok(()) => Some(client.batch_execute("COMMIT").await),
                Err(_) => None,
            }
        };
        let (value, committed) = if actor.work_may_start_first() {
            let (begun, bound, worked, committed) =
                tokio::join!(biased; begin, bind, work(tx), commit_behind_last);
            begun?;
            actor.verdict(bound)?;
            (worked?, committed)
        } else {
            let (begun, bound) = tokio::join!(biased; begin, bind);
            begun?;
            actor.verdict(bound)?;
            let (worked, committed) = tokio::join!(biased; work(tx), commit_behind_last);
            (worked?, committed)
        };
        match committed {
            Some(result) => result?,
            None => client.batch_execute("COMMIT").await?,
        }
        Ok(value)
    }
}

/// What `bind_request` sets besides the tenant.
struct Binding {
    timeout_ms: i32,
    max_users: Option<i64>,
    max_notes: Option<i64>,
}

/// A connection checked out for one tenant transaction, registered as
/// running (see [`InFlight`]). Dropped before [`Checkout::finish`] (the
/// request was cancelled mid-transaction), it cancels its statement and
/// closes the connection instead of returning it to the pool.
struct Checkout(Option<Object>, Registration);

impl Checkout {
    fn new(client: Object, in_flight: &Arc<InFlight>) -> Self {
        let registration = in_flight.register(client.cancel_token());
        Self(Some(client), registration)
    }

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
    /// The request was abandoned mid-transaction (its deadline, or the
    /// client hung up). Its `COMMIT` may already be on the wire behind its
    /// last statement, and a server reads what was sent before it notices a
    /// closed connection: so the running statement is cancelled (over a
    /// connection of its own, as PostgreSQL's protocol wants), which aborts
    /// the transaction and turns that `COMMIT` into a `ROLLBACK`, and frees
    /// the locks the statement waits on at once. The connection is closed,
    /// never returned to the pool.
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            self.1.cancel_abandoned(client.cancel_token());
            drop(Object::take(client));
        }
    }
}
