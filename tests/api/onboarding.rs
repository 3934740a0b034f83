//! Onboarding on the apex host: tenant and owner in one transaction.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{BASE_DOMAIN, TestApp, expect_error, spawn_app, spawn_app_with};

fn request(slug: &str) -> Value {
    json!({
        "slug": slug,
        "name": "Initech",
        "plan": "free",
        "owner": {"username": "peter", "email": "peter@initech.test", "password": "peter-password"}
    })
}

async fn tenant_count(app: &TestApp) -> i64 {
    app.admin
        .query_one("select count(*) from tenants", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn onboarding_creates_the_tenant_and_its_owner_who_can_sign_in() {
    let app = spawn_app().await;
    let response = app
        .post(BASE_DOMAIN, "/api/tenants")
        .json(&request("initech"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["tenant"]["slug"], "initech");
    assert_eq!(body["tenant"]["plan"], "free");
    assert_eq!(body["tenant"]["status"], "active");
    assert_eq!(body["host"], "initech.example.test");
    assert_eq!(body["owner"]["role"], "owner");
    assert!(body["owner"].get("password_hash").is_none());

    let tenant_id: uuid::Uuid = body["tenant"]["id"].as_str().unwrap().parse().unwrap();
    let stored_hash: String = app
        .admin
        .query_one(
            "select password_hash from users where tenant_id = $1",
            &[&tenant_id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        stored_hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "argon2id with OWASP parameters"
    );
    let token = app
        .login("initech.example.test", "peter", "peter-password")
        .await;
    let me: Value = app
        .get_json("initech.example.test", "/api/me", &token)
        .await;
    assert_eq!(me["user"]["role"], "owner");
    assert_eq!(me["tenant"]["name"], "Initech");
}

#[tokio::test]
async fn a_taken_slug_is_a_conflict_and_changes_nothing() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let before = app.fingerprint(acme.id).await;
    let response = app
        .post(BASE_DOMAIN, "/api/tenants")
        .json(&request("acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(response, StatusCode::CONFLICT).await,
        "conflict"
    );
    assert_eq!(tenant_count(&app).await, 1);
    assert_eq!(app.fingerprint(acme.id).await, before);
}

#[tokio::test]
async fn invalid_onboarding_requests_are_422_and_create_nothing() {
    let app = spawn_app().await;
    let mut cases = Vec::new();
    for slug in [
        "Initech",
        "in",
        "-initech",
        "initech-",
        "ini--tech",
        "xn--initech",
        "ini_tech",
        "ini.tech",
    ] {
        cases.push((request(slug), "slug"));
    }
    let mut bad_plan = request("initech");
    bad_plan["plan"] = json!("platinum");
    cases.push((bad_plan, "plan"));
    let mut blank_name = request("initech");
    blank_name["name"] = json!("   ");
    cases.push((blank_name, "name"));
    let mut bad_email = request("initech");
    bad_email["owner"]["email"] = json!("peter");
    cases.push((bad_email, "owner.email"));
    let mut short_password = request("initech");
    short_password["owner"]["password"] = json!("short");
    cases.push((short_password, "owner.password"));
    let mut owner_role = request("initech");
    owner_role["owner"]["role"] = json!("member");
    cases.push((owner_role, "owner.role"));
    let mut chosen_id = request("initech");
    chosen_id["id"] = json!(uuid::Uuid::now_v7());
    cases.push((chosen_id, "id"));

    for (body, field) in cases {
        let response = app
            .post(BASE_DOMAIN, "/api/tenants")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let error: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error["error"]["field"], field, "{body}");
    }
    assert_eq!(tenant_count(&app).await, 0);
}

#[tokio::test]
async fn onboarding_is_atomic_when_the_owner_cannot_be_created() {
    let app = spawn_app().await;
    // Sabotage: the tenant row goes in, then the owner insert fails.
    app.admin
        .batch_execute("alter table users add constraint sabotage check (username <> 'peter')")
        .await
        .unwrap();

    let response = app
        .post(BASE_DOMAIN, "/api/tenants")
        .json(&request("initech"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(response, StatusCode::INTERNAL_SERVER_ERROR).await,
        "internal"
    );
    assert_eq!(
        tenant_count(&app).await,
        0,
        "the tenant row was rolled back with the owner"
    );
    let users: i64 = app
        .admin
        .query_one("select count(*) from users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 0);

    // Once the cause is gone, the same request succeeds: nothing half-made blocks it.
    app.admin
        .batch_execute("alter table users drop constraint sabotage")
        .await
        .unwrap();
    let retry = app
        .post(BASE_DOMAIN, "/api/tenants")
        .json(&request("initech"))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn admin_only_signup_requires_the_admin_token() {
    const TOKEN: &str = "an-admin-token-that-is-long-enough-0123";
    let app = spawn_app_with(|settings| {
        settings.signup = tenantry::config::SignupMode::AdminOnly {
            admin_token: TOKEN.into(),
        };
    })
    .await;
    let attempt = async |authorization: Option<&str>| {
        let mut builder = app
            .post(BASE_DOMAIN, "/api/tenants")
            .json(&request("initech"));
        if let Some(value) = authorization {
            builder = builder.header("authorization", value);
        }
        builder.send().await.unwrap()
    };
    for authorization in [
        None,
        Some("Bearer wrong-token"),
        Some(&format!("Basic {TOKEN}")),
        Some(&format!("Bearer {TOKEN}x")),
    ] {
        let response = attempt(authorization).await;
        assert_eq!(
            expect_error(response, StatusCode::UNAUTHORIZED).await,
            "unauthorized",
            "{authorization:?}"
        );
    }
    assert_eq!(tenant_count(&app).await, 0);
    let allowed = attempt(Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(allowed.status(), StatusCode::CREATED);
    // The runtime role records no operator: the service vouches for the token.
    let actors: Vec<String> = app
        .admin
        .query("select distinct actor_kind from audit_events", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(actors, ["system"]);
}

#[tokio::test]
async fn sign_up_cannot_choose_a_paid_plan_in_either_mode() {
    const TOKEN: &str = "an-admin-token-that-is-long-enough-0123";
    let open = spawn_app().await;
    let admin_only = spawn_app_with(|settings| {
        settings.signup = tenantry::config::SignupMode::AdminOnly {
            admin_token: TOKEN.into(),
        };
    })
    .await;
    for app in [&open, &admin_only] {
        for plan in ["pro", "enterprise"] {
            let mut body = request("initech");
            body["plan"] = json!(plan);
            let response = app
                .post(BASE_DOMAIN, "/api/tenants")
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(
                expect_error(response, StatusCode::UNPROCESSABLE_ENTITY).await,
                "validation_failed",
                "{plan}"
            );
        }
        assert_eq!(tenant_count(app).await, 0);
        // Without a plan (or with the default) it starts on free.
        let mut body = request("initech");
        body.as_object_mut().unwrap().remove("plan");
        let created = app
            .post(BASE_DOMAIN, "/api/tenants")
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let plan: String = app
            .admin
            .query_one("select plan from tenants", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(plan, "free");
    }
    // The document says so too: a client (or a fuzzer) reading it offers
    // only the default plan, never one that is answered with 422.
    let document = crate::openapi::fetch_document(&open).await;
    let plan = &document["components"]["schemas"]["OnboardingRequest"]["properties"]["plan"];
    let plans: Vec<&Value> = plan["oneOf"]
        .as_array()
        .expect("an optional plan")
        .iter()
        .filter_map(|choice| choice["$ref"].as_str())
        .filter_map(|reference| reference.strip_prefix("#/components/schemas/"))
        .map(|name| &document["components"]["schemas"][name]["enum"])
        .collect();
    assert_eq!(plans, [&json!(["free"])], "{plan}");
}

#[tokio::test]
async fn a_tenant_is_reachable_right_after_onboarding_even_if_its_host_was_just_unknown() {
    let app =
        spawn_app_with(|settings| settings.tenant_cache_ttl = std::time::Duration::from_secs(60))
            .await;
    let early = app
        .post("initech.example.test", "/api/login")
        .json(&json!({"username": "peter", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(early, StatusCode::NOT_FOUND).await,
        "unknown_tenant"
    );

    let created = app
        .post(BASE_DOMAIN, "/api/tenants")
        .json(&request("initech"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let token = app
        .login("initech.example.test", "peter", "peter-password")
        .await;
    assert!(
        !token.is_empty(),
        "the cached \"unknown\" answer was dropped"
    );
}

#[tokio::test]
async fn a_reserved_slug_is_answered_like_a_taken_one() {
    let app = spawn_app().await;
    for slug in ["www", "admin", "api"] {
        let response = app
            .post(BASE_DOMAIN, "/api/tenants")
            .json(&request(slug))
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_error(response, StatusCode::CONFLICT).await,
            "conflict",
            "{slug}"
        );
    }
    assert_eq!(tenant_count(&app).await, 0);
}

#[tokio::test]
async fn the_database_itself_refuses_reserved_slugs_and_operator_actors_from_the_runtime_role() {
    let app = spawn_app().await;
    let sql_list: Vec<String> = app
        .admin
        .query_one("select reserved_slugs()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        sql_list,
        tenantry::domain::Slug::RESERVED,
        "src/domain.rs and V5's reserved_slugs() must list the same slugs"
    );

    // As the runtime role, straight to the functions (a stolen credential,
    // or a bug that skipped the service's own check).
    let mut runtime = app.connect_as_runtime_role().await;
    let attempts = [
        (
            "select * from signup_tenant($1, 'www', 'W', gen_random_uuid(), 'owner', 'o@w.test', 'x', 'anonymous', null,
                                         array[gen_random_uuid(), gen_random_uuid(), gen_random_uuid()])",
            "tenants_slug_reserved",
        ),
        (
            "select * from signup_tenant($1, 'fine', 'W', gen_random_uuid(), 'owner', 'o@w.test', 'x', 'admin', null,
                                         array[gen_random_uuid(), gen_random_uuid(), gen_random_uuid()])",
            "",
        ),
    ];
    for (sql, constraint) in attempts {
        let id = uuid::Uuid::now_v7();
        let tx = runtime.transaction().await.unwrap();
        tx.execute(
            "select * from bind_tenant($1, 5000, null, null, null)",
            &[&id],
        )
        .await
        .unwrap();
        let error = tx.execute(sql, &[&id]).await.unwrap_err();
        let db = error.as_db_error().expect("a database error");
        if constraint.is_empty() {
            assert_eq!(
                db.code(),
                &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE,
                "{sql}"
            );
        } else {
            assert_eq!(db.constraint(), Some(constraint), "{sql}");
        }
        tx.rollback().await.unwrap();
    }
    // onboard_tenant (plans, domains, operator actor) is the admin role's only.
    let error = runtime
        .execute(
            "select onboard_tenant(gen_random_uuid(), 'fine', 'W', 'enterprise', null, null, gen_random_uuid(),
                                   'owner', 'o@w.test', 'x', null, null, 'admin', null, array[]::uuid[])",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    assert_eq!(tenant_count(&app).await, 0);
}

#[tokio::test]
async fn sign_up_and_operators_create_tenants_through_the_same_checks() {
    let app = spawn_app().await;
    let operator = |body: &Value| {
        app.post(BASE_DOMAIN, "/admin/tenants")
            .bearer_auth(crate::helpers::ADMIN_API_TOKEN)
            .json(body)
    };
    let sign_up = |body: &Value| app.post(BASE_DOMAIN, "/api/tenants").json(body);
    for (door, slug) in [("sign-up", "initech"), ("operator", "umbrella")] {
        let send = |body: &Value| match door {
            "sign-up" => sign_up(body),
            _ => operator(body),
        };
        // The same refusals, with the same messages.
        let reserved = send(&request("www")).send().await.unwrap();
        assert_eq!(reserved.status(), StatusCode::CONFLICT, "{door}");
        let body: Value = reserved.json().await.unwrap();
        assert_eq!(
            body["error"]["message"], "this slug is not available",
            "{door}"
        );
        let mut bad = request(slug);
        bad["owner"]["email"] = json!("not-an-email");
        let refused = send(&bad).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "{door}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["field"], "owner.email", "{door}");

        // The same tenant: its owner signs in, and the trail says who made it.
        let created = send(&request(slug)).send().await.unwrap();
        assert_eq!(created.status(), StatusCode::CREATED, "{door}");
        let taken = send(&request(slug)).send().await.unwrap();
        let body: Value = taken.json().await.unwrap();
        assert_eq!(
            body["error"]["message"], "this slug is already taken",
            "{door}"
        );
        let host = format!("{slug}.{BASE_DOMAIN}");
        app.login(&host, "peter", "peter-password").await;
        let actions: Vec<String> = app
            .admin
            .query(
                "select e.action from audit_events e join tenants t on t.id = e.tenant_id
                 where t.slug = $1 order by e.action",
                &[&slug],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(
            actions,
            ["login.succeeded", "tenant.created", "user.registered"],
            "{door}"
        );
    }
    assert_eq!(tenant_count(&app).await, 2);
}
