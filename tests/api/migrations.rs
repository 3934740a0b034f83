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

    let first = migrate::run(&mut owner, &migrate::RolePasswords::default())
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
    let second = migrate::run(&mut owner, &migrate::RolePasswords::default())
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
                migrate::run(&mut owner, &migrate::RolePasswords::default()).await
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
    let edited = migrate::run(&mut owner, &migrate::RolePasswords::default())
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
    let ahead = migrate::run(&mut owner, &migrate::RolePasswords::default())
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
        &migrate::RolePasswords::default(),
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
