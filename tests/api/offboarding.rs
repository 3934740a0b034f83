//! Offboarding: suspension, and purging every row of one tenant, atomically
//! or in resumable batches, without touching any other tenant. Failures are
//! injected with triggers planted by the superuser.

use reqwest::StatusCode;
use serde_json::Value;
use tenantry::{admin::tenants::TenantChange, domain::TenantStatus, error::ApiError};

use crate::helpers::{TestApp, TestTenant, expect_error, spawn_app};

/// A tenant with an owner, a member, `notes` notes; returns it.
async fn populated(app: &TestApp, slug: &str, notes: usize) -> TestTenant {
    let tenant = app.onboard(slug).await;
    app.register(&tenant.host, &format!("{slug}-member")).await;
    for n in 0..notes {
        app.create_note(&tenant, &format!("{slug} note {n}")).await;
    }
    tenant
}

async fn suspend(app: &TestApp, slug: &str) {
    let change = TenantChange {
        status: Some(TenantStatus::Suspended),
        ..TenantChange::default()
    };
    app.ops()
        .update_tenant(slug, change, None)
        .await
        .expect("suspend");
}

/// Full fingerprints of the neighbours.
async fn neighbours(app: &TestApp, tenants: &[&TestTenant]) -> Vec<String> {
    let mut digests = Vec::new();
    for tenant in tenants {
        digests.push(app.full_fingerprint(tenant.id).await);
    }
    digests
}

async fn platform_events(app: &TestApp, action: &str, slug: &str) -> i64 {
    app.admin
        .query_one(
            "select count(*) from platform_audit_events where action = $1 and details->>'slug' = $2",
            &[&action, &slug],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_suspended_tenant_is_purged_entirely_and_its_neighbours_not_at_all() {
    let app = spawn_app().await;
    let acme = populated(&app, "acme", 4).await;
    let globex = populated(&app, "globex", 3).await;
    let initech = populated(&app, "initech", 2).await;
    app.add_domain("notes.acme.io", acme.id).await;
    let before = neighbours(&app, &[&globex, &initech]).await;
    let ops = app.ops();

    // Not while it is active.
    let refused = ops.purge_tenant("acme", 5_000, None).await;
    assert!(matches!(refused, Err(ApiError::Conflict(_))), "{refused:?}");
    let rows = app.rows_of(acme.id).await;

    suspend(&app, "acme").await;
    let response = app
        .get(&acme.host, "/api/notes")
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(response, StatusCode::FORBIDDEN).await,
        "tenant_suspended"
    );
    let rows_when_suspended = app.rows_of(acme.id).await;
    assert_eq!(
        rows_when_suspended,
        rows + 1,
        "the suspension is one more audit event"
    );

    let report = ops.purge_tenant("acme", 5_000, None).await.expect("purge");
    assert_eq!(
        report.transactions, 1,
        "a small tenant goes in one transaction"
    );
    assert_eq!(report.deleted["notes"], 4);
    assert_eq!(report.deleted["users"], 2);
    assert_eq!(report.deleted["tenant_domains"], 1);
    let deleted: u64 = report.deleted.values().sum();
    assert_eq!(
        i64::try_from(deleted).unwrap() + 1,
        rows_when_suspended,
        "every row, plus the registry row"
    );
    assert_eq!(app.rows_of(acme.id).await, 0);
    assert_eq!(neighbours(&app, &[&globex, &initech]).await, before);
    assert_eq!(platform_events(&app, "tenant.purged", "acme").await, 1);

    // Gone from every host; purging again finds nothing.
    let response = app
        .get(&acme.host, "/api/notes")
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(response, StatusCode::NOT_FOUND).await,
        "unknown_tenant"
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
    let again = ops.purge_tenant("acme", 5_000, None).await;
    assert!(matches!(again, Err(ApiError::NotFound(_))), "{again:?}");
}

#[tokio::test]
async fn a_batched_purge_that_fails_half_way_resumes_to_the_same_end() {
    let app = spawn_app().await;
    let acme = populated(&app, "acme", 21).await;
    let globex = populated(&app, "globex", 3).await;
    suspend(&app, "acme").await;
    let before = neighbours(&app, &[&globex]).await;
    // The 13th note deleted fails: batches of 5 commit twice, the third rolls back.
    // By content, not by a counter: on Citus the trigger fires on a worker's
    // shard, which no sequence of the coordinator's reaches. Batches take
    // rows in physical order, the order they were inserted in.
    app.plant(&[
        "create function fail_on_the_13th() returns trigger language plpgsql as $$
         begin
             if old.content = 'acme note 12' then
                 raise exception 'injected failure';
             end if;
             return old;
         end $$",
        "create trigger injected before delete on notes for each row execute function fail_on_the_13th()",
    ])
    .await;
    let ops = app.ops();
    let mut backup = Vec::new();
    ops.export_tenant("acme", &mut backup, &indicatif::ProgressBar::hidden(), None)
        .await
        .unwrap();

    let failed = ops.purge_tenant("acme", 5, None).await;
    assert!(failed.is_err(), "the injected failure must surface");
    assert_eq!(
        app.count("notes", acme.id).await,
        11,
        "two batches of 5 committed, the third rolled back"
    );
    assert_eq!(app.count("users", acme.id).await, 2);
    assert_eq!(
        app.count_where("tenants", "id", acme.id).await,
        1,
        "the registry row goes last"
    );
    assert_eq!(neighbours(&app, &[&globex]).await, before);
    let response = app
        .get(&acme.host, "/api/notes")
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(response, StatusCode::FORBIDDEN).await,
        "tenant_suspended",
        "a half-purged tenant stays suspended"
    );

    // A half-purged tenant is not resumed: it would serve with data missing.
    let resume = TenantChange {
        status: Some(TenantStatus::Active),
        ..TenantChange::default()
    };
    let resumed = ops.update_tenant("acme", resume, None).await;
    assert!(matches!(resumed, Err(ApiError::Conflict(_))), "{resumed:?}");

    app.admin
        .batch_execute("drop trigger injected on notes")
        .await
        .unwrap();
    let report = ops
        .purge_tenant("acme", 5, None)
        .await
        .expect("the resumed purge");
    assert!(report.transactions > 1, "{report:?}");
    assert_eq!(report.deleted["notes"], 11, "only what was left");
    assert_eq!(app.rows_of(acme.id).await, 0);
    assert_eq!(neighbours(&app, &[&globex]).await, before);
    assert_eq!(
        platform_events(&app, "tenant.purge_started", "acme").await,
        2
    );
    assert_eq!(platform_events(&app, "tenant.purged", "acme").await, 1);

    // Restored from the backup under its old id, it may be resumed again.
    ops.import_tenant(
        &mut &backup[..],
        tenantry::admin::transfer::ImportTarget::Same,
        &indicatif::ProgressBar::hidden(),
        None,
    )
    .await
    .expect("restore");
    ops.update_tenant("acme", resume, None)
        .await
        .expect("a restored tenant resumes");
    assert_eq!(app.count("notes", acme.id).await, 21);
}

