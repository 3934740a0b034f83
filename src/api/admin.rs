//! The `/admin` API: the operator surface over HTTP, on the apex host, for
//! the `ADMIN_TOKEN` bearer only. Enabled by `ADMIN_DATABASE_URL`; without
//! it every `/admin` route answers 404 as an unknown route would. Every
//! operation calls the same [`crate::admin::Admin`] method as the CLI.
//!
//! Exports and imports are CLI-only: they move files of any size, which a
//! request body limit and deadline do not fit.
//!
//! Over 400 lines: one handler per `/admin` route, each a few lines, with the
//! OpenAPI annotation that documents it beside it.

use axum::{
    Json,
    extract::{FromRequestParts, Query, State, rejection::QueryRejection},
    http::{HeaderMap, StatusCode, request::Parts},
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::{ApiJson, ApiPath},
    middleware::RequestId,
};

use crate::paging::{Page, PageQuery};
use crate::{
    admin::{
        Admin, TenantSummary,
        domains::DomainBody,
        purge::{DEFAULT_BATCH_SIZE, PurgeReport},
        tenants::{CreatedTenant, NewTenantRequest, TenantChange, TenantDetail},
    },
    auth::bearer_token,
    db::analytics::UsageReport,
    domain::{ApiVersion, Invalid, Plan, Ring, TenantStatus},
    error::{ApiError, ErrorResponse, Result},
    state::AppState,
    tenant::Apex,
};

/// How the platform audit log names this surface.
const ACTOR: &str = "admin-api";

/// `/admin/...`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(show_tenant, update_tenant, purge_tenant))
        .routes(routes!(list_domains, add_domain))
        .routes(routes!(remove_domain))
        .routes(routes!(verify_domain))
        .routes(routes!(usage))
}

/// A caller holding the admin token, on the apex host, with the admin API
/// enabled. Checked before any body is read.
struct AdminCaller(Admin);

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let Some(api) = state.admin.as_ref() else {
            return Err(ApiError::NotFound("route not found"));
        };
        Apex::from_request_parts(parts, state).await?;
        let presented = bearer_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        // Compare digests so the comparison time says nothing about the token.
        if Sha256::digest(presented.as_bytes())
            == Sha256::digest(api.token.expose_secret().as_bytes())
        {
            Ok(Self(api.ops.clone()))
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// A page of tenants, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct TenantPage {
    tenants: Vec<TenantSummary>,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// Lists tenants (recorded in the platform audit log).
#[utoipa::path(
    get, path = "/admin/tenants", tag = "admin",
    extensions(("x-tenantry-host" = json!("apex"))),
    security(("admin" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of tenants", body = TenantPage),
        (status = 422, description = "`limit` out of range (`validation_failed`)", body = ErrorResponse),
    )
)]
async fn list_tenants(
    AdminCaller(admin): AdminCaller,
    RequestId(request_id): RequestId,
    page: Page,
) -> Result<Json<TenantPage>> {
    let mut tenants = admin.list_tenants(page, Some(&request_id)).await?;
    let next_cursor = page.finish(&mut tenants, |tenant| {
        (tenant.created_at, *tenant.id.as_uuid())
    });
    Ok(Json(TenantPage {
        tenants,
        next_cursor,
    }))
}

/// Creates a tenant, its owner and optionally a pending custom domain, in one
/// transaction. With an `Idempotency-Key`, repeating the same request returns
/// the tenant it created (200, `replayed: true`) instead of a conflict.
#[utoipa::path(
    post, path = "/admin/tenants", tag = "admin", operation_id = "admin_create_tenant",
    extensions(("x-tenantry-host" = json!("apex"))),
    security(("admin" = [])),
    params(IdempotencyKey),
    request_body(content = NewTenantRequest, example = json!({
        "slug": "initech", "name": "Initech", "plan": "pro",
        "owner": {"username": "peter", "email": "peter@initech.test", "password": "correct horse battery"},
        "domain": "notes.initech.io"
    })),
    responses(
        (status = 201, description = "Created", body = CreatedTenant),
        (status = 200, description = "Created earlier by a request with the same idempotency key", body = CreatedTenant),
        (status = 409, description = "The slug or domain is taken, or the idempotency key was used for another request (`conflict`)", body = ErrorResponse),
        (status = 422, description = "A field is invalid (`validation_failed`)", body = ErrorResponse),
        (status = 503, description = "Every password-hashing slot is busy (`overloaded`), or the database is unavailable", body = ErrorResponse),
    )
)]
async fn create_tenant(
    AdminCaller(admin): AdminCaller,
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewTenantRequest>,
) -> Result<(StatusCode, Json<CreatedTenant>)> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| {
                    ApiError::invalid(
                        "Idempotency-Key",
                        "an idempotency key is 1-200 printable ASCII characters",
                    )
                })?
                .to_owned(),
        ),
    };
    let new = body
        .validate(&state.passwords, &admin.base_domain, key)
        .await?;
    let created = admin.create_tenant(new, Some(&request_id)).await?;
    let host = format!("{}.{}", created.tenant.slug, admin.base_domain);
    // This instance may have cached "no such tenant" for the host a moment ago.
    state.tenants.forget(&host);
    let status = if created.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(created)))
}

