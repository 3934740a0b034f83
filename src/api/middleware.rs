//! Cross-cutting request handling: request ids, and one JSON error shape even
//! for responses produced outside our handlers (the router's 404 and 405,
//! tower-http's 413 and timeouts, a caught panic).

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use uuid::Uuid;

pub use crate::telemetry::http::REQUEST_ID;
use crate::{
    db::Db,
    error::{ApiError, ErrorCode},
    limits::RateLimitSlot,
};

/// Gives every request a fresh id, replacing any the client sent (a client
/// must not choose what our logs correlate on), and returns it on the response.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = Uuid::new_v4().to_string();
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    request
        .headers_mut()
        .insert(REQUEST_ID.clone(), value.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert(REQUEST_ID.clone(), value);
    response
}

/// The id [`request_id`] gave this request, for audit records.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get(&REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        Ok(Self(id.to_owned()))
    }
}

/// Gives the request a [`RateLimitSlot`] for the limiters that check it, and
/// puts the tightest status they left on the response as `RateLimit-*`
/// headers. Not on a 429: `rate_limited` carries its own, and a
/// `tenant_busy` was not refused by a rate.
pub async fn rate_limit_headers(mut request: Request, next: Next) -> Response {
    let slot = RateLimitSlot::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    if let Some(status) = slot.status()
        && response.status() != StatusCode::TOO_MANY_REQUESTS
    {
        status.write_headers(response.headers_mut());
    }
    response
}

/// Rewrites any error response that is not already JSON into the API's error
/// shape, keeping headers such as `Allow` and `Retry-After`.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let error = match status.as_u16() {
        404 => ApiError::NotFound("route not found"),
        405 => ApiError::MethodNotAllowed,
        413 => ApiError::PayloadTooLarge,
        415 => ApiError::UnsupportedMediaType,
        408 | 503 | 504 => ApiError::Timeout,
        400..=499 => ApiError::BadRequest("bad request".to_owned()),
        _ => ApiError::Unexpected(anyhow::anyhow!("a layer answered {status} without a body")),
    };
    let (mut parts, _) = response.into_parts();
    let replacement = error.into_response();
    let status = replacement.status();
    let (replacement_parts, body) = replacement.into_parts();
    for (name, value) in &replacement_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    if let Some(code) = replacement_parts.extensions.get::<ErrorCode>() {
        parts.extensions.insert(*code);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.status = status;
    Response::from_parts(parts, body)
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// The response for a panic caught by `CatchPanicLayer`: an opaque 500.
pub fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Unexpected(anyhow::anyhow!("a request handler panicked")).into_response()
}

/// The request deadline (`REQUEST_TIMEOUT_MS`) and the database whose
/// abandoned statements it waits for.
#[derive(Clone)]
pub struct Deadline {
    pub after: std::time::Duration,
    pub db: Db,
}

/// Answers `503 timeout` when the handler outlasts the deadline. Tenant
/// transactions see the deadline (`db::deadline`) and have the database give
/// up on their statements just before it, so this fires mostly outside the
/// database (a queue, a slow body). If it fires inside, dropping the
/// handler's future abandons its transaction, whose statement is then
/// cancelled in the database (its `COMMIT` may already be queued behind
/// it); the answer waits for that cancellation to be delivered.
pub async fn deadline(State(deadline): State<Deadline>, request: Request, next: Next) -> Response {
    let at = tokio::time::Instant::now() + deadline.after;
    let answered = crate::db::deadline::within(at, tokio::time::timeout_at(at, next.run(request)));
    match answered.await {
        Ok(response) => response,
        Err(_) => {
            deadline.db.settle_cancellations().await;
            ApiError::Timeout.into_response()
        }
    }
}
