//! The OpenAPI 3.1 document, generated from the code.
//!
//! Each handler carries a `#[utoipa::path]` annotation with its success
//! responses, its own errors, an `x-tenantry-host` extension saying where it
//! is served (`tenant`, `apex` or `any`), and `x-tenantry-role: owner` on
//! operations only a tenant's owner may call. Routes are registered only through
//! `utoipa_axum::routes!`, so a route cannot exist without its documentation.
//! [`document`] then adds the errors every operation of a kind shares, from
//! the operation's properties rather than by hand, so they cannot drift:
//!
//! | property                        | added responses                     |
//! |---------------------------------|-------------------------------------|
//! | served on a tenant host         | 400 (Host), 403 (suspended), 404 (unknown tenant) |
//! | served on the apex              | 400 (Host), 404 (not the apex)      |
//! | requires a bearer token         | 401                                 |
//! | has a JSON body                 | 400, 413, 415, 422                  |
//! | has a path parameter            | 400, 404                            |
//! | served on a tenant host or apex | 503 (deadline, database)            |

use std::sync::LazyLock;

mod shared_errors;
mod versioned;

use axum::{http::header, response::IntoResponse};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, HttpMethod, Ref, RefOr, Response,
        header::HeaderBuilder,
        path::Operation,
        schema::{Object, Schema, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    extract::ApiPath,
    notes::NotePage,
    versions::{API_VERSION, RequestedVersion},
};
use crate::{
    domain::{
        ApiVersion, DomainName, Email, NoteContent, Password, Slug, TenantName, TextRule, Username,
    },
    error::{ApiError, ErrorResponse, Result},
    state::AppState,
};

/// The extension that says which hosts serve an operation.
pub const HOST_EXTENSION: &str = "x-tenantry-host";
/// Marks the operations limited per client address (see [`crate::limits::client`]).
pub const CLIENT_LIMITED_EXTENSION: &str = "x-tenantry-client-limited";
/// The extension on operations only a tenant's owner may call (`"owner"`).
pub const ROLE_EXTENSION: &str = "x-tenantry-role";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tenantry",
        description = "A multi-tenant notes API. Tenants are chosen by the Host header: \
                       `{slug}.{BASE_DOMAIN}` or a registered custom domain. Every error has the body \
                       `{\"error\": {\"code\", \"message\", \"field\"?}}`.",
        license(name = "MIT")
    ),
    components(schemas(ErrorResponse, NotePage)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "accounts", description = "Users of a tenant. Served on tenant hosts."),
        (name = "notes", description = "The caller's notes. Served on tenant hosts."),
        (name = "onboarding", description = "Creating tenants. Served on the apex host (BASE_DOMAIN itself)."),
        (name = "infrastructure", description = "Probes and this document. Served on any host."),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "bearer",
            bearer("An access token from POST /api/login, valid only on the host of the tenant it was issued for."),
        );
        components.add_security_scheme(
            "admin",
            bearer(
                "ADMIN_TOKEN, required by POST /api/tenants when SIGNUP_MODE=admin (the default).",
            ),
        );
    }
}

/// `GET /openapi.json`: the document of the API version the request names
/// in `Api-Version`, else of the newest.
#[utoipa::path(
    get, path = "/openapi.json", tag = "infrastructure",
    extensions(("x-tenantry-host" = json!("any"))),
    responses((status = 200, description = "This document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json(requested: RequestedVersion) -> axum::response::Response {
    document_response(requested.header().unwrap_or(ApiVersion::NEWEST))
}

/// `GET /openapi/{version}`: the document of one API version.
#[utoipa::path(
    get, path = "/openapi/{version}", tag = "infrastructure",
    extensions(("x-tenantry-host" = json!("any"))),
    params(("version" = ApiVersion, Path, description = "An API version (its date)")),
    responses(
        (status = 200, description = "The version's document", content_type = "application/json", body = Object),
        (status = 404, description = "No such API version (`not_found`)", body = ErrorResponse),
    )
)]
pub async fn openapi_of_version(
    ApiPath(version): ApiPath<String>,
) -> Result<axum::response::Response> {
    let version =
        ApiVersion::parse(&version).map_err(|_| ApiError::NotFound("no such API version"))?;
    Ok(document_response(version))
}

/// A version's document, saying which version it is in `Api-Version`.
fn document_response(version: ApiVersion) -> axum::response::Response {
    let json = DOCUMENTS
        .iter()
        .find(|(documented, _)| *documented == version)
        .map_or("{}", |(_, json)| json.as_str());
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (API_VERSION.clone(), version.as_str()),
        ],
        json.to_owned(),
    )
        .into_response()
}

/// The documentation routes themselves.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(openapi_of_version))
        .routes(routes!(super::docs::api_reference))
        .routes(routes!(super::docs::api_reference_file))
}

/// The finished document: every route of [`crate::api::router`], plus the
/// shared errors.
pub fn document() -> openapi::OpenApi {
    let (_, mut openapi) = super::router().split_for_parts();
    shared_errors::add(&mut openapi);
    apply_text_rules(&mut openapi);
    openapi
}

/// The document of each API version, as JSON.
static DOCUMENTS: LazyLock<Vec<(ApiVersion, String)>> = LazyLock::new(|| {
    let newest = document();
    ApiVersion::ALL
        .into_iter()
        .map(|version| {
            let document = versioned::for_version(newest.clone(), version);
            let json = serde_json::to_string_pretty(&document).unwrap_or_else(|_| "{}".to_owned());
            (version, json)
        })
        .collect()
});

