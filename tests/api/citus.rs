//! Citus readiness, proven on plain PostgreSQL (no Citus can run in CI):
//! `sql/citus/` classifies and distributes every table; the schema keeps to
//! what Citus can distribute (foreign keys, policies); the Citus variants of
//! the functions behave like the migrations' on plain PostgreSQL; and
//! `DATABASE_CITUS` detects the engine. Every checker is also shown failing
//! on a bad fixture. Routing (the explicit tenant predicate, constructs
//! Citus cannot route) is checked in the source, in routing.rs.
//!
//! Keys leading with tenant_id (primary keys, unique constraints and
//! indexes) and the absence of sequences on tenant tables are checked, with
//! their planted defects, in catalog.rs
//! (`keys_and_foreign_keys_of_tenant_tables_lead_with_tenant_id`,
//! `no_tenant_table_draws_ids_from_a_shared_sequence`).

use std::path::Path;

use reqwest::StatusCode;
use serde_json::json;
use tenantry::{
    config::CitusMode,
    db::citus::{self, Engine},
    startup::Application,
};
use tokio_postgres::Client;

use crate::{
    catalog::holds_and_catches,
    helpers::{cluster, connect, spawn_app, test_settings},
    plans::TENANT_TABLES,
};

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// One line of `sql/citus/02_distribute.sql`: what a table becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placement {
    kind: String,
    table: String,
    colocate_with: Option<String>,
}

/// Every `select pg_temp.{reference,tenant,local}_table('t'[, 'c'])` of a
/// distribution script.
fn placements(script: &str) -> Vec<Placement> {
    let mut found = Vec::new();
    for line in script.lines().map(str::trim) {
        let Some(call) = line.strip_prefix("select pg_temp.") else {
            continue;
        };
        let Some((kind, rest)) = call.split_once("_table(") else {
            continue;
        };
        let arguments: Vec<String> = rest
            .trim_end_matches(");")
            .split(',')
            .map(|argument| argument.trim().trim_matches('\'').to_owned())
            .collect();
        found.push(Placement {
            kind: kind.to_owned(),
            table: arguments[0].clone(),
            colocate_with: arguments.get(1).cloned(),
        });
    }
    found
}

