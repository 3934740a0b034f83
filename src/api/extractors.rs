//! Who and what a request is for, as handler arguments: the tenant from the
//! Host ([`Tenant`], [`PublicTenant`]), the apex ([`Apex`]), the signed-in
//! user ([`AuthUser`]) and the per-client throttle of costly routes
//! ([`ClientThrottle`]). The types live with their subjects (`tenant`,
//! `auth`); here they meet the HTTP request and the shared [`AppState`].
//!
//! A handler that serves tenant data declares a [`Tenant`] (or an
//! [`AuthUser`], which contains one): the Host is canonicalised, resolved
//! through the registry and answered 400 for a malformed host, 404 for an
//! unknown one and 403 for a suspended tenant, all before the handler runs
//! and before any tenant data is touched. `X-Forwarded-Host`, `Forwarded` and
//! friends are client-controlled and ignored. [`AuthUser`] then verifies the
//! bearer token for exactly that tenant; every failure is the same 401, the
//! reason logged at debug level.

use std::{marker::PhantomData, net::SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{Version, header::HOST, request::Parts},
};

use super::versions::RequestedVersion;
use crate::{
    auth::{AuthUser, bearer_token},
    domain::{TenantStatus, UserId, host::CanonicalHost},
    error::{ApiError, Result},
    limits::{Bucket, RateLimitSlot, client::CostlyRoute},
    state::AppState,
    telemetry::http::RequestTenant,
    tenant::{Apex, PublicTenant, Tenant, resolver::Resolution},
};

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
            slot.set(record.id, &record.slug, record.ring);
        }
        if let Some(requested) = parts.extensions.get::<RequestedVersion>() {
            requested.pin(record.api_version);
        }
        if record.status == TenantStatus::Suspended {
            return Err(ApiError::TenantSuspended);
        }
        let policy = state.limits.policy(&record);
        let tenant = Tenant::new(record, policy);
        parts.extensions.insert(tenant.clone());
        Ok(tenant)
    }
}

impl FromRequestParts<AppState> for PublicTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let tenant = Tenant::from_request_parts(parts, state).await?;
        tenant.charge(parts, Bucket::Anonymous)?;
        Ok(Self(tenant))
    }
}

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

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let tenant = Tenant::from_request_parts(parts, state).await?;
        let token = bearer_token(&parts.headers).ok_or_else(|| {
            tracing::debug!("missing or malformed Authorization header");
            ApiError::Unauthorized
        })?;
        let claims = state.jwt.verify(token, tenant.id()).map_err(|reason| {
            tracing::debug!(?reason, tenant.id = %tenant.id(), "access token rejected");
            ApiError::Unauthorized
        })?;
        // Only now, with a valid token, does the request count against the
        // tenant's rate: nobody can use up its users' budget without one.
        tenant.charge(parts, Bucket::SignedIn)?;
        let id = UserId::from_uuid(claims.sub);
        tracing::Span::current().record("enduser.id", tracing::field::display(id));
        Ok(Self {
            tenant,
            id,
            role: claims.role,
        })
    }
}

/// Extracting this counts the request against the client's bucket for
/// route `R`, and refuses it with a 429 once the bucket is empty. Handlers
/// list it before anything that touches the database, so a refused request
/// does no database work at all.
#[derive(Debug)]
pub struct ClientThrottle<R>(PhantomData<R>);

impl<R: CostlyRoute> FromRequestParts<AppState> for ClientThrottle<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| *peer);
        let status = state
            .limits
            .clients()
            .admit(R::NAME, &parts.headers, peer)?;
        if let Some(slot) = parts.extensions.get::<RateLimitSlot>() {
            slot.record(status);
        }
        Ok(Self(PhantomData))
    }
}
