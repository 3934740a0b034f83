//! The tenant transactions running right now, so that the ones still
//! running at the drain deadline can be cancelled in the database before
//! the process exits.
//!
//! Why this matters: a transaction's `COMMIT` can already be on the wire
//! behind its last statement (see `TenantTx::last_*`), and a server reads
//! what was sent before it notices a closed connection. A process that
//! exits with a statement still waiting (on a lock, say) would let that
//! statement, then its `COMMIT`, run after it is gone. Cancelling the
//! statement aborts the transaction, which turns the `COMMIT` into a
//! `ROLLBACK`.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::Notify;
use tokio_postgres::{CancelToken, NoTls};

/// How long cancelling (and waiting for the cancelled) may take.
const CANCEL_DEADLINE: Duration = Duration::from_secs(1);

/// Cancel handles of the running transactions' connections.
#[derive(Default)]
pub struct InFlight {
    next: AtomicU64,
    running: Mutex<HashMap<u64, CancelToken>>,
    /// Cancellations of abandoned transactions still on their way.
    cancelling: AtomicUsize,
    cancelled: Notify,
    /// Told whenever a transaction ends.
    ended: Notify,
}

impl InFlight {
    /// Records a transaction until the returned guard is dropped.
    pub fn register(self: &Arc<Self>, cancel: CancelToken) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, cancel);
        Registration {
            id,
            in_flight: Arc::clone(self),
        }
    }

    /// Cancels the statements of every running transaction, waits (within
    /// a second) until those transactions have ended, and answers how many
    /// there were. A statement that completed before its cancellation got
    /// there ends as it would have; either way, nothing is left to commit
    /// after the caller exits.
    pub async fn cancel_all(&self) -> usize {
        let running: Vec<CancelToken> = self.lock().values().cloned().collect();
        let ended = async {
            let cancels = running.iter().map(|cancel| cancel.cancel_query(NoTls));
            for error in futures_util::future::join_all(cancels)
                .await
                .into_iter()
                .filter_map(Result::err)
            {
                tracing::warn!(error = %error, "could not cancel a running statement");
            }
            until(&self.ended, || self.lock().is_empty()).await;
        };
        if tokio::time::timeout(CANCEL_DEADLINE, ended).await.is_err() {
            tracing::warn!("transactions still running a second after their cancellation");
        }
        running.len()
    }

    /// Cancels the statement of a transaction that was abandoned (its
    /// request's future dropped), in a task of its own: the one that
    /// dropped it cannot wait. [`InFlight::settle`] waits for these.
    fn cancel_abandoned(self: &Arc<Self>, cancel: CancelToken) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.cancelling.fetch_add(1, Ordering::SeqCst);
        let in_flight = Arc::clone(self);
        runtime.spawn(async move {
            if let Err(error) = cancel.cancel_query(NoTls).await {
                tracing::warn!(error = %error, "could not cancel an abandoned statement");
            }
            in_flight.cancelling.fetch_sub(1, Ordering::SeqCst);
            in_flight.cancelled.notify_waiters();
        });
    }

    /// Waits (at most a second) until the cancellations of abandoned
    /// transactions have reached the database: the request deadline waits
    /// for this before it answers 503, so that the answer never comes before
    /// the `COMMIT` it implies did not happen is made sure of.
    pub async fn settle(&self) {
        let settled = until(&self.cancelled, || {
            self.cancelling.load(Ordering::SeqCst) == 0
        });
        if tokio::time::timeout(CANCEL_DEADLINE, settled)
            .await
            .is_err()
        {
            tracing::warn!("cancelling abandoned statements is taking over a second");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CancelToken>> {
        // The map stays consistent whatever panicked while holding it.
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Waits until `done` holds, looking again each time `changed` is told.
async fn until(changed: &Notify, done: impl Fn() -> bool) {
    loop {
        // Registered before the look, so a change in between is not missed.
        let notified = changed.notified();
        if done() {
            return;
        }
        notified.await;
    }
}

/// A running transaction's entry; dropping it removes the entry.
pub struct Registration {
    id: u64,
    in_flight: Arc<InFlight>,
}

impl Registration {
    /// The transaction was abandoned: cancel its statement (see the module).
    pub fn cancel_abandoned(&self, cancel: CancelToken) {
        self.in_flight.cancel_abandoned(cancel);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.in_flight.lock().remove(&self.id);
        self.in_flight.ended.notify_waiters();
    }
}
