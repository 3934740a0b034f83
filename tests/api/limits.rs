//! Noisy-neighbour protection against the real server: per-tenant request
//! rates (with overrides), per-client limits on the costly routes behind
//! each ingress setup, the per-tenant share of the pool, per-plan statement
//! timeouts, and quotas enforced atomically.

use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tenantry::{config::Settings, domain::LimitsDocument};

use crate::helpers::{TestApp, TestTenant, expect_error, spawn_app_with};

/// A server whose limits are `document` (on top of the tests' generous
/// defaults for everything it does not name).
async fn app_with_limits(document: &str, customize: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|settings| {
        settings.limits.document = LimitsDocument::parse(document).unwrap();
        customize(settings);
    })
    .await
}

/// A limits document: the tests' generous defaults with `changes` (JSON
/// members, `""` for none) applied to every plan, and `tenants` as the overrides.
fn with_tenants(changes: &str, tenants: &str) -> String {
    let mut plan = json!({"requests_per_second": 1_000_000, "burst": 1_000_000,
        "max_db_connections": 4, "statement_timeout_ms": 5000, "max_users": null, "max_notes": null});
    let changes: Value = serde_json::from_str(&format!("{{{changes}}}")).unwrap();
    for (key, value) in changes.as_object().unwrap() {
        plan[key] = value.clone();
    }
    let tenants: Value = serde_json::from_str(tenants).unwrap();
    json!({"plans": {"free": plan, "pro": plan, "enterprise": plan}, "tenants": tenants})
        .to_string()
}

async fn list_notes(app: &TestApp, tenant: &TestTenant) -> Response {
    app.get(&tenant.host, "/api/notes")
        .bearer_auth(&tenant.token)
        .send()
        .await
        .unwrap()
}

fn header(response: &Response, name: &str) -> Option<u64> {
    response.headers().get(name)?.to_str().ok()?.parse().ok()
}

/// Checks a 429 `rate_limited` answer: headers, and the JSON error shape.
async fn assert_rate_limited(response: Response, limit: u64) {
    let retry_after = header(&response, "retry-after").expect("Retry-After");
    let reset = header(&response, "ratelimit-reset").expect("RateLimit-Reset");
    assert!(
        retry_after >= 1 && reset >= retry_after,
        "Retry-After {retry_after}, RateLimit-Reset {reset}"
    );
    assert_eq!(header(&response, "ratelimit-limit"), Some(limit));
    assert_eq!(header(&response, "ratelimit-remaining"), Some(0));
    let body = expect_error(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body, "rate_limited");
}

/// Sends `count` requests one after the other and returns how many got
/// through, checking that every other answer is a well-formed 429.
async fn flood(app: &TestApp, tenant: &TestTenant, count: usize, limit: u64) -> usize {
    let mut served = 0;
    for _ in 0..count {
        let response = list_notes(app, tenant).await;
        if response.status() == StatusCode::OK {
            served += 1;
        } else {
            assert_rate_limited(response, limit).await;
        }
    }
    served
}

/// At most the burst, plus what the rate refilled while the flood ran.
fn allowance(burst: usize, per_second: f64, started: Instant) -> usize {
    burst + (started.elapsed().as_secs_f64() * per_second).ceil() as usize
}

/// acme and globex on a server limited by `document`, once onboarding's
/// sign-ins (one request each) have been refilled at 1 request a second.
async fn two_tenants_limited_by(document: &str) -> (TestApp, TestTenant, TestTenant) {
    let app = app_with_limits(document, |_| {}).await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    (app, acme, globex)
}

