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
//! | JSON of the wrong shape (missing, unknown or mistyped field) | 422 |

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Request},
    http::{HeaderMap, StatusCode, header::CONTENT_TYPE, request::Parts},
};
use serde::de::DeserializeOwned;

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

/// Parses a whole body as `T`. Syntax is checked over the whole document
/// first, so "not JSON" (400) always wins over "wrong shape" (422).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|_| not_json())?;
    // serde's derived structs also accept arrays (`["text"]`); our API does not.
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid("body", "body must be an object"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_data() {
            describe_data_error(&path, &inner)
        } else {
            not_json()
        }
    })
}

fn not_json() -> ApiError {
    ApiError::BadRequest("request body is not valid JSON".to_owned())
}

/// Turns serde's data error into a field and a message of our own wording.
fn describe_data_error(path: &str, error: &serde_json::Error) -> ApiError {
    let full = error.to_string();
    // serde_json appends " at line L column C"; the position is noise to clients.
    let text = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(text, _)| text);
    let parent = if path == "." { "" } else { path };
    let join = |name: &str| {
        if parent.is_empty() {
            name.to_owned()
        } else {
            format!("{parent}.{name}")
        }
    };
    if let Some(name) = quoted_after(text, "missing field ") {
        let field = join(name);
        return ApiError::invalid(&field, format!("{field} is required"));
    }
    if let Some(name) = quoted_after(text, "unknown field ") {
        // Here the path already ends with the unknown field itself.
        let field = if path.ends_with(name) {
            truncate(path, 128)
        } else {
            join(&truncate(name, 64))
        };
        return ApiError::invalid(&field, format!("{field} is not an accepted field"));
    }
    if let Some(name) = quoted_after(text, "duplicate field ") {
        let field = join(name);
        return ApiError::invalid(&field, format!("{field} appears more than once"));
    }
    let field = if parent.is_empty() {
        "body".to_owned()
    } else {
        parent.to_owned()
    };
    let expected = text
        .rsplit_once(", expected ")
        .map(|(_, expected)| plain_expectation(expected));
    let message = match expected {
        Some(expected) => format!("{field} must be {expected}"),
        None => format!("{field} has an invalid value"),
    };
    ApiError::invalid(field, message)
}

/// The text between the backticks that follow `prefix`.
fn quoted_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name)
}

/// Rewrites serde's "expected ..." into words without Rust type names.
fn plain_expectation(expected: &str) -> &'static str {
    match expected {
        e if e.starts_with("struct ") || e.starts_with("a map") => "an object",
        e if e.contains("string") => "a string",
        e if e.contains("integer") || e.starts_with('u') || e.starts_with('i') => "an integer",
        e if e.contains("boolean") || e == "bool" => "a boolean",
        e if e.contains("sequence") => "an array",
        _ => "of a different type",
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only deserialized")]
    struct Owner {
        username: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only deserialized")]
    struct Onboard {
        slug: String,
        owner: Owner,
    }

    fn reject(body: &str) -> ApiError {
        parse_json::<Onboard>(body.as_bytes()).expect_err("must be rejected")
    }

    fn field_and_message(error: &ApiError) -> (String, String) {
        match error {
            ApiError::Validation { field, message } => (field.clone(), message.clone()),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_400s() {
        for body in [
            "{",
            "{\"slug\": }",
            "nul",
            "{\"slug\":\"a\"} trailing",
            "\u{1}",
        ] {
            assert!(matches!(reject(body), ApiError::BadRequest(_)), "{body:?}");
        }
        let invalid_utf8 =
            parse_json::<Onboard>(b"{\"slug\":\"\xff\xfe\"}").expect_err("bad utf-8");
        assert!(matches!(invalid_utf8, ApiError::BadRequest(_)));
    }

    #[test]
    fn shape_errors_name_the_field_without_rust_type_names() {
        let cases = [
            (r#"{"owner":{"username":"a"}}"#, "slug", "slug is required"),
            (
                r#"{"slug":"a","owner":{}}"#,
                "owner.username",
                "owner.username is required",
            ),
            (
                r#"{"slug":"a","owner":{"username":"a"},"tenant_id":"x"}"#,
                "tenant_id",
                "tenant_id is not an accepted field",
            ),
            (
                r#"{"slug":"a","owner":{"username":"a","role":"owner"}}"#,
                "owner.role",
                "owner.role is not an accepted field",
            ),
            (
                r#"{"slug":5,"owner":{"username":"a"}}"#,
                "slug",
                "slug must be a string",
            ),
            (
                r#"{"slug":"a","owner":"bob"}"#,
                "owner",
                "owner must be an object",
            ),
            (r#"[1,2]"#, "body", "body must be an object"),
            (
                r#"["acme", {"username": "a"}]"#,
                "body",
                "body must be an object",
            ),
        ];
        for (body, field, message) in cases {
            let (got_field, got_message) = field_and_message(&reject(body));
            assert_eq!(
                (got_field.as_str(), got_message.as_str()),
                (field, message),
                "{body}"
            );
            assert!(
                !got_message.contains("struct") && !got_message.contains("Onboard"),
                "{got_message}"
            );
        }
    }
}
