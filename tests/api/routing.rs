//! Routing on Citus, checked in the source: every request-path query names
//! its tenant (`tenant_id = $n`), so Citus sends it to one shard instead of
//! all of them (RLS alone does not prune); and no statement of the service
//! uses a construct Citus cannot route for distributed tables. Each checker
//! is also shown failing on bad statements. See docs/CITUS.md, "Routing".

use std::path::Path;

use crate::plans::{TENANT_TABLES, replace_placeholders, request_path_statements, string_literals};

/// What is missing from `sql` for Citus to route it to one tenant's shard.
/// In each query block (the statement, and each `(select ...)` in it),
/// every reference to a tenant table (`from`, `join`, `update`) needs its own
/// `tenant_id = $n`; an INSERT must give tenant_id as a parameter. The
/// references left without a predicate are reported, the last first.
fn missing_tenant_predicate(sql: &str) -> Vec<String> {
    let sql = sql.to_lowercase();
    let mut problems = Vec::new();
    for block in sql.split("(select ") {
        let mut references = Vec::new();
        for table in TENANT_TABLES {
            for keyword in ["from", "join", "update", "into"] {
                let needle = format!("{keyword} {table}");
                for (at, _) in block.match_indices(&needle) {
                    let end = at + needle.len();
                    let whole_word = block[end..]
                        .chars()
                        .next()
                        .is_none_or(|c| !c.is_alphanumeric() && c != '_');
                    if whole_word {
                        references.push((at, keyword, table));
                    }
                }
            }
        }
        references.sort_unstable();
        let (inserts, reads): (Vec<_>, Vec<_>) = references
            .into_iter()
            .partition(|(_, keyword, _)| *keyword == "into");
        for (at, _, table) in inserts {
            if !insert_gives_tenant_parameter(&block[at..]) {
                problems.push(format!("into {table} without tenant_id = $n"));
            }
        }
        let predicates = tenant_parameters(block);
        for (_, keyword, table) in reads.iter().skip(predicates) {
            problems.push(format!("{keyword} {table} without tenant_id = $n"));
        }
    }
    problems
}

