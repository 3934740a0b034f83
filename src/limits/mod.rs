//! Noisy-neighbour protection: what each tenant may use, and the in-process
//! rate limiters that enforce request rates.
//!
//! | limit                              | keyed by        | enforced                                   | answer |
//! |------------------------------------|-----------------|--------------------------------------------|--------|
//! | requests per second and burst      | tenant          | once the token is verified ([`crate::auth::AuthUser`]); sign-in and registration in a bucket of their own ([`crate::tenant::PublicTenant`]); before any tenant transaction | 429 `rate_limited` |
//! | login, register, onboarding        | client address  | `ClientThrottle` (`api/extractors.rs`), before the tenant is even looked up | 429 `rate_limited` |
//! | concurrent tenant transactions     | tenant          | [`crate::db::Db::transaction`]             | 429 `tenant_busy` |
//! | `statement_timeout`                | transaction     | [`crate::db::Db::transaction`]             | 503 `unavailable` |
//! | most users, most notes             | tenant          | a trigger, atomically (V3 migration)       | 403 `quota_exceeded` |
//!
//! Rates are GCRA limiters from `governor`, in memory, per instance. With
//! `RATE_LIMIT_INSTANCES = n` every rate and burst is divided by n, so a
//! deployment of at most n instances enforces the configured figures as a
//! global ceiling (see the README). Keys of idle limiters are dropped by
//! [`Limits::sweep`], which the server runs every `RATE_LIMIT_SWEEP_INTERVAL_MS`.

pub mod client;

use std::{
    collections::HashMap,
    hash::Hash,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DefaultKeyedStateStore,
};

use crate::domain::{RateLimitStatus, TenantLimits};
use crate::{
    config::LimitSettings,
    domain::{Plan, TenantId, TenantRecord},
    error::ApiError,
};

/// Which of a tenant's two request budgets a request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Requests with a valid token of the tenant, counted once the token is
    /// verified: nobody without one can use up the signed-in users' budget.
    SignedIn,
    /// Sign-in and registration, before anyone is authenticated.
    Anonymous,
}

/// A tenant's limits, and the limiters of its request rate: one budget for
/// its signed-in users, one of the same size for anonymous requests.
pub struct TenantPolicy {
    limits: TenantLimits,
    signed_in: RequestLimiter<TenantId>,
    anonymous: RequestLimiter<TenantId>,
}

impl TenantPolicy {
    fn new(limits: TenantLimits, instances: u32) -> Self {
        let limiter = || {
            RequestLimiter::new(
                Duration::from_secs(1),
                limits.requests_per_second,
                limits.burst,
                instances,
            )
        };
        Self {
            signed_in: limiter(),
            anonymous: limiter(),
            limits,
        }
    }

    /// What the tenant may use.
    pub fn limits(&self) -> &TenantLimits {
        &self.limits
    }

    /// Counts one request of `tenant` against its `bucket`: the status for
    /// the response headers, or a 429.
    pub fn admit(&self, tenant: TenantId, bucket: Bucket) -> Result<RateLimitStatus, ApiError> {
        match bucket {
            Bucket::SignedIn => self.signed_in.check(&tenant),
            Bucket::Anonymous => self.anonymous.check(&tenant),
        }
    }

    fn limiters(&self) -> [&RequestLimiter<TenantId>; 2] {
        [&self.signed_in, &self.anonymous]
    }
}

/// Every tenant's policy, by plan and by tenant override, and the per-client
/// limiter of the costly unauthenticated routes.
pub struct Limits {
    plans: HashMap<Plan, Arc<TenantPolicy>>,
    /// Tenants with an entry in `TENANT_LIMITS`, by slug, then by plan: an
    /// entry applies on top of the tenant's current plan.
    tenants: HashMap<String, HashMap<Plan, Arc<TenantPolicy>>>,
    clients: client::ClientLimiter,
}

impl Limits {
    /// Builds every policy up front: the configuration is fixed for the
    /// process's life, so no request ever builds a limiter.
    pub fn new(settings: &LimitSettings) -> Self {
        let instances = settings.instances;
        let plans: HashMap<Plan, Arc<TenantPolicy>> = Plan::ALL
            .into_iter()
            .map(|plan| {
                let policy = TenantPolicy::new(settings.document.plan(plan), instances);
                (plan, Arc::new(policy))
            })
            .collect();
        let tenants = settings
            .document
            .tenant_overrides()
            .map(|(slug, changes)| {
                let by_plan = Plan::ALL
                    .into_iter()
                    .map(|plan| {
                        let limits = changes.applied_to(settings.document.plan(plan));
                        (plan, Arc::new(TenantPolicy::new(limits, instances)))
                    })
                    .collect();
                (slug.to_owned(), by_plan)
            })
            .collect();
        Self {
            plans,
            tenants,
            clients: client::ClientLimiter::new(&settings.client, instances),
        }
    }

