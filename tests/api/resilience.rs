//! When the database is slow, saturated or gone: a 503 with `Retry-After`
//! within the configured bounds, never a hang and never a 500, nothing half
//! committed, and recovery without a restart.

use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, TestTenant, connect, expect_error, spawn_app, spawn_app_with};

async fn expect_unavailable(response: Response, code: &str) {
    // The status first, so that a request that was served says so rather
    // than failing on a missing header.
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        response.url()
    );
    // Whichever layer gave up (the deadline, the pool, the database), the
    // answer is never cached.
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
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

/// Refuses new connections to `db` and ends every backend on it. A backend
/// that was starting up when the database was closed has passed the check
/// and does not show in `pg_stat_activity` yet, so the termination repeats
/// until two rounds 50 ms apart find no backend left (the service's pool
/// opens connections all the time while writers run).
async fn take_offline(control: &tokio_postgres::Client, db: &str) {
    control
        .batch_execute(&format!("alter database \"{db}\" allow_connections false"))
        .await
        .unwrap();
    let gone_by = std::time::Instant::now() + Duration::from_secs(10);
    let mut quiet_rounds = 0;
    loop {
        let alive: i64 = control
            .query_one(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = $1",
                &[&db],
            )
            .await
            .unwrap()
            .get(0);
        quiet_rounds = if alive == 0 { quiet_rounds + 1 } else { 0 };
        if quiet_rounds == 2 {
            return;
        }
        assert!(
            std::time::Instant::now() < gone_by,
            "{alive} backends on {db} outlive termination"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a request may take to be refused when the database is away: the
/// pool timeout of the test plus generous slack for a loaded CI machine (a
/// checkpoint on a busy disk stalls commits for seconds), and still far below
/// a hang (a pool without a timeout waits forever; TCP gives up after minutes).
const FAIL_FAST: Duration = Duration::from_millis(5000);

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

    // The only connection is busy: ten concurrent requests each wait 300 ms
    // for it, then shed; none hangs.
    let started = std::time::Instant::now();
    let requests: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn(
                app.get(&acme.host, "/api/notes")
                    .bearer_auth(&acme.token)
                    .send(),
            )
        })
        .collect();
    for request in requests {
        expect_unavailable(request.await.unwrap().unwrap(), "unavailable").await;
    }
    assert!(
        started.elapsed() < FAIL_FAST,
        "shedding took {:?}",
        started.elapsed()
    );

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
    let app = spawn_app_with(|settings| {
        settings.request_timeout = Duration::from_millis(500);
        settings.database.pool_size = 1;
    })
    .await;
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
    assert_eq!(app.note_content(note).await, "original");
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
    assert_eq!(app.note_content(note).await, "original");
}

#[tokio::test]
async fn a_database_outage_is_503_and_the_service_recovers_without_a_restart() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    app.create_note(&acme, "survives the outage").await;
    let control = connect(&app.cluster.superuser_on("postgres")).await;
    let db = &app.dbname;
    take_offline(&control, db).await;

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