/// Every table of the public schema and the class its columns call for:
/// `tenant` (tenant_id in the primary key: distributed), `reference` (a
/// tenant_id outside the key, or referenced by a foreign key: the
/// registry), `local` (everything else).
async fn expected_classes(client: &Client) -> Vec<(String, String)> {
    client
        .query(
            "select c.relname::text,
                    case when exists (select 1 from pg_constraint k join pg_attribute a
                                        on a.attrelid = k.conrelid and a.attnum = any(k.conkey)
                                      where k.conrelid = c.oid and k.contype = 'p' and a.attname = 'tenant_id')
                           then 'tenant'
                         when exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id')
                           or exists (select 1 from pg_constraint f where f.confrelid = c.oid and f.contype = 'f')
                           then 'reference'
                         else 'local' end
             from pg_class c
             where c.relkind in ('r', 'p') and c.relnamespace = 'public'::regnamespace
             order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// What is wrong with `script` for the tables in `catalog`.
fn classification_problems(script: &[Placement], catalog: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (table, class) in catalog {
        let lines: Vec<&Placement> = script.iter().filter(|p| &p.table == table).collect();
        match lines.as_slice() {
            [] => problems.push(format!(
                "{table} has no line in sql/citus/02_distribute.sql (it should be a {class} table)"
            )),
            [line] if &line.kind != class => problems.push(format!(
                "{table} is a {class} table, but the script makes it a {} table",
                line.kind
            )),
            [_] => {}
            _ => problems.push(format!("{table} appears {} times", lines.len())),
        }
    }
    for line in script {
        if !catalog.iter().any(|(table, _)| table == &line.table) {
            problems.push(format!(
                "the script names {}, which does not exist",
                line.table
            ));
        }
    }
    let tenant: Vec<&Placement> = script.iter().filter(|p| p.kind == "tenant").collect();
    let anchors: Vec<&&Placement> = tenant
        .iter()
        .filter(|p| p.colocate_with.as_deref() == Some("default"))
        .collect();
    match anchors.as_slice() {
        [anchor] => {
            for line in &tenant {
                if line.table != anchor.table
                    && line.colocate_with.as_deref() != Some(anchor.table.as_str())
                {
                    problems.push(format!(
                        "{} is not colocated with {}",
                        line.table, anchor.table
                    ));
                }
            }
        }
        _ => problems.push(format!(
            "exactly one tenant table must anchor the colocation group, found {}",
            anchors.len()
        )),
    }
    problems
}

#[tokio::test]
async fn the_citus_script_places_every_table_of_the_schema() {
    let cluster = cluster().await;
    let dbname = cluster.migrated_database().await;
    let admin = connect(&cluster.superuser_on(&dbname)).await;
    let catalog = expected_classes(&admin).await;
    let script = placements(&repo_file("sql/citus/02_distribute.sql"));
    assert!(script.len() >= 8, "parsed the script: {script:?}");
    assert_eq!(
        classification_problems(&script, &catalog),
        Vec::<String>::new()
    );
    // The plan gate's list of tenant tables (tests/api/plans.rs) is the
    // catalog's, so the request-path checks cover every tenant table.
    let mut tenant_tables: Vec<&str> = catalog
        .iter()
        .filter(|(_, class)| class == "tenant")
        .map(|(table, _)| table.as_str())
        .collect();
    let mut listed = TENANT_TABLES.to_vec();
    tenant_tables.sort_unstable();
    listed.sort_unstable();
    assert_eq!(tenant_tables, listed);

    // A new tenant table without a distribution line fails.
    admin
        .batch_execute(
            "create table attachments (tenant_id uuid not null, id uuid not null,
                 constraint attachments_pkey primary key (tenant_id, id))",
        )
        .await
        .unwrap();
    let planted = expected_classes(&admin).await;
    assert_eq!(
        classification_problems(&script, &planted),
        ["attachments has no line in sql/citus/02_distribute.sql (it should be a tenant table)"]
    );
    // So do a wrong class, a broken colocation and a line for nothing.
    let mut wrong = script.clone();
    for line in &mut wrong {
        if line.table == "notes" {
            line.kind = "reference".to_owned();
        }
        if line.table == "audit_events" {
            line.colocate_with = Some("default".to_owned());
        }
    }
    wrong.push(Placement {
        kind: "local".to_owned(),
        table: "ghosts".to_owned(),
        colocate_with: None,
    });
    let problems = classification_problems(&wrong, &catalog);
    for expected in [
        "notes is a tenant table, but the script makes it a reference table",
        "the script names ghosts, which does not exist",
        "exactly one tenant table must anchor the colocation group, found 2",
    ] {
        assert!(problems.iter().any(|p| p == expected), "{problems:?}");
    }
}

/// What Citus cannot distribute, given the reference tables `$1`: a foreign
/// key of a tenant table without tenant_id, or to a local table; a foreign
/// key from a reference table to a tenant table; a policy with a subquery
/// (Citus refuses those on distributed tables, commands/policy.c).
const CITUS_SHAPE_CHECK: &str = "
    with cls as (
        select c.oid,
               exists (select 1 from pg_constraint k join pg_attribute a
                         on a.attrelid = k.conrelid and a.attnum = any(k.conkey)
                       where k.conrelid = c.oid and k.contype = 'p' and a.attname = 'tenant_id') as tenant,
               c.relname::text = any($1::text[]) as reference
        from pg_class c where c.relkind in ('r', 'p') and c.relnamespace = 'public'::regnamespace)
    select f.conname || ' on tenant table ' || f.conrelid::regclass::text || ' does not include tenant_id'
    from pg_constraint f join cls s on s.oid = f.conrelid
    where f.contype = 'f' and s.tenant
      and not exists (select 1 from pg_attribute a
                      where a.attrelid = f.conrelid and a.attnum = any(f.conkey) and a.attname = 'tenant_id')
    union all
    select f.conname || ' references ' || f.confrelid::regclass::text || ', a local table, from tenant table '
           || f.conrelid::regclass::text
    from pg_constraint f join cls s on s.oid = f.conrelid join cls d on d.oid = f.confrelid
    where f.contype = 'f' and s.tenant and not d.tenant and not d.reference
    union all
    select f.conname || ' references tenant table ' || f.confrelid::regclass::text || ' from reference table '
           || f.conrelid::regclass::text
    from pg_constraint f join cls s on s.oid = f.conrelid join cls d on d.oid = f.confrelid
    where f.contype = 'f' and s.reference and d.tenant
    union all
    select 'policy ' || p.polname || ' on ' || p.polrelid::regclass::text || ' has a subquery'
    from pg_policy p join cls s on s.oid = p.polrelid
    where (s.tenant or s.reference)
      and (coalesce(pg_get_expr(p.polqual, p.polrelid), '') ilike '%select%'
           or coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '') ilike '%select%')";

