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

use std::{
    fmt,
    time::{Duration, Instant},
};

use crate::config::RolePasswords;
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, GenericClient, Transaction, error::ErrorPosition};

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
        sql: include_str!("../../sql/migrations/V1__tenancy.sql"),
    },
    Migration {
        version: 2,
        name: "lifecycle",
        sql: include_str!("../../sql/migrations/V2__lifecycle.sql"),
    },
    Migration {
        version: 3,
        name: "quotas",
        sql: include_str!("../../sql/migrations/V3__quotas.sql"),
    },
    Migration {
        version: 4,
        name: "bind_tenant",
        sql: include_str!("../../sql/migrations/V4__bind_tenant.sql"),
    },
    Migration {
        version: 5,
        name: "onboarding",
        sql: include_str!("../../sql/migrations/V5__onboarding.sql"),
    },
];

const ROLES_SQL: &str = include_str!("../../sql/roles.sql");
const GRANTS_SQL: &str = include_str!("../../sql/grants.sql");

/// On a Citus coordinator, a migration's transaction uses one connection
/// per node: Citus refuses a transaction that changes a distributed table
/// in parallel and then anything with a foreign key to a reference table
/// (a new tenant table's key to `tenants`, say). Shard DDL then runs one
/// shard after another on each node. Nothing on plain PostgreSQL.
const CITUS_SEQUENTIAL_SQL: &str = "do $$ begin
    if exists (select 1 from pg_catalog.pg_extension where extname = 'citus') then
        set local citus.multi_shard_modify_mode to 'sequential';
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

/// A migration PostgreSQL refused: which one, and PostgreSQL's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MigrationFailed {
    pub version: i32,
    pub name: &'static str,
    /// The SQLSTATE, when the server reported the error (e.g. `42P07`).
    pub code: Option<String>,
    /// The server's message (with its detail and hint), or the client error.
    pub message: String,
    /// The line in the migration file, when the server reported a position.
    pub line: Option<usize>,
}

impl MigrationFailed {
    /// `offset`: where in the file the failing statement starts.
    fn new(migration: &Migration, offset: usize, error: &tokio_postgres::Error) -> Self {
        let Some(db) = error.as_db_error() else {
            return Self {
                version: migration.version,
                name: migration.name,
                code: None,
                message: error.to_string(),
                line: None,
            };
        };
        let mut message = db.message().to_owned();
        for (label, extra) in [("detail", db.detail()), ("hint", db.hint())] {
            if let Some(extra) = extra {
                message.push_str(&format!("; {label}: {extra}"));
            }
        }
        let statement = migration.sql.get(offset..).unwrap_or_default();
        let lines_before = migration.sql[..offset.min(migration.sql.len())]
            .matches('\n')
            .count();
        let line = match db.position() {
            Some(ErrorPosition::Original(position)) => {
                Some(lines_before + line_of(statement, *position))
            }
            _ => None,
        };
        Self {
            version: migration.version,
            name: migration.name,
            code: Some(db.code().code().to_owned()),
            message,
            line,
        }
    }
}

impl fmt::Display for MigrationFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "migration V{}__{} failed", self.version, self.name)?;
        if let Some(line) = self.line {
            write!(f, " at line {line}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(code) = &self.code {
            write!(f, " (SQLSTATE {code})")?;
        }
        Ok(())
    }
}

/// The 1-based line of `position`, PostgreSQL's 1-based character offset.
fn line_of(sql: &str, position: u32) -> usize {
    let before = usize::try_from(position.saturating_sub(1)).unwrap_or(usize::MAX);
    1 + sql.chars().take(before).filter(|c| *c == '\n').count()
}

/// What [`dry_run`] rehearsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRun {
    /// The schema version before (and, since it was rolled back, after) the rehearsal.
    pub from_version: i32,
    /// The schema version a real run would reach.
    pub to_version: i32,
    /// The migrations a real run would apply, in order, with their timings.
    pub migrations: Vec<Rehearsed>,
    /// How long re-applying `sql/grants.sql` took.
    pub grants: Duration,
}