#[tokio::test]
async fn an_atomic_purge_that_fails_leaves_the_tenant_whole() {
    let app = spawn_app().await;
    let acme = populated(&app, "acme", 3).await;
    suspend(&app, "acme").await;
    let before = app.full_fingerprint(acme.id).await;
    app.plant(&[
        "create function refuse() returns trigger language plpgsql as $$
         begin raise exception 'injected failure'; end $$",
        "create trigger injected before delete on tenants for each row execute function refuse()",
    ])
    .await;

    let failed = app.ops().purge_tenant("acme", 5_000, None).await;
    assert!(failed.is_err());
    assert_eq!(
        app.full_fingerprint(acme.id).await,
        before,
        "all of it or none of it"
    );
    assert_eq!(platform_events(&app, "tenant.purged", "acme").await, 0);

    app.admin
        .batch_execute("drop trigger injected on tenants")
        .await
        .unwrap();
    app.ops()
        .purge_tenant("acme", 5_000, None)
        .await
        .expect("purge");
    assert_eq!(app.rows_of(acme.id).await, 0);
}

#[tokio::test]
async fn suspension_applies_to_the_next_request_even_with_tokens_already_issued() {
    let app = spawn_app().await;
    let acme = populated(&app, "acme", 1).await;
    let globex = populated(&app, "globex", 1).await;
    let (_, member_token) = app.register(&acme.host, "late-member").await;
    let response = app
        .get(&acme.host, "/api/notes")
        .bearer_auth(&member_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let response = app
        .admin_call(
            reqwest::Method::PATCH,
            "/admin/tenants/acme",
            Some(serde_json::json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "suspended");

    for (token, path) in [
        (&member_token, "/api/notes"),
        (&acme.token, "/api/audit"),
        (&acme.token, "/api/me"),
    ] {
        let response = app
            .get(&acme.host, path)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_error(response, StatusCode::FORBIDDEN).await,
            "tenant_suspended",
            "{path}"
        );
    }
    let response = app
        .post(&acme.host, "/api/login")
        .json(&serde_json::json!({"username": "acme-owner", "password": "owner-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(response, StatusCode::FORBIDDEN).await,
        "tenant_suspended"
    );
    let response = app
        .get(&globex.host, "/api/notes")
        .bearer_auth(&globex.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a neighbour is not affected"
    );

    let response = app
        .admin_call(
            reqwest::Method::PATCH,
            "/admin/tenants/acme",
            Some(serde_json::json!({"status": "active"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .get(&acme.host, "/api/notes")
        .bearer_auth(&member_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "resumed: unexpired tokens work again"
    );

    let trail = app
        .get_json(&acme.host, "/api/audit?limit=100", &acme.token)
        .await;
    let actions: Vec<(&str, &str)> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["action"].as_str().unwrap(),
                event["actor"]["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        actions.contains(&("tenant.suspended", "admin")),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("tenant.resumed", "admin")),
        "{actions:?}"
    );
}