#[tokio::test]
async fn foreign_keys_and_policies_stay_within_what_citus_distributes() {
    let references: Vec<String> = placements(&repo_file("sql/citus/02_distribute.sql"))
        .into_iter()
        .filter(|p| p.kind == "reference")
        .map(|p| p.table)
        .collect();
    assert_eq!(references, ["tenants", "tenant_domains"]);
    let check = CITUS_SHAPE_CHECK.replace(
        "$1::text[]",
        &format!("array['{}']::text[]", references.join("','")),
    );
    let plants = [
        (
            "create unique index users_id_key on users (id);
             alter table notes add constraint notes_author_fkey foreign key (user_id) references users (id)",
            "notes_author_fkey on tenant table notes does not include tenant_id",
        ),
        (
            "create table labels (tenant_id uuid not null, id uuid primary key, unique (tenant_id, id));
             alter table notes add column label_id uuid;
             alter table notes add constraint notes_label_fkey foreign key (tenant_id, label_id) references labels (tenant_id, id)",
            "notes_label_fkey references labels, a local table, from tenant table notes",
        ),
        (
            "alter table tenant_domains add column note_id uuid;
             alter table tenant_domains add constraint tenant_domains_note_fkey
                 foreign key (tenant_id, note_id) references notes (tenant_id, id)",
            "tenant_domains_note_fkey references tenant table notes from reference table tenant_domains",
        ),
        (
            "create policy own_tenant_only on notes for select
                 using (exists (select 1 from tenants t where t.id = tenant_id))",
            "policy own_tenant_only on notes has a subquery",
        ),
    ];
    holds_and_catches(cluster().await, &check, None, &plants).await;
}

