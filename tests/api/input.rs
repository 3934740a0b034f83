//! Bad input gets the specified 4xx with the JSON error shape: never a 500,
//! never a stack trace, SQL text or Rust type name.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    BASE_DOMAIN, TestApp, TestTenant, assert_no_internals, expect_error, note_contents, spawn_app,
};

/// Sends `body` (raw bytes, JSON content type) and returns the response.
async fn send(
    app: &TestApp,
    tenant: &TestTenant,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    app.request(method, &tenant.host, path)
        .bearer_auth(&tenant.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn note_bodies_are_validated_with_exact_statuses() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let note = app.create_note(&acme, "original").await;
    let before = app.fingerprint(acme.id).await;
    let long = "x".repeat(10_001);
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "malformed JSON",
            b"{\"content\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "trailing garbage",
            b"{\"content\": \"a\"} {}".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "invalid UTF-8",
            b"{\"content\": \"\xff\xfe\xfd\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "empty body",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "wrong type",
            br#"{"content": 42}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "null",
            br#"{"content": null}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "array body",
            br#"["content"]"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "missing field",
            br#"{}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "unknown field",
            br#"{"content": "a", "tenant_id": "x"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "mass assignment of user_id",
            br#"{"content": "a", "user_id": "x"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "duplicate field",
            br#"{"content": "a", "content": "b"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "blank",
            br#"{"content": "   "}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "NUL escape",
            br#"{"content": "a\u0000b"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "over-long",
            json!({"content": long}).to_string().into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
    ];
    for (what, body, status, code) in cases {
        for (method, path) in [
            (Method::POST, "/api/notes".to_owned()),
            (Method::PATCH, format!("/api/notes/{note}")),
        ] {
            let response = send(&app, &acme, method.clone(), &path, body.clone()).await;
            assert_eq!(
                expect_error(response, status).await,
                code,
                "{what} on {method} {path}"
            );
        }
    }
    assert_eq!(
        app.fingerprint(acme.id).await,
        before,
        "no bad input changed anything"
    );
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let response = send(
        &app,
        &acme,
        Method::POST,
        "/api/notes",
        br#"{"content": "a", "tenant_id": "x"}"#.to_vec(),
    )
    .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["field"], "tenant_id");
    let response = send(
        &app,
        &acme,
        Method::POST,
        "/api/notes",
        json!({"content": "é".repeat(10_001)})
            .to_string()
            .into_bytes(),
    )
    .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"],
        json!({"code": "validation_failed", "field": "content", "message": "content must be at most 10000 characters"})
    );
}

