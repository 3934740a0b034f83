//! Tenant resolution from the Host header: one canonical form, exact label
//! boundaries, no trust in forwarding headers, and the right answer (400, 403,
//! 404) before any tenant data is touched.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{BASE_DOMAIN, TestApp, assert_no_internals, expect_error, spawn_app};

async fn tenant_slug_seen(app: &TestApp, host: &str, token: &str) -> (StatusCode, Value) {
    let response = app.call(Method::GET, host, "/api/me", token, None).await;
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn case_port_and_trailing_dot_variants_reach_the_same_tenant() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    for host in [
        "acme.example.test",
        "ACME.Example.TEST",
        "acme.example.test:8080",
        "acme.example.test.",
        "Acme.Example.Test.:443",
    ] {
        let (status, body) = tenant_slug_seen(&app, host, &acme.token).await;
        assert_eq!(status, StatusCode::OK, "{host}");
        assert_eq!(body["tenant"]["slug"], "acme", "{host}");
    }
}

#[tokio::test]
async fn hosts_that_are_not_a_tenant_get_404_even_with_a_valid_token() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    for host in [
        "nope.example.test",
        "a.acme.example.test",
        "acmeexample.test",
        "acme.example.test.evil.test",
        "evil.test",
        "www.example.test",
        // Cloud Run's default URL is never a tenant.
        "tenantry-abc123-uc.a.run.app",
        "127.0.0.1",
        "[::1]:8080",
        BASE_DOMAIN,
    ] {
        let response = app
            .call(Method::GET, host, "/api/me", &acme.token, None)
            .await;
        assert_eq!(
            expect_error(response, StatusCode::NOT_FOUND).await,
            "unknown_tenant",
            "{host}"
        );
    }
}

#[tokio::test]
async fn malformed_missing_repeated_or_contradicting_hosts_are_400() {
    let app = spawn_app().await;
    app.onboard("acme").await;
    let requests: [&[u8]; 9] = [
        b"GET /api/me HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
        b"GET /api/me HTTP/1.1\r\nHost: acme..example.test\r\nConnection: close\r\n\r\n",
        b"GET /api/me HTTP/1.1\r\nHost: acme.example.test:http\r\nConnection: close\r\n\r\n",
        b"GET /api/me HTTP/1.1\r\nHost: user@acme.example.test\r\nConnection: close\r\n\r\n",
        b"GET /api/me HTTP/1.1\r\nHost: acme_corp.example.test\r\nConnection: close\r\n\r\n",
        b"GET /api/me HTTP/1.1\r\nHost: acme.example.test\r\nHost: globex.example.test\r\nConnection: close\r\n\r\n",
        b"GET /api/me HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET http://globex.example.test/api/me HTTP/1.1\r\nHost: acme.example.test\r\nConnection: close\r\n\r\n",
        b"GET http://acme.example.test/api/me HTTP/1.1\r\nConnection: close\r\n\r\n",
    ];
    for request in requests {
        let (status, body) = app.raw(request).await;
        assert_eq!(status, 400, "{}: {body}", String::from_utf8_lossy(request));
        let body: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
        assert_eq!(body["error"]["code"], "invalid_host");
    }
    // An absolute-form target that agrees with Host is fine.
    let (status, body) = app
        .raw(b"GET http://acme.example.test/api/me HTTP/1.1\r\nHost: acme.example.test\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(
        status, 401,
        "reaches the tenant (then wants a token): {body}"
    );
}

