//! Fair database access: each tenant may hold at most its plan's number of
//! the pool's connections at once.
//!
//! Without this, one tenant's flood of slow requests takes every connection
//! and every other tenant's requests wait for the pool (and then fail with a
//! 503). With it, a tenant's excess requests queue on the tenant's own
//! semaphore, for at most `TENANT_DB_QUEUE_TIMEOUT_MS`, then get a 429
//! `tenant_busy`; the rest of the pool stays free for the others.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    domain::TenantId,
    error::{ApiError, Result},
};

/// The per-tenant semaphores of one pool.
pub(super) struct TenantShares {
    semaphores: Mutex<HashMap<TenantId, Share>>,
    queue_timeout: Duration,
    /// Connections in the pool: no share is larger.
    pool_size: usize,
}

struct Share {
    size: usize,
    semaphore: Arc<Semaphore>,
}

impl TenantShares {
    pub(super) fn new(pool_size: usize, queue_timeout: Duration) -> Self {
        Self {
            semaphores: Mutex::new(HashMap::new()),
            queue_timeout,
            pool_size,
        }
    }

    /// One of `tenant`'s `size` slots, waiting for one at most the queue
    /// timeout. Held for the whole transaction (the connection is the thing
    /// being shared); dropping the permit frees the slot.
    pub(super) async fn acquire(
        &self,
        tenant: TenantId,
        size: usize,
    ) -> Result<OwnedSemaphorePermit> {
        let semaphore = self.semaphore(tenant, size.clamp(1, self.pool_size))?;
        match tokio::time::timeout(self.queue_timeout, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(closed)) => Err(ApiError::Unexpected(closed.into())),
            Err(_) => {
                tracing::info!(tenant.id = %tenant, size, "tenant holds its whole share of the pool");
                Err(ApiError::TenantBusy)
            }
        }
    }

    /// The tenant's semaphore, of `size` permits or more. A larger size
    /// (a plan upgrade) grows it at once. A smaller one applies once the
    /// tenant is idle and its semaphore swept: replacing it while requests
    /// hold permits would let the tenant hold both sets at once.
    fn semaphore(&self, tenant: TenantId, size: usize) -> Result<Arc<Semaphore>> {
        let mut semaphores = self
            .semaphores
            .lock()
            .map_err(|_| anyhow::anyhow!("the tenant share map was poisoned"))?;
        let share = semaphores.entry(tenant).or_insert_with(|| Share::new(size));
        if size > share.size {
            share.semaphore.add_permits(size - share.size);
            share.size = size;
        }
        Ok(Arc::clone(&share.semaphore))
    }

    /// Forgets the semaphores nobody holds or waits for (the map then holds
    /// only tenants with requests in flight).
    pub(super) fn sweep(&self) {
        if let Ok(mut semaphores) = self.semaphores.lock() {
            semaphores.retain(|_, share| Arc::strong_count(&share.semaphore) > 1);
            semaphores.shrink_to_fit();
        }
    }

    /// Tenants with a semaphore.
    pub(super) fn len(&self) -> usize {
        self.semaphores
            .lock()
            .map_or(0, |semaphores| semaphores.len())
    }
}

impl Share {
    fn new(size: usize) -> Self {
        Self {
            size,
            semaphore: Arc::new(Semaphore::new(size)),
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn tenant(n: u128) -> TenantId {
        TenantId::from_uuid(Uuid::from_u128(n))
    }

    #[tokio::test]
    async fn a_tenant_gets_at_most_its_share_and_idle_shares_are_forgotten() {
        let shares = TenantShares::new(4, Duration::from_millis(20));
        let first = shares.acquire(tenant(1), 2).await.expect("first");
        let _second = shares.acquire(tenant(1), 2).await.expect("second");
        assert!(matches!(
            shares.acquire(tenant(1), 2).await,
            Err(ApiError::TenantBusy)
        ));
        let _other = shares
            .acquire(tenant(2), 2)
            .await
            .expect("another tenant's own share");
        drop(first);
        let _third = shares.acquire(tenant(1), 2).await.expect("a freed slot");

        for n in 10..10_010 {
            drop(shares.acquire(tenant(n), 2).await.expect("idle tenant"));
        }
        assert_eq!(shares.len(), 10_002);
        shares.sweep();
        assert_eq!(shares.len(), 2, "only tenants holding slots are kept");
    }

    #[tokio::test]
    async fn a_changing_share_size_never_lets_a_tenant_hold_more_than_the_largest() {
        let shares = TenantShares::new(10, Duration::from_millis(20));
        let mut held = Vec::new();
        for size in [2, 3, 2, 3, 2, 3, 2, 3] {
            if let Ok(permit) = shares.acquire(tenant(1), size).await {
                held.push(permit);
            }
        }
        assert_eq!(held.len(), 3);
    }
}
