//! Who is calling: password hashing ([`password`]), access tokens ([`jwt`]),
//! and the [`AuthUser`] extractor that handlers of a user's data declare.
//!
//! [`AuthUser`] first resolves the [`Tenant`] from the Host (so an unknown or
//! suspended tenant is answered before any token is looked at), then verifies
//! the bearer token for exactly that tenant. Every failure is the same 401 to
//! the client; the reason is logged at debug level.

pub mod jwt;
pub mod password;

use crate::domain::{Role, UserId};
use crate::{
    db::Actor,
    error::{ApiError, Result},
    limits::Bucket,
    startup::AppState,
    tenant::Tenant,
};
use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, header::AUTHORIZATION, request::Parts},
};

/// An authenticated user of the request's tenant.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub tenant: Tenant,
    pub id: UserId,
    pub role: Role,
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

impl AuthUser {
    /// The user as the actor of a tenant transaction, which confirms in the
    /// same transaction that the user still exists: a removed user's token
    /// authenticates nobody (401, and whatever the work did is rolled back).
    pub fn acting(&self) -> Actor<'_> {
        Actor::User {
            tenant: self.tenant.id(),
            user: self.id,
            limits: self.tenant.policy().limits(),
        }
    }

    /// The user acting as the tenant's owner: a member gets a 403, and the
    /// work does not even start until the user's current role is known.
    pub fn acting_as_owner(&self) -> Actor<'_> {
        Actor::Owner {
            tenant: self.tenant.id(),
            user: self.id,
            limits: self.tenant.policy().limits(),
        }
    }
}

/// The token of a single `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
