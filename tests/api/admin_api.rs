//! The `/admin` API: who may call it, idempotent and atomic onboarding,
//! listing and showing tenants, plans, and purging over HTTP.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_API_TOKEN, BASE_DOMAIN, TestApp, expect_error, spawn_app, spawn_app_with,
};

fn new_tenant(slug: &str) -> Value {
    json!({
        "slug": slug, "name": format!("{slug} Inc."), "plan": "pro",
        "owner": {"username": "boss", "email": format!("boss@{slug}.test"), "password": "boss-password"},
        "domain": format!("notes.{slug}.io")
    })
}

async fn create(app: &TestApp, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut request = app
        .post(BASE_DOMAIN, "/admin/tenants")
        .bearer_auth(ADMIN_API_TOKEN)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

async fn tenants_with_slug(app: &TestApp, slug: &str) -> i64 {
    app.admin
        .query_one("select count(*) from tenants where slug = $1", &[&slug])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn only_the_admin_token_on_the_apex_reaches_the_admin_api() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let cases = [
        (BASE_DOMAIN, None, StatusCode::UNAUTHORIZED, "unauthorized"),
        (
            BASE_DOMAIN,
            Some("wrong-token-wrong-token-wrong-token"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            BASE_DOMAIN,
            Some(acme.token.as_str()),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            acme.host.as_str(),
            Some(ADMIN_API_TOKEN),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (host, token, status, code) in cases {
        let mut request = app.get(host, "/admin/tenants");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            expect_error(response, status).await,
            code,
            "{host} {token:?}"
        );
    }
    let before = tenants_with_slug(&app, "sneaky").await;
    let response = app
        .post(BASE_DOMAIN, "/admin/tenants")
        .bearer_auth(&acme.token)
        .json(&new_tenant("sneaky"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(response, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
    assert_eq!(tenants_with_slug(&app, "sneaky").await, before);
}

#[tokio::test]
async fn without_an_admin_database_the_admin_api_does_not_exist() {
    let app = spawn_app_with(|settings| settings.admin_api = None).await;
    for path in ["/admin/tenants", "/admin/stats", "/admin/tenants/acme"] {
        let response = app
            .get(BASE_DOMAIN, path)
            .bearer_auth(ADMIN_API_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_error(response, StatusCode::NOT_FOUND).await,
            "not_found",
            "{path}"
        );
    }
}

#[tokio::test]
async fn creating_a_tenant_is_atomic_and_idempotent_with_a_key() {
    let app = spawn_app().await;
    let body = new_tenant("initech");

    let response = create(&app, &body, Some("order-1")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let first: Value = response.json().await.unwrap();
    assert_eq!(first["replayed"], false);
    assert_eq!(first["tenant"]["plan"], "pro");
    assert_eq!(first["owner"]["role"], "owner");
    assert_eq!(first["domain"]["domain"], "notes.initech.io");
    assert_eq!(first["domain"]["verified"], false);

    // The same request again (a retry after a lost response): the same tenant.
    let response = create(&app, &body, Some("order-1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let again: Value = response.json().await.unwrap();
    assert_eq!(again["replayed"], true);
    assert_eq!(again["tenant"]["id"], first["tenant"]["id"]);
    assert_eq!(again["owner"]["id"], first["owner"]["id"]);
    assert_eq!(tenants_with_slug(&app, "initech").await, 1);

    // The key with another request, or the slug without the key: conflicts.
    let response = create(&app, &new_tenant("initrode"), Some("order-1")).await;
    assert_eq!(
        expect_error(response, StatusCode::CONFLICT).await,
        "conflict"
    );
    assert_eq!(tenants_with_slug(&app, "initrode").await, 0);
    let response = create(&app, &body, None).await;
    assert_eq!(
        expect_error(response, StatusCode::CONFLICT).await,
        "conflict"
    );

    // A taken domain fails the whole creation: no tenant, no owner.
    let mut clash = new_tenant("initrode");
    clash["domain"] = json!("notes.initech.io");
    let users_before: i64 = app
        .admin
        .query_one("select count(*) from users", &[])
        .await
        .unwrap()
        .get(0);
    // With a key too, the answer names the domain, not the slug.
    let response = create(&app, &clash, Some("order-2")).await;
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        error["error"]["message"],
        "this domain is already registered"
    );
    let response = create(&app, &clash, None).await;
    assert_eq!(
        expect_error(response, StatusCode::CONFLICT).await,
        "conflict"
    );
    assert_eq!(tenants_with_slug(&app, "initrode").await, 0);
    let users_after: i64 = app
        .admin
        .query_one("select count(*) from users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users_after, users_before);

    // The owner signs in on the new tenant.
    app.login(&TestApp::host("initech"), "boss", "boss-password")
        .await;
}

#[tokio::test]
async fn bad_creation_requests_name_the_field() {
    let app = spawn_app().await;
    let cases = [
        ("slug", json!("No")),
        ("name", json!("   ")),
        ("plan", json!("platinum")),
        ("domain", json!("initech.10")),
    ];
    for (field, value) in cases {
        let mut body = new_tenant("initech");
        body[field] = value;
        let response = create(&app, &body, None).await;
        let text = response.text().await.unwrap();
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["field"], field, "{text}");
    }
    let mut body = new_tenant("initech");
    body["owner"]["email"] = json!("not-an-email");
    let error: Value = create(&app, &body, None).await.json().await.unwrap();
    assert_eq!(error["error"]["field"], "owner.email");
    let response = create(&app, &new_tenant("initech"), Some("bad key with spaces")).await;
    assert_eq!(
        expect_error(response, StatusCode::UNPROCESSABLE_ENTITY).await,
        "validation_failed"
    );
    let response = create(&app, &json!({"slug": "initech"}), None).await;
    assert_eq!(
        expect_error(response, StatusCode::UNPROCESSABLE_ENTITY).await,
        "validation_failed"
    );
    assert_eq!(tenants_with_slug(&app, "initech").await, 0);
}

#[tokio::test]
async fn operators_list_show_and_change_tenants_and_every_change_is_in_the_trail() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    app.onboard("globex").await;
    app.register(&acme.host, "anna").await;
    app.create_note(&acme, "one").await;
    app.create_note(&acme, "two").await;

    let page: Value = app
        .admin_call(Method::GET, "/admin/tenants?limit=1", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["tenants"][0]["slug"], "globex", "newest first");
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let page: Value = app
        .admin_call(
            Method::GET,
            &format!("/admin/tenants?limit=1&cursor={cursor}"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["tenants"][0]["slug"], "acme");
    assert!(page["next_cursor"].is_null());
    let listed: i64 = app
        .admin
        .query_one(
            "select count(*) from platform_audit_events where action = 'tenants.listed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(listed, 2, "listing spans tenants: recorded");

    let shown: Value = app
        .admin_call(Method::GET, "/admin/tenants/acme", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["slug"], "acme");
    assert_eq!(shown["counts"]["users"], 2);
    assert_eq!(shown["counts"]["notes"], 2);
    let response = app
        .admin_call(Method::GET, "/admin/tenants/nobody", None)
        .await;
    assert_eq!(
        expect_error(response, StatusCode::NOT_FOUND).await,
        "not_found"
    );

    let response = app
        .admin_call(
            Method::PATCH,
            "/admin/tenants/acme",
            Some(json!({"plan": "enterprise"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["plan"], "enterprise");
    assert_eq!(updated["status"], "active");
    // Nothing to change is a no-op that shows the tenant as it is.
    let response = app
        .admin_call(
            Method::PATCH,
            "/admin/tenants/acme",
            Some(json!({"plan": null})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap()["plan"],
        "enterprise"
    );
    for (body, field) in [
        (json!({"plan": "gold"}), "plan"),
        (json!({"status": "deleted"}), "status"),
    ] {
        let response = app
            .admin_call(Method::PATCH, "/admin/tenants/acme", Some(body))
            .await;
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "validation_failed");
        assert_eq!(error["error"]["field"], field);
    }
    let response = app
        .admin_call(
            Method::PATCH,
            "/admin/tenants/acme",
            Some(json!({"plan": "pro", "extra": 1})),
        )
        .await;
    assert_eq!(
        expect_error(response, StatusCode::UNPROCESSABLE_ENTITY).await,
        "validation_failed"
    );

    let trail = app
        .get_json(&acme.host, "/api/audit?limit=100", &acme.token)
        .await;
    let change = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "tenant.plan_changed")
        .unwrap()
        .clone();
    assert_eq!(change["actor"]["kind"], "admin");
    assert_eq!(
        change["details"],
        json!({"from": "free", "to": "enterprise"})
    );
    assert!(change["request_id"].is_string());
}

#[tokio::test]
async fn purging_over_http_needs_a_suspended_tenant() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    app.create_note(&acme, "bye").await;
    let neighbour = app.full_fingerprint(globex.id).await;

    let response = app
        .admin_call(Method::DELETE, "/admin/tenants/acme", None)
        .await;
    assert_eq!(
        expect_error(response, StatusCode::CONFLICT).await,
        "conflict"
    );
    assert_eq!(app.count("notes", acme.id).await, 1);
    for query in ["?batch_size=0", "?batch_size=lots"] {
        let response = app
            .admin_call(Method::DELETE, &format!("/admin/tenants/acme{query}"), None)
            .await;
        assert_eq!(
            expect_error(response, StatusCode::UNPROCESSABLE_ENTITY).await,
            "validation_failed",
            "{query}"
        );
    }

    let response = app
        .admin_call(
            Method::PATCH,
            "/admin/tenants/acme",
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .admin_call(Method::DELETE, "/admin/tenants/acme", None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["deleted"]["notes"], 1);
    assert_eq!(report["tenant"]["slug"], "acme");
    assert_eq!(app.rows_of(acme.id).await, 0);
    assert_eq!(app.full_fingerprint(globex.id).await, neighbour);
    let response = app
        .admin_call(Method::GET, "/admin/tenants/acme", None)
        .await;
    assert_eq!(
        expect_error(response, StatusCode::NOT_FOUND).await,
        "not_found"
    );
}

#[tokio::test]
async fn a_slug_no_tenant_can_have_is_answered_404_and_never_reaches_the_database() {
    let app = spawn_app().await;
    app.onboard("acme").await;
    // A NUL byte would make PostgreSQL refuse the text parameter (a 500);
    // upper case and spaces can only ever be unknown.
    for slug in ["ac%00me", "ACME", "ac%20me", "a"] {
        for (method, path) in [
            (Method::GET, format!("/admin/tenants/{slug}")),
            (Method::PATCH, format!("/admin/tenants/{slug}")),
            (Method::DELETE, format!("/admin/tenants/{slug}")),
            (Method::GET, format!("/admin/tenants/{slug}/domains")),
            (Method::POST, format!("/admin/tenants/{slug}/domains")),
        ] {
            let mut request = app
                .request(method.clone(), BASE_DOMAIN, &path)
                .bearer_auth(ADMIN_API_TOKEN);
            if method == Method::PATCH {
                request = request.json(&json!({"status": "suspended"}));
            } else if method == Method::POST {
                request = request.json(&json!({"domain": "notes.acme.io"}));
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                expect_error(response, StatusCode::NOT_FOUND).await,
                "not_found",
                "{method} {path}"
            );
        }
    }
    let response = app
        .get(BASE_DOMAIN, "/admin/tenants/acme")
        .bearer_auth(ADMIN_API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "acme itself is found");
}
