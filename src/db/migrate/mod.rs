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
//!
//! [`dry_run`] takes the same lock and the same steps 2 to 5, all inside one
//! transaction that it always rolls back. [`status`] only reads
//! `schema_migrations` and creates nothing.
//!
//! The reports a run prints (a failed migration, a dry run) are in
//! `report.rs`, the `--status` table in `status.rs`.

mod report;
mod status;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, GenericClient, Transaction};

use crate::config::RolePasswords;

use self::status::recorded;
pub use self::{
    report::{DryRun, MigrationFailed, Rehearsed},
    status::{MigrationState, MigrationStatus, Recorded, Status, Verdict, status},
};

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    /// `V{version}__{name}`, as the file is called.
    pub fn label(&self) -> String {
        format!("V{}__{}", self.version, self.name)
    }
}

/// Every migration, in order. A test checks this list against `sql/migrations/`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "tenancy",
        sql: include_str!("../../../sql/migrations/V1__tenancy.sql"),
    },
    Migration {
        version: 2,
        name: "lifecycle",
        sql: include_str!("../../../sql/migrations/V2__lifecycle.sql"),
    },
    Migration {
        version: 3,
        name: "quotas",
        sql: include_str!("../../../sql/migrations/V3__quotas.sql"),
    },
    Migration {
        version: 4,
        name: "bind_tenant",
        sql: include_str!("../../../sql/migrations/V4__bind_tenant.sql"),
    },
    Migration {
        version: 5,
        name: "onboarding",
        sql: include_str!("../../../sql/migrations/V5__onboarding.sql"),
    },
    Migration {
        version: 6,
        name: "least_privilege",
        sql: include_str!("../../../sql/migrations/V6__least_privilege.sql"),
    },
    Migration {
        version: 7,
        name: "bind_request",
        sql: include_str!("../../../sql/migrations/V7__bind_request.sql"),
    },
    Migration {
        version: 8,
        name: "rings_and_versions",
        sql: include_str!("../../../sql/migrations/V8__rings_and_versions.sql"),
    },
    Migration {
        version: 9,
        name: "cached_plans",
        sql: include_str!("../../../sql/migrations/V9__cached_plans.sql"),
    },
];

const ROLES_SQL: &str = include_str!("../../../sql/roles.sql");
const GRANTS_SQL: &str = include_str!("../../../sql/grants.sql");

/// On a Citus coordinator, a migration's transaction (and the grants') uses
/// one connection per node: Citus refuses a transaction that changes a
/// distributed table in parallel and then anything with a foreign key to a
/// reference table (a new tenant table's key to `tenants`, say). Shard DDL
/// then runs one shard after another on each node. Nothing on plain
/// PostgreSQL.
const CITUS_SEQUENTIAL_SQL: &str = "do $$ begin
    if exists (select 1 from pg_catalog.pg_extension where extname = 'citus') then
        set local citus.multi_shard_modify_mode to 'sequential';
        -- A migration may add a trigger to a distributed table (V6 does).
        set local citus.enable_unsafe_triggers to on;
    end if;
end $$";

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
    run_up_to(client, passwords, latest_version()).await
}

/// [`run`], stopping after migration `target`: an older schema, as a
/// database that has not been upgraded yet has it (upgrade tests). Below the
/// latest version neither grants nor passwords are applied: `sql/grants.sql`
/// states the privileges of the latest schema.
pub async fn run_up_to(
    client: &mut Client,
    passwords: &RolePasswords,
    target: i32,
) -> anyhow::Result<Report> {
    locked(client, async |client| {
        run_locked(client, passwords, target).await
    })
    .await
}

/// Rehearses [`run`]: takes the migration lock, then ensures the roles, applies
/// every pending migration and the grants in one transaction, times each
/// migration, and rolls the transaction back, whatever happened. The database
/// is left as it was; login passwords are not touched.
///
/// The rehearsal takes the same locks as the real run, and holds them until
/// the end of the whole rehearsal.
pub async fn dry_run(client: &mut Client) -> anyhow::Result<DryRun> {
    let outcome = locked(client, async |client| {
        let transaction = client.transaction().await?;
        let outcome = rehearse(&transaction).await;
        transaction
            .rollback()
            .await
            .context("could not roll back the dry run")?;
        outcome
    })
    .await;
    outcome.context("dry run failed; it was rolled back and changed nothing")
}

