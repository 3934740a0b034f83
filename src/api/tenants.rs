//! Onboarding: `POST /api/tenants` on the apex host creates a tenant and its
//! owner user in one transaction, bound to the new tenant from its first
//! statement. Either both exist afterwards or neither does.

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, FromRequestParts, State},
    http::{StatusCode, request::Parts},
    routing::post,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    accounts::{NewUserRequest, UserBody, insert_user},
    extract::ApiJson,
};
use crate::{
    auth::{Role, bearer_token},
    config::SignupMode,
    db::TenantTx,
    domain::{Plan, Slug, TenantName},
    error::{ApiError, Result, ResultExt},
    startup::AppState,
    tenant::{Apex, TenantId, TenantRecord, TenantStatus},
};

const ONBOARDING_BODY_LIMIT: usize = 8 * 1024;

/// `/api/tenants`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/tenants", post(create_tenant))
        .layer(DefaultBodyLimit::max(ONBOARDING_BODY_LIMIT))
}

/// The body of `POST /api/tenants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardingRequest {
    pub slug: String,
    pub name: String,
    pub plan: Option<String>,
    pub owner: NewUserRequest,
}

/// A tenant just onboarded.
#[derive(Debug, Serialize)]
pub struct OnboardingBody {
    pub tenant: TenantRecord,
    /// Where the tenant is served: `{slug}.{BASE_DOMAIN}`.
    pub host: String,
    pub owner: UserBody,
}

/// Permission to onboard: the request is on the apex host and, in admin-only
/// sign-up mode, carries the admin token. Checked before the body is read.
struct OnboardingAllowed;

impl FromRequestParts<AppState> for OnboardingAllowed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        Apex::from_request_parts(parts, state).await?;
        match state.signup.as_ref() {
            SignupMode::Open => Ok(Self),
            SignupMode::AdminOnly { admin_token } => {
                let presented = bearer_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
                // Compare digests so the comparison time says nothing about the token.
                let matches = Sha256::digest(presented.as_bytes())
                    == Sha256::digest(admin_token.expose_secret().as_bytes());
                if matches {
                    Ok(Self)
                } else {
                    Err(ApiError::Unauthorized)
                }
            }
        }
    }
}

/// `POST /api/tenants`: 201 with the tenant, its host and its owner.
async fn create_tenant(
    _allowed: OnboardingAllowed,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<OnboardingRequest>,
) -> Result<(StatusCode, Json<OnboardingBody>)> {
    let onboarded = onboard(&state, body).await?;
    Ok((StatusCode::CREATED, Json(onboarded)))
}

/// Validates and onboards a tenant with its owner, atomically. Shared by the
/// HTTP route and `tenantry dev`'s demo data.
pub async fn onboard(state: &AppState, body: OnboardingRequest) -> Result<OnboardingBody> {
    let slug = Slug::parse(&body.slug).map_err(|m| ApiError::invalid("slug", m))?;
    let name = TenantName::parse(&body.name).map_err(|m| ApiError::invalid("name", m))?;
    let plan = body
        .plan
        .as_deref()
        .map(Plan::parse)
        .transpose()
        .map_err(|m| ApiError::invalid("plan", m))?;
    let owner = body.owner.validate(state, "owner.", Role::Owner).await?;
    let tenant = TenantRecord {
        id: TenantId::from_uuid(Uuid::now_v7()),
        slug: slug.to_string(),
        name: name.as_str().to_owned(),
        plan: plan.unwrap_or_default().as_str().to_owned(),
        status: TenantStatus::Active,
    };
    let owner = state
        .db
        .with_tenant(tenant.id, async |tx| {
            insert_tenant(tx, &tenant).await?;
            insert_user(tx, &owner).await
        })
        .await?;
    tracing::info!(tenant.id = %tenant.id, tenant.slug = %tenant.slug, "tenant onboarded");
    let host = format!("{}.{}", tenant.slug, state.tenants.base_domain());
    // This instance may have cached "no such tenant" for the host a moment ago.
    state.tenants.forget(&host);
    Ok(OnboardingBody {
        tenant,
        host,
        owner,
    })
}

/// Registers the tenant through the registry's `create_tenant`, which only
/// works inside a transaction bound to that same tenant.
async fn insert_tenant(tx: &TenantTx<'_>, tenant: &TenantRecord) -> Result<()> {
    tx.execute(
        "select create_tenant($1, $2, $3, $4)",
        &[
            tenant.id.as_uuid(),
            &tenant.slug,
            &tenant.name,
            &tenant.plan,
        ],
    )
    .await
    .on_constraint("tenants_slug_key", || {
        ApiError::Conflict("this slug is already taken")
    })?;
    Ok(())
}
