//! The admin role's handle on the database (`tenantry_admin`), for the CLI
//! and the `/admin` API, never for the request path.
//!
//! It is not a flag on [`Db`]: it is another role, with another pool. The
//! role is still subject to RLS: tenant data is reached only through
//! [`AdminDb::transaction`], which is [`Db`]'s one way of making a tenant
//! transaction, one tenant per transaction, exactly like the service. What
//! differs is that the tenant need not be active (operators export and purge
//! suspended tenants), and that the registry tables, which have no RLS, are
//! readable and writable ([`AdminDb::query`]).

use deadpool_postgres::{Object, Pool};
use tokio_postgres::{Row, types::ToSql};

use super::{
    Db, TenantTx,
    actor::{Actor, Consistency, Operator},
    settle,
};
use crate::{config::DatabaseSettings, domain::TenantId, error::Result};

/// The first key of the operators' advisory locks ([`AdminDb::exclusively`]);
/// the second is the hash of the lock's name. Arbitrary but fixed ("tena").
const ADVISORY_LOCK_NAMESPACE: i32 = 0x7465_6e61;

/// A pool of admin-role connections.
#[derive(Clone)]
pub struct AdminDb {
    db: Db,
}

impl AdminDb {
    /// Builds the pool for `ADMIN_DATABASE_URL`; connections are opened lazily.
    pub fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        Ok(Self {
            db: Db::connect_as(settings, "ADMIN_DATABASE_URL")?,
        })
    }

    /// The underlying pool (for the boot audit).
    pub fn pool(&self) -> &Pool {
        self.db.pool()
    }

    /// One statement outside any tenant: the registry, the platform audit log.
    /// Tenant tables read here show nothing (no tenant is set).
    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let client = self.pool().get().await?;
        let outcome = async {
            let statement = client.prepare_cached(sql).await?;
            Ok(client.query(&statement, params).await?)
        }
        .await;
        settle(client, outcome)
    }

    /// Runs `work` while this process holds the session-level advisory lock
    /// named `name`, taken on a connection of its own; `None`, at once and
    /// without running `work`, when another session holds it. The connection
    /// is closed afterwards rather than returned to the pool, so the lock
    /// goes with it whatever happened (a pooled connection must never keep
    /// a session lock), and a killed process loses it with its connection.
    pub async fn exclusively<T>(
        &self,
        name: &str,
        work: impl AsyncFnOnce() -> Result<T>,
    ) -> Result<Option<T>> {
        let client = self.pool().get().await?;
        let locked = async {
            client
                .query_one(
                    "select pg_try_advisory_lock($1, pg_catalog.hashtext($2))",
                    &[&ADVISORY_LOCK_NAMESPACE, &name],
                )
                .await?
                .try_get::<_, bool>(0)
        }
        .await;
        match locked {
            Ok(true) => {
                let outcome = work().await;
                drop(Object::take(client));
                outcome.map(Some)
            }
            // Nothing taken: the connection may go back to the pool.
            Ok(false) => Ok(None),
            Err(error) => settle(client, Err(error.into())),
        }
    }

    /// Runs `work` in one transaction bound to `tenant`, as an operator:
    /// whatever the tenant's status, without plan limits, with the statements
    /// seeing what `consistency` says.
    pub async fn transaction<T>(
        &self,
        tenant: TenantId,
        consistency: Consistency,
        work: impl AsyncFnOnce(TenantTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let operator = Operator::new(tenant, consistency);
        self.db.transaction(Actor::Operator(operator), work).await
    }
}
