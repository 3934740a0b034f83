//! Users of a tenant: `POST /api/register`, `POST /api/login`, `GET /api/me`,
//! and the `users` queries they (and onboarding) share.

use axum::{
    Json,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{extract::ApiJson, middleware::RequestId};
use crate::{
    api::extractors::ClientThrottle,
    audit::{self, Action, Actor, Event},
    auth::{AuthUser, password::PasswordHasher},
    db::TenantTx,
    domain::{Email, Password, Role, TenantLimits, TenantRecord, UserId, Username},
    error::{ApiError, ErrorResponse, Result, ResultExt},
    limits::client::{Login, Register},
    state::AppState,
    telemetry::metrics::{self, LoginOutcome},
    tenant::{PublicTenant, Tenant},
};

/// Sign-up and sign-in bodies are tiny; refusing big ones early bounds the
/// work an anonymous client can cause.
const AUTH_BODY_LIMIT: usize = 8 * 1024;

/// `/api/register`, `/api/login` and `/api/me`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .layer(DefaultBodyLimit::max(AUTH_BODY_LIMIT))
        .routes(routes!(me))
}

/// A new user's details.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    /// Unique in the tenant, case-insensitively.
    #[schema(
        min_length = 3,
        max_length = 32,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$",
        example = "alice"
    )]
    pub username: String,
    /// Unique in the tenant, case-insensitively.
    #[schema(
        max_length = 254,
        pattern = r"^[^@\x00-\x1f\x7f-\x9f\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]{1,64}@[^@.\x00-\x1f\x7f-\x9f\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+(\.[^@.\x00-\x1f\x7f-\x9f\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+)+$",
        example = "alice@acme.test"
    )]
    pub email: String,
    /// 8-128 characters, anything but NUL.
    #[schema(
        min_length = 8,
        max_length = 128,
        pattern = "^[^\\x00]*$",
        example = "correct horse battery"
    )]
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

/// Registers a member of the Host's tenant.
#[utoipa::path(
    post, path = "/api/register", tag = "accounts",
    extensions(("x-tenantry-host" = json!("tenant")), ("x-tenantry-client-limited" = json!(true))),
    request_body(content = NewUserRequest, example = json!({"username": "carol", "email": "carol@acme.test", "password": "correct horse battery"})),
    responses(
        (status = 201, description = "The new user", body = UserBody),
        (status = 403, description = "The tenant is suspended (`tenant_suspended`), or its plan allows no more users (`quota_exceeded`)", body = ErrorResponse),
        (status = 409, description = "Username or email already taken in this tenant (`conflict`)", body = ErrorResponse),
        (status = 503, description = "Every password-hashing slot is busy (`overloaded`), or the database is unavailable", body = ErrorResponse),
    )
)]
async fn register(
    _throttle: ClientThrottle<Register>,
    PublicTenant(tenant): PublicTenant,
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<NewUserRequest>,
) -> Result<(StatusCode, Json<UserBody>)> {
    let user = body.validate(&state.passwords, "", Role::Member).await?;
    let created = state
        .db
        .transaction(tenant.visitor(), async |tx| {
            let created = insert_user(tx, &user).await?;
            let event = Event::new(
                Actor::Anonymous,
                Action::UserRegistered,
                Some(created.id.to_string()),
            );
            audit::record(tx, Some(&request_id), &event).await?;
            Ok(created)
        })
        .await?;
    tracing::info!(user.id = %created.id, "user registered");
    Ok((StatusCode::CREATED, Json(created)))
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

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    #[schema(example = "alice")]
    username: String,
    #[schema(example = "correct horse battery")]
    password: String,
}

/// An access token.
#[derive(Debug, Serialize, ToSchema)]
struct TokenBody {
    /// Send as `Authorization: Bearer <token>`, on this tenant's host only.
    token: String,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds until the token expires.
    #[schema(example = 3600)]
    expires_in: u64,
}

