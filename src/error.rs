//! The one error type of the HTTP API, and its JSON shape.
//!
//! Every handler and extractor returns [`ApiError`]. Its variants are the
//! outcomes a client may see; anything unanticipated goes into
//! [`ApiError::Unexpected`], is logged with its cause chain, and is rendered as
//! an opaque 500. Database text, constraint names and stack traces never reach
//! a client: the message of every variant is written here, not copied from a
//! library.
//!
//! Body shape, everywhere:
//! `{"error": {"code": "not_found", "message": "note not found"}}`, plus a
//! `field` for validation errors.
//!
//! Over 400 lines: the error type, its JSON rendering and the mapping of
//! database errors (constraints, timeouts, lost connections) into it stay
//! together, so that what a client sees for every failure reads in one
//! place; a tenth of it is tests.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use std::time::Duration;

use crate::domain::RateLimitStatus;

/// `Result` with [`ApiError`] as the default error.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Seconds a client should wait before retrying a 503 or a `tenant_busy`.
const RETRY_AFTER_SECONDS: &str = "1";

/// A client-visible failure. See the module docs for the JSON it renders to.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request could not be parsed (JSON syntax, path, query, cursor).
    #[error("{0}")]
    BadRequest(String),
    /// 400: the Host header is missing, repeated or not a valid host name.
    #[error("the Host header is missing or malformed")]
    InvalidHost,
    /// 401: no usable bearer token. The reason is logged, never returned.
    #[error("authentication required")]
    Unauthorized,
    /// 401: login failed; the same answer for an unknown user and a wrong password.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 403: the tenant's plan does not allow more of `0` (`users`, `notes`).
    #[error("this tenant has reached its plan's limit of {0}")]
    QuotaExceeded(&'static str),
    /// 403: the tenant exists but is suspended.
    #[error("this tenant is suspended")]
    TenantSuspended,
    /// 404: no such row for this caller. The same for "missing" and "someone else's".
    #[error("{0}")]
    NotFound(&'static str),
    /// 404: the Host does not belong to any tenant.
    #[error("unknown tenant")]
    UnknownTenant,
    /// 405: the path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: a uniqueness conflict inside the caller's tenant.
    #[error("{0}")]
    Conflict(&'static str),
    /// 413: the body is larger than the configured limit.
    #[error("request body is too large")]
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    #[error("expected a JSON body with Content-Type: application/json")]
    UnsupportedMediaType,
    /// 422: well-formed but invalid input; `field` names the offending field.
    #[error("{message}")]
    Validation { field: String, message: String },
    /// 429: the tenant or the client used up its request rate; retry after
    /// `retry_after`. Carries the limiter's status for the headers.
    #[error("too many requests, retry later")]
    RateLimited {
        retry_after: Duration,
        status: RateLimitStatus,
    },
    /// 429: the tenant already holds all the database connections its plan
    /// allows, and none came free within `TENANT_DB_QUEUE_TIMEOUT_MS`.
    #[error("too many concurrent requests for this tenant, retry shortly")]
    TenantBusy,
    /// 503: the service sheds load (e.g. every password-hashing slot is busy).
    #[error("{0}")]
    Busy(&'static str),
    /// 503: the database is unreachable, the pool is exhausted, or a statement
    /// timed out. Nothing was committed.
    #[error("the service is temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// 503: the request took longer than the configured request timeout.
    #[error("the request took too long")]
    Timeout,
    /// 500: anything unanticipated. Logged in full, rendered opaque.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorResponse<'a> {
    error: ErrorDetail<'a>,
}

/// What went wrong.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail<'a> {
    /// Stable, machine-readable: `bad_request`, `invalid_host`, `unauthorized`,
    /// `invalid_credentials`, `forbidden`, `tenant_suspended`,
    /// `quota_exceeded`, `not_found`, `unknown_tenant`, `method_not_allowed`,
    /// `conflict`, `payload_too_large`, `unsupported_media_type`,
    /// `validation_failed`, `rate_limited`, `tenant_busy`, `overloaded`,
    /// `unavailable`, `timeout`, `internal`.
    #[schema(example = "validation_failed")]
    code: &'static str,
    /// For people; never contains database or internal details.
    #[schema(example = "content must be at most 10000 characters")]
    message: String,
    /// The offending field, for `validation_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "content")]
    field: Option<&'a str>,
}

impl ApiError {
    /// Shorthand for a 422 on `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status this error is rendered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::InvalidHost => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::TenantSuspended | Self::QuotaExceeded(_) => {
                StatusCode::FORBIDDEN
            }
            Self::NotFound(_) | Self::UnknownTenant => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } | Self::TenantBusy => StatusCode::TOO_MANY_REQUESTS,
            Self::Busy(_) | Self::Unavailable(_) | Self::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::InvalidHost => "invalid_host",
            Self::Unauthorized => "unauthorized",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Forbidden(_) => "forbidden",
            Self::TenantSuspended => "tenant_suspended",
            Self::QuotaExceeded(_) => "quota_exceeded",
            Self::NotFound(_) => "not_found",
            Self::UnknownTenant => "unknown_tenant",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Validation { .. } => "validation_failed",
            Self::RateLimited { .. } => "rate_limited",
            Self::TenantBusy => "tenant_busy",
            Self::Busy(_) => "overloaded",
            Self::Unavailable(_) => "unavailable",
            Self::Timeout => "timeout",
            Self::Unexpected(_) => "internal",
        }
    }

    fn public_message(&self) -> String {
        match self {
            // `#[error(transparent)]` would forward the cause's text: never leak it.
            Self::Unexpected(_) => "internal server error".to_owned(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            // Log once, here at the boundary; `{:#}` prints the cause chain.
            Self::Unexpected(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed");
            }
            Self::Unavailable(cause) => {
                tracing::warn!(error = format!("{cause:#}"), "database unavailable");
            }
            _ => {}
        }
        let field = match &self {
            Self::Validation { field, .. } => Some(field.as_str()),
            _ => None,
        };
        let body = ErrorResponse {
            error: ErrorDetail {
                code: self.code(),
                message: self.public_message(),
                field,
            },
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            Self::RateLimited {
                retry_after,
                status,
            } => {
                let seconds = crate::domain::limits::whole_seconds(*retry_after).max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                status.write_headers(headers);
            }
            Self::TenantBusy => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
            }
            _ => {}
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}

/// The `code` of an error response, left on the response for the layers
/// outside the handler: telemetry counts 429s by it and names 5xx spans' errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

impl From<tokio_postgres::Error> for ApiError {
    /// Outages, timeouts and transient conflicts are 503s (retryable, nothing
    /// committed); any other database error is unexpected. Constraint violations
    /// a client can cause are mapped at the call site with
    /// [`ResultExt::on_constraint`] before they get here.
    fn from(error: tokio_postgres::Error) -> Self {
        if let Some(resource) = exceeded_quota(&error) {
            Self::QuotaExceeded(resource)
        } else if is_transient(&error) {
            Self::Unavailable(error.into())
        } else {
            Self::Unexpected(error.into())
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    /// Failing to get a connection at all (wait timeout, the server refusing
    /// or not answering, too many connections) means the database is
    /// unavailable to us right now: 503, whatever the server said.
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::Unavailable(error.into())
    }
}

/// The SQLSTATE of the quota trigger (sql/migrations/V3__quotas.sql).
const QUOTA_EXCEEDED: &str = "TQ001";

/// The resource whose quota the quota trigger refused to exceed, if that is
/// what `error` is. Resource names are ours, never copied from the error.
fn exceeded_quota(error: &tokio_postgres::Error) -> Option<&'static str> {
    let db = error.as_db_error()?;
    if db.code().code() != QUOTA_EXCEEDED {
        return None;
    }
    // On Citus the trigger fires on a worker, and the error reaches us
    // without its `table` field (see `reported_constraint`), but with the
    // trigger's own message, `quota exceeded for <resource>`.
    let resource = db
        .table()
        .or_else(|| db.message().strip_prefix("quota exceeded for "));
    Some(match resource {
        Some("users") => "users",
        Some("notes") => "notes",
        _ => "resources",
    })
}

/// Whether a database error says "try again later" rather than "this is wrong".
fn is_transient(error: &tokio_postgres::Error) -> bool {
    use std::error::Error as _;
    let Some(db) = error.as_db_error() else {
        // No server answer: the connection closed or the socket failed. Other
        // driver errors (a wrong parameter type, say) are bugs, not outages.
        return error.is_closed()
            || error
                .source()
                .is_some_and(|source| source.is::<std::io::Error>());
    };
    if is_stale_plan(error) {
        return true;
    }
    let code = db.code().code();
    matches!(
        code,
        // query_canceled (statement_timeout), admin/crash shutdown, cannot connect now
        "57014" | "57P01" | "57P02" | "57P03" |
        // serialization failure, deadlock
        "40001" | "40P01" |
        // too many connections, out of memory, disk full
        "53300" | "53200" | "53100" |
        // lock_not_available (lock_timeout)
        "55P03"
    ) || code.starts_with("08") // connection exceptions
}

/// "cached plan must not change result type": a migration changed a result
/// type under a prepared statement. Retryable once the caches are cleared.
pub fn is_stale_plan(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        db.code() == &tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED
            && db.message().contains("cached plan")
    })
}

