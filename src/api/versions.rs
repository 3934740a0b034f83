//! API versions: which one answers a request, and saying so.
//!
//! Two axes, as most long-lived APIs have them:
//!
//! - the path: every route is under `/v1` (`/v1/notes`, `/v1/admin/tenants`);
//!   the paths the API had before (`/api/notes`, `/admin/tenants`) are the
//!   same `v1` routes and keep working. A new path version would be a new
//!   URL structure, which nothing needs yet;
//! - the shapes: dated versions ([`ApiVersion`]). A request is answered in
//!   the version its `Api-Version` header names, else the one its tenant is
//!   pinned to (the newest on the day it signed up; operators move it), else,
//!   for requests that are for no tenant, the newest. Every response says
//!   which in its own `Api-Version` header, and a deprecated version's
//!   responses carry `Deprecation` and `Sunset` (see [`crate::domain::ApiDeprecation`]).
//!
//! A handler whose shape differs by version takes [`Served`].

use std::sync::{Arc, OnceLock};

use axum::{
    extract::{FromRequestParts, OriginalUri, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Uri, request::Parts, uri::PathAndQuery},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    config::ReleaseSettings,
    domain::ApiVersion,
    error::{ApiError, Result},
    state::AppState,
    tenant::Tenant,
};

/// Names the version a request wants, and the version a response is in.
pub static API_VERSION: HeaderName = HeaderName::from_static("api-version");
/// RFC 9745: when the version answering was (or will be) deprecated.
pub static DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
/// RFC 8594: when the version answering is expected to stop answering.
pub static SUNSET: HeaderName = HeaderName::from_static("sunset");

/// The path version every route is under.
pub const PATH_VERSION: &str = "/v1";

/// The version a request asked for, and the one its tenant is pinned to once
/// the tenant is known (the tenant extractor records it).
#[derive(Debug, Clone, Default)]
pub struct RequestedVersion {
    header: Option<ApiVersion>,
    pinned: Arc<OnceLock<ApiVersion>>,
}

impl RequestedVersion {
    /// Records the pin of the request's tenant.
    pub fn pin(&self, version: ApiVersion) {
        let _ = self.pinned.set(version);
    }

    /// The version the `Api-Version` header names, if it does.
    pub fn header(&self) -> Option<ApiVersion> {
        self.header
    }

    /// The version that answers: the header's, the tenant's pin, or the newest.
    fn answering(&self) -> ApiVersion {
        self.header
            .or_else(|| self.pinned.get().copied())
            .unwrap_or(ApiVersion::NEWEST)
    }
}

/// A handler's view of the request's `Api-Version` (none outside the
/// middleware, e.g. in a router without layers).
impl<S: Send + Sync> FromRequestParts<S> for RequestedVersion {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned().unwrap_or_default())
    }
}

/// The version a handler shapes its response in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served(pub ApiVersion);

impl FromRequestParts<AppState> for Served {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let requested = parts.extensions.get::<RequestedVersion>().cloned();
        if let Some(version) = requested.as_ref().and_then(|r| r.header) {
            return Ok(Self(version));
        }
        // The tenant's pin (the extractor caches the tenant per request).
        let tenant = Tenant::from_request_parts(parts, state).await?;
        Ok(Self(tenant.0.api_version))
    }
}

/// Reads `Api-Version` (422 for a version that does not exist), and writes
/// the answering version, with its deprecation if it has one, on the
/// response, whatever produced it.
pub async fn api_version(
    State(release): State<Arc<ReleaseSettings>>,
    mut request: Request,
    next: Next,
) -> Response {
    let requested = match requested_version(request.headers()) {
        Ok(header) => RequestedVersion {
            header,
            ..RequestedVersion::default()
        },
        Err(error) => {
            let mut response = error.into_response();
            describe(response.headers_mut(), ApiVersion::NEWEST, &release);
            return response;
        }
    };
    request.extensions_mut().insert(requested.clone());
    let mut response = next.run(request).await;
    // A handler that answers in a version of its own (a version's
    // document) says so; otherwise the request's version answered.
    let version = response
        .headers()
        .get(&API_VERSION)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| ApiVersion::parse(text).ok())
        .unwrap_or_else(|| requested.answering());
    describe(response.headers_mut(), version, &release);
    response
}

fn requested_version(headers: &HeaderMap) -> Result<Option<ApiVersion>> {
    let mut values = headers.get_all(&API_VERSION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    const INVALID: &str = "Api-Version must be one API version: 2026-11-22 or 2026-12-07";
    if values.next().is_some() {
        return Err(ApiError::invalid("Api-Version", INVALID));
    }
    let text = value
        .to_str()
        .map_err(|_| ApiError::invalid("Api-Version", INVALID))?;
    ApiVersion::parse(text.trim())
        .map(Some)
        .map_err(|message| ApiError::invalid("Api-Version", message))
}

fn describe(headers: &mut HeaderMap, version: ApiVersion, release: &ReleaseSettings) {
    headers.insert(
        API_VERSION.clone(),
        HeaderValue::from_static(version.as_str()),
    );
    if let Some(deprecation) = release.deprecation(version) {
        insert_text(headers, &DEPRECATION, deprecation.deprecation_header());
        insert_text(headers, &SUNSET, deprecation.sunset_header());
    }
}

fn insert_text(headers: &mut HeaderMap, name: &HeaderName, text: String) {
    if let Ok(value) = HeaderValue::try_from(text) {
        headers.insert(name.clone(), value);
    }
}

/// Routes `/v1/...` to the handlers of the paths the API had before:
/// `/v1/admin/...` to `/admin/...`, `/v1/openapi.json` to `/openapi.json`,
/// any other `/v1/X` to `/api/X`. Runs before routing; the route template
/// in telemetry is then the same for both spellings (bounded labels).
pub fn route_v1(mut request: Request) -> Request {
    if let Some(path) = v1_target(request.uri()) {
        // What the client sent, for the access log.
        let original = OriginalUri(request.uri().clone());
        request.extensions_mut().insert(original);
        let mut parts = request.uri().clone().into_parts();
        parts.path_and_query = Some(path);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}

fn v1_target(uri: &Uri) -> Option<PathAndQuery> {
    let rest = uri.path().strip_prefix(PATH_VERSION)?;
    let target = if rest.starts_with("/admin/") || rest == "/admin" || rest == "/openapi.json" {
        rest.to_owned()
    } else if rest.starts_with('/') {
        format!("/api{rest}")
    } else {
        return None;
    };
    let with_query = match uri.query() {
        Some(query) => format!("{target}?{query}"),
        None => target,
    };
    PathAndQuery::try_from(with_query).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str) -> Option<String> {
        v1_target(&uri.parse().unwrap()).map(|path| path.to_string())
    }

    #[test]
    fn v1_paths_reach_the_routes_they_alias() {
        assert_eq!(target("/v1/notes").as_deref(), Some("/api/notes"));
        assert_eq!(
            target("/v1/notes/abc?x=1").as_deref(),
            Some("/api/notes/abc?x=1")
        );
        assert_eq!(
            target("/v1/admin/tenants").as_deref(),
            Some("/admin/tenants")
        );
        assert_eq!(target("/v1/openapi.json").as_deref(), Some("/openapi.json"));
        assert_eq!(target("/v1").as_deref(), None);
        assert_eq!(target("/v10/notes").as_deref(), None);
        assert_eq!(target("/api/notes").as_deref(), None);
        assert_eq!(
            target("/v1/administrator").as_deref(),
            Some("/api/administrator")
        );
    }
}