#[tokio::test]
async fn values_valid_in_json_but_beyond_a_program_are_422_naming_the_field() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    // RFC 8259 sets no range on numbers and allows unpaired surrogate escapes:
    // the body is JSON, the value is what cannot be accepted.
    for (body, field) in [
        (r#"{"content":1e999999}"#, "content"),
        (r#"{"content":-1e400}"#, "content"),
        (r#"{"content":"a\ud800b"}"#, "content"),
    ] {
        let response = send(&app, &acme, Method::POST, "/api/notes", body.into()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "validation_failed", "{body}");
        assert_eq!(error["error"]["field"], field, "{body}");
    }
    assert_eq!(app.count("notes", acme.id).await, 0);
}

#[tokio::test]
async fn content_types_other_than_json_are_415() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut request = app
            .post(&acme.host, "/api/notes")
            .bearer_auth(&acme.token)
            .body(r#"{"content":"a"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            expect_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await,
            "unsupported_media_type",
            "{content_type:?}"
        );
    }
    for content_type in [
        "application/json; charset=utf-8",
        "application/merge-patch+json",
        "Application/JSON",
    ] {
        let response = app
            .post(&acme.host, "/api/notes")
            .bearer_auth(&acme.token)
            .header("content-type", content_type)
            .body(r#"{"content":"a"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{content_type}");
    }
}

#[tokio::test]
async fn oversized_bodies_are_413_whether_announced_or_streamed() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let huge = vec![b'a'; 128 * 1024 + 1];
    let response = send(&app, &acme, Method::POST, "/api/notes", huge).await;
    // Refused by the body limit, before any handler: still never cached.
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    assert_eq!(
        expect_error(response, StatusCode::PAYLOAD_TOO_LARGE).await,
        "payload_too_large"
    );

    // Chunked, with no Content-Length to check up front.
    let chunk = "a".repeat(16 * 1024);
    let mut request = format!(
        "POST /api/notes HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        acme.host, acme.token
    );
    for _ in 0..9 {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    let (status, body) = app.raw(request.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");

    // Sign-in and sign-up take 8 KiB at most.
    let padded = json!({"username": "acme-owner", "password": "x".repeat(9 * 1024)});
    let login = app
        .post(&acme.host, "/api/login")
        .json(&padded)
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(login, StatusCode::PAYLOAD_TOO_LARGE).await,
        "payload_too_large"
    );
    assert_eq!(app.count("notes", acme.id).await, 0);
}

#[tokio::test]
async fn registration_input_is_validated_field_by_field() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let cases = [
        (
            json!({"username": "ab", "email": "a@b.test", "password": "long-enough"}),
            "username",
        ),
        (
            json!({"username": "bad name", "email": "a@b.test", "password": "long-enough"}),
            "username",
        ),
        (
            json!({"username": "nul\u{0}name", "email": "a@b.test", "password": "long-enough"}),
            "username",
        ),
        (
            json!({"username": "alice", "email": "not-an-email", "password": "long-enough"}),
            "email",
        ),
        (
            json!({"username": "alice", "email": "a@b.test", "password": "short"}),
            "password",
        ),
        (
            json!({"username": "alice", "email": "a@b.test", "password": "p".repeat(129)}),
            "password",
        ),
        (
            json!({"username": "alice", "email": "a@b.test"}),
            "password",
        ),
        (
            json!({"username": "alice", "email": "a@b.test", "password": "long-enough", "role": "owner"}),
            "role",
        ),
        (
            json!({"username": ["alice"], "email": "a@b.test", "password": "long-enough"}),
            "username",
        ),
    ];
    for (body, field) in cases {
        let response = app
            .post(&acme.host, "/api/register")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {text}");
        assert_no_internals(&text);
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["error"]["field"], field, "{body}");
    }
    assert_eq!(
        app.count("users", acme.id).await,
        1,
        "only the owner exists"
    );
}

