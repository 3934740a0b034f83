//! The OpenAPI document: generated from the code, complete, and true to what
//! the service answers.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{BASE_DOMAIN, TestApp, spawn_app};

/// Every (method, path, operation) of the document.
pub fn operations(document: &Value) -> Vec<(Method, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if let Ok(method) = method.to_uppercase().parse::<Method>() {
                found.push((method, path.clone(), operation.clone()));
            }
        }
    }
    found
}

pub async fn fetch_document(app: &TestApp) -> Value {
    let response = app
        .get("any-host.invalid", "/openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_describes_every_route() {
    let app = spawn_app().await;
    let document = fetch_document(&app).await;
    assert_eq!(document["openapi"], "3.1.0");
    let mut routes: Vec<String> = operations(&document)
        .iter()
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    routes.sort();
    let mut ids: Vec<String> = operations(&document)
        .iter()
        .map(|(_, _, operation)| operation["operationId"].as_str().unwrap().to_owned())
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "operation ids are unique");
    assert_eq!(
        routes,
        [
            "DELETE /v1/admin/tenants/{slug}",
            "DELETE /v1/admin/tenants/{slug}/domains/{domain}",
            "DELETE /v1/notes/{id}",
            "DELETE /v1/users/{id}",
            "GET /docs",
            "GET /docs/{file}",
            "GET /healthz",
            "GET /openapi.json",
            "GET /openapi/{version}",
            "GET /readyz",
            "GET /v1/admin/stats",
            "GET /v1/admin/tenants",
            "GET /v1/admin/tenants/{slug}",
            "GET /v1/admin/tenants/{slug}/domains",
            "GET /v1/audit",
            "GET /v1/me",
            "GET /v1/notes",
            "GET /v1/notes/{id}",
            "GET /v1/users",
            "PATCH /v1/admin/tenants/{slug}",
            "PATCH /v1/notes/{id}",
            "POST /v1/admin/tenants",
            "POST /v1/admin/tenants/{slug}/domains",
            "POST /v1/admin/tenants/{slug}/domains/{domain}/verify",
            "POST /v1/login",
            "POST /v1/notes",
            "POST /v1/register",
            "POST /v1/tenants",
        ]
    );
    for (method, path, operation) in operations(&document) {
        let host = operation["x-tenantry-host"].as_str().unwrap_or_default();
        assert!(
            ["tenant", "apex", "any"].contains(&host),
            "{method} {path} says where it is served"
        );
        for (status, response) in operation["responses"].as_object().unwrap() {
            let code: u16 = status.parse().unwrap();
            if code >= 400 {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/ErrorResponse",
                    "{method} {path} {status}"
                );
            }
        }
    }
    let html = docs_text(&app, "/docs").await;
    assert!(
        html.contains("<html") && html.contains("<title>tenantry API</title>"),
        "the API reference page renders"
    );
    // It works offline: everything it loads is ours, and served.
    let mut loaded = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (start, _) in html.match_indices(attribute) {
            let rest = &html[start + attribute.len()..];
            let target = &rest[..rest.find('"').unwrap()];
            if target != "/docs/" {
                loaded.push(target.trim_start_matches("./").to_owned());
            }
        }
    }
    assert!(loaded.len() >= 4, "{loaded:?}");
    for target in &loaded {
        assert!(!target.contains("//"), "{target} is not ours");
        let response = app
            .get("any-host.invalid", &format!("/docs/{target}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{target}");
    }
    let initializer = docs_text(&app, "/docs/swagger-initializer.js").await;
    assert!(
        initializer.contains("\"url\": \"/openapi.json\""),
        "{initializer}"
    );
    assert!(
        initializer.contains("\"validatorUrl\": \"none\""),
        "{initializer}"
    );
    // Stored gzipped: sent so to a client that takes gzip, inflated for one
    // that does not.
    let plain = app
        .get("any-host.invalid", "/docs/swagger-ui.css")
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert!(plain.text().await.unwrap().contains(".swagger-ui"));
    let gzipped = app
        .get("any-host.invalid", "/docs/swagger-ui.css")
        .header("accept-encoding", "br;q=1, gzip;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    assert_eq!(&gzipped.bytes().await.unwrap()[..2], [0x1f, 0x8b]);
}

/// The text of a page of the API reference (any host serves it).
async fn docs_text(app: &TestApp, path: &str) -> String {
    app.get("any-host.invalid", path)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_answers_a_documented_status() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let document = fetch_document(&app).await;
    for (method, path, operation) in operations(&document) {
        let host = match operation["x-tenantry-host"].as_str() {
            Some("tenant") => acme.host.clone(),
            Some("apex") => BASE_DOMAIN.to_owned(),
            _ => "any-host.invalid".to_owned(),
        };
        let concrete = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
        // No token and no body: each operation must still answer one of its
        // documented statuses, and never "no such route".
        let response = app
            .request(method.clone(), &host, &concrete)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("route not found") && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is not routed"
        );
        let documented = operation["responses"].as_object().unwrap();
        assert!(
            documented.contains_key(status.as_str()),
            "{method} {path} answered undocumented {status}: {body}"
        );
    }
}
