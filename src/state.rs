//! The state every handler shares, built once by [`crate::startup`].
//!
//! It sits above the use cases and below the HTTP API: handlers and
//! extractors read it; nothing below the API imports it.

use std::sync::Arc;

use secrecy::SecretString;

use crate::{
    admin::Admin,
    auth::{jwt::JwtKeys, password::PasswordHasher},
    config::SignupMode,
    db::Db,
    limits::Limits,
    tenant::resolver::TenantResolver,
};

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub tenants: Arc<TenantResolver>,
    pub jwt: Arc<JwtKeys>,
    pub passwords: Arc<PasswordHasher>,
    pub signup: Arc<SignupMode>,
    /// The `/admin` API, when `ADMIN_DATABASE_URL` enables it.
    pub admin: Option<Arc<AdminApi>>,
    /// Rate limits and plan limits.
    pub limits: Arc<Limits>,
}

/// What the `/admin` API needs: its token and the operator operations.
pub struct AdminApi {
    pub token: SecretString,
    pub ops: Admin,
}