#[tokio::test]
async fn the_citus_functions_behave_like_the_migrations_on_plain_postgresql() {
    // Arrange: a plain database with sql/citus/01_functions.sql applied, as
    // on a coordinator.
    let app = spawn_app().await;
    app.admin
        .batch_execute(&repo_file("sql/citus/01_functions.sql"))
        .await
        .unwrap();
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;

    // The service works unchanged, and the counting triggers count.
    let note = app.create_note(&acme, "hello").await;
    app.create_note(&acme, "again").await;
    app.create_note(&globex, "other").await;
    let me = app.get_json(&acme.host, "/api/me", &acme.token).await;
    assert_eq!(me["usage"], json!({"users": 1, "notes": 2}), "{me}");
    let deleted = app
        .delete(&acme.host, &format!("/api/notes/{note}"))
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let me = app.get_json(&acme.host, "/api/me", &acme.token).await;
    assert_eq!(me["usage"]["notes"], 1, "{me}");

    // bind_tenant sets the tenant and the quotas with SET LOCAL, and the
    // trigger enforces the quota from them.
    let runtime = app.connect_as_runtime_role().await;
    runtime.batch_execute("begin").await.unwrap();
    runtime
        .query(
            "select * from bind_tenant($1, 5000, null, 1, null)",
            &[&acme.id],
        )
        .await
        .unwrap();
    let settings = runtime
        .query_one(
            "select current_setting('app.tenant_id'), current_setting('app.max_notes'),
                    current_setting('app.max_users')",
            &[],
        )
        .await
        .unwrap();
    let bound: (String, String, String) = (settings.get(0), settings.get(1), settings.get(2));
    assert_eq!(bound, (acme.id.to_string(), "1".to_owned(), String::new()));
    let over = runtime
        .execute(
            "insert into notes (tenant_id, id, user_id, content) values ($1, gen_random_uuid(), $2, 'one too many')",
            &[&acme.id, &acme.owner_id],
        )
        .await
        .expect_err("over the quota");
    assert_eq!(over.code().map(|c| c.code()), Some("TQ001"), "{over}");
    runtime.batch_execute("rollback").await.unwrap();
    let after: String = runtime
        .query_one(
            "select coalesce(current_setting('app.tenant_id', true), '')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(after, "", "nothing outlives the transaction");

    // tenant_usage binds each tenant in turn and leaves none bound, even for
    // the rest of the caller's transaction (SET LOCAL outlives the function).
    let mut analytics = connect(&app.cluster.config_for("tenantry_analytics", &app.dbname)).await;
    let transaction = analytics.transaction().await.unwrap();
    let usage: Vec<(String, i64)> = transaction
        .query("select slug, notes from tenant_usage('test', null)", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(usage, [("acme".to_owned(), 1), ("globex".to_owned(), 1)]);
    let left: String = transaction
        .query_one(
            "select coalesce(current_setting('app.tenant_id', true), '')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        left, "",
        "no tenant is left bound in the caller's transaction"
    );
    transaction.rollback().await.unwrap();

    // The engine check sees plain PostgreSQL, Citus variants or not.
    let client = app.connect_as_runtime_role().await;
    assert_eq!(
        citus::detect(&client, CitusMode::Auto).await.unwrap(),
        Engine::PostgreSql
    );
    assert_eq!(
        citus::variant_problems(&client).await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn database_citus_detects_plain_postgresql_and_refuses_on_without_the_extension() {
    let cluster = cluster().await;
    let dbname = cluster.migrated_database().await;
    let runtime = connect(&cluster.config_for("tenantry_app", &dbname)).await;
    assert_eq!(
        citus::detect(&runtime, CitusMode::Off).await.unwrap(),
        Engine::PostgreSql
    );
    assert_eq!(
        citus::detect(&runtime, CitusMode::Auto).await.unwrap(),
        Engine::PostgreSql
    );
    let refused = citus::detect(&runtime, CitusMode::On)
        .await
        .expect_err("no citus extension here")
        .to_string();
    assert!(
        refused.contains("DATABASE_CITUS=on")
            && refused.contains("the citus extension is not installed"),
        "{refused}"
    );

    // The check for the Citus function variants: none on a migrated
    // database (nor triggers naming their resource); all once
    // sql/citus/01_functions.sql ran; and one missing again when a
    // migration replaces bind_tenant, or adds a counting trigger the V3 way.
    assert_eq!(
        citus::variant_problems(&runtime).await.unwrap().len(),
        3 + 4
    );
    let admin = connect(&cluster.superuser_on(&dbname)).await;
    admin
        .batch_execute(&repo_file("sql/citus/01_functions.sql"))
        .await
        .unwrap();
    assert_eq!(
        citus::variant_problems(&runtime).await.unwrap(),
        Vec::<String>::new()
    );
    let v4 = repo_file("sql/migrations/V4__bind_tenant.sql").replace(
        "create function bind_tenant",
        "create or replace function bind_tenant",
    );
    admin
        .batch_execute(&format!(
            "{v4};
             create trigger audit_events_counted_on_insert after insert on audit_events
                 referencing new table as changed_rows
                 for each statement execute function count_tenant_rows()"
        ))
        .await
        .unwrap();
    assert_eq!(
        citus::variant_problems(&runtime).await.unwrap(),
        [
            "trigger audit_events_counted_on_insert on audit_events does not pass its table's name to count_tenant_rows",
            "bind_tenant(uuid, integer, bigint, bigint, uuid) is not the Citus variant of sql/citus/01_functions.sql",
        ]
    );

    // The server itself refuses to start with `on`, and starts with `off`.
    let mut settings = test_settings(cluster, &dbname);
    settings.citus = CitusMode::On;
    let error = Application::build(&settings)
        .await
        .err()
        .expect("DATABASE_CITUS=on without Citus must not start")
        .to_string();
    assert!(error.contains("DATABASE_CITUS=on"), "{error}");
    settings.citus = CitusMode::Off;
    let app = Application::build(&settings).await.expect("starts");
    assert!(app.port() > 0);
}