/// How many `tenant_id = $n` (possibly qualified) `block` has.
fn tenant_parameters(block: &str) -> usize {
    block
        .match_indices("tenant_id = $")
        .filter(|(at, needle)| {
            block[at + needle.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .count()
}

/// `into t (a, tenant_id, ...) values ($1, $2, ...)`: tenant_id's value is
/// a parameter.
fn insert_gives_tenant_parameter(segment: &str) -> bool {
    let list = |text: &str| -> Option<Vec<String>> {
        let open = text.find('(')?;
        let close = open + text[open..].find(')')?;
        Some(
            text[open + 1..close]
                .split(',')
                .map(|item| item.trim().to_owned())
                .collect(),
        )
    };
    let Some(columns) = list(segment) else {
        return false;
    };
    let Some(values_at) = segment.find(" values ") else {
        return false;
    };
    let Some(values) = list(&segment[values_at..]) else {
        return false;
    };
    columns
        .iter()
        .position(|column| column == "tenant_id")
        .and_then(|index| values.get(index))
        .is_some_and(|value| value.starts_with('$'))
}

#[test]
fn every_request_path_query_names_its_tenant_explicitly() {
    let statements = request_path_statements();
    assert!(statements.len() >= 15, "{statements:#?}");
    let mut failures = Vec::new();
    for (file, sql) in &statements {
        for problem in missing_tenant_predicate(sql) {
            failures.push(format!("{file}: {sql}\n    {problem}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_tenant_predicate_check_catches_queries_that_rely_on_rls_alone() {
    for (sql, expected) in [
        (
            "select id from notes where user_id = $1 and id = $2",
            vec!["from notes without tenant_id = $n"],
        ),
        (
            "update notes set content = $2 where id = $1",
            vec!["update notes without tenant_id = $n"],
        ),
        (
            "insert into notes (id, user_id, content) values ($1, $2, $3)",
            vec!["into notes without tenant_id = $n"],
        ),
        (
            "insert into notes (tenant_id, id) values (current_setting('app.tenant_id')::uuid, $1)",
            vec!["into notes without tenant_id = $n"],
        ),
        (
            "select (select count(*) from users where tenant_id = $1), (select count(*) from notes)",
            vec!["from notes without tenant_id = $n"],
        ),
        (
            "select n.id from notes n join users u on u.id = n.user_id where n.tenant_id = $1",
            vec!["join users without tenant_id = $n"],
        ),
        ("select id from users_archive where id = $1", vec![]),
        (
            "select id from notes where tenant_id = $1 and id = $2",
            vec![],
        ),
        (
            "insert into audit_events (tenant_id, id) values ($1, $2)",
            vec![],
        ),
    ] {
        assert_eq!(missing_tenant_predicate(sql), expected, "{sql}");
    }
}

/// Every SQL statement literal of the service (`src/`), whitespace
/// collapsed, `format!` placeholders as `*`.
fn service_statements() -> Vec<(String, String)> {
    fn walk(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    let mut statements = Vec::new();
    for file in files {
        let name = file.strip_prefix(root).unwrap().display().to_string();
        for literal in string_literals(&std::fs::read_to_string(&file).unwrap()) {
            let sql = literal
                .replace("\\\n", " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase();
            if ["select ", "insert ", "update ", "delete ", "with "]
                .iter()
                .any(|verb| sql.starts_with(verb))
            {
                statements.push((name.clone(), replace_placeholders(&sql)));
            }
        }
    }
    statements
}

/// Volatile functions: Citus evaluates them once per shard (or refuses
/// them) in the statements below, so their values would differ per row set.
const VOLATILE: &[&str] = &[
    "random(",
    "gen_random_uuid(",
    "uuid_generate_v4(",
    "clock_timestamp(",
    "timeofday(",
    "nextval(",
    "txid_current(",
];

/// Constructs Citus cannot route for distributed tables (docs/CITUS.md,
/// "What the service's SQL avoids").
fn unroutable_constructs(sql: &str) -> Vec<&'static str> {
    let sql = sql.to_lowercase();
    let mut found = Vec::new();
    let volatile = VOLATILE.iter().any(|f| sql.contains(f));
    if sql.starts_with("insert ") {
        let values = sql.find(" values ");
        let select = sql.find(" select ");
        match (values, select) {
            (Some(values), _) if sql[values..].contains("(select ") => {
                found.push("a subquery in INSERT ... VALUES");
            }
            (None, Some(_)) if volatile => found.push("INSERT ... SELECT with a volatile function"),
            _ => {}
        }
    }
    if sql.starts_with("update ") && volatile {
        found.push("UPDATE with a volatile function");
    }
    if sql.contains("nextval(") {
        found.push("a sequence");
    }
    found
}

#[test]
fn no_service_statement_uses_a_construct_citus_cannot_route() {
    let statements = service_statements();
    assert!(statements.len() >= 40, "found {}", statements.len());
    let mut failures = Vec::new();
    for (file, sql) in &statements {
        for construct in unroutable_constructs(sql) {
            failures.push(format!("{file}: {construct}: {sql}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_construct_check_catches_what_citus_cannot_route() {
    for (sql, expected) in [
        (
            "insert into notes (tenant_id, id, user_id, content) values ($1, $2, (select id from users where tenant_id = $1 limit 1), $3)",
            vec!["a subquery in INSERT ... VALUES"],
        ),
        (
            "insert into audit_events (tenant_id, id, action) select tenant_id, gen_random_uuid(), 'x.y' from users where tenant_id = $1",
            vec!["INSERT ... SELECT with a volatile function"],
        ),
        (
            "update notes set updated_at = clock_timestamp() where tenant_id = $1 and id = $2",
            vec!["UPDATE with a volatile function"],
        ),
        (
            "insert into notes (tenant_id, id, seq) values ($1, $2, nextval('note_numbers'))",
            vec!["a sequence"],
        ),
        (
            "insert into notes (tenant_id, id) select $1, id from jsonb_populate_recordset(null::notes, $2)",
            vec![],
        ),
        (
            "update notes set content = $4, updated_at = now() where tenant_id = $1 and user_id = $2 and id = $3",
            vec![],
        ),
    ] {
        assert_eq!(unroutable_constructs(sql), expected, "{sql}");
    }
}
