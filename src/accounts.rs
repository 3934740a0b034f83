//! A tenant's accounts as a use case, shared by registration, onboarding (the
//! owner) and the operator commands: validating a new user, storing it, and
//! the shape in which users are shown.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    auth::password::PasswordHasher,
    db::TenantTx,
    domain::{Email, Password, Role, UserId, Username},
    error::{ApiError, Result, ResultExt},
};

/// A new user's details.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    /// Unique in the tenant, case-insensitively.
    #[schema(example = "alice")]
    pub username: String,
    /// Unique in the tenant, case-insensitively.
    #[schema(example = "alice@acme.test")]
    pub email: String,
    /// 8-128 characters, anything but NUL.
    #[schema(example = "correct horse battery")]
    pub password: String,
}

/// A validated new user, password already hashed.
pub struct NewUser {
    pub username: Username,
    pub email: Email,
    pub password_hash: String,
    pub role: Role,
}

impl NewUserRequest {
    /// Validates the fields (422 naming the first bad one, under `prefix`) and
    /// hashes the password.
    pub async fn validate(
        self,
        hasher: &PasswordHasher,
        prefix: &str,
        role: Role,
    ) -> Result<NewUser> {
        let username = Username::parse(&self.username)
            .map_err(|m| ApiError::invalid(format!("{prefix}username"), m))?;
        let email = Email::parse(&self.email)
            .map_err(|m| ApiError::invalid(format!("{prefix}email"), m))?;
        let password = Password::parse(&self.password)
            .map_err(|m| ApiError::invalid(format!("{prefix}password"), m))?;
        let password_hash = hasher.hash(password).await?;
        Ok(NewUser {
            username,
            email,
            password_hash,
            role,
        })
    }
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserBody {
    pub id: UserId,
    pub username: String,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

impl UserBody {
    /// Reads the columns `id, username, email, role, created_at`.
    pub fn from_row(row: &Row) -> Result<Self> {
        Ok(Self {
            id: UserId::from_uuid(row.try_get("id")?),
            username: row.try_get("username")?,
            email: row.try_get("email")?,
            role: Role::from_db(row.try_get("role")?)?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Inserts a user; a username or email already used in this tenant is a 409.
pub async fn insert_user(tx: &TenantTx<'_>, user: &NewUser) -> Result<UserBody> {
    let row = tx
        .query_one(
            "insert into users (tenant_id, id, username, email, password_hash, role)
             values ($1, $2, $3, $4, $5, $6)
             returning id, username, email, role, created_at",
            &[
                tx.tenant_id().as_uuid(),
                &Uuid::now_v7(),
                &user.username.as_str(),
                &user.email.as_str(),
                &user.password_hash,
                &user.role.as_str(),
            ],
        )
        .await
        .on_constraint("users_tenant_username_key", || {
            ApiError::Conflict("this username is already taken")
        })
        .on_constraint("users_tenant_email_key", || {
            ApiError::Conflict("this email is already registered")
        })?;
    UserBody::from_row(&row)
}
