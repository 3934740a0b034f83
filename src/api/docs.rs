//! `GET /docs`: the API reference page (Swagger UI, built into the binary by
//! utoipa-swagger-ui, so it works offline), rendering `/openapi.json`.

use std::io::Read;

use axum::{
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use flate2::read::GzDecoder;

use super::extract::ApiPath;
use crate::error::{ApiError, ErrorResponse};

/// `GET /docs`: an API reference page rendering this document (Swagger UI,
/// built into the binary: it works offline and loads nothing from
/// elsewhere). Its files are relative to `/docs/` (the `base` element).
#[utoipa::path(
    get, path = "/docs", tag = "infrastructure",
    extensions(("x-tenantry-host" = json!("any"))),
    responses((status = 200, description = "An HTML API reference", content_type = "text/html", body = String))
)]
pub async fn api_reference() -> Response {
    match docs_file("index.html").and_then(DocsFile::plain) {
        Some((content_type, bytes)) => {
            let html = String::from_utf8_lossy(&bytes)
                .replacen("<head>", "<head><base href=\"/docs/\">", 1)
                .replacen(
                    "<title>Swagger UI</title>",
                    "<title>tenantry API</title>",
                    1,
                );
            ([(header::CONTENT_TYPE, content_type)], html).into_response()
        }
        None => ApiError::NotFound("route not found").into_response(),
    }
}

/// `GET /docs/{file}`: the API reference page's scripts, styles and images.
#[utoipa::path(
    get, path = "/docs/{file}", tag = "infrastructure",
    extensions(("x-tenantry-host" = json!("any"))),
    params(("file" = String, Path, description = "A file of the page, e.g. `swagger-ui.css`")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/css"), (String = "text/javascript"), (String = "text/html"),
            (String = "image/png"), (String = "application/octet-stream")
        )),
        (status = 404, description = "No such file (`not_found`)", body = ErrorResponse),
    )
)]
pub async fn api_reference_file(headers: HeaderMap, ApiPath(file): ApiPath<String>) -> Response {
    let Some(found) = docs_file(&file) else {
        return ApiError::NotFound("no such file").into_response();
    };
    // Stored gzipped in the binary (a quarter of the size): sent as they are
    // to a client that accepts gzip, inflated for one that does not.
    if found.gzipped && accepts_gzip(&headers) {
        return (
            [
                (header::CONTENT_TYPE, found.content_type),
                (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
                (header::VARY, HeaderValue::from_static("accept-encoding")),
            ],
            found.bytes,
        )
            .into_response();
    }
    match found.plain() {
        Some((content_type, bytes)) => {
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        None => ApiError::NotFound("no such file").into_response(),
    }
}

/// A file of the built-in Swagger UI.
struct DocsFile {
    content_type: HeaderValue,
    bytes: Vec<u8>,
    gzipped: bool,
}

impl DocsFile {
    /// The file's content type and its bytes, inflated if it is stored
    /// gzipped.
    fn plain(self) -> Option<(HeaderValue, Vec<u8>)> {
        if !self.gzipped {
            return Some((self.content_type, self.bytes));
        }
        let mut plain = Vec::new();
        match GzDecoder::new(self.bytes.as_slice()).read_to_end(&mut plain) {
            Ok(_) => Some((self.content_type, plain)),
            Err(error) => {
                tracing::error!(error = %error, "a file of the API reference does not inflate");
                None
            }
        }
    }
}

/// Whether the request's `Accept-Encoding` names gzip (without `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused =
                parts.any(|p| p.replace(' ', "") == "q=0" || p.replace(' ', "") == "q=0.0");
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// A file of the built-in Swagger UI, configured to show `/openapi.json`.
fn docs_file(file: &str) -> Option<DocsFile> {
    // No validator badge: it would send the document to validator.swagger.io.
    let config = utoipa_swagger_ui::Config::new(["/openapi.json"]).validator_url("none");
    let config = std::sync::Arc::new(config);
    match utoipa_swagger_ui::serve(file, config) {
        Ok(Some(found)) => Some(DocsFile {
            content_type: HeaderValue::from_str(&found.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            bytes: found.bytes.into_owned(),
            gzipped: found.gzpipped,
        }),
        Ok(None) => None,
        Err(error) => {
            tracing::error!(error = %error, file, "could not serve a file of the API reference");
            None
        }
    }
}
