//! Infrastructure probes. They use no tenant and no Host, so they answer on
//! any address, including Cloud Run's default `*.run.app` URL.

use std::time::Duration;

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};

use crate::{error::Result, startup::AppState};

/// How long readiness waits for the database.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// `/healthz` and `/readyz`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Liveness: the process serves HTTP. Never touches the database, so a
/// database outage does not make Cloud Run restart healthy instances.
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers as the runtime role; 503 otherwise.
async fn readyz(State(state): State<AppState>) -> Result<Json<Value>> {
    state.db.ping(READINESS_TIMEOUT).await?;
    Ok(Json(json!({ "status": "ready" })))
}
