//! The binary as an operator runs it: the boot-time isolation audit, the
//! `migrate` command, graceful shutdown on SIGTERM, and `tenantry dev`.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tenantry::startup::Application;

use crate::faults::free_port;
use crate::helpers::{JWT_CURRENT, cluster, connect, spawn_app, test_settings};

const BINARY: &str = env!("CARGO_BIN_EXE_tenantry");

/// `tenantry <args>` with a clean, explicit environment.
fn tenantry(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LOG_FORMAT", "json");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

fn serve_env(database_url: String) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url),
        ("JWT_KEYS", format!("{}:{}", JWT_CURRENT.0, JWT_CURRENT.1)),
        ("SIGNUP_MODE", "open".to_owned()),
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("BASE_DOMAIN", "example.test".to_owned()),
        ("JWT_ISSUER", crate::helpers::JWT_ISSUER.to_owned()),
    ]
}

/// Kills the child if a test fails before it exits, so no orphan keeps the
/// test's output pipes (or a database) open.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs a command to completion (with a deadline) and returns (success, stdout, stderr).
fn finish(mut command: Command) -> (bool, String, String) {
    let output = command.output().expect("run tenantry");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_binary_refuses_to_serve_as_the_owner_role_or_a_superuser() {
    let cluster = cluster().await;
    let dbname = cluster.migrated_database().await;
    let superuser_url = {
        let config = cluster.superuser_on(&dbname);
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "postgres://{}@127.0.0.1:{port}/{dbname}",
            config.get_user().unwrap_or("postgres")
        )
    };
    for (url, expected) in [
        (
            cluster.url_for("tenantry_owner", &dbname),
            "is owned by this role or a role it belongs to",
        ),
        (superuser_url, "is a superuser"),
    ] {
        let (success, _, stderr) = finish(tenantry(&["serve"], &serve_env(url)));
        assert!(!success, "must exit non-zero");
        assert!(
            stderr.contains("refusing to start: the database role fails the isolation audit"),
            "{stderr}"
        );
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[tokio::test]
async fn the_audit_catches_each_planted_weakness() {
    let cluster = cluster().await;
    let plants = [
        (
            "alter table notes no force row level security",
            "table notes does not FORCE row-level security",
        ),
        (
            "alter table users disable row level security",
            "table users has row-level security disabled",
        ),
        (
            "drop policy tenant_isolation on notes",
            "table notes has no RLS policy",
        ),
        (
            "grant truncate on notes to tenantry_app",
            "table notes can be TRUNCATEd by this role",
        ),
        (
            "create table stray (tenant_id uuid); grant select on stray to tenantry_app",
            "table stray has row-level security disabled",
        ),
        ("delete from schema_migrations", "run `tenantry migrate`"),
        (
            "grant references, trigger on users to tenantry_app",
            "table users grants REFERENCES to this role",
        ),
        (
            "create policy open_read on notes for select using (true)",
            "policy open_read on notes applies to this role but does not compare tenant_id",
        ),
        (
            "create policy by_setting_only on notes for all to tenantry_app \
             using (current_setting('app.tenant_id', true) is not null)",
            "policy by_setting_only on notes applies to this role",
        ),
        (
            "create view all_notes as select * from notes; grant select on all_notes to tenantry_app",
            "view all_notes is readable by this role and runs with its owner's rights",
        ),
        (
            "create materialized view note_copy as select * from notes; grant select on note_copy to tenantry_app",
            "materialized view note_copy is readable by this role",
        ),
        (
            "create view note_columns as select * from notes; grant select (tenant_id, content) on note_columns to tenantry_app",
            "view note_columns is readable by this role and runs with its owner's rights",
        ),
        (
            "create function count_all() returns bigint language sql security definer set search_path = '' \
             as 'select count(*) from public.notes'; grant execute on function count_all() to tenantry_app",
            "SECURITY DEFINER function public.count_all() is executable by this role and not on the allowlist",
        ),
        (
            "alter function tenant_by_slug(text) reset search_path",
            "SECURITY DEFINER function public.tenant_by_slug(text) does not pin its search_path",
        ),
        (
            "grant create on schema public to tenantry_app",
            "can create objects in schema(s) public",
        ),
        (
            "do $$ begin execute format('grant temporary on database %I to public', current_database()); end $$",
            "can create temporary objects in this database",
        ),
    ];
    for (plant, expected) in plants {
        let dbname = cluster.migrated_database().await;
        connect(&cluster.superuser_on(&dbname))
            .await
            .batch_execute(plant)
            .await
            .unwrap();
        let error = Application::build(&test_settings(cluster, &dbname))
            .await
            .err()
            .unwrap_or_else(|| panic!("{plant} went unnoticed"));
        let message = format!("{error:#}");
        assert!(message.contains(expected), "{plant}: {message}");
    }
    // The control: a view that runs as its caller is fine.
    let dbname = cluster.migrated_database().await;
    connect(&cluster.superuser_on(&dbname))
        .await
        .batch_execute(
            "create view my_notes with (security_invoker = true) as select * from notes;
             grant select on my_notes to tenantry_app",
        )
        .await
        .unwrap();
    let built = Application::build(&test_settings(cluster, &dbname)).await;
    assert!(built.is_ok(), "{:?}", built.err());
}

#[tokio::test]
async fn the_audit_leaves_an_extensions_own_objects_alone_but_not_a_lookalike_of_ours() {
    // pg_stat_statements puts views readable by PUBLIC, running with their
    // owner's rights, into the public schema: what Citus does with
    // citus_tables. They belong to the extension (pg_depend), not to us.
    let cluster = cluster().await;
    let dbname = cluster.migrated_database().await;
    let admin = connect(&cluster.superuser_on(&dbname)).await;
    admin
        .batch_execute("create extension pg_stat_statements schema public")
        .await
        .unwrap();
    let built = Application::build(&test_settings(cluster, &dbname)).await;
    assert!(built.is_ok(), "{:?}", built.err());
    drop(built);
    // A view of ours with an extension's kind of name is still ours.
    admin
        .batch_execute(
            "create view pg_stat_statements_tenants as select * from tenants;
             grant select on pg_stat_statements_tenants to tenantry_app",
        )
        .await
        .unwrap();
    let error = Application::build(&test_settings(cluster, &dbname))
        .await
        .err()
        .expect("a lookalike view of ours must fail the audit");
    assert!(
        format!("{error:#}").contains(
            "view pg_stat_statements_tenants is readable by this role and runs with its owner's rights"
        ),
        "{error:#}"
    );
}

#[tokio::test]
async fn the_audit_catches_role_attributes_and_memberships_that_lead_around_rls() {
    let cluster = cluster().await;
    let dbname = cluster.migrated_database().await;
    let admin = connect(&cluster.superuser_on(&dbname)).await;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let bypass = format!("plant_bypass_{suffix}");
    admin
        .batch_execute(&format!("create role {bypass} nologin bypassrls"))
        .await
        .unwrap();
    // (attributes and memberships of a login role that otherwise has exactly
    //  the runtime role's grants, what the audit must say)
    let cases = [
        (
            format!("in role {bypass}"),
            format!("is a member of role(s) {bypass}"),
        ),
        (
            "in role tenantry_owner".to_owned(),
            "is owned by this role or a role it belongs to".to_owned(),
        ),
        ("createrole".to_owned(), "has CREATEROLE".to_owned()),
        ("replication".to_owned(), "has REPLICATION".to_owned()),
        ("bypassrls".to_owned(), "has BYPASSRLS".to_owned()),
    ];
    for (index, (attributes, expected)) in cases.iter().enumerate() {
        let probe = format!("plant_app_{suffix}_{index}");
        admin
            .batch_execute(&format!(
                "create role {probe} login password '{}' {attributes};
                 grant select, insert, update, delete on users, notes to {probe};
                 grant select on schema_migrations to {probe};",
                crate::helpers::ROLE_PASSWORD
            ))
            .await
            .unwrap();
        let mut settings = test_settings(cluster, &dbname);
        settings.database.url = cluster.url_for(&probe, &dbname).into();
        let outcome = Application::build(&settings)
            .await
            .err()
            .map(|error| format!("{error:#}"));
        admin
            .batch_execute(&format!("drop owned by {probe}; drop role {probe};"))
            .await
            .unwrap();
        let message =
            outcome.unwrap_or_else(|| panic!("a role with `{attributes}` must be refused"));
        assert!(
            message.contains(expected.as_str()),
            "{attributes}: {message}"
        );
    }
    admin
        .batch_execute(&format!("drop role {bypass}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn configuration_errors_name_the_variable_and_exit_non_zero() {
    let (success, _, stderr) = finish(tenantry(&["serve"], &[]));
    assert!(!success);
    assert!(stderr.contains("DATABASE_URL is required"), "{stderr}");

    let mut env = serve_env("postgres://nobody@127.0.0.1:1/x".to_owned());
    env.push(("PORT", "eighty".to_owned()));
    let (success, _, stderr) = finish(tenantry(&["serve"], &env));
    assert!(!success);
    assert!(stderr.contains("PORT=\"eighty\" is invalid"), "{stderr}");

    let (success, _, stderr) = finish(tenantry(&["migrate"], &[]));
    assert!(!success);
    assert!(
        stderr.contains("MIGRATION_DATABASE_URL is required"),
        "{stderr}"
    );
}

#[tokio::test]
async fn migrate_prepares_an_empty_database_that_serve_then_accepts() {
    let cluster = cluster().await;
    let dbname = cluster.empty_database().await;
    let migrate_env = [
        (
            "MIGRATION_DATABASE_URL",
            cluster.url_for("tenantry_owner", &dbname),
        ),
        (
            "RUNTIME_ROLE_PASSWORD",
            crate::helpers::ROLE_PASSWORD.to_owned(),
        ),
    ];
    let (success, stdout, stderr) = finish(tenantry(&["migrate"], &migrate_env));
    assert!(success, "{stdout}{stderr}");
    let every_version: Vec<i32> = (1..=tenantry::db::migrate::latest_version()).collect();
    assert!(
        stdout.contains(&format!(r#""applied":"{every_version:?}""#)),
        "{stdout}"
    );
    let (success, stdout, _) = finish(tenantry(&["migrate"], &migrate_env));
    assert!(success);
    assert!(
        stdout.contains(r#""applied":"[]""#),
        "second run applies nothing: {stdout}"
    );

    let app = Application::build(&test_settings(cluster, &dbname)).await;
    assert!(
        app.is_ok(),
        "a freshly migrated database passes the audit: {:?}",
        app.err()
    );
}

/// Starts `tenantry serve` and returns the child and the port it logged.
fn start_server(env: &[(&str, String)]) -> (Running, u16) {
    let mut child = tenantry(&["serve"], env)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .expect("read stdout");
        let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if event["message"] == "listening" {
            break u16::try_from(event["port"].as_u64().expect("port")).expect("port");
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (Running(child), port)
}

fn send_signal(child: &Running, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait_for_exit(child: &mut Running, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "process did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A drill: `tenantry serve` (with `SHUTDOWN_TIMEOUT_MS` = `drain`) on a
/// test app's database, `in_flight` updates of one note provably in flight
/// (waiting on a row lock the test holds), then SIGTERM.
struct ShutdownDrill {
    app: crate::helpers::TestApp,
    note: uuid::Uuid,
    server: Running,
    port: u16,
    lock: crate::helpers::RowLock,
    updates: Vec<tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>>,
    signalled: Instant,
}

impl ShutdownDrill {
    async fn run(drain: Duration, in_flight: usize) -> Self {
        // The tenant and the note come from an in-process app on the same database.
        let app = spawn_app().await;
        let acme = app.onboard("acme").await;
        let note = app.create_note(&acme, "before shutdown").await;
        let mut env = serve_env(app.cluster.url_for("tenantry_app", &app.dbname));
        env.push(("SHUTDOWN_TIMEOUT_MS", drain.as_millis().to_string()));
        let (server, port) = start_server(&env);
        let lock = app.lock_note(note).await;
        let updates = (0..in_flight)
            .map(|index| {
                tokio::spawn(
                    app.http
                        .patch(format!("http://127.0.0.1:{port}/api/notes/{note}"))
                        .header("host", &acme.host)
                        .bearer_auth(&acme.token)
                        .json(&json!({"content": format!("after shutdown {index}")}))
                        .send(),
                )
            })
            .collect();
        app.wait_until_blocked_on_locks(i64::try_from(in_flight).unwrap())
            .await;
        send_signal(&server, "-TERM");
        Self {
            app,
            note,
            server,
            port,
            lock,
            updates,
            signalled: Instant::now(),
        }
    }
}

#[tokio::test]
async fn sigterm_lets_in_flight_writes_finish_refuses_new_ones_and_exits_0_within_the_drain_time() {
    // Two updates: the free plan's two database connections.
    let drain = Duration::from_secs(5);
    let ShutdownDrill {
        app,
        note,
        mut server,
        port,
        lock,
        updates,
        signalled,
    } = ShutdownDrill::run(drain, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "still draining the in-flight requests"
    );
    let refused = app
        .http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "no new connections are accepted while draining"
    );

    lock.release().await;
    for update in updates {
        assert_eq!(update.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    let status = wait_for_exit(&mut server, drain);
    assert!(status.success(), "exit status {status}");
    let drained_in = signalled.elapsed();
    assert!(drained_in < drain, "exited {drained_in:?} after SIGTERM");
    let content = app.note_content(note).await;
    assert!(
        content.starts_with("after shutdown"),
        "the in-flight writes committed: {content}"
    );
    eprintln!(
        "faults: SIGTERM with 2 requests in flight: all answered 200, exit 0 after {drained_in:?}"
    );
}

#[tokio::test]
async fn a_request_outlasting_the_drain_time_is_cut_and_the_process_still_exits_0_on_time() {
    let drain = Duration::from_secs(1);
    let ShutdownDrill {
        app,
        note,
        mut server,
        lock,
        mut updates,
        signalled,
        ..
    } = ShutdownDrill::run(drain, 1).await;
    // The lock outlives the drain time: the process must not wait for it.
    // At the drain time the statement is cancelled in the database, and the
    // request answers 503 (retry) before the process exits.
    let status = wait_for_exit(&mut server, drain + Duration::from_secs(4));
    let exited_in = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        exited_in >= drain,
        "exited before the drain time: {exited_in:?}"
    );
    let cut = updates.pop().unwrap().await.unwrap().unwrap();
    assert_eq!(cut.headers().get("retry-after").unwrap(), "1");
    assert_eq!(
        crate::helpers::expect_error(cut, StatusCode::SERVICE_UNAVAILABLE).await,
        "unavailable"
    );
    lock.release().await;
    // Nothing of it is left to commit once the lock is gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.note_content(note).await,
        "before shutdown",
        "the cut write did not commit"
    );
    eprintln!(
        "faults: SIGTERM with a request outlasting a {drain:?} drain time: cancelled, answered 503, exit 0 after {exited_in:?}"
    );
}

/// Runs `tenantry dev` until it has printed its examples, runs them with
/// bash, stops it with SIGTERM, and returns what the examples printed.
fn run_dev_and_its_examples(data_dir: &std::path::Path, pg_port: u16) -> String {
    let port = free_port();
    let mut child = Running(
        tenantry(
            &["dev"],
            &[
                ("DEV_DATA_DIR", data_dir.display().to_string()),
                ("DEV_PG_PORT", pg_port.to_string()),
                ("PORT", port.to_string()),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tenantry dev"),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut examples = Vec::new();
    let mut in_block = false;
    loop {
        let line = lines
            .next()
            .expect("dev exited before printing its examples")
            .unwrap();
        match line.as_str() {
            "--- try it ---" => in_block = true,
            "--- end ---" => break,
            _ if in_block => examples.push(line),
            _ => {}
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    assert!(
        examples
            .iter()
            .all(|line| line.contains(&format!(":{port}/"))),
        "{examples:?}"
    );
    let script = format!("set -euo pipefail\n{}\n", examples.join("\necho\n"));
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("bash");
    send_signal(&child, "-TERM");
    let status = wait_for_exit(&mut child, Duration::from_secs(20));
    assert!(status.success(), "tenantry dev exit status {status}");
    assert!(
        output.status.success(),
        "examples failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn dev_serves_its_printed_examples_and_reuses_its_cluster() {
    let data_dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dev-{}", uuid::Uuid::new_v4().simple()));
    let pg_port = free_port();

    let first = tokio::task::spawn_blocking({
        let data_dir = data_dir.clone();
        move || run_dev_and_its_examples(&data_dir, pg_port)
    })
    .await
    .unwrap();
    let outputs: Vec<&str> = first.lines().filter(|line| !line.is_empty()).collect();
    assert_eq!(outputs.len(), 8, "one answer per example: {first}");
    assert_eq!(outputs[0], r#"{"status":"ok"}"#);
    assert!(
        outputs[1].contains(r#""role":"member""#),
        "register: {}",
        outputs[1]
    );
    assert!(
        outputs[2].contains(r#""content":"hello from acme""#),
        "create: {}",
        outputs[2]
    );
    assert_eq!(
        outputs[3].matches("hello from acme").count(),
        1,
        "list: {}",
        outputs[3]
    );
    assert!(
        outputs[4].contains(r#""slug":"acme""#) && outputs[4].contains(r#""username":"alice""#),
        "me: {}",
        outputs[4]
    );
    assert_eq!(
        outputs[5],
        r#"{"error":{"code":"unauthorized","message":"authentication required"}}"#
    );
    assert!(
        outputs[6].contains(r#""host":"initech-"#),
        "onboarding: {}",
        outputs[6]
    );
    assert!(
        outputs[7].contains(r#""slug":"acme""#) && outputs[7].contains(r#""logins_24h":"#),
        "stats: {}",
        outputs[7]
    );
    assert!(
        !data_dir.join("data/postmaster.pid").exists(),
        "dev stopped the cluster it started"
    );

    let second = tokio::task::spawn_blocking({
        let data_dir = data_dir.clone();
        move || run_dev_and_its_examples(&data_dir, pg_port)
    })
    .await
    .unwrap();
    let list = second
        .lines()
        .filter(|line| !line.is_empty())
        .nth(3)
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        list.matches("hello from acme").count(),
        2,
        "the first run's note survived: {list}"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}
