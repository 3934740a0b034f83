//! Which tenant a request is for, decided from its Host and nothing else:
//! the resolved [`Tenant`] with its plan's policy, resolved through the
//! registry (see [`resolver`]) from a host canonicalised by
//! [`crate::domain::host`]. The HTTP extractors that produce these types
//! before a handler runs are in `api/extractors.rs`.

pub mod resolver;

use std::{fmt, sync::Arc};

use axum::http::request::Parts;

use crate::domain::{TenantId, TenantRecord};
use crate::{
    db::Actor,
    error::Result,
    limits::{Bucket, RateLimitSlot, TenantPolicy},
};

/// The active tenant a request is for, and the limits of its plan.
/// Extracting it is what lets a handler open a tenant transaction. It does
/// not count the request against the tenant's rate: [`crate::auth::AuthUser`]
/// does once the token is verified, and [`PublicTenant`] for the routes
/// anyone may call.
#[derive(Clone)]
pub struct Tenant(pub TenantRecord, Arc<TenantPolicy>);

impl Tenant {
    /// A tenant under `policy`, for callers that hold a registry record
    /// outside a request (requests get theirs from the extractor).
    pub fn new(record: TenantRecord, policy: Arc<TenantPolicy>) -> Self {
        Self(record, policy)
    }

    /// The tenant's id.
    pub fn id(&self) -> TenantId {
        self.0.id
    }

    /// The limits the tenant runs under.
    pub fn policy(&self) -> &TenantPolicy {
        &self.1
    }

    /// Someone on the tenant's host without a token (sign-in, registration)
    /// as the actor of a tenant transaction.
    pub fn visitor(&self) -> Actor<'_> {
        Actor::Visitor {
            tenant: self.id(),
            limits: self.policy().limits(),
        }
    }

    /// Counts the request in `parts` against the tenant's `bucket` (429 when
    /// it is used up) and leaves the status for the response headers. Called
    /// once per request, before any tenant transaction.
    pub fn charge(&self, parts: &Parts, bucket: Bucket) -> Result<()> {
        let status = self.1.admit(self.id(), bucket)?;
        if let Some(slot) = parts.extensions.get::<RateLimitSlot>() {
            slot.record(status);
        }
        Ok(())
    }
}

/// The tenant of a route anyone may call (sign-in, registration), counted
/// against the tenant's anonymous budget, so that anonymous traffic can
/// never use up what its signed-in users may do.
#[derive(Debug, Clone)]
pub struct PublicTenant(pub Tenant);

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Tenant")
            .field(&self.0)
            .finish_non_exhaustive()
    }
}

/// A request addressed to the base domain itself (the apex), where tenants are
/// onboarded. Any other host gets a 404 for apex routes.
#[derive(Debug, Clone, Copy)]
pub struct Apex;
