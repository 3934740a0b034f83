//! Tenant B can neither see nor change tenant A's rows through the API, for
//! every tenant table the API reaches (`notes`, `users`); `tenant_domains` has
//! no API yet and is covered at the database level (database.rs). Every attack
//! asserts the exact status and that A's rows are byte-for-byte unchanged.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{expect_error, note_contents, spawn_app};

#[tokio::test]
async fn tenant_b_cannot_read_update_or_delete_tenant_a_notes() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    let secret = app.create_note(&acme, "acme's secret plan").await;
    app.create_note(&globex, "globex's own note").await;
    let before = app.fingerprint(acme.id).await;

    let path = format!("/api/notes/{secret}");
    let read = app
        .call(Method::GET, &globex.host, &path, &globex.token, None)
        .await;
    assert_eq!(expect_error(read, StatusCode::NOT_FOUND).await, "not_found");
    let update = app
        .call(
            Method::PATCH,
            &globex.host,
            &path,
            &globex.token,
            Some(json!({"content": "pwned"})),
        )
        .await;
    assert_eq!(
        expect_error(update, StatusCode::NOT_FOUND).await,
        "not_found"
    );
    let delete = app
        .call(Method::DELETE, &globex.host, &path, &globex.token, None)
        .await;
    assert_eq!(
        expect_error(delete, StatusCode::NOT_FOUND).await,
        "not_found"
    );
    let list: Value = app
        .get_json(&globex.host, "/api/notes", &globex.token)
        .await;
    let contents = note_contents(&list);
    assert_eq!(contents, ["globex's own note"]);

    assert_eq!(
        app.fingerprint(acme.id).await,
        before,
        "acme's rows changed"
    );
    let still_there = app
        .call(Method::GET, &acme.host, &path, &acme.token, None)
        .await;
    assert_eq!(still_there.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_missing_note_and_another_tenants_note_get_the_same_answer() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    let theirs = app.create_note(&acme, "acme only").await;
    let missing = uuid::Uuid::now_v7();

    let answer = async |id: uuid::Uuid| {
        let response = app
            .call(
                Method::GET,
                &globex.host,
                &format!("/api/notes/{id}"),
                &globex.token,
                None,
            )
            .await;
        (response.status(), response.text().await.unwrap())
    };
    assert_eq!(answer(theirs).await, answer(missing).await);
}

#[tokio::test]
async fn another_user_of_the_same_tenant_cannot_touch_my_notes() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let (_, mallory) = app.register(&acme.host, "mallory").await;
    let note = app.create_note(&acme, "owner's note").await;
    let before = app.fingerprint(acme.id).await;

    let path = format!("/api/notes/{note}");
    for response in [
        app.call(Method::GET, &acme.host, &path, &mallory, None)
            .await,
        app.call(
            Method::PATCH,
            &acme.host,
            &path,
            &mallory,
            Some(json!({"content": "x"})),
        )
        .await,
        app.call(Method::DELETE, &acme.host, &path, &mallory, None)
            .await,
    ] {
        assert_eq!(
            expect_error(response, StatusCode::NOT_FOUND).await,
            "not_found"
        );
    }
    let list: Value = app.get_json(&acme.host, "/api/notes", &mallory).await;
    assert_eq!(list["data"], json!([]));
    assert_eq!(app.fingerprint(acme.id).await, before);
}