/// Runs `f` while holding the migration lock, and releases it afterwards.
async fn locked<T>(
    client: &mut Client,
    f: impl AsyncFnOnce(&mut Client) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    client
        .execute("select pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("could not take the migration lock")?;
    let outcome = f(client).await;
    // Closing the connection would release it too; unlock for callers that keep it.
    let unlocked = client
        .execute("select pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    let value = outcome?;
    unlocked.context("could not release the migration lock")?;
    Ok(value)
}

async fn run_locked(
    client: &mut Client,
    passwords: &RolePasswords,
    target: i32,
) -> anyhow::Result<Report> {
    let current = prepare(client).await?;
    let mut report = Report {
        applied: Vec::new(),
        version: current,
    };
    for migration in pending_after(current).filter(|m| m.version <= target) {
        let transaction = client.transaction().await?;
        apply(&transaction, migration).await.with_context(|| {
            format!(
                "{} was rolled back; the migrations before it stay applied",
                migration.label()
            )
        })?;
        transaction
            .commit()
            .await
            .with_context(|| format!("could not commit migration {}", migration.label()))?;
        report.applied.push(migration.version);
        report.version = migration.version;
    }
    if report.version < latest_version() {
        // sql/grants.sql states the privileges of the latest schema.
        return Ok(report);
    }
    let transaction = client.transaction().await?;
    apply_grants(&transaction).await?;
    transaction.commit().await?;
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

/// The steps of [`run_locked`], all inside `transaction`.
async fn rehearse(transaction: &Transaction<'_>) -> anyhow::Result<DryRun> {
    let current = prepare(transaction).await?;
    let mut migrations = Vec::new();
    for migration in pending_after(current) {
        let duration = apply(transaction, migration).await?;
        migrations.push(Rehearsed {
            version: migration.version,
            name: migration.name,
            duration,
        });
    }
    let started = Instant::now();
    apply_grants(transaction).await?;
    Ok(DryRun {
        from_version: current,
        to_version: migrations.last().map_or(current, |m| m.version),
        migrations,
        grants: started.elapsed(),
    })
}

/// Ensures the roles and the `schema_migrations` table, refuses a history
/// that differs from the embedded migrations, and returns the schema version.
async fn prepare(client: &impl GenericClient) -> anyhow::Result<i32> {
    // Statement by statement: outside a dry run each one commits before the
    // next, which on Citus lets the workers see the roles before the
    // membership grant is sent to them (see the file).
    execute_script(client, ROLES_SQL)
        .await
        .map_err(|(_, error)| error)
        .context("could not ensure the database roles (sql/roles.sql)")?;
    // Only when missing: `create table if not exists` would print a NOTICE
    // on every run after the first.
    client
        .batch_execute(
            "do $$ begin
                if to_regclass('schema_migrations') is null then
                    create table schema_migrations (
                        version     integer     primary key,
                        name        text        not null,
                        checksum    text        not null,
                        applied_at  timestamptz not null default now(),
                        duration_ms integer     not null
                    );
                end if;
            end $$",
        )
        .await
        .context("could not create schema_migrations")?;
    let status = Status::from_recorded(recorded(client).await?);
    if let Some(problem) = status.problems().into_iter().next() {
        bail!(problem);
    }
    Ok(status.current_version)
}

/// The embedded migrations newer than `version`, in order.
fn pending_after(version: i32) -> impl Iterator<Item = &'static Migration> {
    MIGRATIONS.iter().filter(move |m| m.version > version)
}

/// Runs `migration` and records it in `schema_migrations`, inside
/// `transaction`: the caller commits it ([`run`]) or rolls it back ([`dry_run`]).
/// Returns how long the migration's SQL took.
async fn apply(transaction: &Transaction<'_>, migration: &Migration) -> anyhow::Result<Duration> {
    tracing::info!(migration = %migration.label(), "applying migration");
    let started = Instant::now();
    transaction
        .batch_execute(CITUS_SEQUENTIAL_SQL)
        .await
        .context("could not prepare the migration's transaction")?;
    execute_script(transaction, migration.sql)
        .await
        .map_err(|(offset, error)| MigrationFailed::new(migration, offset, &error))?;
    let duration = started.elapsed();
    let duration_ms = i32::try_from(duration.as_millis()).unwrap_or(i32::MAX);
    transaction
        .execute(
            "insert into schema_migrations (version, name, checksum, duration_ms) values ($1, $2, $3, $4)",
            &[&migration.version, &migration.name, &checksum_of(migration.sql), &duration_ms],
        )
        .await
        .with_context(|| format!("could not record migration {}", migration.label()))?;
    Ok(duration)
}

async fn apply_grants(transaction: &Transaction<'_>) -> anyhow::Result<()> {
    // The grants touch distributed and reference tables in one transaction
    // too; in parallel mode Citus refuses whichever comes second (the order
    // of the catalog scan decides, so it failed only now and then).
    transaction
        .batch_execute(CITUS_SEQUENTIAL_SQL)
        .await
        .context("could not prepare the grants' transaction")?;
    execute_script(transaction, GRANTS_SQL)
        .await
        .map_err(|(_, error)| error)
        .context("could not apply sql/grants.sql")
}

/// Runs the statements of `sql` one query each, in order (see
/// [`super::statements`] for why not all in one); on failure, the byte
/// offset of the statement that failed, and its error.
pub async fn execute_script(
    client: &impl GenericClient,
    sql: &str,
) -> Result<(), (usize, tokio_postgres::Error)> {
    for (offset, statement) in super::statements::split(sql) {
        client
            .batch_execute(statement)
            .await
            .map_err(|error| (offset, error))?;
    }
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
mod tests;
