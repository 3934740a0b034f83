//! Where this suite's databases live: plain PostgreSQL.
//!
//! The server is `TEST_DATABASE_URL` (a superuser URL) if set, otherwise
//! the one on 127.0.0.1:5432 (user `postgres`) if it answers, otherwise a
//! private cluster started from the system's binaries under the target dir.
//! A database is migrated once per migration checksum, as the owner role,
//! into a template; each test clones it (`CREATE DATABASE .. TEMPLATE`).
//! The Citus target (`tests/citus/`) has a `backend.rs` of its own with the
//! same items, so the shared modules run unchanged on either engine.

use std::{str::FromStr, time::Duration};

use sha2::{Digest, Sha256};
use tenantry::db::{local, migrate};
use tokio_postgres::{Client, Config, NoTls};

use crate::helpers::{ROLE_PASSWORD, connect, unix_seconds};

/// How moving a row to another tenant (`update .. set tenant_id`) is
/// refused: by RLS (`WITH CHECK`).
pub const MOVE_REFUSAL: tokio_postgres::error::SqlState =
    tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE;

/// Where the sessions of the test's database are seen, waits included.
pub const ACTIVITY: &str = "pg_stat_activity";

/// Port of the private cluster, when the harness has to start one.
const PRIVATE_CLUSTER_PORT: u16 = 54330;

/// `TEST_DATABASE_URL`, else 127.0.0.1:5432 as `postgres`, else a private cluster.
pub async fn superuser_config() -> Config {
    if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
        return Config::from_str(&url).expect("TEST_DATABASE_URL must be a valid PostgreSQL URL");
    }
    let mut system = Config::new();
    system
        .host("127.0.0.1")
        .port(5432)
        .user("postgres")
        .dbname("postgres");
    system.connect_timeout(Duration::from_secs(2));
    if system.connect(NoTls).await.is_ok() {
        return system;
    }
    let root = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tenantry-test-pg");
    let options = [
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        "max_connections=300",
    ];
    let cluster = tokio::task::spawn_blocking(move || local::LocalCluster::ensure_running(&root, PRIVATE_CLUSTER_PORT, &options))
        .await
        .expect("cluster task")
        .unwrap_or_else(|error| {
            panic!("no PostgreSQL for the tests: set TEST_DATABASE_URL, run one on 127.0.0.1:5432, or install the server binaries.\n{error:#}")
        });
    cluster.config(local::SUPERUSER, "postgres")
}

/// The migrated template every test database is cloned from.
pub struct Backend {
    template: String,
}

impl Backend {
    /// Finds or builds the template of this migration set, and sweeps
    /// leftovers. Runs under the harness's set-up lock.
    pub async fn set_up(superuser: &Config, admin: &Client) -> Self {
        // tenantry_tpl_{fingerprint}_{created}: one per migration set, dated
        // so that other checkouts' templates are only swept once stale.
        let prefix = format!("tenantry_tpl_{}_", migrations_fingerprint());
        let existing: Option<String> = admin
            .query_opt(
                "select datname::text from pg_database where starts_with(datname, $1) limit 1",
                &[&prefix],
            )
            .await
            .expect("query")
            .map(|row| row.get(0));
        let template = match existing {
            Some(template) => template,
            None => {
                let template = format!("{prefix}{}", unix_seconds());
                build_template(superuser, admin, &template).await;
                template
            }
        };
        sweep_leftovers(admin, &template).await;
        Self { template }
    }

    /// Creates database `name`: a clone of the template, or empty.
    pub async fn new_database(&self, superuser: &Config, name: &str, migrated: bool) {
        let admin = connect(superuser).await;
        let template = migrated.then_some(self.template.as_str());
        local::ensure_database(&admin, name, template)
            .await
            .expect("create test database");
        // A database's own privileges are not cloned from its template;
        // `tenantry migrate` (sql/grants.sql) takes TEMPORARY from PUBLIC.
        admin
            .batch_execute(&format!(
                "revoke temporary on database \"{name}\" from public"
            ))
            .await
            .expect("the clone's database privileges");
    }

    /// Drops database `name` once its test is done with it, unless the test
    /// failed: a failed test's database stays to be looked at, and is swept
    /// an hour later. Blocking, on a thread of its own (the caller is a
    /// `Drop` inside the test's runtime).
    pub fn release_database(&self, superuser: &Config, name: &str) {
        if std::thread::panicking() {
            return;
        }
        let superuser = superuser.clone();
        let statement = format!("drop database if exists \"{name}\" with (force)");
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the database");
            runtime.block_on(async {
                let (client, connection) = superuser.connect(NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute(&statement).await
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop the test database {name}: {error}");
        }
    }
}

/// Migrates a scratch database as the owner role, then publishes it under
/// `template` by renaming (so a crash never leaves a half-built template).
async fn build_template(superuser: &Config, admin: &Client, template: &str) {
    let building = format!("{template}_building_{}", std::process::id());
    admin
        .batch_execute(&format!("drop database if exists \"{building}\""))
        .await
        .expect("drop stale");
    local::ensure_database(admin, &building, None)
        .await
        .expect("create template");
    {
        let mut owner_config = superuser.clone();
        owner_config
            .user(local::OWNER_ROLE)
            .password(ROLE_PASSWORD)
            .dbname(&building);
        let mut owner = connect(&owner_config).await;
        migrate::run(
            &mut owner,
            &tenantry::config::RolePasswords::all(ROLE_PASSWORD),
        )
        .await
        .expect("migrate the template as the owner role");
    }
    // The owner connection must be gone before the database can be renamed or cloned.
    for _ in 0..50 {
        let renamed = admin
            .batch_execute(&format!(
                "alter database \"{building}\" rename to \"{template}\""
            ))
            .await;
        if renamed.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not publish the template database {template}");
}

/// Drops test databases older than an hour, and other migration sets'
/// templates older than a day (another checkout may be testing with one right
/// now). A database still in use cannot be dropped; that error is ignored.
async fn sweep_leftovers(admin: &Client, template: &str) {
    let now = unix_seconds();
    let rows = admin
        .query("select datname::text from pg_database where datname like 'test\\_%' or datname like 'tenantry\\_tpl\\_%'", &[])
        .await
        .expect("list databases");
    for row in rows {
        let name: String = row.get(0);
        let created = |text: &str| text.parse::<u64>().ok();
        let stale = if let Some(rest) = name.strip_prefix("test_") {
            rest.split('_')
                .next()
                .and_then(created)
                .is_some_and(|at| at + 3600 < now)
        } else {
            name != template
                && name
                    .rsplit('_')
                    .next()
                    .and_then(created)
                    .is_none_or(|at| at + 86_400 < now)
        };
        if stale {
            let _ = admin
                .batch_execute(&format!("drop database if exists \"{name}\""))
                .await;
        }
    }
}

/// Changes whenever any SQL the migration runs changes.
fn migrations_fingerprint() -> String {
    let mut hasher = Sha256::new();
    for migration in migrate::MIGRATIONS {
        hasher.update(migration.sql.as_bytes());
    }
    for extra in ["sql/roles.sql", "sql/grants.sql"] {
        let path = format!("{}/{extra}", env!("CARGO_MANIFEST_DIR"));
        hasher.update(std::fs::read(path).expect("sql file"));
    }
    hasher
        .finalize()
        .iter()
        .take(6)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