/// A tenant, with its row counts and custom domains.
#[utoipa::path(
    get, path = "/admin/tenants/{slug}", tag = "admin",
    extensions(("x-tenantry-host" = json!("apex"))),
    security(("admin" = [])),
    params(("slug" = String, Path, description = "The tenant's slug")),
    responses(
        (status = 200, description = "The tenant", body = TenantDetail),
        (status = 404, description = "No such tenant (`not_found`)", body = ErrorResponse),
    )
)]
async fn show_tenant(
    AdminCaller(admin): AdminCaller,
    ApiPath(slug): ApiPath<String>,
) -> Result<Json<TenantDetail>> {
    Ok(Json(admin.show_tenant(&slug).await?))
}

/// The body of `PATCH /admin/tenants/{slug}`; an absent (or null) field is
/// left as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TenantUpdate {
    #[schema(value_type = Option<Plan>)]
    plan: Option<String>,
    /// `suspended` refuses the tenant's requests from the next one on, even
    /// with tokens already issued; `active` resumes it.
    #[schema(value_type = Option<TenantStatus>)]
    status: Option<String>,
    /// The release ring whose revision serves the tenant, once the exported
    /// Terraform values are applied.
    #[schema(value_type = Option<Ring>)]
    ring: Option<String>,
    /// The dated API version the tenant's requests are answered in unless
    /// they name one (`Api-Version`).
    #[schema(value_type = Option<ApiVersion>)]
    api_version: Option<String>,
}

/// Changes a tenant's plan, status (suspend, resume), release ring and/or
/// API version, in one transaction, each change recorded in the tenant's
/// audit trail.
#[utoipa::path(
    patch, path = "/admin/tenants/{slug}", tag = "admin",
    extensions(("x-tenantry-host" = json!("apex"))),
    security(("admin" = [])),
    params(("slug" = String, Path, description = "The tenant's slug")),
    request_body(content = TenantUpdate, example = json!({"plan": "enterprise"})),
    responses(
        (status = 200, description = "The tenant as it is now", body = TenantSummary),
        (status = 404, description = "No such tenant (`not_found`)", body = ErrorResponse),
        (status = 422, description = "An unknown plan, status, ring or API version (`validation_failed`)", body = ErrorResponse),
    )
)]
async fn update_tenant(
    AdminCaller(admin): AdminCaller,
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    ApiPath(slug): ApiPath<String>,
    ApiJson(body): ApiJson<TenantUpdate>,
) -> Result<Json<TenantSummary>> {
    let change = TenantChange {
        plan: parse_field(body.plan.as_deref(), "plan", Plan::parse)?,
        status: body.status.as_deref().map(parse_status).transpose()?,
        ring: parse_field(body.ring.as_deref(), "ring", Ring::parse)?,
        api_version: parse_field(
            body.api_version.as_deref(),
            "api_version",
            ApiVersion::parse,
        )?,
    };
    let updated = admin
        .update_tenant(&slug, change, Some(&request_id))
        .await?;
    state
        .tenants
        .forget(&format!("{}.{}", updated.slug, admin.base_domain));
    Ok(Json(updated))
}

/// An optional field of a request body, parsed; a 422 naming it if it is
/// not one of its values.
fn parse_field<T>(
    raw: Option<&str>,
    field: &'static str,
    parse: impl Fn(&str) -> std::result::Result<T, Invalid>,
) -> Result<Option<T>> {
    raw.map(parse)
        .transpose()
        .map_err(|message| ApiError::invalid(field, message))
}

