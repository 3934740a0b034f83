//! Versioned SQL migrations, applied once per database for all tenants.
//!
//! `sql/migrations/V{n}__{name}.sql` are embedded in the binary. A run:
//! 1. takes a session advisory lock, so instances starting at once queue up
//!    instead of racing (the lock dies with the connection if we crash);
//! 2. ensures the roles (`sql/roles.sql`, idempotent: roles are cluster-wide);
//! 3. checks every applied migration against its embedded checksum and refuses
//!    to continue if one was edited or the database is ahead of this binary;
//! 4. applies each pending migration in its own transaction, together with its
//!    `schema_migrations` row, so a crash leaves either all of a migration or
//!    none of it, and the next run resumes where this one stopped;
//! 5. re-applies `sql/grants.sql`, the single statement of privileges.

use std::time::Instant;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. A test checks this list against `sql/migrations/`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "tenancy",
        sql: include_str!("../../sql/migrations/V1__tenancy.sql"),
    },
    Migration {
        version: 2,
        name: "lifecycle",
        sql: include_str!("../../sql/migrations/V2__lifecycle.sql"),
    },
];

/// Passwords for the login roles. Each one given makes its role LOGIN with it.
#[derive(Debug, Default, Clone)]
pub struct RolePasswords {
    /// `tenantry_app`, the service's runtime role.
    pub runtime: Option<SecretString>,
    /// `tenantry_admin`, for the CLI and the /admin API.
    pub admin: Option<SecretString>,
    /// `tenantry_analytics`, for usage statistics.
    pub analytics: Option<SecretString>,
}

impl RolePasswords {
    /// The same password for every login role (local clusters and tests).
    pub fn all(password: &str) -> Self {
        let one = || Some(SecretString::from(password.to_owned()));
        Self {
            runtime: one(),
            admin: one(),
            analytics: one(),
        }
    }
}

const ROLES_SQL: &str = include_str!("../../sql/roles.sql");
const GRANTS_SQL: &str = include_str!("../../sql/grants.sql");

/// Arbitrary but fixed: "tenantry migrate" as an advisory lock key.
const MIGRATION_LOCK_KEY: i64 = 0x7465_6e61_6e74_7279;

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Versions applied by this run, in order.
    pub applied: Vec<i32>,
    /// The schema version after the run.
    pub version: i32,
}

/// The schema version this binary expects.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |migration| migration.version)
}

/// Applies pending migrations as the connected (owner) role, then gives LOGIN
/// and a password to each login role that has one in `passwords`.
pub async fn run(client: &mut Client, passwords: &RolePasswords) -> anyhow::Result<Report> {
    client
        .execute("select pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("could not take the migration lock")?;
    let outcome = run_locked(client, passwords).await;
    // Closing the connection would release it too; unlock for callers that keep it.
    let unlocked = client
        .execute("select pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    let report = outcome?;
    unlocked.context("could not release the migration lock")?;
    Ok(report)
}

async fn run_locked(client: &mut Client, passwords: &RolePasswords) -> anyhow::Result<Report> {
    client
        .batch_execute(ROLES_SQL)
        .await
        .context("could not ensure the database roles (sql/roles.sql)")?;
    client
        .batch_execute(
            "create table if not exists schema_migrations (
                version     integer     primary key,
                name        text        not null,
                checksum    text        not null,
                applied_at  timestamptz not null default now(),
                duration_ms integer     not null
            )",
        )
        .await
        .context("could not create schema_migrations")?;
    let applied = applied_versions(client).await?;
    verify_applied(&applied)?;
    let current = applied.last().map_or(0, |(version, _)| *version);
    let mut report = Report {
        applied: Vec::new(),
        version: current,
    };
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        apply(client, migration).await?;
        report.applied.push(migration.version);
        report.version = migration.version;
    }
    apply_grants(client).await?;
    for (role, password) in [
        ("tenantry_app", &passwords.runtime),
        ("tenantry_admin", &passwords.admin),
        ("tenantry_analytics", &passwords.analytics),
    ] {
        if let Some(password) = password {
            set_login_password(client, role, password).await?;
        }
    }
    Ok(report)
}

