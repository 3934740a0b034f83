//! Query plan gates: every tenant query the request path sends, planned as
//! the runtime role with a tenant set, against a database at benchmark scale,
//! reaches its rows through an index whose condition includes `tenant_id`,
//! and never scans a tenant table sequentially. A query that would only be
//! fast thanks to an unindexed policy, or a missing predicate, fails here.

use std::path::Path;

use serde_json::Value;
use tokio_postgres::Client;

use crate::helpers::{TestApp, connect, spawn_app};

pub(crate) const TENANT_TABLES: [&str; 4] = ["users", "notes", "audit_events", "usage_counters"];
/// Benchmark scale, kept small enough for CI: 1,000 tenants, 100,000 notes.
const TENANTS: i32 = 1_000;
const NOTES_PER_TENANT: i32 = 100;

/// Every SQL string literal of the request path (`src/api` except the
/// operator API, `src/auth`, `src/audit.rs`) that reads or writes a tenant
/// table. `{NAME}` placeholders of `format!` strings (a column list) become `*`.
pub(crate) fn request_path_statements() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("src/audit.rs")];
    for dir in ["src/api", "src/auth"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let is_source = path.extension().is_some_and(|extension| extension == "rs");
            if is_source && path.file_name().is_some_and(|name| name != "admin.rs") {
                files.push(path);
            }
        }
    }
    let mut statements = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for literal in string_literals(&text) {
            let sql = literal.split_whitespace().collect::<Vec<_>>().join(" ");
            let lower = sql.to_lowercase();
            let is_statement = ["select ", "insert ", "update ", "delete "]
                .iter()
                .any(|verb| lower.starts_with(verb));
            let touches_tenant_table = TENANT_TABLES.iter().any(|table| {
                lower.contains(&format!("from {table}"))
                    || lower.contains(&format!("into {table}"))
                    || lower.contains(&format!("update {table}"))
            });
            if is_statement && touches_tenant_table {
                statements.push((name.clone(), replace_placeholders(&sql)));
            }
        }
    }
    statements
}

/// The contents of every `"..."` literal in Rust source (no raw strings).
pub(crate) fn string_literals(text: &str) -> Vec<String> {
    let mut literals = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut literal = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        literal.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => break,
                other => literal.push(other),
            }
        }
        literals.push(literal);
    }
    literals
}

