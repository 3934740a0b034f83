//! Notes as a user sees them: create, read, update, delete, and keyset
//! pagination newest first.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{expect_error, spawn_app};

#[tokio::test]
async fn a_note_can_be_created_read_updated_and_deleted() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;

    let created = app
        .call(
            Method::POST,
            &acme.host,
            "/api/notes",
            &acme.token,
            Some(json!({"content": "  first draft\n"})),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let note: Value = created.json().await.unwrap();
    assert_eq!(
        note["content"], "  first draft\n",
        "content is stored verbatim"
    );
    assert_eq!(
        location,
        format!("/v1/notes/{}", note["id"].as_str().unwrap())
    );
    assert_eq!(note["created_at"], note["updated_at"]);

    let read: Value = app.get_json(&acme.host, &location, &acme.token).await;
    assert_eq!(read, note);

    let updated = app
        .call(
            Method::PATCH,
            &acme.host,
            &location,
            &acme.token,
            Some(json!({"content": "final"})),
        )
        .await;
    assert_eq!(updated.status(), StatusCode::OK);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(
        (updated["id"].clone(), updated["content"].clone()),
        (note["id"].clone(), json!("final"))
    );
    assert_eq!(updated["created_at"], note["created_at"]);
    assert!(updated["updated_at"].as_str().unwrap() > note["updated_at"].as_str().unwrap());

    let deleted = app
        .call(Method::DELETE, &acme.host, &location, &acme.token, None)
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(deleted.text().await.unwrap(), "");
    for response in [
        app.call(Method::GET, &acme.host, &location, &acme.token, None)
            .await,
        app.call(Method::DELETE, &acme.host, &location, &acme.token, None)
            .await,
        app.call(
            Method::PATCH,
            &acme.host,
            &location,
            &acme.token,
            Some(json!({"content": "zombie"})),
        )
        .await,
    ] {
        assert_eq!(
            expect_error(response, StatusCode::NOT_FOUND).await,
            "not_found"
        );
    }
    assert_eq!(app.count("notes", acme.id).await, 0);
}

#[tokio::test]
async fn notes_are_listed_newest_first_in_pages_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let mut created = Vec::new();
    for index in 0..25 {
        created.push(app.create_note(&acme, &format!("note {index}")).await);
    }
    created.reverse(); // newest first

    let page = async |query: &str| -> Value {
        app.get_json(&acme.host, &format!("/api/notes{query}"), &acme.token)
            .await
    };
    let ids = |page: &Value| -> Vec<uuid::Uuid> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().parse().unwrap())
            .collect()
    };

    let first = page("").await;
    assert_eq!(ids(&first), created[..20], "default page: 20, newest first");
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = page(&format!("?cursor={cursor}")).await;
    assert_eq!(ids(&second), created[20..]);
    assert_eq!(second["next_cursor"], Value::Null, "last page");

    let mut walked = Vec::new();
    let mut query = "?limit=7".to_owned();
    loop {
        let page = page(&query).await;
        walked.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=7&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(walked, created);
    assert_eq!(walked.iter().collect::<HashSet<_>>().len(), 25);

    let everything = page("?limit=100").await;
    assert_eq!(ids(&everything), created);
    assert_eq!(everything["next_cursor"], Value::Null);
}

#[tokio::test]
async fn an_empty_list_is_an_empty_page() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let page: Value = app.get_json(&acme.host, "/api/notes", &acme.token).await;
    assert_eq!(
        page,
        json!({"data": [], "has_more": false, "next_cursor": null})
    );
}

#[tokio::test]
async fn a_token_whose_user_was_deleted_authenticates_nobody() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let (member, token) = app.register(&acme.host, "leaver").await;
    app.admin
        .execute("delete from users where id = $1", &[&member])
        .await
        .unwrap();

    let me = app
        .call(Method::GET, &acme.host, "/api/me", &token, None)
        .await;
    assert_eq!(
        expect_error(me, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
    let write = app
        .call(
            Method::POST,
            &acme.host,
            "/api/notes",
            &token,
            Some(json!({"content": "orphan"})),
        )
        .await;
    assert_eq!(
        expect_error(write, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
    assert_eq!(app.count("notes", acme.id).await, 0);
}