async fn applied_versions(client: &Client) -> anyhow::Result<Vec<(i32, String)>> {
    let rows = client
        .query(
            "select version, checksum from schema_migrations order by version",
            &[],
        )
        .await
        .context("could not read schema_migrations")?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Refuses databases whose history differs from the embedded migrations.
fn verify_applied(applied: &[(i32, String)]) -> anyhow::Result<()> {
    for (version, checksum) in applied {
        let Some(migration) = MIGRATIONS.iter().find(|m| m.version == *version) else {
            bail!(
                "the database has migration V{version}, which this binary does not know: \
                 it was migrated by a newer release; deploy that release instead"
            );
        };
        if checksum_of(migration.sql) != *checksum {
            bail!(
                "migration V{version}__{} was edited after it was applied; \
                 restore the original file and add a new migration instead",
                migration.name
            );
        }
    }
    Ok(())
}

async fn apply(client: &mut Client, migration: &Migration) -> anyhow::Result<()> {
    let label = format!("V{}__{}", migration.version, migration.name);
    tracing::info!(migration = %label, "applying migration");
    let started = Instant::now();
    let transaction = client.transaction().await?;
    transaction
        .batch_execute(migration.sql)
        .await
        .with_context(|| format!("migration {label} failed; nothing of it was applied"))?;
    let duration_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    transaction
        .execute(
            "insert into schema_migrations (version, name, checksum, duration_ms) values ($1, $2, $3, $4)",
            &[&migration.version, &migration.name, &checksum_of(migration.sql), &duration_ms],
        )
        .await?;
    transaction
        .commit()
        .await
        .with_context(|| format!("could not commit migration {label}"))?;
    Ok(())
}

async fn apply_grants(client: &mut Client) -> anyhow::Result<()> {
    let transaction = client.transaction().await?;
    transaction
        .batch_execute(GRANTS_SQL)
        .await
        .context("could not apply sql/grants.sql")?;
    transaction.commit().await?;
    Ok(())
}

/// Gives `role` LOGIN and a password. The password is turned into a SCRAM
/// verifier here, so the plain text never reaches the server or its logs.
async fn set_login_password(
    client: &Client,
    role: &str,
    password: &SecretString,
) -> anyhow::Result<()> {
    let verifier = postgres_protocol::password::scram_sha_256(password.expose_secret().as_bytes());
    let statement: String = client
        .query_one(
            "select format('alter role %I with login password %L', $1::text, $2::text)",
            &[&role, &verifier],
        )
        .await?
        .get(0);
    client
        .batch_execute(&statement)
        .await
        .with_context(|| format!("could not set the password of {role}"))?;
    Ok(())
}

fn checksum_of(sql: &str) -> String {
    Sha256::digest(sql.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_sql_migrations_is_embedded_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("sql/migrations exists")
            .map(|entry| {
                entry
                    .expect("readable")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort_by_key(|name| {
            name.trim_start_matches('V')
                .split("__")
                .next()
                .and_then(|v| v.parse::<i32>().ok())
        });
        let embedded: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("V{}__{}.sql", m.version, m.name))
            .collect();
        assert_eq!(files, embedded);
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(
                migration.version,
                i32::try_from(index + 1).expect("small"),
                "versions are 1, 2, 3, ..."
            );
            let path = format!("{dir}/V{}__{}.sql", migration.version, migration.name);
            assert_eq!(
                std::fs::read_to_string(path).expect("readable"),
                migration.sql
            );
        }
    }

    #[test]
    fn an_edited_migration_is_refused() {
        let tampered = [(1, checksum_of("select 1"))];
        let error = verify_applied(&tampered).expect_err("checksum differs");
        assert!(
            error
                .to_string()
                .contains("was edited after it was applied"),
            "{error}"
        );
    }

    #[test]
    fn a_database_ahead_of_the_binary_is_refused() {
        let ahead = [(latest_version() + 1, "x".to_owned())];
        let error = verify_applied(&ahead).expect_err("unknown version");
        assert!(error.to_string().contains("newer release"), "{error}");
    }
}