pub(crate) fn replace_placeholders(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                out.push('*');
                rest = &rest[open + close + 1..];
            }
            None => {
                rest = &rest[open..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Fills the test database as the superuser: `TENANTS` tenants, each with
/// three users, `NOTES_PER_TENANT` notes and twenty audit events; analyzed.
async fn fill_to_benchmark_scale(app: &TestApp) {
    fill_without_statistics(app).await;
    app.admin.batch_execute("analyze").await.unwrap();
}

/// The same, never analyzed (and autovacuum off on the tenant tables, so
/// it stays that way): a database just restored or bulk-loaded.
async fn fill_without_statistics(app: &TestApp) {
    app.admin
        .batch_execute(
            "alter table tenants set (autovacuum_enabled = false);
             alter table users set (autovacuum_enabled = false);
             alter table notes set (autovacuum_enabled = false);",
        )
        .await
        .unwrap();
    app.admin
        .batch_execute(&format!(
            "insert into tenants (id, slug, name, plan)
               select gen_random_uuid(), 'tenant-' || n, 'Tenant ' || n, 'free'
               from generate_series(1, {TENANTS}) n;
             insert into users (tenant_id, id, username, email, password_hash, role)
               select t.id, gen_random_uuid(), 'user-' || u, 'user-' || u || '@mail.test', 'x', 'member'
               from tenants t, generate_series(1, 3) u;
             insert into notes (tenant_id, id, user_id, content)
               select u.tenant_id, gen_random_uuid(), u.id, 'note ' || n
               from users u, generate_series(1, {NOTES_PER_TENANT} / 3) n;
             insert into audit_events (tenant_id, id, actor_kind, action)
               select t.id, gen_random_uuid(), 'anonymous', 'login.failed'
               from tenants t, generate_series(1, 20) n;"
        ))
        .await
        .unwrap();
}

/// The plan of `sql` as the runtime role with a tenant set, as the generic
/// plan that prepared statements settle on (parameters unknown).
async fn generic_plan(runtime: &Client, tenant: &str, sql: &str) -> Value {
    let binding = format!("select set_config('app.tenant_id', '{tenant}', true)");
    let unknown = vec!["null".to_owned(); 20];
    plan_bound_by(runtime, &binding, "force_generic_plan", sql, &unknown).await
}

/// What is wrong with `plan` (a JSON plan node, recursively): sequential
/// scans of tenant tables, and index scans of them without `tenant_id` in
/// the index condition.
fn plan_problems(plan: &Value, problems: &mut Vec<String>) {
    let node = plan["Node Type"].as_str().unwrap_or_default();
    let relation = plan["Relation Name"].as_str().unwrap_or_default();
    let tenant_indexed = plan["Index Cond"]
        .as_str()
        .is_some_and(|cond| cond.contains("tenant_id"));
    let on_tenant_table = TENANT_TABLES.contains(&relation);
    match node {
        "Seq Scan" if on_tenant_table => {
            problems.push(format!("sequential scan of {relation}"));
        }
        "Index Scan" | "Index Only Scan" if on_tenant_table && !tenant_indexed => {
            problems.push(format!(
                "{node} of {relation} without tenant_id in its index condition"
            ));
        }
        "Bitmap Index Scan" if !tenant_indexed => {
            problems.push(format!("bitmap index scan without tenant_id: {plan}"));
        }
        _ => {}
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        plan_problems(child, problems);
    }
}

fn problems_of(explained: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    plan_problems(&explained[0]["Plan"], &mut problems);
    problems
}

#[tokio::test]
async fn every_request_path_query_uses_a_tenant_index_at_benchmark_scale() {
    let statements = request_path_statements();
    // notes: get, list (two pages), create, update, delete; users: login,
    // register, me, list (two pages), remove; usage; audit: record, pages.
    assert!(
        statements.len() >= 15,
        "found only {} statements: {statements:#?}",
        statements.len()
    );
    let app = spawn_app().await;
    fill_to_benchmark_scale(&app).await;
    let tenant: String = app
        .admin
        .query_one(
            "select id::text from tenants where slug = 'tenant-500'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let runtime = app.connect_as_runtime_role().await;
    let mut failures = Vec::new();
    for (file, sql) in &statements {
        let plan = generic_plan(&runtime, &tenant, sql).await;
        for problem in problems_of(&plan) {
            failures.push(format!("{file}: {sql}\n    {problem}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn the_plan_gate_catches_a_scan_that_ignores_the_tenant() {
    // The checker itself, on plans that must fail it: a superuser bypasses
    // RLS, so without a tenant predicate the notes are scanned whole, or
    // read through an index that does not start with tenant_id.
    let app = spawn_app().await;
    fill_to_benchmark_scale(&app).await;
    let superuser = connect(&app.cluster.superuser_on(&app.dbname)).await;
    let explain = async |sql: &str| -> Value {
        superuser
            .query_one(&format!("explain (format json) {sql}"), &[])
            .await
            .unwrap()
            .get(0)
    };
    let whole = explain("select id from notes where content = 'x'").await;
    assert_eq!(problems_of(&whole), ["sequential scan of notes"]);

    superuser
        .batch_execute("create index notes_content_idx on notes (content); analyze notes")
        .await
        .unwrap();
    let untenanted = explain("select id from notes where content = 'note 7'").await;
    let problems = problems_of(&untenanted);
    assert!(
        !problems.is_empty() && problems.iter().all(|p| p.contains("without tenant_id")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn a_note_is_read_by_its_primary_key_even_in_the_largest_tenant() {
    // Tenants differ in size by orders of magnitude. One user of tenant-1
    // gets 30,000 notes; reading one of them by id, on the pool's
    // connections, must not walk that user's whole index range, before or
    // after PostgreSQL settles on the statement's generic plan.
    let app = spawn_app().await;
    fill_to_benchmark_scale(&app).await;
    app.admin
        .batch_execute(
            "insert into notes (tenant_id, id, user_id, content)
               select u.tenant_id, gen_random_uuid(), u.id, 'big ' || n
               from (select tenant_id, id from users
                     where tenant_id = (select id from tenants where slug = 'tenant-1')
                     order by id limit 1) u,
                    generate_series(1, 30000) n;
             analyze notes;",
        )
        .await
        .unwrap();
    let row = app
        .admin
        .query_one(
            "select n.tenant_id, n.user_id, n.id from notes n
             join tenants t on t.id = n.tenant_id
             where t.slug = 'tenant-1' and n.content = 'big 777'",
            &[],
        )
        .await
        .unwrap();
    let (tenant, user, note): (uuid::Uuid, uuid::Uuid, uuid::Uuid) =
        (row.get(0), row.get(1), row.get(2));
    // The runtime role's connections, configured as the service's pool
    // configures them.
    let db = tenantry::db::Db::connect(
        &crate::helpers::test_settings(app.cluster, &app.dbname).database,
    )
    .unwrap();
    let client = db.pool().get().await.unwrap();
    client
        .batch_execute(&format!(
            "begin; select set_config('app.tenant_id', '{tenant}', true)"
        ))
        .await
        .unwrap();
    for verb in ["select", "update", "delete"] {
        let sql = request_path_statements()
            .into_iter()
            .map(|(_, sql)| sql)
            .find(|sql| {
                sql.starts_with(verb)
                    && sql.contains("notes")
                    && sql.contains("where tenant_id = $1 and id = $3 and (user_id = $2) is true")
            })
            .unwrap_or_else(|| panic!("no {verb} of one note"));
        let arguments = if verb == "update" {
            format!("('{tenant}', '{user}', '{note}', 'changed')")
        } else {
            format!("('{tenant}', '{user}', '{note}')")
        };
        // A named prepared statement, run six times as the service's cached
        // statements are: the sixth run is where PostgreSQL settles on the
        // generic plan (the pool leaves plan_cache_mode at its default).
        client
            .batch_execute(&format!(
                "prepare one_note as {sql}; {}",
                format!("explain execute one_note{arguments};").repeat(6)
            ))
            .await
            .unwrap();
        // The plan it settled on, then the generic plan itself, whichever
        // the settled one is.
        for mode in ["default", "force_generic_plan"] {
            client
                .batch_execute(&format!("set local plan_cache_mode = {mode}"))
                .await
                .unwrap();
            let plan: Value = client
                .query_one(
                    &format!("explain (format json) execute one_note{arguments}"),
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            let text = plan.to_string();
            assert!(
                text.contains("\"Index Name\":\"notes_pkey\""),
                "{mode}: {sql}\n{text}"
            );
        }
        client
            .batch_execute("set local plan_cache_mode = default; deallocate one_note")
            .await
            .unwrap();
    }
    client.batch_execute("rollback").await.unwrap();
}

/// The JSON plan of `sql`, run with the first of `arguments` (SQL
/// literals, in order; as many as `sql` has parameters) as a prepared
/// statement planned the way `mode` (a `plan_cache_mode`) says, as the
/// runtime role in a transaction bound by `binding`; rolled back.
async fn plan_bound_by(
    runtime: &Client,
    binding: &str,
    mode: &str,
    sql: &str,
    arguments: &[String],
) -> Value {
    let parameters = (1..=arguments.len())
        .filter(|n| sql.contains(&format!("${n}")))
        .count();
    let execute = match parameters {
        0 => "execute bound".to_owned(),
        n => format!("execute bound({})", arguments[..n].join(", ")),
    };
    runtime
        .batch_execute(&format!(
            "begin; {binding}; set local plan_cache_mode = {mode}; prepare bound as {sql}"
        ))
        .await
        .unwrap_or_else(|error| panic!("prepare {sql}: {error}"));
    let plan: Value = runtime
        .query_one(&format!("explain (format json) {execute}"), &[])
        .await
        .unwrap_or_else(|error| panic!("explain {sql}: {error}"))
        .get(0);
    runtime
        .batch_execute("deallocate bound; rollback")
        .await
        .unwrap();
    plan
}

/// Planned with the request's own values, and generically (the plan a
/// connection settles on after a statement's fifth run).
const PLANNINGS: [&str; 2] = ["force_custom_plan", "force_generic_plan"];

#[tokio::test]
async fn without_statistics_a_request_still_reads_notes_in_index_order_and_by_primary_key() {
    let app = spawn_app().await;
    fill_without_statistics(&app).await;
    let row = app
        .admin
        .query_one(
            "select n.tenant_id, n.user_id, n.id from notes n order by n.tenant_id, n.user_id limit 1",
            &[],
        )
        .await
        .unwrap();
    let (tenant, user, note): (uuid::Uuid, uuid::Uuid, uuid::Uuid) =
        (row.get(0), row.get(1), row.get(2));
    let statements: Vec<String> = request_path_statements()
        .into_iter()
        .map(|(_, sql)| sql)
        .collect();
    let newest = statements
        .iter()
        .find(|sql| {
            sql.contains("from notes") && sql.contains("order by created_at desc, id desc limit $3")
        })
        .expect("the newest-notes query");
    let runtime = app.connect_as_runtime_role().await;
    let by_hand = format!("select set_config('app.tenant_id', '{tenant}', true)");
    let by_request =
        format!("select * from bind_request('{tenant}', 5000, null, null, '{user}', 'user')");
    let page = [format!("'{tenant}'"), format!("'{user}'"), "21".to_owned()];
    // The trap, shown to exist: bound by hand, without statistics, the
    // planner reads the user's notes with a bitmap scan and sorts them all.
    let plan = plan_bound_by(&runtime, &by_hand, "force_custom_plan", newest, &page)
        .await
        .to_string();
    assert!(
        plan.contains("Bitmap Heap Scan") && plan.contains("\"Sort\""),
        "{plan}"
    );
    // Bound as every request is, it walks the index in order and stops at
    // the limit, planned either way.
    for mode in PLANNINGS {
        let plan = plan_bound_by(&runtime, &by_request, mode, newest, &page)
            .await
            .to_string();
        assert!(
            plan.contains("notes_owner_newest_idx")
                && !plan.contains("Bitmap")
                && !plan.contains("\"Sort\""),
            "{mode}: {plan}"
        );
    }
    // A note by id, read, changed or deleted: through the primary key, not
    // by walking the user's range of the owner index.
    let one_note = [
        format!("'{tenant}'"),
        format!("'{user}'"),
        format!("'{note}'"),
        "'changed'".to_owned(),
    ];
    for verb in ["select", "update", "delete"] {
        let sql = statements
            .iter()
            .find(|sql| sql.starts_with(verb) && sql.contains("notes") && sql.contains("id = $3"))
            .unwrap_or_else(|| panic!("no {verb} of one note"));
        for mode in PLANNINGS {
            let plan = plan_bound_by(&runtime, &by_request, mode, sql, &one_note)
                .await
                .to_string();
            assert!(
                plan.contains("\"Index Name\":\"notes_pkey\""),
                "{mode}: {sql}\n{plan}"
            );
        }
    }
}