/// The runtime role's sessions on this test's database: (pid, state).
async fn runtime_sessions(app: &TestApp) -> Vec<(i32, String)> {
    let fresh = connect(&app.cluster.superuser_on(&app.dbname)).await;
    fresh
        .query(
            "select pid, coalesce(state, '') from pg_stat_activity
             where datname = current_database() and usename = 'tenantry_app' order by pid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn a_client_hanging_up_mid_transaction_leaves_the_connection_clean() {
    let app = spawn_app_with(|settings| settings.database.pool_size = 1).await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    let note = app.create_note(&acme, "original").await;
    app.create_note(&globex, "globex only").await;
    let lock = app.lock_note(note).await;

    let request = format!(
        "PATCH /api/notes/{note} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n{{\"content\":\"changed\"}}",
        acme.host, acme.token
    );
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    app.wait_until_blocked_on_a_lock().await;
    drop(stream); // the client hangs up while its transaction waits on the lock
    lock.release().await;

    // The one pooled connection serves the next tenant, with nothing of the last.
    let page = app
        .get_json(&globex.host, "/api/notes", &globex.token)
        .await;
    assert_eq!(crate::helpers::note_contents(&page), ["globex only"]);
    let sessions = runtime_sessions(&app).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(
        sessions[0].1, "idle",
        "no transaction left open: {sessions:?}"
    );
}

#[tokio::test]
async fn a_killed_backend_is_503_and_the_next_request_gets_a_fresh_connection() {
    let app = spawn_app_with(|settings| settings.database.pool_size = 1).await;
    let acme = app.onboard("acme").await;
    let note = app.create_note(&acme, "original").await;
    let lock = app.lock_note(note).await;
    let victim = update_in_background(&app, &acme, note);
    app.wait_until_blocked_on_a_lock().await;

    let killer = connect(&app.cluster.superuser_on(&app.dbname)).await;
    let killed: i64 = killer
        .query_one(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity
             where datname = current_database() and usename = 'tenantry_app' and wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    expect_unavailable(victim.await.unwrap().unwrap(), "unavailable").await;
    lock.release().await;

    let next = app
        .call(
            Method::GET,
            &acme.host,
            &format!("/api/notes/{note}"),
            &acme.token,
            None,
        )
        .await;
    assert_eq!(next.status(), StatusCode::OK);
    assert_eq!(
        app.note_content(note).await,
        "original",
        "the killed transaction rolled back"
    );
}

#[tokio::test]
async fn after_a_statement_timeout_the_next_requests_succeed() {
    let app = spawn_app_with(|settings| {
        settings.database.statement_timeout = Duration::from_millis(300);
        settings.database.pool_size = 1;
    })
    .await;
    let acme = app.onboard("acme").await;
    let note = app.create_note(&acme, "original").await;
    let lock = app.lock_note(note).await;
    expect_unavailable(
        update_in_background(&app, &acme, note)
            .await
            .unwrap()
            .unwrap(),
        "unavailable",
    )
    .await;
    // The lock is still held: other work on the same single connection goes on.
    for _ in 0..3 {
        let page = app.get_json(&acme.host, "/api/notes", &acme.token).await;
        assert_eq!(crate::helpers::note_contents(&page), ["original"]);
    }
    lock.release().await;
}

#[tokio::test]
async fn all_backends_killed_under_load_fail_fast_recover_alone_and_lose_no_acknowledged_write() {
    let app =
        spawn_app_with(|settings| settings.database.pool_timeout = Duration::from_millis(500))
            .await;
    let acme = app.onboard("acme").await;
    let started = std::time::Instant::now();
    // The writers run until the service is ready again and has had a moment
    // to serve them (not for a fixed time, which a slow machine outlasts).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let request = app.post(&acme.host, "/api/notes").bearer_auth(&acme.token);
            let stop = std::sync::Arc::clone(&stop);
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let mut attempt = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    attempt += 1;
                    let content = format!("writer {writer} attempt {attempt}");
                    let sent_at = std::time::Instant::now();
                    let sent = request
                        .try_clone()
                        .unwrap()
                        .json(&json!({"content": content}))
                        .send()
                        .await;
                    let status = sent.expect("every request is answered").status();
                    // Fail fast: a bound far above what this takes (milliseconds) but far
                    // below a hang; the pool timeout is 500 ms.
                    let took = sent_at.elapsed();
                    assert!(took < FAIL_FAST, "{content} took {took:?}");
                    outcomes.push((content, status, started.elapsed()));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                outcomes
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let control = connect(&app.cluster.superuser_on("postgres")).await;
    let db = &app.dbname;
    take_offline(&control, db).await;
    expect_unavailable(
        app.get(&acme.host, "/readyz").send().await.unwrap(),
        "unavailable",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    control
        .batch_execute(&format!("alter database \"{db}\" allow_connections true"))
        .await
        .unwrap();
    let back_at = started.elapsed();
    let ready_by = std::time::Instant::now() + Duration::from_secs(30);
    while app
        .get(&acme.host, "/readyz")
        .send()
        .await
        .unwrap()
        .status()
        != StatusCode::OK
    {
        assert!(
            std::time::Instant::now() < ready_by,
            "ready again without a restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut outcomes = Vec::new();
    for writer in writers {
        outcomes.extend(writer.await.unwrap());
    }
    for (content, status, _) in &outcomes {
        assert!(
            *status == StatusCode::CREATED || *status == StatusCode::SERVICE_UNAVAILABLE,
            "{content}: {status}"
        );
    }
    assert!(
        outcomes
            .iter()
            .any(|(_, s, _)| *s == StatusCode::SERVICE_UNAVAILABLE),
        "the outage was noticed"
    );
    let recovered = outcomes
        .iter()
        .filter(|(_, s, at)| *s == StatusCode::CREATED && *at > back_at)
        .count();
    assert!(
        recovered > 0,
        "writes succeeded again after the database came back, without a restart"
    );
    assert_eq!(
        app.get(&acme.host, "/readyz")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let acknowledged: Vec<String> = outcomes
        .iter()
        .filter(|(_, s, _)| *s == StatusCode::CREATED)
        .map(|(c, _, _)| c.clone())
        .collect();
    assert_eq!(
        app.notes_stored_among(&acknowledged).await,
        acknowledged.len(),
        "every 201 is in the database"
    );
}

#[tokio::test]
async fn a_migration_that_changes_a_result_type_under_warm_caches_heals_itself() {
    let app = spawn_app_with(|settings| settings.database.pool_size = 2).await;
    let acme = app.onboard("acme").await;
    let note = app.create_note(&acme, "cached").await;
    let path = format!("/api/notes/{note}");
    for _ in 0..4 {
        // Warm the prepared-statement caches of both pooled connections.
        assert_eq!(
            app.call(Method::GET, &acme.host, &path, &acme.token, None)
                .await
                .status(),
            StatusCode::OK
        );
    }
    // An expand/contract mistake: a column's type changes under running statements.
    connect(&app.cluster.superuser_on(&app.dbname))
        .await
        .batch_execute("alter table notes alter column content type varchar(10000)")
        .await
        .unwrap();

    let first = app
        .call(Method::GET, &acme.host, &path, &acme.token, None)
        .await;
    let status = first.status();
    if status != StatusCode::OK {
        expect_unavailable(first, "unavailable").await;
    }
    for _ in 0..4 {
        let next = app
            .call(Method::GET, &acme.host, &path, &acme.token, None)
            .await;
        assert_eq!(
            next.status(),
            StatusCode::OK,
            "every connection recovers after at most one retryable 503"
        );
    }
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    let app =
        spawn_app_with(|settings| settings.header_read_timeout = Duration::from_millis(300)).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: any.invalid\r\n")
        .await
        .unwrap();
    // ... and never finishes the headers. The server must close the connection.
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buffer)).await;
    assert!(closed.is_ok(), "the connection was still open after 5 s");
    assert!(
        !String::from_utf8_lossy(&buffer).contains("200 OK"),
        "no request was served"
    );

    let (status, _) = app
        .raw(b"GET /healthz HTTP/1.1\r\nHost: any.invalid\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status, 200, "prompt clients are served");
}

#[tokio::test]
async fn a_client_trickling_its_body_gets_503_at_the_request_deadline() {
    let app =
        spawn_app_with(|settings| settings.request_timeout = Duration::from_millis(500)).await;
    let acme = app.onboard("acme").await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let head = format!(
        "POST /api/notes HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{\"content\":",
        acme.host, acme.token
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut buffer = Vec::new();
    let answered =
        tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buffer)).await;
    assert!(answered.is_ok(), "no answer within 5 s");
    let text = String::from_utf8_lossy(&buffer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("\"timeout\""), "{text}");
    assert_eq!(app.count("notes", acme.id).await, 0);
}
