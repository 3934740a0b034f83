//! `GET /docs`: the API reference page (Swagger UI, built into the binary by
//! utoipa-swagger-ui, so it works offline), rendering `/openapi.json`.

use axum::{
    http::header,
    response::{IntoResponse, Response},
};

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
    match docs_file("index.html") {
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
pub async fn api_reference_file(ApiPath(file): ApiPath<String>) -> Response {
    match docs_file(&file) {
        Some((content_type, bytes)) => {
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        None => ApiError::NotFound("no such file").into_response(),
    }
}

/// A file of the built-in Swagger UI, configured to show `/openapi.json`.
fn docs_file(file: &str) -> Option<(String, Vec<u8>)> {
    // No validator badge: it would send the document to validator.swagger.io.
    let config = utoipa_swagger_ui::Config::new(["/openapi.json"]).validator_url("none");
    let config = std::sync::Arc::new(config);
    match utoipa_swagger_ui::serve(file, config) {
        Ok(Some(found)) => Some((found.content_type, found.bytes.into_owned())),
        Ok(None) => None,
        Err(error) => {
            tracing::error!(error = %error, file, "could not serve a file of the API reference");
            None
        }
    }
}