#[tokio::test]
async fn a_token_for_one_tenant_is_rejected_by_another() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    let before = app.fingerprint(globex.id).await;

    let me = app
        .call(Method::GET, &globex.host, "/api/me", &acme.token, None)
        .await;
    assert_eq!(
        expect_error(me, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
    let create = app
        .call(
            Method::POST,
            &globex.host,
            "/api/notes",
            &acme.token,
            Some(json!({"content": "planted"})),
        )
        .await;
    assert_eq!(
        expect_error(create, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
    let list = app
        .call(Method::GET, &globex.host, "/api/notes", &acme.token, None)
        .await;
    assert_eq!(
        expect_error(list, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );

    assert_eq!(app.fingerprint(globex.id).await, before, "globex changed");
    assert_eq!(
        app.count("notes", acme.id).await,
        0,
        "nothing was written to acme either"
    );
}

#[tokio::test]
async fn me_shows_only_the_callers_own_user_and_tenant() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;

    let me: Value = app.get_json(&globex.host, "/api/me", &globex.token).await;
    assert_eq!(me["user"]["id"], json!(globex.owner_id));
    assert_eq!(me["user"]["username"], "globex-owner");
    assert_eq!(me["tenant"]["slug"], "globex");
    assert_eq!(me["tenant"]["id"], json!(globex.id));
    assert!(me["user"].get("password_hash").is_none());
    assert!(!me.to_string().contains(&acme.id.to_string()));
}

#[tokio::test]
async fn the_same_username_and_email_may_exist_in_two_tenants() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    let body = json!({"username": "sam", "email": "sam@shared.test", "password": "sam-password"});

    for tenant in [&acme, &globex] {
        let response = app
            .post(&tenant.host, "/api/register")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "no cross-tenant existence oracle on {}",
            tenant.slug
        );
    }
    // Each tenant's sam signs in only where they registered; the accounts are distinct.
    let acme_sam = app.login(&acme.host, "sam", "sam-password").await;
    let globex_sam = app.login(&globex.host, "sam", "sam-password").await;
    let who =
        async |host: &str, token: &str| -> Value { app.get_json(host, "/api/me", token).await };
    assert_ne!(
        who(&acme.host, &acme_sam).await["user"]["id"],
        who(&globex.host, &globex_sam).await["user"]["id"]
    );
}

#[tokio::test]
async fn duplicates_within_a_tenant_conflict_case_insensitively() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let register = async |username: &str, email: &str| {
        app.post(&acme.host, "/api/register")
            .json(&json!({"username": username, "email": email, "password": "long-enough"}))
            .send()
            .await
            .unwrap()
    };
    assert_eq!(
        register("sam", "sam@acme.test").await.status(),
        StatusCode::CREATED
    );

    let same_name = register("SAM", "other@acme.test").await;
    assert_eq!(
        expect_error(same_name, StatusCode::CONFLICT).await,
        "conflict"
    );
    let same_email = register("samuel", "Sam@ACME.test").await;
    assert_eq!(
        expect_error(same_email, StatusCode::CONFLICT).await,
        "conflict"
    );
    assert_eq!(
        app.count("users", acme.id).await,
        2,
        "the owner and sam, nobody else"
    );
}

#[tokio::test]
async fn tenant_b_cannot_sign_in_with_tenant_a_credentials() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    let before = app.fingerprint(acme.id).await;

    let response = app
        .post(&globex.host, "/api/login")
        .json(&json!({"username": "acme-owner", "password": "owner-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(response, StatusCode::UNAUTHORIZED).await,
        "invalid_credentials"
    );
    assert_eq!(app.fingerprint(acme.id).await, before);
}

#[tokio::test]
async fn one_pooled_connection_serving_alternate_tenants_never_mixes_them() {
    let app = crate::helpers::spawn_app_with(|settings| settings.database.pool_size = 1).await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    app.create_note(&acme, "acme only").await;
    app.create_note(&globex, "globex only").await;

    // Every request below runs on the same database connection.
    for _ in 0..3 {
        for (tenant, expected) in [(&acme, "acme only"), (&globex, "globex only")] {
            let page = app
                .get_json(&tenant.host, "/api/notes", &tenant.token)
                .await;
            assert_eq!(note_contents(&page), [expected]);
        }
    }
    let backends: i64 = app
        .admin
        .query_one("select count(*) from pg_stat_activity where datname = current_database() and usename = 'tenantry_app'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(backends, 1, "the service used exactly one connection");
}