/// The base document the API router starts from.
pub fn base() -> openapi::OpenApi {
    ApiDoc::openapi()
}

/// Which hosts serve an operation, from its `x-tenantry-host` extension.
pub fn host_of(operation: &Operation) -> Option<&str> {
    operation.extensions.as_ref()?.get(HOST_EXTENSION)?.as_str()
}

/// Text fields and the domain rule each one is parsed by: the document
/// states the parser's own rule ([`TextRule`]) rather than a copy of it.
const TEXT_RULES: &[(&str, &str, TextRule)] = &[
    ("OnboardingRequest", "slug", Slug::RULE),
    ("OnboardingRequest", "name", TenantName::RULE),
    ("NewTenantRequest", "slug", Slug::RULE),
    ("NewTenantRequest", "name", TenantName::RULE),
    ("NewTenantRequest", "domain", DomainName::RULE),
    ("NewDomain", "domain", DomainName::RULE),
    ("NewUserRequest", "username", Username::RULE),
    ("NewUserRequest", "email", Email::RULE),
    ("NewUserRequest", "password", Password::RULE),
    ("NoteRequest", "content", NoteContent::RULE),
];

/// Writes [`TEXT_RULES`] into the request schemas, and the custom-domain
/// rule into every `domain` path parameter.
fn apply_text_rules(openapi: &mut openapi::OpenApi) {
    let set = |schema: Option<&mut RefOr<Schema>>, rule: &TextRule| {
        if let Some(RefOr::T(Schema::Object(object))) = schema {
            object.pattern = Some(rule.pattern.to_owned());
            object.min_length = rule.min_length;
            object.max_length = rule.max_length;
        }
    };
    if let Some(components) = openapi.components.as_mut() {
        for (name, property, rule) in TEXT_RULES {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(*name) {
                set(object.properties.get_mut(*property), rule);
            }
        }
    }
    for item in openapi.paths.paths.values_mut() {
        for method in [
            HttpMethod::Get,
            HttpMethod::Post,
            HttpMethod::Patch,
            HttpMethod::Delete,
        ] {
            let Some(operation) = operation_mut(item, &method) else {
                continue;
            };
            for parameter in operation.parameters.iter_mut().flatten() {
                if let RefOr::T(parameter) = parameter
                    && parameter.name == "domain"
                {
                    set(parameter.schema.as_mut(), &DomainName::RULE);
                }
            }
        }
    }
}

fn operation_mut<'a>(
    item: &'a mut openapi::PathItem,
    method: &HttpMethod,
) -> Option<&'a mut Operation> {
    match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        HttpMethod::Patch => item.patch.as_mut(),
        HttpMethod::Put => item.put.as_mut(),
        HttpMethod::Delete => item.delete.as_mut(),
        _ => None,
    }
}

/// Whether the operation is one of the costly unauthenticated routes limited
/// per client address (its `x-tenantry-client-limited` extension).
pub fn is_client_limited(operation: &Operation) -> bool {
    operation
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get(CLIENT_LIMITED_EXTENSION))
        .is_some_and(|value| value == &serde_json::Value::Bool(true))
}

/// True when every way to call the operation needs a bearer token.
pub fn requires_bearer(operation: &Operation) -> bool {
    operation.security.as_ref().is_some_and(|requirements| {
        !requirements.is_empty()
            && requirements.iter().all(|requirement| {
                serde_json::to_value(requirement).is_ok_and(|v| v != serde_json::json!({}))
            })
    })
}

/// Whether the operation takes the admin token only (the `/admin` API).
fn requires_admin_token(operation: &Operation) -> bool {
    operation.security.as_ref().is_some_and(|requirements| {
        !requirements.is_empty()
            && requirements.iter().all(|requirement| {
                serde_json::to_value(requirement)
                    .is_ok_and(|v| v == serde_json::json!({"admin": []}))
            })
    })
}

fn error_response(status: &str, description: &str) -> RefOr<Response> {
    let mut response = Response::new(description);
    response.content.insert(
        "application/json".to_owned(),
        RefOr::T(openapi::Content::new(Some(RefOr::Ref(
            Ref::from_schema_name("ErrorResponse"),
        )))),
    );
    let header = |description: &str| {
        RefOr::T(
            HeaderBuilder::new()
                .schema(Some(Object::with_type(Type::String)))
                .description(Some(description))
                .build(),
        )
    };
    if status == "503" || status == "429" {
        response.headers.insert(
            "Retry-After".to_owned(),
            header("Seconds to wait before retrying"),
        );
    }
    if status == "429" {
        for (name, description) in [
            (
                "RateLimit-Limit",
                "Requests the limit allows at once (the burst); absent for `tenant_busy`",
            ),
            ("RateLimit-Remaining", "Requests left now: 0"),
            (
                "RateLimit-Reset",
                "Seconds until the full burst is available again",
            ),
        ] {
            response
                .headers
                .insert(name.to_owned(), header(description));
        }
    }
    if status == "401" {
        response
            .headers
            .insert("WWW-Authenticate".to_owned(), header("`Bearer`"));
    }
    RefOr::T(response)
}
