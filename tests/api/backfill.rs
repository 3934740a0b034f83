//! `tenantry migrate backfill`: data migrations by ring, run by the real
//! binary as the admin role against the test's database. Ring by ring,
//! resumable after a kill at any point, confined to one tenant per batch by
//! RLS, and strict about its arguments.

use std::{process::Stdio, time::Duration};

use serde_json::Value;
use tenantry::admin::backfill::BACKFILLS;
use tenantry::db::Consistency;
use tenantry::domain::TenantId;
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::{
    backend,
    helpers::{BASE_DOMAIN, TestApp, TestCluster, TestTenant, cluster, connect, spawn_app},
};

const BINARY: &str = env!("CARGO_BIN_EXE_tenantry");
/// No run of the binary in these tests may take longer.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Contents with multi-byte characters: bytes and characters differ.
const CONTENTS: &[&str] = &["plain", "héllo wörld", "✓ done", "日本語のノート", "x"];

/// `tenantry migrate backfill <args>` as a child process, as the admin role.
fn spawn_backfill(app: &TestApp, args: &[&str]) -> Child {
    spawn_backfill_on(app.cluster, &app.dbname, args)
}

/// [`spawn_backfill`] on any database of `cluster`.
fn spawn_backfill_on(cluster: &TestCluster, dbname: &str, args: &[&str]) -> Child {
    Command::new(BINARY)
        .args(["migrate", "backfill"])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "ADMIN_DATABASE_URL",
            cluster.url_for("tenantry_admin", dbname),
        )
        .env("BASE_DOMAIN", BASE_DOMAIN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A test that fails (or times out) never leaves the child running.
        .kill_on_drop(true)
        .spawn()
        .expect("run tenantry")
}

