//! What a migration run reports: a failed migration, named with the
//! PostgreSQL error and where in its SQL it stopped, and a dry run.

use std::{fmt, time::Duration};

use tokio_postgres::error::ErrorPosition;

use super::Migration;

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
    pub(super) fn new(migration: &Migration, offset: usize, error: &tokio_postgres::Error) -> Self {
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
pub(super) fn line_of(sql: &str, position: u32) -> usize {
    let before = usize::try_from(position.saturating_sub(1)).unwrap_or(usize::MAX);
    1 + sql.chars().take(before).filter(|c| *c == '\n').count()
}

/// What [`super::dry_run`] rehearsed.
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

/// One migration applied (then rolled back) by [`super::dry_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rehearsed {
    pub version: i32,
    pub name: &'static str,
    /// How long its SQL took in the rehearsal.
    pub duration: Duration,
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
pub(super) fn write_table<const N: usize>(
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
