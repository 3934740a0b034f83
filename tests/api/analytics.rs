//! Cross-tenant analytics: exact per-tenant numbers through the analytics
//! role, every read recorded, and the runtime role still unable to read
//! across tenants (or to call the analytics path at all).

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio_postgres::error::SqlState;

use crate::helpers::{connect, expect_error, spawn_app, spawn_app_with};

async fn usage_reads(app: &crate::helpers::TestApp) -> Vec<(String, Option<String>)> {
    app.admin
        .query("select actor, request_id from platform_audit_events where action = 'analytics.usage_read' order by at", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn stats_count_each_tenant_exactly_and_every_read_is_recorded() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await; // signs the owner in once
    app.register(&acme.host, "anna").await; // and anna once
    for n in 0..3 {
        app.create_note(&acme, &format!("note {n}")).await;
    }
    let response = app
        .post(&acme.host, "/api/login")
        .json(&serde_json::json!({"username": "anna", "password": "wrong-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "a failed sign-in is not a login"
    );
    let globex = app.onboard("globex").await;
    app.create_note(&globex, "globex note").await;

    let response = app.admin_call(Method::GET, "/admin/stats", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let report: Value = response.json().await.unwrap();
    let tenants = report["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 2);
    let by_slug = |slug: &str| tenants.iter().find(|t| t["slug"] == slug).unwrap().clone();
    let (a, g) = (by_slug("acme"), by_slug("globex"));
    assert_eq!(
        (
            a["users"].as_i64(),
            a["notes"].as_i64(),
            a["logins_24h"].as_i64()
        ),
        (Some(2), Some(3), Some(2))
    );
    assert_eq!(
        (
            g["users"].as_i64(),
            g["notes"].as_i64(),
            g["logins_24h"].as_i64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert!(a["storage_bytes"].as_i64().unwrap() > g["storage_bytes"].as_i64().unwrap());
    assert_eq!(a["tenant_id"], acme.id.to_string());
    assert_eq!(a["plan"], "free");
    let body = serde_json::to_string(&report).unwrap();
    assert!(
        !body.contains("note 0") && !body.contains("anna"),
        "aggregates only: {body}"
    );

    app.ops().usage("cli", None).await.expect("the CLI's path");
    assert_eq!(
        usage_reads(&app).await,
        [
            ("admin-api".to_owned(), Some(request_id)),
            ("cli".to_owned(), None)
        ]
    );
}

#[tokio::test]
async fn without_an_analytics_database_stats_are_not_enabled() {
    let app = spawn_app_with(|settings| {
        if let Some(api) = &mut settings.admin_api {
            api.ops.analytics_database = None;
        }
    })
    .await;
    let response = app.admin_call(Method::GET, "/admin/stats", None).await;
    assert_eq!(
        expect_error(response, StatusCode::NOT_FOUND).await,
        "not_found"
    );
}

#[tokio::test]
async fn only_the_analytics_role_reads_usage_and_it_reads_nothing_else() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    app.create_note(&acme, "acme secret").await;
    app.create_note(&globex, "globex secret").await;

    let runtime = app.connect_as_runtime_role().await;
    for sql in [
        "select * from tenant_usage('runtime', null)",
        "select * from platform_audit_events",
        "select * from tenants",
    ] {
        let error = runtime.query(sql, &[]).await.expect_err(sql);
        assert_eq!(
            error.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}"
        );
    }
    // Bound to acme, the runtime role sees acme's notes and nothing of globex.
    runtime.batch_execute("begin").await.unwrap();
    runtime
        .execute(crate::helpers::BIND_TENANT, &[&acme.id])
        .await
        .unwrap();
    let visible: Vec<String> = runtime
        .query("select content from notes", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(visible, ["acme secret"]);
    runtime.batch_execute("commit").await.unwrap();
    let unbound: i64 = runtime
        .query_one("select count(*) from notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(unbound, 0, "no tenant bound: nothing");

    let analytics = connect(&app.cluster.config_for("tenantry_analytics", &app.dbname)).await;
    for sql in [
        "select * from notes",
        "select * from users",
        "select * from tenants",
        "select * from audit_events",
    ] {
        let error = analytics.query(sql, &[]).await.expect_err(sql);
        assert_eq!(
            error.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}"
        );
    }
    let rows = analytics
        .query("select slug, notes from tenant_usage('test', null)", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let after: String = analytics
        .query_one("select current_setting('app.tenant_id', true)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, "", "the function leaves no tenant bound");
}
