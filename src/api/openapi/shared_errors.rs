//! The error responses operations share, added to the document from each
//! operation's properties so they cannot drift from the code.

use utoipa::openapi::{self, HttpMethod};

use super::{
    error_response, host_of, is_client_limited, operation_mut, requires_admin_token,
    requires_bearer,
};

/// Adds the errors every operation of a kind shares (see the table in
/// [`super`]), from the operation's properties.
pub fn add(openapi: &mut openapi::OpenApi) {
    for (path, item) in &mut openapi.paths.paths {
        let has_path_parameter = path.contains('{');
        for method in [
            HttpMethod::Get,
            HttpMethod::Post,
            HttpMethod::Patch,
            HttpMethod::Put,
            HttpMethod::Delete,
        ] {
            let Some(operation) = operation_mut(item, &method) else {
                continue;
            };
            let mut shared: Vec<(&str, &str)> = Vec::new();
            match host_of(operation) {
                Some("tenant") => shared.extend([
                    (
                        "400",
                        "Malformed request or Host header (`bad_request`, `invalid_host`)",
                    ),
                    ("403", "The tenant is suspended (`tenant_suspended`)"),
                    ("404", "The Host is not a tenant (`unknown_tenant`)"),
                ]),
                Some("apex") => shared.extend([
                    (
                        "400",
                        "Malformed request or Host header (`bad_request`, `invalid_host`)",
                    ),
                    ("404", "Not served on this host (`not_found`)"),
                ]),
                _ => {}
            }
            if is_client_limited(operation) && host_of(operation) == Some("apex") {
                shared.push((
                    "429",
                    "Too many requests from this client address (`rate_limited`): retry after `Retry-After` seconds",
                ));
            } else if is_client_limited(operation) {
                shared.push((
                    "429",
                    "Too many requests from this client address, or too many sign-ins and registrations for this tenant (`rate_limited`), or the tenant holds every database connection its plan allows (`tenant_busy`): retry after `Retry-After` seconds",
                ));
            } else if host_of(operation) == Some("tenant") {
                shared.push((
                    "429",
                    "The tenant's request rate is used up (`rate_limited`), or it holds every database connection its plan allows (`tenant_busy`): retry after `Retry-After` seconds",
                ));
            }
            if requires_admin_token(operation) {
                shared.push((
                    "401",
                    "The admin token is missing or wrong (`unauthorized`)",
                ));
            } else if requires_bearer(operation) {
                shared.push(("401", "Missing, invalid or expired token, or a token of another tenant (`unauthorized`)"));
            }
            if operation.request_body.is_some() {
                shared.extend([
                    ("400", "The body is not JSON (`bad_request`)"),
                    ("413", "The body is too large (`payload_too_large`)"),
                    ("415", "The body is not application/json (`unsupported_media_type`)"),
                    ("422", "A field is missing, unknown or invalid (`validation_failed`; `field` names it)"),
                ]);
            }
            if has_path_parameter {
                shared.extend([
                    ("400", "Malformed path parameter (`bad_request`)"),
                    ("404", "No such resource (`not_found`)"),
                ]);
            }
            // Probes and the document answer without the database; readiness
            // declares its own 503.
            if host_of(operation) != Some("any") {
                shared.push((
                    "503",
                    "Temporarily unavailable: retry after `Retry-After` seconds",
                ));
            }
            for (status, description) in shared {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error_response(status, description));
            }
        }
    }
}