fn parse_status(raw: &str) -> Result<TenantStatus> {
    match raw {
        "active" => Ok(TenantStatus::Active),
        "suspended" => Ok(TenantStatus::Suspended),
        _ => Err(ApiError::invalid(
            "status",
            "status must be one of: active, suspended",
        )),
    }
}

/// Options of a purge.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PurgeQuery {
    /// Rows per transaction (default 5000); a tenant with more rows is purged
    /// in resumable batches.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100_000)]
    batch_size: Option<String>,
}

/// Purges a suspended tenant: every row in every tenant table, then its
/// registry row. Other tenants are untouched. Large tenants are purged in
/// batches; if the request fails half-way, repeat it to finish (or use
/// `tenantry tenants purge`, which has no request deadline).
#[utoipa::path(
    delete, path = "/admin/tenants/{slug}", tag = "admin",
    extensions(("x-tenantry-host" = json!("apex"))),
    security(("admin" = [])),
    params(("slug" = String, Path, description = "The tenant's slug"), PurgeQuery),
    responses(
        (status = 200, description = "What was removed", body = PurgeReport),
        (status = 404, description = "No such tenant (`not_found`)", body = ErrorResponse),
        (status = 409, description = "The tenant is not suspended (`conflict`)", body = ErrorResponse),
        (status = 422, description = "`batch_size` out of range (`validation_failed`)", body = ErrorResponse),
    )
)]
async fn purge_tenant(
    AdminCaller(admin): AdminCaller,
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    ApiPath(slug): ApiPath<String>,
    query: std::result::Result<Query<PurgeQuery>, QueryRejection>,
) -> Result<Json<PurgeReport>> {
    let Ok(Query(query)) = query else {
        return Err(ApiError::BadRequest("malformed query string".to_owned()));
    };
    let batch_size = match query.batch_size.as_deref() {
        None => DEFAULT_BATCH_SIZE,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|size| (1..=100_000).contains(size))
            .ok_or_else(|| {
                ApiError::invalid(
                    "batch_size",
                    "batch_size must be an integer between 1 and 100000",
                )
            })?,
    };
    let report = admin
        .purge_tenant(&slug, batch_size, Some(&request_id))
        .await?;
    state
        .tenants
        .forget(&format!("{}.{}", report.tenant.slug, admin.base_domain));
    Ok(Json(report))
}

/// A tenant's custom domains.
#[derive(Debug, Serialize, ToSchema)]
struct DomainList {
    domains: Vec<DomainBody>,
}

/// Lists a tenant's custom domains, verified or pending.
#[utoipa::path(
    get, path = "/admin/tenants/{slug}/domains", tag = "admin",
    extensions(("x-tenantry-host" = json!("apex"))),
    security(("admin" = [])),
    params(("slug" = String, Path, description = "The tenant's slug")),
    responses(
        (status = 200, description = "The domains", body = DomainList),
        (status = 404, description = "No such tenant (`not_found`)", body = ErrorResponse),
    )
)]
async fn list_domains(
    AdminCaller(admin): AdminCaller,
    ApiPath(slug): ApiPath<String>,
) -> Result<Json<DomainList>> {
    Ok(Json(DomainList {
        domains: admin.list_domains(&slug).await?,
    }))
}

/// The body of `POST /admin/tenants/{slug}/domains`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewDomain {
    /// A DNS name outside the base domain (which is the service's own: 409).
    #[schema(example = "notes.acme.io")]
    domain: String,
}

/// The path of one custom domain of one tenant.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct DomainPath {
    /// The tenant's slug.
    slug: String,
    /// The custom domain.
    domain: String,
}

/// The `Idempotency-Key` header of `POST /admin/tenants`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
struct IdempotencyKey {
    /// Chosen by the client: 1-200 printable ASCII characters, no spaces.
    /// Repeating a request with the same key returns what the first one created.
    #[serde(rename = "Idempotency-Key")]
    #[param(min_length = 1, max_length = 200, pattern = r"^[!-~]{1,200}$")]
    #[allow(dead_code, reason = "read from the headers; declared for the document")]
    idempotency_key: Option<String>,
}