impl DryRun {
    /// The versions a real run would apply, in order.
    pub fn versions(&self) -> Vec<i32> {
        self.migrations.iter().map(|m| m.version).collect()
    }
}

/// One migration applied (then rolled back) by [`dry_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rehearsed {
    pub version: i32,
    pub name: &'static str,
    /// How long its SQL took in the rehearsal.
    pub duration: Duration,
}

/// Reads where the database stands against the embedded migrations. Read-only:
/// a database that was never migrated (no `schema_migrations`) has everything
/// pending, and is left as it is.
pub async fn status(client: &Client) -> anyhow::Result<Status> {
    Ok(Status::from_recorded(recorded(client).await?))
}

/// One row of `schema_migrations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub version: i32,
    pub name: String,
    pub checksum: String,
    pub applied_at: DateTime<Utc>,
    pub duration_ms: i32,
}

/// Every row of `schema_migrations` by version; none if the table does not exist.
async fn recorded(client: &impl GenericClient) -> anyhow::Result<Vec<Recorded>> {
    let exists: bool = client
        .query_one("select to_regclass('schema_migrations') is not null", &[])
        .await
        .context("could not look for schema_migrations")?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "select version, name, checksum, applied_at, duration_ms from schema_migrations order by version",
            &[],
        )
        .await
        .context("could not read schema_migrations")?;
    Ok(rows
        .iter()
        .map(|row| Recorded {
            version: row.get(0),
            name: row.get(1),
            checksum: row.get(2),
            applied_at: row.get(3),
            duration_ms: row.get(4),
        })
        .collect())
}

/// Where a database stands against the migrations embedded in this binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Every embedded migration, in order.
    pub migrations: Vec<MigrationStatus>,
    /// Recorded versions this binary does not embed: a newer release migrated
    /// the database ("ahead").
    pub ahead: Vec<Recorded>,
    /// The highest recorded version; 0 when nothing is.
    pub current_version: i32,
    /// The version this binary expects ([`latest_version`]).
    pub expected_version: i32,
}

/// One embedded migration and its state in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub version: i32,
    pub name: &'static str,
    pub state: MigrationState,
}

/// Whether an embedded migration was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationState {
    /// Not recorded: the next `migrate` applies it.
    Pending,
    /// Recorded with the checksum of the embedded file.
    Applied {
        applied_at: DateTime<Utc>,
        duration_ms: i32,
    },
    /// Recorded with another checksum: the file was edited after it was applied.
    Edited {
        applied_at: DateTime<Utc>,
        duration_ms: i32,
    },
}

/// The summary of a [`Status`], for deploy scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every embedded migration is applied and nothing else is recorded.
    UpToDate,
    /// Some migrations are pending, and `migrate` would apply them.
    Pending,
    /// The recorded history differs from this binary's: `migrate` refuses it.
    Diverged,
}

impl Status {
    /// Compares `recorded` (ordered by version) with the embedded migrations.
    pub fn from_recorded(recorded: Vec<Recorded>) -> Self {
        let migrations = MIGRATIONS
            .iter()
            .map(|migration| {
                let found = recorded.iter().find(|r| r.version == migration.version);
                let state = match found {
                    None => MigrationState::Pending,
                    Some(r) if r.checksum == checksum_of(migration.sql) => {
                        MigrationState::Applied {
                            applied_at: r.applied_at,
                            duration_ms: r.duration_ms,
                        }
                    }
                    Some(r) => MigrationState::Edited {
                        applied_at: r.applied_at,
                        duration_ms: r.duration_ms,
                    },
                };
                MigrationStatus {
                    version: migration.version,
                    name: migration.name,
                    state,
                }
            })
            .collect();
        let current_version = recorded.iter().map(|r| r.version).max().unwrap_or(0);
        let ahead = recorded
            .into_iter()
            .filter(|r| !MIGRATIONS.iter().any(|m| m.version == r.version))
            .collect();
        Self {
            migrations,
            ahead,
            current_version,
            expected_version: latest_version(),
        }
    }

    /// The versions `migrate` would apply, in order.
    pub fn pending(&self) -> Vec<i32> {
        self.migrations
            .iter()
            .filter(|m| m.state == MigrationState::Pending)
            .map(|m| m.version)
            .collect()
    }