#[tokio::test]
async fn malformed_paths_and_query_strings_are_400_and_bad_values_422() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let get = async |path: &str| {
        app.call(Method::GET, &acme.host, path, &acme.token, None)
            .await
    };

    for path in [
        "/api/notes/not-a-uuid",
        "/api/notes/1",
        "/api/notes/%00",
        "/api/notes?limit=ten",
        "/api/notes?limit=1&limit=2",
        "/api/notes?cursor=%%%",
        "/api/notes?cursor=bm9wZQ",
        // A forged cursor naming an instant PostgreSQL cannot store.
        "/api/notes?cursor=LTgwMDAwMDAwMDAwMDAwMDAwMDA6MDE5YTIwMjgtMDkwOC03NmE4LWExNzktMWVhMWFiN2U3YmVl",
    ] {
        assert_eq!(
            expect_error(get(path).await, StatusCode::BAD_REQUEST).await,
            "bad_request",
            "{path}"
        );
    }
    for path in [
        "/api/notes?limit=0",
        "/api/notes?limit=101",
        "/api/notes?limit=-1",
    ] {
        assert_eq!(
            expect_error(get(path).await, StatusCode::UNPROCESSABLE_ENTITY).await,
            "validation_failed",
            "{path}"
        );
    }
    let unknown_note = get(&format!("/api/notes/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(
        expect_error(unknown_note, StatusCode::NOT_FOUND).await,
        "not_found"
    );
    let echoed = get("/api/notes/<script>alert(1)</script>")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !echoed.contains("<script>"),
        "input is never echoed: {echoed}"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let missing = app
        .get(&acme.host, "/api/nothing-here")
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(missing, StatusCode::NOT_FOUND).await,
        "not_found"
    );

    let wrong_method = app
        .request(Method::PUT, &acme.host, "/api/notes")
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    let allow = wrong_method
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(
        expect_error(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await,
        "method_not_allowed"
    );
    assert!(
        allow.contains("GET") && allow.contains("POST"),
        "Allow: {allow}"
    );
    let trace = app
        .request(Method::TRACE, BASE_DOMAIN, "/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(trace, StatusCode::METHOD_NOT_ALLOWED).await,
        "method_not_allowed"
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id_we_chose_and_no_store() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let response = app
        .get(&acme.host, "/api/notes")
        .bearer_auth(&acme.token)
        .header("x-request-id", "client-chosen")
        .send()
        .await
        .unwrap();
    let id = response
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert_ne!(id, "client-chosen");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    let error = app.get(&acme.host, "/nope").send().await.unwrap();
    assert!(error.headers().get("x-request-id").is_some());
}

#[tokio::test]
async fn a_shower_of_hostile_bodies_gets_exact_client_errors() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let deep = format!("{}{}", "[".repeat(3_000), "]".repeat(3_000)).into_bytes();
    let escapes = format!("{{\"content\": \"{}\"}}", "\\u0041".repeat(1_000)).into_bytes();
    // (body, status on POST /api/notes, status on the other JSON endpoints)
    let cases: Vec<(Vec<u8>, u16, u16)> = vec![
        (b"null".to_vec(), 422, 422),
        (b"true".to_vec(), 422, 422),
        (b"\"content\"".to_vec(), 422, 422),
        // Valid JSON grammar (no range limit in RFC 8259), but not an object.
        (b"1e999999".to_vec(), 422, 422),
        (deep, 422, 422),
        // Grammatical, but an unpaired surrogate is no text: a bad value.
        (b"{\"content\": \"\\ud800\"}".to_vec(), 422, 422),
        (b"{\"content\": {\"$ne\": null}}".to_vec(), 422, 422),
        (
            b"{\"content\": \"'; drop table notes; --\"}".to_vec(),
            201,
            422,
        ),
        (escapes, 201, 422),
        (vec![0xef, 0xbb, 0xbf, b'{', b'}'], 400, 400),
        (vec![0; 100], 400, 400),
    ];
    let endpoints = [
        (acme.host.clone(), "/api/notes"),
        (acme.host.clone(), "/api/register"),
        (acme.host.clone(), "/api/login"),
        (BASE_DOMAIN.to_owned(), "/api/tenants"),
    ];
    for (body, on_notes, elsewhere) in &cases {
        for (host, path) in &endpoints {
            let response = app
                .post(host, path)
                .bearer_auth(&acme.token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let expected = if *path == "/api/notes" {
                *on_notes
            } else {
                *elsewhere
            };
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            assert_eq!(
                status,
                expected,
                "{path} with {:?}: {text}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            );
            assert_no_internals(&text);
        }
    }
    // Exactly the two valid note bodies were stored, verbatim.
    let notes: Value = app.get_json(&acme.host, "/api/notes", &acme.token).await;
    let contents = note_contents(&notes);
    assert_eq!(contents, [&"A".repeat(1_000), "'; drop table notes; --"]);
    assert_eq!(app.count("users", acme.id).await, 1);
}

#[tokio::test]
async fn the_largest_valid_note_fits_in_the_body_limit() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    // 10,000 astral characters, each written as a JSON surrogate-pair escape:
    // the largest body a valid note can have (about 120 KB).
    let content = "\\ud83d\\ude00".repeat(10_000);
    let body = format!("{{\"content\":\"{content}\"}}");
    assert!(body.len() > 64 * 1024);
    let response = send(&app, &acme, Method::POST, "/api/notes", body.into_bytes()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let note: Value = response.json().await.unwrap();
    assert_eq!(note["content"].as_str().unwrap().chars().count(), 10_000);
}