/// What a run did: its exit code, its stdout and its stderr.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The JSON report, after checking the exit code.
    fn report(&self, code: i32) -> Value {
        assert_eq!(
            self.code,
            Some(code),
            "stdout: {} stderr: {}",
            self.stdout,
            self.stderr
        );
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `tenantry migrate backfill <args>` to its end (at most [`RUN_TIMEOUT`]).
async fn backfill(app: &TestApp, args: &[&str]) -> Run {
    wait_for_run(spawn_backfill(app, args)).await
}

/// The end of `child` (at most [`RUN_TIMEOUT`] away).
async fn wait_for_run(child: Child) -> Run {
    let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .expect("the backfill ended in time")
        .expect("the backfill's output");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Sets `size_bytes` back to NULL on the notes `condition` selects (`$1` is
/// `id`), with V8's trigger off: rows as they were before V8, or as a
/// data-only `pg_restore --disable-triggers` loads them. (With it on, the
/// trigger fills the column on every write, whoever writes.) The trigger is
/// disabled by DDL inside the transaction, which Citus sends to every shard
/// (a `session_replication_role` would stay on the coordinator).
async fn forget_sizes(app: &TestApp, condition: &str, id: Uuid) {
    // One statement per query: Citus cannot propagate DDL sent among others.
    for statement in [
        "begin",
        "set local citus.enable_unsafe_triggers = on",
        "alter table notes disable trigger notes_size_bytes_follow_content",
    ] {
        app.admin.batch_execute(statement).await.unwrap();
    }
    app.admin
        .execute(
            &format!("update notes set size_bytes = null where {condition}"),
            &[&id],
        )
        .await
        .unwrap();
    for statement in [
        "alter table notes enable trigger notes_size_bytes_follow_content",
        "commit",
    ] {
        app.admin.batch_execute(statement).await.unwrap();
    }
}

/// A tenant in `ring` with one note per content, whose `size_bytes` are
/// then set back to NULL: rows as they were before V8.
async fn tenant_with_old_notes(app: &TestApp, slug: &str, ring: &str) -> TestTenant {
    let tenant = app.onboard(slug).await;
    for content in CONTENTS {
        app.create_note(&tenant, content).await;
    }
    forget_sizes(app, "tenant_id = $1", tenant.id).await;
    app.admin
        .execute(
            "update tenants set ring = $2 where id = $1",
            &[&tenant.id, &ring],
        )
        .await
        .unwrap();
    tenant
}

/// `(filled, still NULL)` notes of `tenant`; panics on a filled value other
/// than the content's size in bytes (computed here, in Rust).
async fn notes_state(app: &TestApp, tenant: Uuid) -> (usize, usize) {
    let rows = app
        .admin
        .query(
            "select content, size_bytes from notes where tenant_id = $1",
            &[&tenant],
        )
        .await
        .unwrap();
    let mut state = (0, 0);
    for row in rows {
        let content: String = row.get(0);
        match row.get::<_, Option<i32>>(1) {
            Some(size) => {
                assert_eq!(usize::try_from(size).unwrap(), content.len(), "{content}");
                state.0 += 1;
            }
            None => state.1 += 1,
        }
    }
    state
}

/// The report's entry for `ring`.
fn ring<'a>(report: &'a Value, ring: &str) -> &'a Value {
    report["rings"]
        .as_array()
        .expect("rings")
        .iter()
        .find(|r| r["ring"] == ring)
        .unwrap_or_else(|| panic!("no {ring} in {report}"))
}

/// `(tenants, finished, in_progress, not_started, rows_done, done)` of a ring.
fn counts(report: &Value, name: &str) -> (i64, i64, i64, i64, i64, bool) {
    let r = ring(report, name);
    let n = |key: &str| r[key].as_i64().unwrap_or_else(|| panic!("{key} in {r}"));
    (
        n("tenants"),
        n("finished"),
        n("in_progress"),
        n("not_started"),
        n("rows_done"),
        r["done"].as_bool().expect("done"),
    )
}

const ALL: usize = CONTENTS.len();
const ALL_ROWS: i64 = CONTENTS.len() as i64;

#[tokio::test]
async fn a_ring_is_backfilled_first_and_the_status_says_what_remains() {
    let app = spawn_app().await;
    let canary = [
        tenant_with_old_notes(&app, "canary-a", "canary").await,
        tenant_with_old_notes(&app, "canary-b", "canary").await,
    ];
    let stable = tenant_with_old_notes(&app, "stable-a", "stable").await;

    let run = backfill(
        &app,
        &["note-size", "--ring", "canary", "--batch-size", "2"],
    )
    .await;
    let report = run.report(0);
    assert_eq!(report["backfill"], "note-size");
    assert_eq!(report["rings"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(counts(&report, "canary"), (2, 2, 0, 0, 2 * ALL_ROWS, true));
    for tenant in &canary {
        assert_eq!(notes_state(&app, tenant.id).await, (ALL, 0));
        assert!(
            run.stderr.contains(&format!("{}: done", tenant.slug)),
            "{}",
            run.stderr
        );
    }
    assert_eq!(notes_state(&app, stable.id).await, (0, ALL), "stable waits");

    let status = backfill(&app, &["note-size", "--status"]).await.report(3);
    assert_eq!(status["done"], false);
    assert_eq!(counts(&status, "canary"), (2, 2, 0, 0, 2 * ALL_ROWS, true));
    assert_eq!(counts(&status, "early"), (0, 0, 0, 0, 0, true));
    assert_eq!(counts(&status, "stable"), (1, 0, 0, 1, 0, false));
    let canary_only = backfill(&app, &["note-size", "--status", "--ring", "canary"]).await;
    assert_eq!(canary_only.report(0)["done"], true);
    assert_eq!(
        notes_state(&app, stable.id).await,
        (0, ALL),
        "--status changes nothing"
    );

    let all = backfill(&app, &["note-size"]).await.report(0);
    assert_eq!(all["done"], true);
    assert_eq!(counts(&all, "stable"), (1, 1, 0, 0, ALL_ROWS, true));
    assert_eq!(counts(&all, "canary"), (2, 2, 0, 0, 2 * ALL_ROWS, true));
    for tenant in canary.iter().chain([&stable]) {
        assert_eq!(notes_state(&app, tenant.id).await, (ALL, 0));
    }

    // A tenant that joins a ring after its backfill: the ring is not done.
    let late = tenant_with_old_notes(&app, "canary-late", "canary").await;
    let status = backfill(&app, &["note-size", "--status", "--ring", "canary"]).await;
    let status = status.report(3);
    assert_eq!(counts(&status, "canary"), (3, 2, 0, 1, 2 * ALL_ROWS, false));
    assert_eq!(ring(&status, "canary")["onboarded_since"], 1, "{status}");
    assert!(ring(&status, "canary")["note"].is_string(), "{status}");
    backfill(&app, &["note-size", "--ring", "canary"])
        .await
        .report(0);
    assert_eq!(notes_state(&app, late.id).await, (ALL, 0));
}

/// Sessions of the admin role in this database waiting on a lock.
async fn admin_sessions_waiting(app: &TestApp) -> i64 {
    app.admin
        .query_one(
            &format!(
                "select count(*) from {} where datname = current_database()
                 and usename = 'tenantry_admin' and wait_event_type = 'Lock'",
                backend::ACTIVITY
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// `tenant`'s progress row: `(rows_done, finished_at, updated_at)`.
async fn progress_of(
    app: &TestApp,
    tenant: Uuid,
) -> Option<(
    i64,
    Option<chrono::DateTime<chrono::Utc>>,
    chrono::DateTime<chrono::Utc>,
)> {
    app.admin
        .query_opt(
            "select rows_done, finished_at, updated_at from backfill_progress
             where backfill = 'note-size' and tenant = $1",
            &[&tenant],
        )
        .await
        .unwrap()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
}

/// Polls `condition` every 50 ms for at most 30 s.
async fn wait_for(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    for _ in 0..600 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn a_killed_backfill_resumes_where_it_stopped_and_redoes_no_finished_tenant() {
    let app = spawn_app().await;
    let first = tenant_with_old_notes(&app, "first", "stable").await;
    let second = tenant_with_old_notes(&app, "second", "stable").await;
    let third = tenant_with_old_notes(&app, "third", "stable").await;
    // The second tenant's first note in key order: its first batch needs it.
    let blocking: Uuid = app
        .admin
        .query_one(
            "select id from notes where tenant_id = $1 order by id limit 1",
            &[&second.id],
        )
        .await
        .unwrap()
        .get(0);
    let lock = app.lock_note(blocking).await;

    let mut child = spawn_backfill(&app, &["note-size", "--batch-size", "2"]);
    wait_for("the first tenant is finished", async || {
        progress_of(&app, first.id)
            .await
            .is_some_and(|(_, finished, _)| finished.is_some())
    })
    .await;
    wait_for("the backfill waits on the locked note", async || {
        admin_sessions_waiting(&app).await >= 1
    })
    .await;
    // A second run while the first is in progress is refused and does nothing.
    let second_run = backfill(&app, &["note-size", "--batch-size", "2"]).await;
    assert_eq!(second_run.code, Some(1), "{}", second_run.stderr);
    assert!(
        second_run
            .stderr
            .contains("another run of this backfill is in progress"),
        "{}",
        second_run.stderr
    );
    assert_eq!(notes_state(&app, third.id).await, (0, ALL));
    assert_eq!(progress_of(&app, third.id).await, None);
    child.kill().await.expect("SIGKILL the backfill");
    let killed = child.wait().await.unwrap();
    assert!(!killed.success(), "killed, not finished: {killed:?}");
    let first_progress = progress_of(&app, first.id).await.expect("first's progress");
    assert_eq!(first_progress.0, ALL_ROWS);
    assert_eq!(progress_of(&app, second.id).await, None, "rolled back");
    assert_eq!(notes_state(&app, first.id).await, (ALL, 0));
    assert_eq!(
        notes_state(&app, second.id).await,
        (0, ALL),
        "the batch in flight"
    );
    assert_eq!(notes_state(&app, third.id).await, (0, ALL));
    let status = backfill(&app, &["note-size", "--status"]).await.report(3);
    assert_eq!(counts(&status, "stable"), (3, 1, 0, 2, ALL_ROWS, false));
    lock.release().await;

    let rerun = backfill(&app, &["note-size", "--batch-size", "2"]).await;
    let report = rerun.report(0);
    assert_eq!(report["done"], true);
    assert_eq!(counts(&report, "stable"), (3, 3, 0, 0, 3 * ALL_ROWS, true));
    for tenant in [&first, &second, &third] {
        assert_eq!(notes_state(&app, tenant.id).await, (ALL, 0));
    }
    assert_eq!(
        progress_of(&app, first.id).await,
        Some(first_progress),
        "the finished tenant was skipped, not redone"
    );
    assert!(!rerun.stderr.contains("first:"), "{}", rerun.stderr);
    assert!(
        rerun
            .stderr
            .contains(&format!("filled {} rows", 2 * ALL_ROWS)),
        "{}",
        rerun.stderr
    );
}

#[tokio::test]
async fn a_batch_of_one_tenant_never_touches_another_tenants_rows() {
    let app = spawn_app().await;
    let canary = tenant_with_old_notes(&app, "canary-a", "canary").await;
    let stable = tenant_with_old_notes(&app, "stable-a", "stable").await;
    let before = app.full_fingerprint(stable.id).await;

    backfill(&app, &["note-size", "--ring", "canary"])
        .await
        .report(0);
    assert_eq!(notes_state(&app, canary.id).await, (ALL, 0));
    assert_eq!(app.full_fingerprint(stable.id).await, before);

    // RLS is the guard, not the statement's filter: the batch without its
    // `tenant_id = $1`, in a transaction of another tenant, still fills
    // that tenant's rows only.
    let other = tenant_with_old_notes(&app, "other", "canary").await;
    let before = app.full_fingerprint(stable.id).await;
    let unscoped = BACKFILLS[0]
        .batch_sql
        .replace("n.tenant_id = $1", "$1::uuid = $1")
        .replace("tenant_id = $1", "$1::uuid = $1");
    assert!(!unscoped.contains("tenant_id"), "{unscoped}");
    let ops = app.ops();
    ops.db
        .transaction(
            TenantId::from_uuid(other.id),
            Consistency::PerStatement,
            async |tx| {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                    [&other.id, &Uuid::nil(), &1_000_i64];
                tx.query_one(&unscoped, &params).await?;
                Ok(())
            },
        )
        .await
        .unwrap();
    assert_eq!(notes_state(&app, other.id).await, (ALL, 0));
    assert_eq!(app.full_fingerprint(stable.id).await, before);
}

#[tokio::test]
async fn an_unknown_backfill_or_ring_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let tenant = tenant_with_old_notes(&app, "acme", "canary").await;

    let unknown = backfill(&app, &["note-sizes", "--ring", "canary"]).await;
    assert_eq!(unknown.code, Some(1), "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("unknown backfill \"note-sizes\"")
            && unknown.stderr.contains("known backfills: note-size"),
        "{}",
        unknown.stderr
    );
    let ring = backfill(&app, &["note-size", "--ring", "beta"]).await;
    assert_eq!(ring.code, Some(1), "{}", ring.stderr);
    assert!(
        ring.stderr.contains("\"beta\"") && ring.stderr.contains("canary, early, stable"),
        "{}",
        ring.stderr
    );
    for run in [&unknown, &ring] {
        assert!(run.stdout.is_empty(), "no report: {}", run.stdout);
    }

    assert_eq!(notes_state(&app, tenant.id).await, (0, ALL));
    let progress: i64 = app
        .admin
        .query_one("select count(*) from backfill_progress", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(progress, 0);
}

#[tokio::test]
async fn a_database_older_than_the_backfill_is_refused() {
    let cluster = cluster().await;
    let dbname = cluster.empty_database().await;
    let mut owner = connect(&cluster.config_for("tenantry_owner", &dbname)).await;
    tenantry::db::migrate::run_up_to(&mut owner, &tenantry::config::RolePasswords::default(), 7)
        .await
        .unwrap();

    for args in [&["note-size"][..], &["note-size", "--status"]] {
        let run = wait_for_run(spawn_backfill_on(cluster, &dbname, args)).await;
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert!(
            run.stderr
                .contains("backfill note-size needs schema version 8 or later")
                && run.stderr.contains("run `tenantry migrate` first"),
            "{}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{}", run.stdout);
    }
}

#[tokio::test]
async fn restart_scans_finished_tenants_again_for_rows_loaded_without_triggers() {
    let app = spawn_app().await;
    let tenant = tenant_with_old_notes(&app, "acme", "early").await;
    backfill(&app, &["note-size"]).await.report(0);
    assert_eq!(notes_state(&app, tenant.id).await, (ALL, 0));
    // A note loaded without triggers after the tenant was done.
    let older = app.create_note(&tenant, "loaded without triggers").await;
    forget_sizes(&app, "id = $1", older).await;

    backfill(&app, &["note-size"]).await.report(0);
    assert_eq!(
        notes_state(&app, tenant.id).await,
        (ALL, 1),
        "a plain re-run skips the finished tenant"
    );
    let restarted = backfill(&app, &["note-size", "--restart"]).await.report(0);
    assert_eq!(notes_state(&app, tenant.id).await, (ALL + 1, 0));
    assert_eq!(counts(&restarted, "early"), (1, 1, 0, 0, 1, true));
}
