//! `tenantry migrate`: idempotent, safe when several instances start at once,
//! strict about history, and the single source of the runtime role's grants.

use tenantry::db::migrate;
use tokio_postgres::Client;

use crate::helpers::{TestCluster, cluster, connect};

async fn owner_on(cluster: &TestCluster, dbname: &str) -> Client {
    connect(&cluster.config_for("tenantry_owner", dbname)).await
}

#[tokio::test]
async fn migrating_twice_applies_everything_once() {
    let cluster = cluster().await;
    let dbname = cluster.empty_database().await;
    let mut owner = owner_on(cluster, &dbname).await;

    let first = migrate::run(&mut owner, &tenantry::config::RolePasswords::default())
        .await
        .unwrap();
    let all: Vec<i32> = migrate::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(
        first,
        migrate::Report {
            applied: all,
            version: migrate::latest_version()
        }
    );
    let second = migrate::run(&mut owner, &tenantry::config::RolePasswords::default())
        .await
        .unwrap();
    assert_eq!(
        second,
        migrate::Report {
            applied: vec![],
            version: migrate::latest_version()
        }
    );
}

#[tokio::test]
async fn instances_migrating_at_once_queue_on_the_lock_and_all_succeed() {
    let cluster = cluster().await;
    let dbname = cluster.empty_database().await;
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let config = cluster.config_for("tenantry_owner", &dbname);
            tokio::spawn(async move {
                let mut owner = connect(&config).await;
                migrate::run(&mut owner, &tenantry::config::RolePasswords::default()).await
            })
        })
        .collect();
    let mut applied_by_someone = Vec::new();
    for run in runs {
        let report = run.await.unwrap().expect("every concurrent run succeeds");
        assert_eq!(report.version, migrate::latest_version());
        applied_by_someone.extend(report.applied);
    }
    let all: Vec<i32> = migrate::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(
        applied_by_someone, all,
        "each migration was applied by exactly one run"
    );
    let admin = connect(&cluster.superuser_on(&dbname)).await;
    let recorded: i64 = admin
        .query_one("select count(*) from schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, i64::try_from(migrate::MIGRATIONS.len()).unwrap());
}