/// Signs in to the Host's tenant. Unknown users and wrong passwords get the
/// same 401 after the same amount of work.
#[utoipa::path(
    post, path = "/api/login", tag = "accounts",
    extensions(("x-tenantry-host" = json!("tenant")), ("x-tenantry-client-limited" = json!(true))),
    request_body(content = LoginRequest, example = json!({"username": "alice", "password": "alice-demo-password"})),
    responses(
        (status = 200, description = "A bearer token for this tenant", body = TokenBody),
        (status = 401, description = "Wrong username or password (`invalid_credentials`)", body = ErrorResponse),
        (status = 503, description = "Every password-hashing slot is busy (`overloaded`), or the database is unavailable", body = ErrorResponse),
    )
)]
async fn login(
    _throttle: ClientThrottle<Login>,
    PublicTenant(tenant): PublicTenant,
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<TokenBody>> {
    let result = check_login(&tenant, &state, &request_id, body).await;
    let outcome = match &result {
        Ok(_) => LoginOutcome::Success,
        Err(ApiError::InvalidCredentials) => LoginOutcome::InvalidCredentials,
        Err(_) => LoginOutcome::Error,
    };
    metrics::login_attempted(tenant.id(), &tenant.0.slug, outcome);
    result
}

/// The login itself: the token for the right password, else 401.
async fn check_login(
    tenant: &Tenant,
    state: &AppState,
    request_id: &str,
    body: LoginRequest,
) -> Result<Json<TokenBody>> {
    let account = match Username::parse(&body.username) {
        Ok(username) => {
            state
                .db
                .transaction(tenant.visitor(), async |tx| {
                    select_credentials(tx, &username).await
                })
                .await?
        }
        // Cannot exist; still pay for a hash below so timing reveals nothing.
        Err(_) => None,
    };
    let (user, role, hash) = match account {
        Some((user, role, hash)) => (Some(user), role, Some(hash)),
        None => (None, Role::Member, None),
    };
    let verified = state
        .passwords
        .verify(Password::for_login(&body.password), hash)
        .await?;
    // The trail names the account (by id) when one matched, never the username.
    let event = match user.filter(|_| verified) {
        Some(user) => Event::new(
            Actor::User(user),
            Action::LoginSucceeded,
            Some(user.to_string()),
        ),
        None => Event::new(
            Actor::Anonymous,
            Action::LoginFailed,
            user.map(|user| user.to_string()),
        ),
    };
    state
        .db
        .transaction(tenant.visitor(), async |tx| {
            audit::record(tx, Some(request_id), &event).await
        })
        .await?;
    let Some(user) = user.filter(|_| verified) else {
        tracing::info!(tenant.id = %tenant.id(), "login failed");
        return Err(ApiError::InvalidCredentials);
    };
    let issued = state.jwt.mint(user, tenant.id(), role)?;
    tracing::Span::current().record("enduser.id", tracing::field::display(user));
    tracing::info!(user.id = %user, "login succeeded");
    Ok(Json(TokenBody {
        token: issued.token,
        token_type: "Bearer",
        expires_in: issued.expires_in.as_secs(),
    }))
}

async fn select_credentials(
    tx: &TenantTx<'_>,
    username: &Username,
) -> Result<Option<(UserId, Role, String)>> {
    let row = tx
        .query_opt(
            "select id, role, password_hash from users where tenant_id = $1 and lower(username) = lower($2)",
            &[tx.tenant_id().as_uuid(), &username.as_str()],
        )
        .await?;
    row.map(|row| {
        Ok((
            UserId::from_uuid(row.try_get("id")?),
            Role::from_db(row.try_get("role")?)?,
            row.try_get("password_hash")?,
        ))
    })
    .transpose()
}

/// The caller and their tenant.
#[derive(Debug, Serialize, ToSchema)]
struct MeBody {
    user: UserBody,
    tenant: TenantRecord,
    /// What the tenant's plan (and any override) allows.
    limits: TenantLimits,
    /// What the tenant uses of its quotas.
    usage: Usage,
}

/// A tenant's use of its quotas (compare with `limits.max_users` and `limits.max_notes`).
#[derive(Debug, Default, Serialize, ToSchema)]
struct Usage {
    #[schema(example = 3)]
    users: i64,
    #[schema(example = 120)]
    notes: i64,
}

/// The caller and their tenant.
#[utoipa::path(
    get, path = "/api/me", tag = "accounts",
    extensions(("x-tenantry-host" = json!("tenant"))),
    security(("bearer" = [])),
    responses((status = 200, description = "The caller, their tenant, its limits and its usage", body = MeBody))
)]
async fn me(user: AuthUser, State(state): State<AppState>) -> Result<Json<MeBody>> {
    let (found, usage) = state
        .db
        .transaction(user.acting(), async |tx| {
            Ok((select_user(tx, user.id).await?, select_usage(tx).await?))
        })
        .await?;
    let found = found.ok_or(ApiError::Unauthorized)?;
    Ok(Json(MeBody {
        user: found,
        limits: user.tenant.policy().limits().clone(),
        tenant: user.tenant.0,
        usage,
    }))
}

/// The tenant's counters, kept by the `count_tenant_rows` trigger.
async fn select_usage(tx: &TenantTx<'_>) -> Result<Usage> {
    let rows = tx
        .query(
            "select resource, used from usage_counters where tenant_id = $1",
            &[tx.tenant_id().as_uuid()],
        )
        .await?;
    let mut usage = Usage::default();
    for row in rows {
        let used: i64 = row.try_get("used")?;
        match row.try_get::<_, &str>("resource")? {
            "users" => usage.users = used,
            "notes" => usage.notes = used,
            _ => {}
        }
    }
    Ok(usage)
}

async fn select_user(tx: &TenantTx<'_>, id: UserId) -> Result<Option<UserBody>> {
    let row = tx
        .query_opt(
            "select id, username, email, role, created_at from users where tenant_id = $1 and id = $2",
            &[tx.tenant_id().as_uuid(), id.as_uuid()],
        )
        .await?;
    row.as_ref().map(UserBody::from_row).transpose()
}