    /// Why `migrate` would refuse this database, one sentence each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .ahead
            .iter()
            .map(|r| {
                format!(
                    "the database has migration V{}__{}, which this binary does not know: \
                     it was migrated by a newer release; deploy that release instead",
                    r.version, r.name
                )
            })
            .collect();
        for migration in &self.migrations {
            let label = format!("V{}__{}", migration.version, migration.name);
            match migration.state {
                MigrationState::Edited { .. } => problems.push(format!(
                    "migration {label} was edited after it was applied; \
                     restore the original file and add a new migration instead"
                )),
                // `migrate` only applies versions above the current one.
                MigrationState::Pending if migration.version < self.current_version => problems
                    .push(format!(
                        "migration {label} is not recorded although V{} is: \
                         schema_migrations was changed by hand",
                        self.current_version
                    )),
                _ => {}
            }
        }
        problems
    }

    /// Up to date, pending, or diverged (which wins over pending).
    pub fn verdict(&self) -> Verdict {
        if !self.problems().is_empty() {
            Verdict::Diverged
        } else if self.pending().is_empty() {
            Verdict::UpToDate
        } else {
            Verdict::Pending
        }
    }
}

/// The table `tenantry migrate --status` prints.
impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = |at: &DateTime<Utc>| at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
        let applied = |state: &str, at, ms| [state.to_owned(), time(at), format!("{ms} ms")];
        let mut rows: Vec<[String; 5]> = Vec::new();
        for m in &self.migrations {
            let [state, at, took] = match &m.state {
                MigrationState::Pending => ["pending".to_owned(), String::new(), String::new()],
                MigrationState::Applied {
                    applied_at,
                    duration_ms,
                } => applied("applied", applied_at, *duration_ms),
                MigrationState::Edited {
                    applied_at,
                    duration_ms,
                } => applied("EDITED", applied_at, *duration_ms),
            };
            rows.push([
                format!("V{}", m.version),
                m.name.to_owned(),
                state,
                at,
                took,
            ]);
        }
        for r in &self.ahead {
            let [state, at, took] = applied("AHEAD", &r.applied_at, r.duration_ms);
            rows.push([format!("V{}", r.version), r.name.clone(), state, at, took]);
        }
        write_table(f, ["version", "name", "state", "applied at", "took"], &rows)?;
        let verdict = match self.verdict() {
            Verdict::UpToDate => "up to date".to_owned(),
            Verdict::Pending => format!(
                "{} pending, `tenantry migrate` applies them",
                self.pending().len()
            ),
            Verdict::Diverged => {
                "the history differs from this binary's; `tenantry migrate` refuses it".to_owned()
            }
        };
        writeln!(
            f,
            "schema version {}, this binary expects {}: {verdict}",
            self.current_version, self.expected_version
        )
    }
}

/// The table `tenantry migrate --dry-run` prints.
impl fmt::Display for DryRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |duration: Duration| format!("{:.1} ms", duration.as_secs_f64() * 1000.0);
        let mut rows: Vec<[String; 3]> = self
            .migrations
            .iter()
            .map(|m| [format!("V{}", m.version), m.name.to_owned(), ms(m.duration)])
            .collect();
        rows.push([String::new(), "sql/grants.sql".to_owned(), ms(self.grants)]);
        write_table(f, ["version", "name", "took"], &rows)?;
        writeln!(
            f,
            "dry run: schema version {} -> {}, {} migration(s) would be applied; rolled back, nothing changed",
            self.from_version,
            self.to_version,
            self.migrations.len()
        )
    }
}

