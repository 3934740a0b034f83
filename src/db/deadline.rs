//! The request's deadline, as the tenant transaction sees it.
//!
//! The HTTP layer runs each request within [`within`]; a tenant transaction
//! then caps its `statement_timeout` at the time left before the deadline,
//! less [`MARGIN`]. A transaction's `COMMIT` can go out right behind its last
//! statement (`TenantTx::last_*`), and from then on the client dropping the
//! request cannot stop the statement from committing; so the database itself
//! must give up on a statement before the deadline does. The statement then
//! fails, its transaction aborts, the `COMMIT` behind it becomes a
//! `ROLLBACK`, and the client's 503 tells the truth.

use std::{future::Future, time::Duration};

use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// How long before the request's deadline the database must give up: time
/// for the `ROLLBACK` and for the answer to go out.
pub const MARGIN: Duration = Duration::from_millis(100);

/// Runs `work` (a request) with `deadline` as its deadline.
pub async fn within<F: Future>(deadline: Instant, work: F) -> F::Output {
    DEADLINE.scope(deadline, work).await
}

/// The longest a statement of the current request may run: the time left
/// before its deadline, less [`MARGIN`], at least a millisecond (a zero
/// `statement_timeout` would mean none). `None` outside a request.
pub fn statement_budget() -> Option<Duration> {
    DEADLINE
        .try_with(|deadline| deadline.saturating_duration_since(Instant::now()))
        .ok()
        .map(|left| left.saturating_sub(MARGIN).max(Duration::from_millis(1)))
}