/// Whether the connection that produced `error` is unusable: the socket
/// closed or failed, or the server ended the session.
pub fn is_connection_broken(error: &tokio_postgres::Error) -> bool {
    use std::error::Error as _;
    if error.is_closed()
        || error
            .source()
            .is_some_and(|source| source.is::<std::io::Error>())
    {
        return true;
    }
    error.as_db_error().is_some_and(|db| {
        let code = db.code().code();
        matches!(code, "57P01" | "57P02" | "57P03") || code.starts_with("08")
    })
}

impl ApiError {
    /// Whether this error says its database connection is unusable.
    pub fn is_connection_broken(&self) -> bool {
        let (Self::Unavailable(cause) | Self::Unexpected(cause)) = self else {
            return false;
        };
        cause
            .downcast_ref::<tokio_postgres::Error>()
            .is_some_and(is_connection_broken)
    }

    /// Whether this error is a statement cancelled by its `statement_timeout`
    /// (or a cancel request): SQLSTATE 57014.
    pub fn is_cancelled_statement(&self) -> bool {
        let (Self::Unavailable(cause) | Self::Unexpected(cause)) = self else {
            return false;
        };
        cause
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::as_db_error)
            .is_some_and(|db| db.code().code() == "57014")
    }

    /// Whether this error came from a stale prepared statement (see [`is_stale_plan`]).
    pub fn is_stale_plan(&self) -> bool {
        let (Self::Unavailable(cause) | Self::Unexpected(cause)) = self else {
            return false;
        };
        cause
            .downcast_ref::<tokio_postgres::Error>()
            .is_some_and(is_stale_plan)
    }
}

