//! One document per API version, from the one the code describes.
//!
//! Handlers are annotated with the newest version's shapes. The document of
//! an older version is that document with each later [`ShapeChange`] undone
//! (the response names the schema the older version returns), its paths
//! under `/v1` as clients are to call them, and `info.version` the version's
//! date.

use utoipa::openapi::{self, HttpMethod, Ref, RefOr};

use super::operation_mut;
use crate::{api::versions::PATH_VERSION, domain::ApiVersion};

/// A response whose schema changed in version `since`.
struct ShapeChange {
    since: ApiVersion,
    method: HttpMethod,
    /// The path as the router has it.
    path: &'static str,
    status: &'static str,
    /// The schema versions before `since` return.
    before: &'static str,
    /// The schema `since` and later return (the handler's annotation).
    after: &'static str,
}

const SHAPE_CHANGES: &[ShapeChange] = &[ShapeChange {
    since: ApiVersion::V2026_12_07,
    method: HttpMethod::Get,
    path: "/api/notes",
    status: "200",
    before: "NotePage",
    after: "NoteList",
}];

/// The document of `version`, made from `newest` (the code's own).
pub fn for_version(mut document: openapi::OpenApi, version: ApiVersion) -> openapi::OpenApi {
    for change in SHAPE_CHANGES {
        let (used, unused) = if version < change.since {
            (change.before, change.after)
        } else {
            (change.after, change.before)
        };
        set_response_schema(&mut document, change, used);
        if let Some(components) = document.components.as_mut() {
            components.schemas.remove(unused);
        }
    }
    document.info.version = version.as_str().to_owned();
    let paths = std::mem::take(&mut document.paths.paths);
    document.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (versioned_path(&path), item))
        .collect();
    document
}

/// `/api/X` and `/admin/X` as `/v1/X` and `/v1/admin/X`; the probes and the
/// documentation stay where infrastructure expects them.
fn versioned_path(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("/api/") {
        format!("{PATH_VERSION}/{rest}")
    } else if path.starts_with("/admin") {
        format!("{PATH_VERSION}{path}")
    } else {
        path.to_owned()
    }
}

fn set_response_schema(document: &mut openapi::OpenApi, change: &ShapeChange, schema: &str) {
    let response = document
        .paths
        .paths
        .get_mut(change.path)
        .and_then(|item| operation_mut(item, &change.method))
        .and_then(|operation| operation.responses.responses.get_mut(change.status));
    if let Some(RefOr::T(response)) = response {
        for content in response.content.values_mut() {
            if let RefOr::T(content) = content {
                content.schema = Some(RefOr::Ref(Ref::from_schema_name(schema)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_api_and_admin_paths_move_under_v1() {
        assert_eq!(versioned_path("/api/notes/{id}"), "/v1/notes/{id}");
        assert_eq!(versioned_path("/admin/tenants"), "/v1/admin/tenants");
        assert_eq!(versioned_path("/healthz"), "/healthz");
        assert_eq!(versioned_path("/openapi.json"), "/openapi.json");
    }
}