#[tokio::test]
async fn forwarding_headers_cannot_pick_the_tenant() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    let spoof = |token: &str| {
        app.get(&acme.host, "/api/me")
            .bearer_auth(token)
            .header("x-forwarded-host", &globex.host)
            .header("forwarded", format!("host={}", globex.host))
            .header("x-host", &globex.host)
            .header("x-original-host", &globex.host)
    };
    let with_globex_token = spoof(&globex.token).send().await.unwrap();
    assert_eq!(
        expect_error(with_globex_token, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
    let with_acme_token: Value = spoof(&acme.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(with_acme_token["tenant"]["slug"], "acme");
}

#[tokio::test]
async fn a_custom_domain_serves_its_tenant_and_only_its_tenant() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    app.add_domain("notes.acme.io", acme.id).await;

    for host in ["notes.acme.io", "NOTES.acme.io.", "notes.acme.io:443"] {
        let (status, body) = tenant_slug_seen(&app, host, &acme.token).await;
        assert_eq!(
            (status, body["tenant"]["slug"].clone()),
            (StatusCode::OK, json!("acme")),
            "{host}"
        );
    }
    let foreign = app
        .call(Method::GET, "notes.acme.io", "/api/me", &globex.token, None)
        .await;
    assert_eq!(
        expect_error(foreign, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
    let unregistered = app
        .call(
            Method::GET,
            "notes.globex.io",
            "/api/me",
            &globex.token,
            None,
        )
        .await;
    assert_eq!(
        expect_error(unregistered, StatusCode::NOT_FOUND).await,
        "unknown_tenant"
    );
}

#[tokio::test]
async fn a_suspended_tenant_is_403_even_with_a_valid_token() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    app.create_note(&acme, "kept while suspended").await;
    app.admin
        .execute(
            "update tenants set status = 'suspended' where id = $1",
            &[&acme.id],
        )
        .await
        .unwrap();
    let before = app.fingerprint(acme.id).await;

    let me = app
        .call(Method::GET, &acme.host, "/api/me", &acme.token, None)
        .await;
    assert_eq!(
        expect_error(me, StatusCode::FORBIDDEN).await,
        "tenant_suspended"
    );
    let write = app
        .call(
            Method::POST,
            &acme.host,
            "/api/notes",
            &acme.token,
            Some(json!({"content": "x"})),
        )
        .await;
    assert_eq!(
        expect_error(write, StatusCode::FORBIDDEN).await,
        "tenant_suspended"
    );
    let login = app
        .post(&acme.host, "/api/login")
        .json(&json!({"username": "acme-owner", "password": "owner-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(login, StatusCode::FORBIDDEN).await,
        "tenant_suspended"
    );
    let register = app
        .post(&acme.host, "/api/register")
        .json(&json!({"username": "newbie", "email": "n@acme.test", "password": "long-enough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(register, StatusCode::FORBIDDEN).await,
        "tenant_suspended"
    );

    assert_eq!(
        app.fingerprint(acme.id).await,
        before,
        "nothing written while suspended"
    );
    let neighbour = app
        .call(Method::GET, &globex.host, "/api/me", &globex.token, None)
        .await;
    assert_eq!(
        neighbour.status(),
        StatusCode::OK,
        "other tenants are unaffected"
    );
}

#[tokio::test]
async fn probes_answer_on_any_host_and_onboarding_only_on_the_apex() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    for host in [
        "my-service-abc123-uc.a.run.app",
        "acme.example.test",
        "10.0.0.1",
    ] {
        for path in ["/healthz", "/readyz"] {
            let response = app.get(host, path).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path} on {host}");
        }
    }
    let (status, _) = app
        .raw(b"GET /healthz HTTP/1.1\r\nHost: bad..host\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status, 200, "liveness does not depend on the Host");

    let on_tenant_host = app
        .post(&acme.host, "/api/tenants")
        .json(&json!({"slug": "sneaky", "name": "Sneaky", "owner": {"username": "sneak", "email": "s@s.test", "password": "long-enough"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(on_tenant_host, StatusCode::NOT_FOUND).await,
        "not_found"
    );
    let tenant_route_on_apex = app
        .call(Method::GET, BASE_DOMAIN, "/api/notes", &acme.token, None)
        .await;
    let text = tenant_route_on_apex.text().await.unwrap();
    assert_no_internals(&text);
    assert!(text.contains("unknown_tenant"), "{text}");
}

#[tokio::test]
async fn http2_requests_are_resolved_from_their_authority() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], app.port));
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve(&acme.host, address)
        .resolve(&globex.host, address)
        .build()
        .unwrap();
    let me = |host: &str, token: &str| {
        h2.get(format!("http://{host}:{}/api/me", app.port))
            .bearer_auth(token)
            .send()
    };

    let response = me(&acme.host, &acme.token).await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["tenant"]["slug"], "acme");
    let foreign = me(&globex.host, &acme.token).await.unwrap();
    assert_eq!(
        expect_error(foreign, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
}

#[tokio::test]
async fn a_suspension_applies_to_the_next_request_whatever_the_cache_holds() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.tenant_cache_ttl = std::time::Duration::from_secs(60);
    })
    .await;
    let acme = app.onboard("acme").await;
    // The resolver now remembers acme as active for a minute.
    assert_eq!(
        app.get(&acme.host, "/api/me")
            .bearer_auth(&acme.token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    app.admin
        .execute(
            "update tenants set status = 'suspended' where id = $1",
            &[&acme.id],
        )
        .await
        .unwrap();

    let me = app
        .get(&acme.host, "/api/me")
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(me, StatusCode::FORBIDDEN).await,
        "tenant_suspended"
    );
    let write = app
        .post(&acme.host, "/api/notes")
        .bearer_auth(&acme.token)
        .json(&json!({"content": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(write, StatusCode::FORBIDDEN).await,
        "tenant_suspended"
    );
    assert_eq!(app.count("notes", acme.id).await, 0);
}
