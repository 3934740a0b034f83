//! A tenant's owner manages its users and reads its audit trail.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;

use crate::helpers::{expect_error, spawn_app};

#[tokio::test]
async fn the_owner_lists_users_and_members_may_not() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let (_, anna) = app.register(&acme.host, "anna").await;
    app.register(&acme.host, "bert").await;

    let first = app
        .get_json(&acme.host, "/api/users?limit=2", &acme.token)
        .await;
    let names: Vec<&str> = first["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bert", "anna"], "newest first");
    assert!(first["users"][0].get("password_hash").is_none());
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app
        .get_json(
            &acme.host,
            &format!("/api/users?limit=2&cursor={cursor}"),
            &acme.token,
        )
        .await;
    assert_eq!(second["users"][0]["username"], "acme-owner");
    assert_eq!(second["next_cursor"], Value::Null);

    let member = app
        .call(Method::GET, &acme.host, "/api/users", &anna, None)
        .await;
    assert_eq!(
        expect_error(member, StatusCode::FORBIDDEN).await,
        "forbidden"
    );
}

#[tokio::test]
async fn a_removed_users_token_stops_working_at_once() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let (anna_id, anna) = app.register(&acme.host, "anna").await;
    let note = app
        .call(
            Method::POST,
            &acme.host,
            "/api/notes",
            &anna,
            Some(json!({"content": "anna's"})),
        )
        .await;
    let note_id = note.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let removed = app
        .call(
            Method::DELETE,
            &acme.host,
            &format!("/api/users/{anna_id}"),
            &acme.token,
            None,
        )
        .await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    for (method, path) in [
        (Method::GET, "/api/me".to_owned()),
        (Method::GET, "/api/notes".to_owned()),
        (Method::GET, format!("/api/notes/{note_id}")),
    ] {
        let response = app.call(method, &acme.host, &path, &anna, None).await;
        assert_eq!(
            expect_error(response, StatusCode::UNAUTHORIZED).await,
            "unauthorized",
            "{path}"
        );
    }
    // A write is sent along with the check of the user; it is rolled back.
    let write = app
        .call(
            Method::POST,
            &acme.host,
            "/api/notes",
            &anna,
            Some(json!({"content": "after removal"})),
        )
        .await;
    assert_eq!(
        expect_error(write, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
    assert_eq!(
        app.count("notes", acme.id).await,
        0,
        "the removed user's notes went with them, and nothing was written since"
    );
    let again = app
        .call(
            Method::DELETE,
            &acme.host,
            &format!("/api/users/{anna_id}"),
            &acme.token,
            None,
        )
        .await;
    assert_eq!(
        expect_error(again, StatusCode::NOT_FOUND).await,
        "not_found"
    );
}

#[tokio::test]
async fn an_owner_cannot_remove_themselves_and_members_cannot_remove_anyone() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let (anna_id, anna) = app.register(&acme.host, "anna").await;
    let (bert_id, _) = app.register(&acme.host, "bert").await;

    let itself = app
        .call(
            Method::DELETE,
            &acme.host,
            &format!("/api/users/{}", acme.owner_id),
            &acme.token,
            None,
        )
        .await;
    assert_eq!(expect_error(itself, StatusCode::CONFLICT).await, "conflict");
    for target in [bert_id, anna_id, acme.owner_id] {
        let response = app
            .call(
                Method::DELETE,
                &acme.host,
                &format!("/api/users/{target}"),
                &anna,
                None,
            )
            .await;
        assert_eq!(
            expect_error(response, StatusCode::FORBIDDEN).await,
            "forbidden"
        );
    }
    assert_eq!(app.count("users", acme.id).await, 3);
}

#[tokio::test]
async fn the_audit_trail_records_who_did_what_in_which_request() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let (anna_id, anna) = app.register(&acme.host, "anna").await;
    let failed = app
        .post(&acme.host, "/api/login")
        .json(&json!({"username": "anna", "password": "not-hers!"}))
        .send()
        .await
        .unwrap();
    let failed_request = failed.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
    app.post(&acme.host, "/api/login")
        .json(&json!({"username": "nobody", "password": "whatever1"}))
        .send()
        .await
        .unwrap();
    let note = app
        .call(
            Method::POST,
            &acme.host,
            "/api/notes",
            &anna,
            Some(json!({"content": "to delete"})),
        )
        .await;
    let note_id = note.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.call(
        Method::DELETE,
        &acme.host,
        &format!("/api/notes/{note_id}"),
        &anna,
        None,
    )
    .await;

    let trail = app
        .get_json(&acme.host, "/api/audit?limit=100", &acme.token)
        .await;
    let text = trail.to_string();
    let events: Vec<(String, String, Value)> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"]["kind"].as_str().unwrap().to_owned(),
                e["subject"].clone(),
            )
        })
        .collect();
    let anna = anna_id.to_string();
    let expected = [
        ("tenant.created", "anonymous", json!("acme")),
        (
            "user.registered",
            "anonymous",
            json!(acme.owner_id.to_string()),
        ),
        ("login.succeeded", "user", json!(acme.owner_id.to_string())),
        ("user.registered", "anonymous", json!(anna)),
        ("login.succeeded", "user", json!(anna)),
        ("login.failed", "anonymous", json!(anna)),
        ("login.failed", "anonymous", Value::Null),
        ("note.deleted", "user", json!(note_id)),
    ];
    let expected: Vec<(String, String, Value)> = expected
        .into_iter()
        .map(|(a, k, s)| (a.to_owned(), k.to_owned(), s))
        .collect();
    assert_eq!(events, expected);
    let failed_event = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "login.failed" && e["subject"] == json!(anna))
        .unwrap();
    assert_eq!(failed_event["request_id"], json!(failed_request));
    for secret in [
        "not-hers!",
        "member-password",
        "owner-password",
        "nobody",
        "argon2",
        "@mail.test",
    ] {
        assert!(
            !text.contains(secret),
            "the trail must not contain {secret:?}"
        );
    }
}

#[tokio::test]
async fn members_may_not_read_the_trail_and_other_tenants_never_see_it() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    let (_, anna) = app.register(&acme.host, "anna").await;

    let member = app
        .call(Method::GET, &acme.host, "/api/audit", &anna, None)
        .await;
    assert_eq!(
        expect_error(member, StatusCode::FORBIDDEN).await,
        "forbidden"
    );
    let theirs = app
        .get_json(&globex.host, "/api/audit?limit=100", &globex.token)
        .await
        .to_string();
    assert!(
        !theirs.contains(&acme.owner_id.to_string()) && !theirs.contains("\"acme\""),
        "{theirs}"
    );
}

#[tokio::test]
async fn the_runtime_role_can_append_to_the_trail_but_never_rewrite_it() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let before: i64 = app.count("audit_events", acme.id).await;
    let mut runtime = app.connect_as_runtime_role().await;
    for sql in [
        "update audit_events set action = 'login.succeeded'",
        "delete from audit_events",
        "truncate audit_events",
    ] {
        let tx = runtime.transaction().await.unwrap();
        tx.execute(crate::helpers::BIND_TENANT, &[&acme.id])
            .await
            .unwrap();
        let error = tx.batch_execute(sql).await.expect_err(sql);
        assert_eq!(
            error.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {error}"
        );
    }
    assert_eq!(app.count("audit_events", acme.id).await, before);
}
