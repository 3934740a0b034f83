//! Infrastructure probes. They use no tenant and no Host, so they answer on
//! any address, including Cloud Run's default `*.run.app` URL.

use std::time::Duration;

use axum::{Json, extract::State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{error::Result, state::AppState};

/// How long readiness waits for the database.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// `/healthz` and `/readyz`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// A probe's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProbeBody {
    #[schema(example = "ok")]
    status: &'static str,
}

/// Liveness: the process serves HTTP. Never touches the database, so a
/// database outage does not make Cloud Run restart healthy instances.
#[utoipa::path(
    get, path = "/healthz", tag = "infrastructure",
    extensions(("x-tenantry-host" = json!("any"))),
    responses((status = 200, description = "The process is up", body = ProbeBody))
)]
async fn healthz() -> Json<ProbeBody> {
    Json(ProbeBody { status: "ok" })
}

/// Readiness: the database answers as the runtime role; 503 otherwise.
#[utoipa::path(
    get, path = "/readyz", tag = "infrastructure",
    extensions(("x-tenantry-host" = json!("any"))),
    responses(
        (status = 200, description = "The database answers", body = ProbeBody),
        (status = 503, description = "The database does not answer (`unavailable`)", body = crate::error::ErrorResponse),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<ProbeBody>> {
    state.db.ping(READINESS_TIMEOUT).await?;
    Ok(Json(ProbeBody { status: "ready" }))
}
