//! The HTTP API: one router per resource, merged here.
//!
//! | module       | routes                                              | host   |
//! |--------------|-----------------------------------------------------|--------|
//! | [`health`]   | `GET /healthz`, `GET /readyz`                       | any    |
//! | [`accounts`] | `POST /api/register`, `POST /api/login`, `GET /api/me` | tenant |
//! | [`notes`]    | `GET,POST /api/notes`, `GET,PATCH,DELETE /api/notes/{id}` | tenant |
//! | [`tenants`]  | `POST /api/tenants` (onboarding)                    | apex   |
//! | [`openapi`], [`docs`] | `GET /openapi.json`, `GET /docs[/{file}]`  | any    |
//! | [`users`]    | `GET /api/users`, `DELETE /api/users/{id}`, `GET /api/audit` (owners) | tenant |
//! | [`admin`]    | `/admin/tenants[/{slug}[/domains[/{domain}[/verify]]]]`, `/admin/stats` (`ADMIN_TOKEN`) | apex |

pub mod accounts;
pub mod admin;
pub mod docs;
pub mod extract;
pub mod extractors;
pub mod health;
pub mod json_body;
pub mod middleware;
pub mod notes;
pub mod openapi;
pub mod tenants;
pub mod users;
pub mod versions;

use utoipa_axum::router::OpenApiRouter;

use crate::{error::ApiError, state::AppState};

/// Every route of the service with its documentation, without the
/// cross-cutting layers (see [`crate::startup`]). Routes are added only with
/// `utoipa_axum::routes!`, so every route is in the OpenAPI document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(health::router())
        .merge(openapi::router())
        .merge(accounts::router())
        .merge(notes::router())
        .merge(tenants::router())
        .merge(users::router())
        .merge(admin::router())
        .fallback(route_not_found)
}

async fn route_not_found() -> ApiError {
    ApiError::NotFound("route not found")
}
