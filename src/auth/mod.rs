//! Who is calling: password hashing ([`password`]), access tokens ([`jwt`]),
//! and [`AuthUser`], a signed-in user of a tenant, with the tenant
//! transactions it may act in. The extractor that verifies the bearer token
//! for the request's tenant is in `api/extractors.rs`.

pub mod jwt;
pub mod password;

use crate::domain::{Role, UserId};
use crate::{db::Actor, tenant::Tenant};
use axum::http::{HeaderMap, header::AUTHORIZATION};

/// An authenticated user of the request's tenant.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub tenant: Tenant,
    pub id: UserId,
    pub role: Role,
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
