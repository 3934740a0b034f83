//! Which tenant a request is for, decided from its Host and nothing else.
//!
//! Handlers that serve tenant data declare a [`Tenant`] (or an
//! [`crate::auth::AuthUser`], which contains one) in their signature; the
//! extractor canonicalises the Host (see [`host`]), resolves it through the
//! registry (see [`resolver`]) and answers 400 for a malformed host, 404 for an
//! unknown one and 403 for a suspended tenant, all before the handler runs and
//! before any tenant data is touched. `X-Forwarded-Host`, `Forwarded` and
//! friends are client-controlled and ignored.

pub mod resolver;

use std::{fmt, sync::Arc};

use self::resolver::Resolution;
use axum::{
    extract::FromRequestParts,
    http::{Version, header::HOST, request::Parts},
};

use crate::domain::host::CanonicalHost;
use crate::domain::{TenantId, TenantRecord, TenantStatus};
use crate::{
    db::Actor,
    error::{ApiError, Result},
    limits::{Bucket, RateLimitSlot, TenantPolicy},
    startup::AppState,
    telemetry::http::RequestTenant,
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

impl FromRequestParts<AppState> for PublicTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let tenant = Tenant::from_request_parts(parts, state).await?;
        tenant.charge(parts, Bucket::Anonymous)?;
        Ok(Self(tenant))
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Tenant")
            .field(&self.0)
            .finish_non_exhaustive()
    }
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        if let Some(tenant) = parts.extensions.get::<Tenant>() {
            return Ok(tenant.clone());
        }
        let host = request_host(parts)?;
        let record = match state.tenants.resolve(&host).await? {
            Resolution::Tenant(record) => record,
            Resolution::Apex | Resolution::Unknown => return Err(ApiError::UnknownTenant),
        };
        let span = tracing::Span::current();
        span.record("tenant.id", tracing::field::display(record.id));
        span.record("tenant.slug", record.slug.as_str());
        if let Some(slot) = parts.extensions.get::<RequestTenant>() {
            slot.set(record.id, &record.slug);
        }
        if record.status == TenantStatus::Suspended {
            return Err(ApiError::TenantSuspended);
        }
        let policy = state.limits.policy(&record);
        let tenant = Tenant(record, policy);
        parts.extensions.insert(tenant.clone());
        Ok(tenant)
    }
}

/// A request addressed to the base domain itself (the apex), where tenants are
/// onboarded. Any other host gets a 404 for apex routes.
#[derive(Debug, Clone, Copy)]
pub struct Apex;

impl FromRequestParts<AppState> for Apex {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let host = request_host(parts)?;
        match state.tenants.resolve(&host).await? {
            Resolution::Apex => Ok(Apex),
            Resolution::Tenant(_) | Resolution::Unknown => {
                Err(ApiError::NotFound("route not found"))
            }
        }
    }
}

/// The request's canonical host: the absolute-form or HTTP/2 `:authority` if
/// present, else the one Host header. Missing, repeated, malformed or
/// disagreeing values are a 400; HTTP/1.1 requires Host even with an
/// absolute-form target (RFC 9112 §3.2).
fn request_host(parts: &Parts) -> Result<CanonicalHost> {
    let mut headers = parts.headers.get_all(HOST).iter();
    let header = headers.next();
    if headers.next().is_some() || (header.is_none() && parts.version == Version::HTTP_11) {
        return Err(ApiError::InvalidHost);
    }
    let header = header
        .map(|value| value.to_str().map_err(|_| ApiError::InvalidHost))
        .transpose()?
        .map(|value| CanonicalHost::parse(value).map_err(|_| ApiError::InvalidHost))
        .transpose()?;
    let authority = parts
        .uri
        .authority()
        .map(|authority| {
            CanonicalHost::parse(authority.as_str()).map_err(|_| ApiError::InvalidHost)
        })
        .transpose()?;
    match (authority, header) {
        (Some(authority), Some(header)) if authority != header => Err(ApiError::InvalidHost),
        (Some(host), _) | (None, Some(host)) => Ok(host),
        (None, None) => Err(ApiError::InvalidHost),
    }
}