#[tokio::test]
async fn a_tenant_flooding_past_its_limit_gets_429s_while_its_neighbour_is_served() {
    let (app, acme, globex) = two_tenants_limited_by(&with_tenants(
        "",
        r#"{"acme": {"requests_per_second": 1, "burst": 5}}"#,
    ))
    .await;

    let started = Instant::now();
    let mut acme_served = 0;
    let mut globex_served = 0;
    for _ in 0..20 {
        let response = list_notes(&app, &acme).await;
        if response.status() == StatusCode::OK {
            acme_served += 1;
        } else {
            assert_rate_limited(response, 5).await;
        }
        let response = list_notes(&app, &globex).await;
        assert_eq!(response.status(), StatusCode::OK, "globex is never limited");
        globex_served += 1;
    }
    assert!(acme_served >= 5, "acme's burst is served: {acme_served}");
    assert!(
        acme_served <= allowance(5, 1.0, started),
        "acme got {acme_served} requests through in {:?}",
        started.elapsed()
    );
    assert_eq!(globex_served, 20);
}

#[tokio::test]
async fn anonymous_requests_cannot_use_up_the_signed_in_users_budget() {
    let (app, acme, _) = two_tenants_limited_by(&with_tenants(
        "",
        r#"{"acme": {"requests_per_second": 1, "burst": 5}}"#,
    ))
    .await;
    // Sign-in attempts use up acme's anonymous budget ...
    let mut limited = 0;
    for _ in 0..10 {
        let response = login_attempt(&app, &acme.host, None).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_rate_limited(response, 5).await;
            limited += 1;
        } else {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
    }
    assert!(limited >= 3, "only {limited} of 10 sign-ins were limited");
    // ... and requests with a forged token count against nothing ...
    for _ in 0..10 {
        let response = app
            .get(&acme.host, "/api/notes")
            .bearer_auth("forged")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // ... so acme's signed-in owner is still served.
    assert_eq!(list_notes(&app, &acme).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn successful_answers_carry_the_tenants_rate_limit_status() {
    // 1,000 instances share 1 request a second: each refills one request
    // every 1,000 s, so nothing refills between the two requests below.
    let app = app_with_limits(
        &with_tenants(
            "",
            r#"{"acme": {"requests_per_second": 1, "burst": 50000}}"#,
        ),
        |settings| settings.limits.instances = 1000,
    )
    .await;
    let acme = app.onboard("acme").await;
    let first = list_notes(&app, &acme).await;
    let second = list_notes(&app, &acme).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "ratelimit-limit"), Some(50));
    let remaining = |response: &Response| header(response, "ratelimit-remaining").unwrap();
    assert!(remaining(&second) < remaining(&first));
    assert!(header(&second, "ratelimit-reset").is_some_and(|reset| reset >= 1));
}

#[tokio::test]
async fn a_limited_request_does_no_database_work() {
    let app = app_with_limits(
        // A burst of 3 per instance that refills one request every 1,000 s,
        // however slowly the test runs.
        &with_tenants("", r#"{"acme": {"requests_per_second": 1, "burst": 3000}}"#),
        |settings| {
            settings.limits.instances = 1000;
            // Hosts stay cached, so a request needs the database only for
            // its tenant transaction.
            settings.tenant_cache_ttl = Duration::from_secs(60);
        },
    )
    .await;
    let acme = app.onboard("acme").await;
    while list_notes(&app, &acme).await.status() == StatusCode::OK {}

    // Every table a request could read is locked: any query would hang.
    let lock = crate::helpers::connect(&app.cluster.superuser_on(&app.dbname)).await;
    lock.batch_execute(
        "begin; lock table tenants, tenant_domains, users, notes, audit_events, usage_counters in access exclusive mode",
    )
    .await
    .unwrap();
    for _ in 0..5 {
        let response = tokio::time::timeout(Duration::from_secs(3), list_notes(&app, &acme))
            .await
            .expect("a limited request is answered without waiting for the database");
        assert_rate_limited(response, 3).await;
    }
    lock.batch_execute("rollback").await.unwrap();
}

#[tokio::test]
async fn an_override_raises_one_tenants_limit_and_leaves_the_others_on_their_plan() {
    let (app, acme, globex) = two_tenants_limited_by(&with_tenants(
        r#""requests_per_second": 1, "burst": 4"#,
        r#"{"acme": {"burst": 40}}"#,
    ))
    .await;

    let started = Instant::now();
    assert_eq!(
        flood(&app, &acme, 25, 40).await,
        25,
        "acme's override allows 40"
    );
    let globex_served = flood(&app, &globex, 25, 4).await;
    assert!(
        (1..=allowance(4, 1.0, started)).contains(&globex_served),
        "globex stays on its plan's burst of 4: {globex_served}"
    );

    let acme_me = app.get_json(&acme.host, "/api/me", &acme.token).await;
    assert_eq!(acme_me["limits"]["burst"], 40);
    assert_eq!(
        acme_me["limits"]["requests_per_second"], 1,
        "inherited from the plan"
    );
}

/// Signs in to `host` with a wrong password from the client that
/// `forwarded_for` (and the loopback peer) make it.
async fn login_attempt(app: &TestApp, host: &str, forwarded_for: Option<&str>) -> Response {
    let mut request = app
        .post(host, "/api/login")
        .json(&json!({"username": "nobody", "password": "wrong-password"}));
    if let Some(value) = forwarded_for {
        request = request.header("x-forwarded-for", value);
    }
    request.send().await.unwrap()
}

/// Counts the attempts that were not limited; the others must be 429s.
async fn attempts_served(app: &TestApp, host: &str, forwarded: &[String], limit: u64) -> usize {
    let mut served = 0;
    for value in forwarded {
        let response = login_attempt(app, host, Some(value)).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_rate_limited(response, limit).await;
        } else {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            served += 1;
        }
    }
    served
}

/// A server whose costly routes allow a burst of 5 per client and barely
/// refill (1 a minute), behind `hops` trusted proxies.
async fn app_behind(hops: usize) -> (TestApp, TestTenant) {
    let app = spawn_app_with(|settings| {
        settings.limits.client.per_minute = 1;
        settings.limits.client.burst = 5;
        settings.limits.client.trusted_proxy_hops = hops;
    })
    .await;
    // Onboarding signs in once from the loopback peer, without X-Forwarded-For.
    let acme = app.onboard("acme").await;
    (app, acme)
}

fn spoofed(suffix: &str) -> Vec<String> {
    (1..=10).map(|i| format!("10.9.8.{i}{suffix}")).collect()
}

#[tokio::test]
async fn without_a_trusted_proxy_the_client_is_the_peer_and_forwarded_for_is_ignored() {
    let (app, acme) = app_behind(0).await;
    // The peer already signed in once (onboarding): 4 left, whatever the header says.
    assert_eq!(attempts_served(&app, &acme.host, &spoofed(""), 5).await, 4);
}

#[tokio::test]
async fn behind_cloud_runs_front_end_the_client_is_the_last_forwarded_entry() {
    let (app, acme) = app_behind(1).await;
    // The front end appends the address it saw; what the client wrote is to its left.
    let client = spoofed(", 203.0.113.7");
    assert_eq!(attempts_served(&app, &acme.host, &client, 5).await, 5);
    let other = vec!["10.9.8.1, 198.51.100.4".to_owned()];
    assert_eq!(
        attempts_served(&app, &acme.host, &other, 5).await,
        1,
        "another client"
    );
    // The loopback peer's own bucket (used once by onboarding) is separate.
    assert_eq!(
        login_attempt(&app, &acme.host, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Each route has its own bucket: the limited client may still register.
    let response = app
        .post(&acme.host, "/api/register")
        .header("x-forwarded-for", "203.0.113.7")
        .json(
            &json!({"username": "carol", "email": "carol@acme.test", "password": "carol-password"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn behind_a_load_balancer_the_client_is_the_second_to_last_forwarded_entry() {
    let (app, acme) = app_behind(2).await;
    // The load balancer appends the client's address and its own.
    let client = spoofed(", 203.0.113.7, 34.120.0.1");
    assert_eq!(attempts_served(&app, &acme.host, &client, 5).await, 5);
    let unspoofed = vec!["203.0.113.7, 34.120.0.1".to_owned()];
    assert_eq!(attempts_served(&app, &acme.host, &unspoofed, 5).await, 0);
    let other = vec!["203.0.113.7, 198.51.100.4, 34.120.0.1".to_owned()];
    assert_eq!(
        attempts_served(&app, &acme.host, &other, 5).await,
        1,
        "another client"
    );
}

#[tokio::test]
async fn onboarding_is_limited_per_client_before_any_database_work() {
    let app = spawn_app_with(|settings| {
        settings.limits.client.per_minute = 1;
        settings.limits.client.burst = 2;
    })
    .await;
    app.onboard("acme").await;
    app.onboard("globex").await;
    let lock = crate::helpers::connect(&app.cluster.superuser_on(&app.dbname)).await;
    lock.batch_execute("begin; lock table tenants, users in access exclusive mode")
        .await
        .unwrap();
    let response = tokio::time::timeout(
        Duration::from_secs(3),
        app.post(crate::helpers::BASE_DOMAIN, "/api/tenants")
            .json(&json!({"slug": "initech", "name": "Initech",
                "owner": {"username": "peter", "email": "peter@initech.test", "password": "peter-password"}}))
            .send(),
    )
    .await
    .expect("answered without waiting for the database")
    .unwrap();
    assert_rate_limited(response, 2).await;
    lock.batch_execute("rollback").await.unwrap();
    assert_eq!(
        app.admin
            .query_one("select count(*) from tenants where slug = 'initech'", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );
}

#[tokio::test]
async fn a_tenant_cannot_take_more_than_its_share_of_the_pool() {
    // A pool of 4; acme's plan allows it 2 of them.
    let app = app_with_limits(
        &with_tenants("", r#"{"acme": {"max_db_connections": 2}}"#),
        |settings| {
            settings.database.tenant_queue_timeout = Duration::from_millis(300);
            settings.database.pool_timeout = Duration::from_secs(2);
        },
    )
    .await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    let note = app.create_note(&acme, "contended").await;
    let lock = app.lock_note(note).await;

    // Six slow requests of acme: two hold connections waiting on the lock,
    // the other four wait for acme's share, not for the pool.
    let updates: Vec<_> = (0..6)
        .map(|i| {
            app.patch(&acme.host, &format!("/api/notes/{note}"))
                .bearer_auth(&acme.token)
                .json(&json!({"content": format!("update {i}")}))
                .send()
        })
        .map(tokio::spawn)
        .collect();
    app.wait_until_blocked_on_locks(2).await;

    // Meanwhile globex gets connections at once.
    for _ in 0..5 {
        let started = Instant::now();
        let response = list_notes(&app, &globex).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "globex waited {:?} for a connection",
            started.elapsed()
        );
    }
    // acme's excess requests were refused once the queue timeout passed.
    // (300 ms; the margin is for a loaded machine.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    lock.release().await;
    let mut statuses = Vec::new();
    for update in updates {
        let response = update.await.unwrap().unwrap();
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(header(&response, "retry-after"), Some(1));
            assert_eq!(
                header(&response, "ratelimit-limit"),
                None,
                "not a rate limit"
            );
            assert_eq!(expect_error(response, status).await, "tenant_busy");
        }
        statuses.push(status);
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [
            [StatusCode::OK; 2].as_slice(),
            [StatusCode::TOO_MANY_REQUESTS; 4].as_slice()
        ]
        .concat()
    );
}

#[tokio::test]
async fn a_plans_statement_timeout_ends_a_slow_transaction() {
    let app = app_with_limits(
        &with_tenants("", r#"{"acme": {"statement_timeout_ms": 300}}"#),
        |_| {},
    )
    .await;
    let acme = app.onboard("acme").await;
    let note = app.create_note(&acme, "original").await;
    let lock = app.lock_note(note).await;
    let started = Instant::now();
    let response = app
        .patch(&acme.host, &format!("/api/notes/{note}"))
        .bearer_auth(&acme.token)
        .json(&json!({"content": "changed"}))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(
        expect_error(response, StatusCode::SERVICE_UNAVAILABLE).await,
        "unavailable"
    );
    // The tests' default is 5 s: this was the plan's 300 ms.
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    lock.release().await;
    assert_eq!(app.note_content(note).await, "original");
}

async fn create(app: &TestApp, tenant: &TestTenant, content: &str) -> Response {
    app.post(&tenant.host, "/api/notes")
        .bearer_auth(&tenant.token)
        .json(&json!({ "content": content }))
        .send()
        .await
        .unwrap()
}

/// The tenant's usage and quotas, as `GET /api/me` shows them.
async fn usage(app: &TestApp, tenant: &TestTenant) -> Value {
    let me = app.get_json(&tenant.host, "/api/me", &tenant.token).await;
    json!({"usage": me["usage"], "max_users": me["limits"]["max_users"], "max_notes": me["limits"]["max_notes"]})
}

#[tokio::test]
async fn the_notes_quota_is_enforced_and_freed_by_deletes() {
    let app = app_with_limits(&with_tenants("", r#"{"acme": {"max_notes": 3}}"#), |_| {}).await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    let mut notes = Vec::new();
    for i in 0..3 {
        notes.push(app.create_note(&acme, &format!("note {i}")).await);
    }
    let refused = create(&app, &acme, "one too many").await;
    assert_eq!(
        expect_error(refused, StatusCode::FORBIDDEN).await,
        "quota_exceeded"
    );
    assert_eq!(app.count("notes", acme.id).await, 3);
    assert_eq!(
        usage(&app, &acme).await,
        json!({"usage": {"users": 1, "notes": 3}, "max_users": null, "max_notes": 3})
    );
    // Other tenants are on their own quota.
    for i in 0..5 {
        app.create_note(&globex, &format!("globex {i}")).await;
    }

    let deleted = app
        .delete(&acme.host, &format!("/api/notes/{}", notes[0]))
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        create(&app, &acme, "fits again").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(usage(&app, &acme).await["usage"]["notes"], 3);
}

#[tokio::test]
async fn concurrent_creates_cannot_race_past_the_quota() {
    // Twenty creates queue for acme's four connections: let them wait.
    let app = app_with_limits(
        &with_tenants("", r#"{"acme": {"max_notes": 5}}"#),
        |settings| {
            settings.database.tenant_queue_timeout = Duration::from_secs(20);
        },
    )
    .await;
    let acme = app.onboard("acme").await;
    let creates: Vec<_> = (0..20)
        .map(|i| {
            app.post(&acme.host, "/api/notes")
                .bearer_auth(&acme.token)
                .json(&json!({ "content": format!("racer {i}") }))
                .send()
        })
        .map(tokio::spawn)
        .collect();
    let mut created = 0;
    for create in creates {
        let response = create.await.unwrap().unwrap();
        if response.status() == StatusCode::CREATED {
            created += 1;
        } else {
            assert_eq!(
                expect_error(response, StatusCode::FORBIDDEN).await,
                "quota_exceeded"
            );
        }
    }
    assert_eq!(created, 5);
    assert_eq!(app.count("notes", acme.id).await, 5);
    assert_eq!(usage(&app, &acme).await["usage"]["notes"], 5);
}

#[tokio::test]
async fn the_users_quota_counts_the_owner_and_removed_users_free_their_place() {
    let app = app_with_limits(&with_tenants("", r#"{"acme": {"max_users": 2}}"#), |_| {}).await;
    let acme = app.onboard("acme").await;
    let (carol, carol_token) = app.register(&acme.host, "carol").await;
    let carols = TestTenant {
        token: carol_token,
        ..acme.clone()
    };
    app.create_note(&carols, "carol's note").await;
    let refused = app
        .post(&acme.host, "/api/register")
        .json(&json!({"username": "dave", "email": "dave@acme.test", "password": "dave-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(refused, StatusCode::FORBIDDEN).await,
        "quota_exceeded"
    );
    assert_eq!(app.count("users", acme.id).await, 2);

    // Removing carol removes her note too, and both counters follow.
    let removed = app
        .delete(&acme.host, &format!("/api/users/{carol}"))
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        usage(&app, &acme).await["usage"],
        json!({"users": 1, "notes": 0})
    );
    app.register(&acme.host, "dave").await;
}
