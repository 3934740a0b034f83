//! Unit tests of the migration runner.

use chrono::DateTime;

use super::{report::line_of, *};

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
