//! Onboarding: `POST /api/tenants` on the apex host creates a tenant and its
//! owner user in one transaction, bound to the new tenant from its first
//! statement. Either both exist afterwards or neither does.

use axum::{
    Json,
    extract::{DefaultBodyLimit, FromRequestParts, State},
    http::{StatusCode, request::Parts},
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{extract::ApiJson, middleware::RequestId};

use crate::accounts::{NewUserRequest, UserBody};
use crate::{
    api::extractors::ClientThrottle,
    audit::Actor,
    auth::bearer_token,
    config::SignupMode,
    domain::{ApiVersion, Plan, Ring, TenantRecord, TenantStatus},
    error::{ApiError, ErrorResponse, Result},
    limits::client::Onboarding,
    onboarding::{self, NewTenant, Registrar},
    state::AppState,
    tenant::Apex,
};

const ONBOARDING_BODY_LIMIT: usize = 8 * 1024;

/// 422 for a sign-up that asks for a plan other than the default.
const SIGNUP_PLAN_ONLY: &str = "sign-up starts on the free plan; an operator changes plans \
     (`tenantry tenants plan`, `PATCH /admin/tenants/{slug}`)";

/// `/api/tenants`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant))
        .layer(DefaultBodyLimit::max(ONBOARDING_BODY_LIMIT))
}

/// The body of `POST /api/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnboardingRequest {
    /// The tenant's subdomain label: 3-63 of `a-z 0-9 -`, starting with a
    /// letter, not ending with `-`, without `--`. Reserved names such as `www`,
    /// `api` or `admin` are answered like a taken slug (409).
    #[schema(example = "initech")]
    pub slug: String,
    /// Display name, 1-100 characters, not only whitespace, no control
    /// characters; stored trimmed.
    #[schema(example = "Initech")]
    pub name: String,
    /// Sign-up always starts on `free` (the only value accepted here); an
    /// operator moves a tenant to another plan. Any other plan is a 422.
    #[schema(value_type = Option<SignupPlan>)]
    pub plan: Option<String>,
    /// The tenant's first user, with the `owner` role.
    pub owner: NewUserRequest,
}

/// The plans sign-up accepts: the default one only. The request keeps the
/// field a string so that another plan gets a 422 that says why, while the
/// OpenAPI document tells clients (and the fuzzer) the one valid value.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[expect(dead_code, reason = "an OpenAPI schema only; requests parse `Plan`")]
enum SignupPlan {
    Free,
}

/// A tenant just onboarded.
#[derive(Debug, Serialize, ToSchema)]
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

/// Onboards a tenant and its owner, atomically.
#[utoipa::path(
    post, path = "/api/tenants", tag = "onboarding",
    extensions(("x-tenantry-host" = json!("apex")), ("x-tenantry-client-limited" = json!(true))),
    security((), ("admin" = [])),
    request_body(content = OnboardingRequest, example = json!({
        "slug": "initech", "name": "Initech",
        "owner": {"username": "peter", "email": "peter@initech.test", "password": "correct horse battery"}
    })),
    responses(
        (status = 201, description = "The tenant, its host and its owner", body = OnboardingBody),
        (status = 401, description = "SIGNUP_MODE=admin and the admin token is missing or wrong (`unauthorized`)", body = ErrorResponse),
        (status = 409, description = "The slug is taken or reserved (`conflict`)", body = ErrorResponse),
        (status = 503, description = "Every password-hashing slot is busy (`overloaded`), or the database is unavailable", body = ErrorResponse),
    )
)]
async fn create_tenant(
    _throttle: ClientThrottle<Onboarding>,
    _allowed: OnboardingAllowed,
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    ApiJson(body): ApiJson<OnboardingRequest>,
) -> Result<(StatusCode, Json<OnboardingBody>)> {
    // In the default admin-only mode, the admin token authorised this
    // sign-up; the runtime role still may not record an operator as the
    // actor, so it is the service (`system`) vouching for the token.
    let by = match state.signup.as_ref() {
        SignupMode::AdminOnly { .. } => Actor::System,
        SignupMode::Open => Actor::Anonymous,
    };
    let onboarded = onboard(&state, body, by, Some(&request_id)).await?;
    Ok((StatusCode::CREATED, Json(onboarded)))
}

/// Validates and onboards a tenant with its owner, atomically. Shared by the
/// HTTP route and `tenantry dev`'s demo data.
pub async fn onboard(
    state: &AppState,
    body: OnboardingRequest,
    by: Actor,
    request_id: Option<&str>,
) -> Result<OnboardingBody> {
    // Anyone may sign up (with open sign-up): what they get is the default
    // plan, and only an operator moves a tenant to another.
    let plan = body
        .plan
        .as_deref()
        .map(Plan::parse)
        .transpose()
        .map_err(|m| ApiError::invalid("plan", m))?;
    if plan.is_some_and(|plan| plan != Plan::default()) {
        return Err(ApiError::invalid("plan", SIGNUP_PLAN_ONLY));
    }
    let tenant = NewTenant::parse(&body.slug, &body.name, body.owner, &state.passwords).await?;
    let record = TenantRecord {
        id: tenant.id,
        slug: tenant.slug.to_string(),
        name: tenant.name.as_str().to_owned(),
        plan: Plan::default(),
        status: TenantStatus::Active,
        // What the registry's defaults give a new tenant (V8).
        ring: Ring::default(),
        api_version: ApiVersion::NEWEST,
    };
    let policy = state.limits.policy(&record);
    let registrar = Registrar::SignUp {
        db: &state.db,
        limits: policy.limits(),
        by,
    };
    let onboarded = onboarding::onboard(&tenant, registrar, request_id).await?;
    let host = format!("{}.{}", record.slug, state.tenants.base_domain());
    // This instance may have cached "no such tenant" for the host a moment ago.
    state.tenants.forget(&host);
    Ok(OnboardingBody {
        tenant: record,
        host,
        owner: onboarded.owner,
    })
}
