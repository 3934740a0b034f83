//! Request-body and path extractors whose rejections share the API's error
//! shape, with messages written for clients: the path of the offending field,
//! never serde's internals (Rust type names, `expected struct X`) or a raw echo
//! of the input.
//!
//! | problem                                   | status |
//! |-------------------------------------------|--------|
//! | Content-Type is not JSON                  | 415    |
//! | body over the limit                       | 413    |
//! | not JSON (syntax, truncated, bad UTF-8)   | 400    |
//! | JSON of the wrong shape (missing, unknown or mistyped field), a value no program can hold (`1e999999`), nesting over 32 levels | 422 |

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Request},
    http::{HeaderMap, StatusCode, header::CONTENT_TYPE, request::Parts},
};
use serde::de::DeserializeOwned;

use super::json_body::parse_json;
use crate::error::{ApiError, Result};

/// A JSON request body, rejected with our error shape.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest("could not read the request body".to_owned())
                }
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A path parameter, rejected with a 400 that does not echo the input.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|_| ApiError::BadRequest("malformed path parameter".to_owned()))
    }
}

/// `application/json` or any `application/*+json`, with or without parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}
