//! [`TenantTx`]: a transaction already bound to one tenant.

use std::{
    future::{Future, poll_fn},
    pin::pin,
    task::Poll,
};

use deadpool_postgres::Object;
use tokio::sync::oneshot;
use tokio_postgres::{Row, RowStream, Statement, types::ToSql};
use tracing::{Instrument, Span};

use crate::domain::TenantId;

/// Query parameters, as tokio-postgres takes them.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A transaction in which `app.tenant_id` is set. Tenant-scoped queries take
/// a `TenantTx`, never a bare client, so a query cannot run without a tenant.
///
/// It deliberately exposes only parameterised, prepared statements: no
/// `batch_execute`, no raw `BEGIN`/`COMMIT`, nothing that could change the
/// tenant or end the transaction early. [`super::Db`] opens and ends the
/// transaction around it.
///
/// The `last_*` methods run the transaction's last statement and take the
/// transaction by value, so nothing can run after it: `COMMIT` goes out right
/// behind it, in the same round trip. The database refuses the whole
/// transaction if the binding's verdict was no (`bind_request`, V7), so the
/// early `COMMIT` is then a `ROLLBACK`. What the caller does with the rows
/// afterwards (decoding them) can no longer roll the statement back.
pub struct TenantTx<'a> {
    client: &'a Object,
    tenant: TenantId,
    /// Told when the last statement has gone out (see [`super::Db::transaction`]).
    last_sent: Option<oneshot::Sender<()>>,
}

impl<'a> TenantTx<'a> {
    pub(super) fn new(
        client: &'a Object,
        tenant: TenantId,
        last_sent: oneshot::Sender<()>,
    ) -> Self {
        Self {
            client,
            tenant,
            last_sent: Some(last_sent),
        }
    }

    /// The tenant this transaction is bound to. Queries also filter on it
    /// explicitly (`where tenant_id = $1`): RLS is the guard, the predicate
    /// lets the planner (and Citus) go straight to the tenant's rows.
    pub fn tenant_id(&self) -> TenantId {
        self.tenant
    }

    /// Runs a statement and returns its rows.
    pub async fn query(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        async {
            let statement = self.client.prepare_cached(sql).await?;
            self.client.query(&statement, params).await
        }
        .instrument(statement_span(sql))
        .await
    }

    /// Runs a statement that returns exactly one row.
    pub async fn query_one(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Row, tokio_postgres::Error> {
        async {
            let statement = self.client.prepare_cached(sql).await?;
            self.client.query_one(&statement, params).await
        }
        .instrument(statement_span(sql))
        .await
    }

    /// Runs a statement that returns at most one row.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        async {
            let statement = self.client.prepare_cached(sql).await?;
            self.client.query_opt(&statement, params).await
        }
        .instrument(statement_span(sql))
        .await
    }

    /// Runs a statement and streams its rows as they arrive, for results too
    /// large to hold in memory (exports).
    pub async fn query_stream(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<RowStream, tokio_postgres::Error> {
        async {
            let statement = self.client.prepare_cached(sql).await?;
            self.client
                .query_raw(&statement, params.iter().map(|param| *param as &dyn ToSql))
                .await
        }
        .instrument(statement_span(sql))
        .await
    }

    /// Runs a statement and returns how many rows it affected.
    pub async fn execute(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        async {
            let statement = self.client.prepare_cached(sql).await?;
            self.client.execute(&statement, params).await
        }
        .instrument(statement_span(sql))
        .await
    }

    /// The transaction's last statement, returning its rows; `COMMIT`
    /// follows it in the same round trip (see the type's documentation).
    pub async fn last_query(
        self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        self.last(sql, move |client, statement| async move {
            client.query(&statement, params).await
        })
        .await
    }

    /// The transaction's last statement, returning exactly one row.
    pub async fn last_query_one(
        self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Row, tokio_postgres::Error> {
        self.last(sql, move |client, statement| async move {
            client.query_one(&statement, params).await
        })
        .await
    }

    /// The transaction's last statement, returning at most one row.
    pub async fn last_query_opt(
        self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        self.last(sql, move |client, statement| async move {
            client.query_opt(&statement, params).await
        })
        .await
    }

    /// Prepares `sql` (so that nothing overtakes it on the wire), then runs
    /// it with `run` as the last statement (see [`TenantTx::send_last`]).
    async fn last<T, Run>(
        mut self,
        sql: &str,
        run: impl FnOnce(&'a Object, Statement) -> Run,
    ) -> Result<T, tokio_postgres::Error>
    where
        Run: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let client = self.client;
        async {
            let statement = client.prepare_cached(sql).await?;
            self.send_last(run(client, statement)).await
        }
        .instrument(statement_span(sql))
        .await
    }

    /// Sends `query`, says so, then waits for its answer. tokio-postgres
    /// queues a request for the connection the first time its future is
    /// polled, and the connection writes requests in the order they were
    /// queued: once the first poll returned, a `COMMIT` queued now follows
    /// the statement on the wire.
    async fn send_last<T>(&mut self, query: impl Future<Output = T>) -> T {
        let mut query = pin!(query);
        let first = poll_fn(|context| Poll::Ready(query.as_mut().poll(context))).await;
        if let Some(last_sent) = self.last_sent.take() {
            // The receiver is gone only if the transaction was abandoned.
            let _ = last_sent.send(());
        }
        match first {
            Poll::Ready(output) => output,
            Poll::Pending => query.await,
        }
    }
}

/// A client span for one statement, when traces are exported: named by its
/// operation (`SELECT`, `INSERT`, ...), with the statement's text, which has
/// `$n` placeholders and never a parameter's value. Without export, no span
/// (and no copy of the text) is made.
fn statement_span(sql: &str) -> Span {
    if !crate::telemetry::traces_exported() {
        return Span::none();
    }
    let operation = sql
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    tracing::info_span!(
        "statement",
        otel.name = operation.as_str(),
        otel.kind = "client",
        db.system.name = "postgresql",
        db.operation.name = operation.as_str(),
        db.query.text = sql,
    )
}