/// Writes `rows` under `header` in left-aligned columns.
fn write_table<const N: usize>(
    f: &mut fmt::Formatter<'_>,
    header: [&str; N],
    rows: &[[String; N]],
) -> fmt::Result {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = header.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows) {
        let padded: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(f, "{}", padded.join("  ").trim_end())?;
    }
    Ok(())
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
            .map(|m| format!("{}.sql", m.label()))
            .collect();
        assert_eq!(files, embedded);
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(
                migration.version,
                i32::try_from(index + 1).expect("small"),
                "versions are 1, 2, 3, ..."
            );
            let path = format!("{dir}/{}.sql", migration.label());
            assert_eq!(
                std::fs::read_to_string(path).expect("readable"),
                migration.sql
            );
        }
    }

    fn recorded(version: i32, checksum: &str) -> Recorded {
        Recorded {
            version,
            name: "x".to_owned(),
            checksum: checksum.to_owned(),
            applied_at: DateTime::UNIX_EPOCH,
            duration_ms: 7,
        }
    }

    fn all_recorded() -> Vec<Recorded> {
        MIGRATIONS
            .iter()
            .map(|m| recorded(m.version, &checksum_of(m.sql)))
            .collect()
    }

    #[test]
    fn a_fully_recorded_history_is_up_to_date() {
        let status = Status::from_recorded(all_recorded());
        assert_eq!(status.verdict(), Verdict::UpToDate);
        assert_eq!(status.current_version, latest_version());
        assert!(status.pending().is_empty());
    }

    #[test]
    fn an_edited_migration_is_refused() {
        let mut history = all_recorded();
        history[0].checksum = checksum_of("select 1");
        let status = Status::from_recorded(history);
        assert_eq!(status.verdict(), Verdict::Diverged);
        assert_eq!(
            status.migrations[0].state,
            MigrationState::Edited {
                applied_at: DateTime::UNIX_EPOCH,
                duration_ms: 7
            }
        );
        let problems = status.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("V1__tenancy was edited after it was applied"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_database_ahead_of_the_binary_is_refused() {
        let mut history = all_recorded();
        history.push(recorded(latest_version() + 1, "x"));
        let status = Status::from_recorded(history);
        assert_eq!(status.verdict(), Verdict::Diverged);
        assert_eq!(status.current_version, latest_version() + 1);
        assert_eq!(status.ahead.len(), 1);
        assert!(status.problems()[0].contains("newer release"));
    }

    #[test]
    fn a_hole_in_the_history_is_refused_rather_than_skipped() {
        let mut history = all_recorded();
        history.remove(0);
        let status = Status::from_recorded(history);
        assert_eq!(status.pending(), [1]);
        assert_eq!(status.verdict(), Verdict::Diverged);
        assert!(
            status.problems()[0].contains(&format!(
                "V1__tenancy is not recorded although V{} is",
                latest_version()
            )),
            "{:?}",
            status.problems()
        );
    }

    #[test]
    fn an_empty_history_has_everything_pending() {
        let status = Status::from_recorded(Vec::new());
        assert_eq!(status.verdict(), Verdict::Pending);
        assert_eq!(status.current_version, 0);
        let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(status.pending(), all);
    }

    #[test]
    fn a_failure_position_is_turned_into_a_line_of_the_file() {
        let sql = "create table a (x int);\ncreate table b (\n  y nope\n);";
        let position = sql.find("nope").expect("present") + 1;
        assert_eq!(line_of(sql, u32::try_from(position).expect("small")), 3);
        assert_eq!(line_of(sql, 1), 1);
        assert_eq!(line_of("é\nx", 3), 2, "positions count characters");
    }

    #[test]
    fn the_status_table_lines_up_and_names_every_state() {
        let at = DateTime::UNIX_EPOCH;
        let status = Status {
            migrations: vec![
                MigrationStatus {
                    version: 1,
                    name: "tenancy",
                    state: MigrationState::Edited {
                        applied_at: at,
                        duration_ms: 7,
                    },
                },
                MigrationStatus {
                    version: 2,
                    name: "lifecycle",
                    state: MigrationState::Pending,
                },
            ],
            ahead: vec![recorded(3, "x")],
            current_version: 3,
            expected_version: 2,
        };
        let table = status.to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines,
            [
                "version  name       state    applied at               took",
                "V1       tenancy    EDITED   1970-01-01 00:00:00 UTC  7 ms",
                "V2       lifecycle  pending",
                "V3       x          AHEAD    1970-01-01 00:00:00 UTC  7 ms",
                "schema version 3, this binary expects 2: \
                 the history differs from this binary's; `tenantry migrate` refuses it",
            ]
        );
    }
}
