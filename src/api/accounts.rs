//! Users of a tenant over HTTP: `POST /api/register`, `POST /api/login` and
//! `GET /api/me` (the account use case itself is [`crate::accounts`]).

use axum::{
    Json,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{extract::ApiJson, middleware::RequestId};
use crate::{
    accounts::{NewUserRequest, UserBody, insert_user},
    api::extractors::ClientThrottle,
    audit::{self, Action, Actor, Event},
    auth::AuthUser,
    db::TenantTx,
    domain::{Password, Role, TenantLimits, TenantRecord, UserId, Username},
    error::{ApiError, ErrorResponse, Result},
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
            let created = insert_user(&tx, &user).await?;
            let event = Event::new(
                Actor::Anonymous,
                Action::UserRegistered,
                Some(created.id.to_string()),
            );
            audit::record(&tx, Some(&request_id), &event).await?;
            Ok(created)
        })
        .await?;
    tracing::info!(user.id = %created.id, "user registered");
    Ok((StatusCode::CREATED, Json(created)))
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
                    select_credentials(&tx, &username).await
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
            audit::record(&tx, Some(request_id), &event).await
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
            Ok((select_user(&tx, user.id).await?, select_usage(&tx).await?))
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