/// Maps a named constraint violation to a client error at the call site.
pub trait ResultExt<T> {
    /// If the error is a violation of `constraint`, return `map()` instead.
    fn on_constraint(self, constraint: &str, map: impl FnOnce() -> ApiError) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T, tokio_postgres::Error> {
    fn on_constraint(self, constraint: &str, map: impl FnOnce() -> ApiError) -> Result<T> {
        self.map_err(|error| {
            if violates_constraint(&error, constraint) {
                map()
            } else {
                error.into()
            }
        })
    }
}

impl<T> ResultExt<T> for Result<T> {
    fn on_constraint(self, constraint: &str, map: impl FnOnce() -> ApiError) -> Result<T> {
        self.map_err(|error| match error {
            ApiError::Unexpected(cause) if violates(&cause, constraint) => map(),
            other => other,
        })
    }
}

fn violates(cause: &anyhow::Error, constraint: &str) -> bool {
    cause
        .downcast_ref::<tokio_postgres::Error>()
        .is_some_and(|error| violates_constraint(error, constraint))
}

/// Whether `error` is a violation of the logical constraint `constraint`.
fn violates_constraint(error: &tokio_postgres::Error, constraint: &str) -> bool {
    error
        .as_db_error()
        .and_then(reported_constraint)
        .is_some_and(|reported| is_logical_constraint(reported, constraint))
}

/// The constraint a violation names: the server's `constraint` field, or,
/// when that is missing, the name PostgreSQL quotes in the message of an
/// integrity violation (SQLSTATE class 23: `duplicate key value violates
/// unique constraint "users_tenant_username_key_102094"`). Citus re-raises
/// a worker's error with its SQLSTATE, message, detail, hint and context
/// only (`ReportResultError` in its `remote_commands.c`), so on a cluster
/// the message is all there is. PostgreSQL writes that message in the
/// worker's `lc_messages`; the workers must keep an English one (the
/// default), as docs/CITUS.md says.
fn reported_constraint(db: &tokio_postgres::error::DbError) -> Option<&str> {
    db.constraint().or_else(|| {
        if !db.code().code().starts_with("23") {
            return None;
        }
        let (_, quoted) = db.message().split_once("constraint \"")?;
        quoted.split_once('"').map(|(name, _)| name)
    })
}

/// Whether the constraint name a server reported is `constraint`: the name
/// itself (PostgreSQL), or the name of one of its shards' copies, which
/// Citus reports with the shard id appended (`users_tenant_username_key_102094`).
/// A test checks that no two constraints of the schema differ only by such
/// a suffix, so the match cannot confuse two of ours.
pub fn is_logical_constraint(reported: &str, constraint: &str) -> bool {
    match reported.strip_prefix(constraint) {
        Some("") => true,
        Some(suffix) => suffix
            .strip_prefix('_')
            .is_some_and(|shard| !shard.is_empty() && shard.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unexpected_errors_never_show_their_cause() {
        let error = ApiError::Unexpected(anyhow::anyhow!("relation \"notes\" does not exist"));
        assert_eq!(error.public_message(), "internal server error");
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn a_constraint_matches_itself_and_its_citus_shard_copies_only() {
        assert!(is_logical_constraint(
            "tenants_slug_key",
            "tenants_slug_key"
        ));
        assert!(is_logical_constraint(
            "users_tenant_username_key_102094",
            "users_tenant_username_key"
        ));
        assert!(!is_logical_constraint(
            "users_tenant_username_key",
            "users_tenant_email_key"
        ));
        assert!(!is_logical_constraint(
            "tenants_slug_key_x",
            "tenants_slug_key"
        ));
        assert!(!is_logical_constraint(
            "tenants_slug_key_",
            "tenants_slug_key"
        ));
        assert!(!is_logical_constraint(
            "tenants_slug_keys",
            "tenants_slug_key"
        ));
        assert!(!is_logical_constraint("tenants_slug", "tenants_slug_key"));
    }

    #[test]
    fn unavailable_errors_never_show_their_cause() {
        let error = ApiError::Unavailable(anyhow::anyhow!("connection refused: 10.0.0.3"));
        assert_eq!(
            error.public_message(),
            "the service is temporarily unavailable"
        );
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
