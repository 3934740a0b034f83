//! When the database is slow, saturated or gone: a 503 with `Retry-After`
//! within the configured bounds, never a hang and never a 500, nothing half
//! committed, and recovery without a restart.

use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, TestTenant, connect, expect_error, spawn_app, spawn_app_with};

async fn expect_unavailable(response: Response, code: &str) {
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned())
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        expect_error(response, StatusCode::SERVICE_UNAVAILABLE).await,
        code
    );
}

async fn content_of(app: &TestApp, note: uuid::Uuid) -> String {
    let fresh = connect(&app.cluster.superuser_on(&app.dbname)).await;
    fresh
        .query_one("select content from notes where id = $1", &[&note])
        .await
        .unwrap()
        .get(0)
}

/// Starts an update of `note` that will wait on `lock`.
fn update_in_background(
    app: &TestApp,
    tenant: &TestTenant,
    note: uuid::Uuid,
) -> tokio::task::JoinHandle<reqwest::Result<Response>> {
    let request = app
        .patch(&tenant.host, &format!("/api/notes/{note}"))
        .bearer_auth(&tenant.token)
        .json(&json!({"content": "changed"}));
    tokio::spawn(request.send())
}

#[tokio::test]
async fn an_exhausted_pool_answers_503_after_the_pool_timeout_instead_of_hanging() {
    let app = spawn_app_with(|settings| {
        settings.database.pool_size = 1;
        settings.database.pool_timeout = Duration::from_millis(300);
    })
    .await;
    let acme = app.onboard("acme").await;
    let note = app.create_note(&acme, "original").await;
    let lock = app.lock_note(note).await;
    let holder = update_in_background(&app, &acme, note);
    app.wait_until_blocked_on_a_lock().await;

    // The only connection is busy: this request waits 300 ms for it, then sheds.
    let shed = app
        .call(Method::GET, &acme.host, "/api/notes", &acme.token, None)
        .await;
    expect_unavailable(shed, "unavailable").await;

    lock.release().await;
    assert_eq!(holder.await.unwrap().unwrap().status(), StatusCode::OK);
    let after = app
        .call(Method::GET, &acme.host, "/api/notes", &acme.token, None)
        .await;
    assert_eq!(
        after.status(),
        StatusCode::OK,
        "the pool serves again once the connection is free"
    );
}

#[tokio::test]
async fn a_request_over_the_deadline_is_503_and_its_transaction_rolls_back() {
    let app =
        spawn_app_with(|settings| settings.request_timeout = Duration::from_millis(500)).await;
    let acme = app.onboard("acme").await;
    let note = app.create_note(&acme, "original").await;
    let lock = app.lock_note(note).await;

    let timed_out = update_in_background(&app, &acme, note)
        .await
        .unwrap()
        .unwrap();
    expect_unavailable(timed_out, "timeout").await;
    lock.release().await;

    // The abandoned UPDATE ran once the lock was free, then its transaction rolled back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(content_of(&app, note).await, "original");
    let next = app
        .call(
            Method::GET,
            &acme.host,
            &format!("/api/notes/{note}"),
            &acme.token,
            None,
        )
        .await;
    assert_eq!(
        next.status(),
        StatusCode::OK,
        "the connection came back clean"
    );
}

#[tokio::test]
async fn a_statement_over_the_statement_timeout_is_503_and_changes_nothing() {
    let app =
        spawn_app_with(|settings| settings.database.statement_timeout = Duration::from_millis(300))
            .await;
    let acme = app.onboard("acme").await;
    let note = app.create_note(&acme, "original").await;
    let lock = app.lock_note(note).await;

    let cancelled = update_in_background(&app, &acme, note)
        .await
        .unwrap()
        .unwrap();
    expect_unavailable(cancelled, "unavailable").await;
    lock.release().await;
    assert_eq!(content_of(&app, note).await, "original");
}

#[tokio::test]
async fn a_database_outage_is_503_and_the_service_recovers_without_a_restart() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    app.create_note(&acme, "survives the outage").await;
    let control = connect(&app.cluster.superuser_on("postgres")).await;
    let db = &app.dbname;
    control
        .batch_execute(&format!(
            "alter database \"{db}\" allow_connections false;
             select pg_terminate_backend(pid) from pg_stat_activity where datname = '{db}';"
        ))
        .await
        .unwrap();

    let read = app
        .call(Method::GET, &acme.host, "/api/notes", &acme.token, None)
        .await;
    expect_unavailable(read, "unavailable").await;
    let write = app
        .call(
            Method::POST,
            &acme.host,
            "/api/notes",
            &acme.token,
            Some(json!({"content": "lost?"})),
        )
        .await;
    expect_unavailable(write, "unavailable").await;
    expect_unavailable(
        app.get(&acme.host, "/readyz").send().await.unwrap(),
        "unavailable",
    )
    .await;
    let live = app.get(&acme.host, "/healthz").send().await.unwrap();
    assert_eq!(
        live.status(),
        StatusCode::OK,
        "liveness does not depend on the database"
    );

    control
        .batch_execute(&format!("alter database \"{db}\" allow_connections true"))
        .await
        .unwrap();
    let page = app.get_json(&acme.host, "/api/notes", &acme.token).await;
    assert_eq!(
        crate::helpers::note_contents(&page),
        ["survives the outage"],
        "nothing was written during the outage"
    );
    assert_eq!(
        app.get(&acme.host, "/readyz")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}