#[tokio::test]
async fn an_edited_or_unknown_migration_stops_the_run() {
    let cluster = cluster().await;
    let dbname = cluster.migrated_database().await;
    let admin = connect(&cluster.superuser_on(&dbname)).await;
    let mut owner = owner_on(cluster, &dbname).await;

    let original: String = admin
        .query_one(
            "select checksum from schema_migrations where version = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    admin
        .execute(
            "update schema_migrations set checksum = 'tampered' where version = 1",
            &[],
        )
        .await
        .unwrap();
    let edited = migrate::run(&mut owner, &tenantry::config::RolePasswords::default())
        .await
        .expect_err("checksum mismatch");
    assert!(
        edited
            .to_string()
            .contains("was edited after it was applied"),
        "{edited:#}"
    );

    admin
        .execute(
            "update schema_migrations set checksum = $1 where version = 1",
            &[&original],
        )
        .await
        .unwrap();
    admin
        .execute("insert into schema_migrations (version, name, checksum, duration_ms) values (9999, 'future', 'x', 0)", &[])
        .await
        .unwrap();
    let ahead = migrate::run(&mut owner, &tenantry::config::RolePasswords::default())
        .await
        .expect_err("unknown version");
    assert!(ahead.to_string().contains("newer release"), "{ahead:#}");
}

#[tokio::test]
async fn every_run_restores_the_declared_grants() {
    let cluster = cluster().await;
    let dbname = cluster.migrated_database().await;
    let admin = connect(&cluster.superuser_on(&dbname)).await;
    admin
        .batch_execute("revoke select on notes from tenantry_app; grant truncate on users to tenantry_app; grant select on tenants to tenantry_app")
        .await
        .unwrap();

    migrate::run(
        &mut owner_on(cluster, &dbname).await,
        &tenantry::config::RolePasswords::default(),
    )
    .await
    .unwrap();
    let privilege = async |table: &str, privilege: &str| -> bool {
        admin
            .query_one(
                "select has_table_privilege('tenantry_app', $1, $2)",
                &[&table, &privilege],
            )
            .await
            .unwrap()
            .get(0)
    };
    assert!(privilege("notes", "SELECT").await, "revoked grant restored");
    assert!(!privilege("users", "TRUNCATE").await, "stray grant removed");
    assert!(
        !privilege("tenants", "SELECT").await,
        "registry stays unreadable"
    );
}

/// One test's database, with a superuser and an owner connection to it.
struct Fixture {
    dbname: crate::helpers::TestDatabase,
    admin: Client,
    owner: Client,
}

/// A new database, migrated or empty.
async fn fixture(migrated: bool) -> Fixture {
    let cluster = cluster().await;
    let dbname = if migrated {
        cluster.migrated_database().await
    } else {
        cluster.empty_database().await
    };
    Fixture {
        admin: connect(&cluster.superuser_on(&dbname)).await,
        owner: owner_on(cluster, &dbname).await,
        dbname,
    }
}

/// What a dry run must leave as it found it: every column of every table and
/// every function in `public`, and the rows of `schema_migrations` (NULL
/// when the table does not exist). Read as the superuser.
async fn schema_snapshot(admin: &Client) -> (Vec<String>, Vec<String>, Option<Vec<String>>) {
    let texts = async |sql: &str| -> Vec<String> {
        let rows = admin.query(sql, &[]).await.unwrap();
        rows.iter().map(|row| row.get(0)).collect()
    };
    let columns = texts(
        "select format('%s.%s %s', table_name, column_name, data_type) from information_schema.columns
         where table_schema = 'public' order by table_name, ordinal_position",
    )
    .await;
    let functions = texts(
        "select p.oid::regprocedure::text from pg_proc p
         where p.pronamespace = 'public'::regnamespace order by 1",
    )
    .await;
    let history_exists =
        texts("select (to_regclass('public.schema_migrations') is not null)::text").await;
    let history = if history_exists == ["true"] {
        Some(texts("select s::text from schema_migrations s order by version").await)
    } else {
        None
    };
    (columns, functions, history)
}

/// Advisory locks held in `dbname`: the migration lock must not outlive a run.
async fn advisory_locks(admin: &Client) -> i64 {
    admin
        .query_one(
            "select count(*) from pg_locks l join pg_database d on d.oid = l.database
             where l.locktype = 'advisory' and d.datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn all_versions() -> Vec<i32> {
    migrate::MIGRATIONS.iter().map(|m| m.version).collect()
}

#[tokio::test]
async fn status_of_an_empty_database_has_everything_pending_and_creates_nothing() {
    let Fixture {
        admin,
        owner,
        dbname: _dbname,
    } = fixture(false).await;
    let before = schema_snapshot(&admin).await;

    let status = migrate::status(&owner).await.unwrap();

    assert_eq!(status.verdict(), migrate::Verdict::Pending);
    assert_eq!(status.pending(), all_versions());
    assert_eq!(status.current_version, 0);
    assert_eq!(status.expected_version, migrate::latest_version());
    assert!(status.ahead.is_empty());
    assert!(status.problems().is_empty());
    let states: Vec<_> = status
        .migrations
        .iter()
        .map(|m| (m.version, m.state))
        .collect();
    let all_pending: Vec<_> = all_versions()
        .into_iter()
        .map(|version| (version, migrate::MigrationState::Pending))
        .collect();
    assert_eq!(states, all_pending);
    let after = schema_snapshot(&admin).await;
    assert_eq!(after, before);
    assert_eq!(after, (vec![], vec![], None), "the database is still empty");
}

#[tokio::test]
async fn status_after_migrate_has_everything_applied_with_its_time() {
    let Fixture {
        admin,
        mut owner,
        dbname: _dbname,
    } = fixture(false).await;
    let started: chrono::DateTime<chrono::Utc> =
        admin.query_one("select now()", &[]).await.unwrap().get(0);
    migrate::run(&mut owner, &tenantry::config::RolePasswords::default())
        .await
        .unwrap();

    let status = migrate::status(&owner).await.unwrap();

    assert_eq!(status.verdict(), migrate::Verdict::UpToDate);
    assert!(status.pending().is_empty());
    assert_eq!(status.current_version, migrate::latest_version());
    let recorded = admin
        .query(
            "select version, applied_at, duration_ms from schema_migrations order by version",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(recorded.len(), migrate::MIGRATIONS.len());
    for (migration, row) in status.migrations.iter().zip(&recorded) {
        let applied_at: chrono::DateTime<chrono::Utc> = row.get(1);
        assert_eq!(migration.version, row.get::<_, i32>(0));
        assert_eq!(
            migration.state,
            migrate::MigrationState::Applied {
                applied_at,
                duration_ms: row.get(2)
            }
        );
        assert!(applied_at >= started, "applied by this test's run");
    }
}

#[tokio::test]
async fn status_flags_an_edited_migration_and_one_from_a_newer_release() {
    let Fixture {
        admin,
        owner,
        dbname: _dbname,
    } = fixture(true).await;
    admin
        .batch_execute(
            "update schema_migrations set checksum = 'tampered' where version = 1;
             insert into schema_migrations (version, name, checksum, duration_ms) values (9999, 'future', 'x', 5)",
        )
        .await
        .unwrap();

    let status = migrate::status(&owner).await.unwrap();

    assert_eq!(status.verdict(), migrate::Verdict::Diverged);
    assert!(
        matches!(
            status.migrations[0].state,
            migrate::MigrationState::Edited { .. }
        ),
        "{:?}",
        status.migrations[0]
    );
    assert!(
        status.migrations[1..]
            .iter()
            .all(|m| matches!(m.state, migrate::MigrationState::Applied { .. })),
        "{status:?}"
    );
    let ahead: Vec<(i32, &str, i32)> = status
        .ahead
        .iter()
        .map(|r| (r.version, r.name.as_str(), r.duration_ms))
        .collect();
    assert_eq!(ahead, [(9999, "future", 5)]);
    assert_eq!(status.current_version, 9999);
    assert_eq!(status.expected_version, migrate::latest_version());
    let problems = status.problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("V9999__future"), "{problems:?}");
    assert!(
        problems[1].contains("V1__tenancy was edited after it was applied"),
        "{problems:?}"
    );
}

#[tokio::test]
async fn a_dry_run_reports_what_it_would_apply_and_leaves_the_database_as_it_was() {
    let Fixture {
        admin,
        mut owner,
        dbname: _dbname,
    } = fixture(false).await;
    let before = schema_snapshot(&admin).await;

    let dry_run = migrate::dry_run(&mut owner).await.unwrap();

    assert_eq!(dry_run.versions(), all_versions());
    assert_eq!(dry_run.from_version, 0);
    assert_eq!(dry_run.to_version, migrate::latest_version());
    let names: Vec<&str> = dry_run.migrations.iter().map(|m| m.name).collect();
    let embedded: Vec<&str> = migrate::MIGRATIONS.iter().map(|m| m.name).collect();
    assert_eq!(names, embedded);
    assert!(dry_run.migrations.iter().all(|m| !m.duration.is_zero()));
    assert_eq!(schema_snapshot(&admin).await, before);
    assert_eq!(advisory_locks(&admin).await, 0, "the lock was released");
    let status = migrate::status(&owner).await.unwrap();
    assert_eq!(status.pending(), all_versions());

    let report = migrate::run(&mut owner, &tenantry::config::RolePasswords::default())
        .await
        .unwrap();
    assert_eq!(report.applied, all_versions());
}

#[tokio::test]
async fn a_dry_run_of_an_up_to_date_database_applies_nothing_and_changes_nothing() {
    let Fixture {
        admin,
        mut owner,
        dbname: _dbname,
    } = fixture(true).await;
    let before = schema_snapshot(&admin).await;
    assert!(
        before
            .2
            .as_ref()
            .is_some_and(|rows| rows.len() == migrate::MIGRATIONS.len())
    );

    let dry_run = migrate::dry_run(&mut owner).await.unwrap();

    assert!(dry_run.migrations.is_empty(), "{dry_run:?}");
    assert_eq!(dry_run.from_version, migrate::latest_version());
    assert_eq!(dry_run.to_version, migrate::latest_version());
    assert_eq!(schema_snapshot(&admin).await, before);
}

#[tokio::test]
async fn a_failing_migration_in_a_dry_run_is_named_with_the_postgres_error_and_rolled_back() {
    let Fixture {
        admin,
        mut owner,
        dbname: _dbname,
    } = fixture(false).await;
    // V1 creates `tenants`; an object of that name already being there makes it fail.
    admin
        .batch_execute("create table tenants (x int)")
        .await
        .unwrap();
    let before = schema_snapshot(&admin).await;

    let error = migrate::dry_run(&mut owner)
        .await
        .expect_err("V1 cannot create tenants");

    let failed = error
        .downcast_ref::<migrate::MigrationFailed>()
        .unwrap_or_else(|| panic!("not a MigrationFailed: {error:#}"));
    assert_eq!(
        *failed,
        migrate::MigrationFailed {
            version: 1,
            name: "tenancy",
            code: Some("42P07".to_owned()),
            message: "relation \"tenants\" already exists".to_owned(),
            line: None,
        }
    );
    assert_eq!(
        format!("{error:#}"),
        "dry run failed; it was rolled back and changed nothing: \
         migration V1__tenancy failed: relation \"tenants\" already exists (SQLSTATE 42P07)"
    );
    assert_eq!(schema_snapshot(&admin).await, before);
    assert_eq!(before.2, None, "no schema_migrations was left behind");
    assert_eq!(advisory_locks(&admin).await, 0, "the lock was released");
}

/// Runs the real binary's `migrate` with `args` against `dbname` as the owner.
async fn tenantry_migrate(
    cluster: &TestCluster,
    dbname: &str,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .arg("migrate")
        .args(args)
        .env(
            "MIGRATION_DATABASE_URL",
            cluster.url_for("tenantry_owner", dbname),
        )
        .env_remove("RUNTIME_ROLE_PASSWORD")
        .env_remove("ADMIN_ROLE_PASSWORD")
        .env_remove("ANALYTICS_ROLE_PASSWORD")
        .env("LOG_FORMAT", "json")
        .output()
        .await
        .expect("run tenantry");
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// The lines of a `migrate --status` table that start with `V{version}`.
fn status_line(stdout: &str, version: i32) -> Vec<String> {
    stdout
        .lines()
        .filter(|line| line.starts_with(&format!("V{version} ")))
        .map(|line| {
            line.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[tokio::test]
async fn the_status_command_exits_3_while_migrations_are_pending_and_0_once_applied() {
    let Fixture {
        dbname,
        admin,
        owner: _owner,
    } = fixture(false).await;
    let cluster = cluster().await;

    let (code, stdout, stderr) = tenantry_migrate(cluster, &dbname, &["--status"]).await;
    assert_eq!(code, Some(3), "pending; stdout: {stdout} stderr: {stderr}");
    for migration in migrate::MIGRATIONS {
        assert_eq!(
            status_line(&stdout, migration.version),
            [format!("V{} {} pending", migration.version, migration.name)],
            "{stdout}"
        );
    }

    let (code, stdout, stderr) = tenantry_migrate(cluster, &dbname, &["--dry-run"]).await;
    assert_eq!(code, Some(0), "dry run; stdout: {stdout} stderr: {stderr}");
    assert!(stdout.contains("rolled back, nothing changed"), "{stdout}");
    for migration in migrate::MIGRATIONS {
        assert!(
            stdout
                .lines()
                .any(|line| line.starts_with(&format!("V{} ", migration.version))),
            "{stdout}"
        );
    }
    let (code, ..) = tenantry_migrate(cluster, &dbname, &["--status"]).await;
    assert_eq!(code, Some(3), "the dry run applied nothing");

    let (code, _, stderr) = tenantry_migrate(cluster, &dbname, &[]).await;
    assert_eq!(code, Some(0), "migrate: {stderr}");
    let (code, stdout, stderr) = tenantry_migrate(cluster, &dbname, &["--status"]).await;
    assert_eq!(
        code,
        Some(0),
        "up to date; stdout: {stdout} stderr: {stderr}"
    );
    for migration in migrate::MIGRATIONS {
        assert_eq!(
            status_line(&stdout, migration.version),
            [format!("V{} {} applied", migration.version, migration.name)],
            "{stdout}"
        );
    }
    assert!(stdout.contains("up to date"), "{stdout}");

    let tamper = "update schema_migrations set checksum = 'tampered' where version = 1";
    admin.batch_execute(tamper).await.unwrap();
    let (code, stdout, stderr) = tenantry_migrate(cluster, &dbname, &["--status"]).await;
    assert_eq!(code, Some(1), "edited; stdout: {stdout} stderr: {stderr}");
    assert_eq!(status_line(&stdout, 1), ["V1 tenancy EDITED"], "{stdout}");
    assert!(stderr.contains("V1__tenancy was edited"), "{stderr}");

    let (code, _, stderr) = tenantry_migrate(cluster, &dbname, &["--status", "--dry-run"]).await;
    assert_eq!(code, Some(2), "clap refuses both flags: {stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[tokio::test]
async fn upgrading_a_database_with_tenants_keeps_their_domains_routing() {
    let cluster = cluster().await;
    let dbname = cluster.empty_database().await;
    let mut owner = owner_on(cluster, &dbname).await;
    migrate::run_up_to(&mut owner, &tenantry::config::RolePasswords::default(), 1)
        .await
        .unwrap();
    // A V1 database in use: a tenant with a custom domain (V1 had no
    // verification; its domains were added by operators).
    let superuser = connect(&cluster.superuser_on(&dbname)).await;
    superuser
        .batch_execute(
            "insert into tenants (id, slug, name) values ('01a20000-0000-7000-8000-000000000001', 'acme', 'Acme');
             insert into tenant_domains (domain, tenant_id) values ('notes.acme.io', '01a20000-0000-7000-8000-000000000001');",
        )
        .await
        .unwrap();

    let report = migrate::run(&mut owner, &tenantry::config::RolePasswords::default())
        .await
        .expect("the upgrade applies over existing rows");
    assert_eq!(report.version, migrate::latest_version());
    let row = superuser
        .query_one(
            "select verification_token, verified_at = created_at from tenant_domains where domain = 'notes.acme.io'",
            &[],
        )
        .await
        .unwrap();
    let token: String = row.get(0);
    assert_eq!(token.len(), 32);
    assert!(row.get::<_, bool>(1), "an operator's domain stays verified");
    let forced: bool = superuser
        .query_one(
            "select relforcerowsecurity from pg_class where relname = 'tenant_domains'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(forced, "FORCE is back after the backfill");
    let routed: i64 = superuser
        .query_one(
            "select count(*) from tenant_by_domain('notes.acme.io')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(routed, 1);
}

#[tokio::test]
async fn migrating_an_up_to_date_database_says_nothing_but_that_it_is_migrated() {
    let cluster = cluster().await;
    let dbname = cluster.migrated_database().await;
    let (code, stdout, stderr) = tenantry_migrate(cluster, &dbname, &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("database is migrated"), "{lines:#?}");
}