/// Adds a custom domain, pending: it routes once its TXT record is published
/// and verified.
#[utoipa::path(
    post, path = "/admin/tenants/{slug}/domains", tag = "admin",
    extensions(("x-tenantry-host" = json!("apex"))),
    security(("admin" = [])),
    params(("slug" = String, Path, description = "The tenant's slug")),
    request_body(content = NewDomain, example = json!({"domain": "notes.acme.io"})),
    responses(
        (status = 201, description = "Added, pending verification: publish `verification`", body = DomainBody),
        (status = 404, description = "No such tenant (`not_found`)", body = ErrorResponse),
        (status = 409, description = "The domain belongs to a tenant already, or is the service's own (`conflict`)", body = ErrorResponse),
        (status = 422, description = "Not a DNS name (`validation_failed`)", body = ErrorResponse),
    )
)]
async fn add_domain(
    AdminCaller(admin): AdminCaller,
    RequestId(request_id): RequestId,
    ApiPath(slug): ApiPath<String>,
    ApiJson(body): ApiJson<NewDomain>,
) -> Result<(StatusCode, Json<DomainBody>)> {
    let added = admin
        .add_domain(&slug, &body.domain, Some(&request_id))
        .await?;
    Ok((StatusCode::CREATED, Json(added)))
}

/// Removes a custom domain from a tenant; it stops routing.
#[utoipa::path(
    delete, path = "/admin/tenants/{slug}/domains/{domain}", tag = "admin",
    extensions(("x-tenantry-host" = json!("apex"))),
    security(("admin" = [])),
    params(DomainPath),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such tenant, or the tenant has no such domain (`not_found`)", body = ErrorResponse),
        (status = 422, description = "Not a valid domain (`validation_failed`)", body = ErrorResponse),
    )
)]
async fn remove_domain(
    AdminCaller(admin): AdminCaller,
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    ApiPath(DomainPath { slug, domain }): ApiPath<DomainPath>,
) -> Result<StatusCode> {
    admin
        .remove_domain(&slug, &domain, Some(&request_id))
        .await?;
    state.tenants.forget(&domain.to_ascii_lowercase());
    Ok(StatusCode::NO_CONTENT)
}

/// Verifies a custom domain: looks up its `_tenantry-challenge` TXT record
/// through the configured resolver and, if it holds the token, marks the
/// domain verified; from then on it routes to the tenant.
#[utoipa::path(
    post, path = "/admin/tenants/{slug}/domains/{domain}/verify", tag = "admin",
    extensions(("x-tenantry-host" = json!("apex"))),
    security(("admin" = [])),
    params(DomainPath),
    responses(
        (status = 200, description = "Verified (or already was)", body = DomainBody),
        (status = 404, description = "No such tenant, or the tenant has no such domain (`not_found`)", body = ErrorResponse),
        (status = 409, description = "The TXT record is not published (yet) (`conflict`)", body = ErrorResponse),
        (status = 422, description = "Not a valid domain (`validation_failed`)", body = ErrorResponse),
        (status = 503, description = "The DNS lookup failed (timeout, server failure); try again (`unavailable`)", body = ErrorResponse),
    )
)]
async fn verify_domain(
    AdminCaller(admin): AdminCaller,
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    ApiPath(DomainPath { slug, domain }): ApiPath<DomainPath>,
) -> Result<Json<DomainBody>> {
    let verified = admin
        .verify_domain(&slug, &domain, Some(&request_id))
        .await?;
    // This instance may have cached "no such tenant" for the domain.
    state.tenants.forget(&verified.domain);
    Ok(Json(verified))
}

/// Per-tenant usage (users, notes, storage, sign-ins in the last 24 hours),
/// read through the analytics role; every call is recorded in the platform
/// audit log.
#[utoipa::path(
    get, path = "/admin/stats", tag = "admin",
    extensions(("x-tenantry-host" = json!("apex"))),
    security(("admin" = [])),
    responses(
        (status = 200, description = "Usage of every tenant", body = UsageReport),
        (status = 404, description = "Usage statistics are not enabled: `ANALYTICS_DATABASE_URL` is unset (`not_found`)", body = ErrorResponse),
    )
)]
async fn usage(
    AdminCaller(admin): AdminCaller,
    RequestId(request_id): RequestId,
) -> Result<Json<UsageReport>> {
    Ok(Json(admin.usage(ACTOR, Some(&request_id)).await?))
}
