//! Custom domains through the `/admin` API: a domain belongs to at most one
//! tenant, routes only once verified, and verification is a real DNS TXT
//! lookup (against the loopback responder in dns.rs).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{expect_error, spawn_app};

#[tokio::test]
async fn a_domain_routes_only_once_its_txt_record_is_verified_and_stops_when_removed() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    app.create_note(&acme, "acme's note").await;

    let response = app
        .admin_call(
            Method::POST,
            "/admin/tenants/acme/domains",
            Some(json!({"domain": "Notes.Acme.IO."})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let added: Value = response.json().await.unwrap();
    assert_eq!(added["domain"], "notes.acme.io", "stored canonical");
    assert_eq!(added["verified"], false);
    assert_eq!(
        added["verification"]["name"],
        "_tenantry-challenge.notes.acme.io"
    );
    assert_eq!(added["verification"]["record_type"], "TXT");
    let value = added["verification"]["value"].as_str().unwrap().to_owned();
    assert!(
        value.starts_with("tenantry-verification=") && value.len() > 40,
        "{value}"
    );

    // Pending: the host is unknown.
    let response = app
        .get("notes.acme.io", "/api/notes")
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(response, StatusCode::NOT_FOUND).await,
        "unknown_tenant"
    );

    let verify = "/admin/tenants/acme/domains/notes.acme.io/verify";
    // Nothing published, then a wrong value, then the record on another name.
    let response = app.admin_call(Method::POST, verify, None).await;
    assert_eq!(
        expect_error(response, StatusCode::CONFLICT).await,
        "conflict"
    );
    app.dns.publish_txt(
        "_tenantry-challenge.notes.acme.io",
        "tenantry-verification=0000",
    );
    app.dns.publish_txt("notes.acme.io", &value);
    let response = app.admin_call(Method::POST, verify, None).await;
    assert_eq!(
        expect_error(response, StatusCode::CONFLICT).await,
        "conflict"
    );
    let response = app
        .get("notes.acme.io", "/api/notes")
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(response, StatusCode::NOT_FOUND).await,
        "unknown_tenant"
    );

    app.dns
        .publish_txt("_tenantry-challenge.notes.acme.io", &value);
    let response = app.admin_call(Method::POST, verify, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let verified: Value = response.json().await.unwrap();
    assert_eq!(verified["verified"], true);
    assert!(verified["verified_at"].is_string());

    // Now it routes to acme, with acme's tokens and data.
    let page = app
        .get_json("notes.acme.io", "/api/notes", &acme.token)
        .await;
    assert_eq!(page["data"][0]["content"], "acme's note");

    let response = app
        .admin_call(
            Method::DELETE,
            "/admin/tenants/acme/domains/notes.acme.io",
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .get("notes.acme.io", "/api/notes")
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(response, StatusCode::NOT_FOUND).await,
        "unknown_tenant"
    );
    let response = app
        .admin_call(
            Method::DELETE,
            "/admin/tenants/acme/domains/notes.acme.io",
            None,
        )
        .await;
    assert_eq!(
        expect_error(response, StatusCode::NOT_FOUND).await,
        "not_found"
    );

    let trail = app
        .get_json(&acme.host, "/api/audit?limit=100", &acme.token)
        .await;
    let actions: Vec<&str> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["domain.added", "domain.verified", "domain.removed"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

#[tokio::test]
async fn a_domain_belongs_to_one_tenant_and_must_be_a_name_outside_the_base_domain() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    let response = app
        .admin_call(
            Method::POST,
            "/admin/tenants/acme/domains",
            Some(json!({"domain": "notes.acme.io"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let before = app.fingerprint(globex.id).await;

    for taken in ["notes.acme.io", "NOTES.acme.io."] {
        let response = app
            .admin_call(
                Method::POST,
                "/admin/tenants/globex/domains",
                Some(json!({"domain": taken})),
            )
            .await;
        assert_eq!(
            expect_error(response, StatusCode::CONFLICT).await,
            "conflict",
            "{taken}"
        );
    }
    let response = app
        .admin_call(
            Method::POST,
            "/admin/tenants/acme/domains",
            Some(json!({"domain": "notes.acme.io"})),
        )
        .await;
    assert_eq!(
        expect_error(response, StatusCode::CONFLICT).await,
        "conflict",
        "not twice for the same tenant either"
    );
    assert_eq!(app.fingerprint(globex.id).await, before);
    assert_eq!(app.count("tenant_domains", acme.id).await, 1);

    for bad in [
        "10.0.0.1",
        "localhost",
        "acme.io:443",
        "https://acme.io",
        "a..b",
        "acme.123",
    ] {
        let response = app
            .admin_call(
                Method::POST,
                "/admin/tenants/globex/domains",
                Some(json!({"domain": bad})),
            )
            .await;
        assert_eq!(
            expect_error(response, StatusCode::UNPROCESSABLE_ENTITY).await,
            "validation_failed",
            "{bad}"
        );
    }
    // The base domain and names under it are the service's own, like reserved slugs.
    for ours in ["globex.example.test", "example.test"] {
        let response = app
            .admin_call(
                Method::POST,
                "/admin/tenants/globex/domains",
                Some(json!({"domain": ours})),
            )
            .await;
        assert_eq!(
            expect_error(response, StatusCode::CONFLICT).await,
            "conflict",
            "{ours}"
        );
    }
    assert_eq!(app.count("tenant_domains", globex.id).await, 0);
    // Another tenant's domain is not found through this tenant.
    let response = app
        .admin_call(
            Method::POST,
            "/admin/tenants/globex/domains/notes.acme.io/verify",
            None,
        )
        .await;
    assert_eq!(
        expect_error(response, StatusCode::NOT_FOUND).await,
        "not_found"
    );
    let response = app
        .admin_call(
            Method::DELETE,
            "/admin/tenants/globex/domains/notes.acme.io",
            None,
        )
        .await;
    assert_eq!(
        expect_error(response, StatusCode::NOT_FOUND).await,
        "not_found"
    );
    assert_eq!(app.count("tenant_domains", acme.id).await, 1);

    let listed = app
        .call(
            Method::GET,
            crate::helpers::BASE_DOMAIN,
            "/admin/tenants/acme/domains",
            crate::helpers::ADMIN_API_TOKEN,
            None,
        )
        .await;
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(listed["domains"].as_array().unwrap().len(), 1);
    assert_eq!(listed["domains"][0]["domain"], "notes.acme.io");
}
