//! The HTTP API: one router per resource, merged here.
//!
//! | module       | routes                                              | host   |
//! |--------------|-----------------------------------------------------|--------|
//! | [`health`]   | `GET /healthz`, `GET /readyz`                       | any    |
//! | [`accounts`] | `POST /api/register`, `POST /api/login`, `GET /api/me` | tenant |
//! | [`notes`]    | `GET,POST /api/notes`, `GET,PATCH,DELETE /api/notes/{id}` | tenant |
//! | [`tenants`]  | `POST /api/tenants` (onboarding)                    | apex   |

pub mod accounts;
pub mod extract;
pub mod health;
pub mod middleware;
pub mod notes;
pub mod tenants;

use axum::Router;

use crate::{error::ApiError, startup::AppState};

/// Every route of the service, without the cross-cutting layers (see
/// [`crate::startup`]).
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(health::router())
        .merge(accounts::router())
        .merge(notes::router())
        .merge(tenants::router())
        .fallback(route_not_found)
}

async fn route_not_found() -> ApiError {
    ApiError::NotFound("route not found")
}