    /// The policy of the tenant `record` describes: its override if it has
    /// one, else its plan's.
    pub fn policy(&self, record: &TenantRecord) -> Arc<TenantPolicy> {
        let plan = record.plan;
        self.tenants
            .get(&record.slug)
            .and_then(|by_plan| by_plan.get(&plan))
            .unwrap_or_else(|| self.plan_policy(plan))
            .clone()
    }

    /// The policy of a tenant on `plan` without an override of its own.
    pub fn plan_policy(&self, plan: Plan) -> &Arc<TenantPolicy> {
        // Every plan has a policy: `new` builds one per `Plan::ALL`.
        &self.plans[&plan]
    }

    /// The per-client limiter of the costly unauthenticated routes.
    pub fn clients(&self) -> &client::ClientLimiter {
        &self.clients
    }

    /// Forgets the rate-limit state of keys that are idle (whose buckets
    /// are full again), so that memory follows the number of recently active
    /// tenants and clients, not of every key ever seen.
    pub fn sweep(&self) {
        for limiter in self.policies().flat_map(|policy| policy.limiters()) {
            limiter.sweep();
        }
        self.clients.sweep();
    }

    /// Every policy: the plans' and the overrides'.
    fn policies(&self) -> impl Iterator<Item = &Arc<TenantPolicy>> {
        self.plans
            .values()
            .chain(self.tenants.values().flat_map(HashMap::values))
    }

    /// Keys currently remembered by all limiters (a gauge for tests and logs).
    pub fn tracked_keys(&self) -> usize {
        let tenants: usize = self
            .policies()
            .flat_map(|policy| policy.limiters())
            .map(RequestLimiter::len)
            .sum();
        tenants + self.clients.len()
    }
}

/// Where the limiters of one request leave their status, for the
/// `rate_limit_headers` middleware to put on the response.
#[derive(Debug, Clone, Default)]
pub struct RateLimitSlot(Arc<Mutex<Option<RateLimitStatus>>>);

impl RateLimitSlot {
    /// Records `status`, keeping the tighter one if a status is already there.
    pub fn record(&self, status: RateLimitStatus) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(slot.map_or(status, |earlier| earlier.tighter(status)));
        }
    }

    /// The status recorded for this request, if any limiter checked it.
    pub fn status(&self) -> Option<RateLimitStatus> {
        self.0.lock().ok().and_then(|slot| *slot)
    }
}

type KeyedLimiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// A GCRA limiter over keys of type `K`: `rate` requests per `unit`,
/// `burst` at once, both divided among `instances`.
pub struct RequestLimiter<K: Hash + Eq + Clone> {
    limiter: KeyedLimiter<K>,
    limit: u32,
}

impl<K: Hash + Eq + Clone> RequestLimiter<K> {
    /// A limiter of `rate` requests per `unit` with bursts of `burst`, for
    /// one of `instances` instances.
    pub fn new(unit: Duration, rate: u32, burst: u32, instances: u32) -> Self {
        let instances = instances.max(1);
        let burst = NonZeroU32::new(burst.div_ceil(instances)).unwrap_or(NonZeroU32::MIN);
        // One request per `unit × instances / rate`; an absurdly high rate
        // rounds to a zero period, which means "no limit worth enforcing".
        let period = unit
            .saturating_mul(instances)
            .checked_div(rate.max(1))
            .unwrap_or(unit);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        Self {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            limit: burst.get(),
        }
    }

    /// Counts one request for `key`.
    pub fn check(&self, key: &K) -> Result<RateLimitStatus, ApiError> {
        match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let refill = snapshot.quota().replenish_interval();
                Ok(RateLimitStatus {
                    limit: self.limit,
                    remaining,
                    reset: refill.saturating_mul(self.limit.saturating_sub(remaining)),
                })
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(self.limiter.clock().now());
                let refill = not_until.quota().replenish_interval();
                Err(ApiError::RateLimited {
                    retry_after,
                    status: RateLimitStatus {
                        limit: self.limit,
                        remaining: 0,
                        reset: retry_after
                            .saturating_add(refill.saturating_mul(self.limit.saturating_sub(1))),
                    },
                })
            }
        }
    }

    /// Drops the state of idle keys and gives the memory back.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limiter_allows_its_burst_then_refuses_with_the_wait() {
        let limiter = RequestLimiter::new(Duration::from_secs(1), 1, 3, 1);
        let first = limiter.check(&"a").expect("first");
        assert_eq!((first.limit, first.remaining), (3, 2));
        limiter.check(&"a").expect("second");
        limiter.check(&"a").expect("third");
        let Err(ApiError::RateLimited {
            retry_after,
            status,
        }) = limiter.check(&"a")
        else {
            panic!("the fourth request is limited");
        };
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1));
        assert_eq!(status.remaining, 0);
        limiter.check(&"b").expect("another key has its own bucket");
    }

    #[test]
    fn instances_share_the_configured_figures() {
        let limiter = RequestLimiter::new(Duration::from_secs(1), 100, 10, 4);
        let status = limiter.check(&1).expect("first");
        assert_eq!(
            status.limit, 3,
            "a burst of 10 over 4 instances rounds up to 3"
        );
    }
}
