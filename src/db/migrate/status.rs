//! `tenantry migrate --status`: what each embedded migration's state is in
//! the database, read from `schema_migrations` only.

use std::fmt;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio_postgres::{Client, GenericClient};

use super::{MIGRATIONS, checksum_of, latest_version, report::write_table};

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
pub(super) async fn recorded(client: &impl GenericClient) -> anyhow::Result<Vec<Recorded>> {
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
