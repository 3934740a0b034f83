//! The cluster's own set-up, as docs/CITUS.md has an operator do it: the
//! scripts of `sql/citus/`, run again after a later migration; the boot
//! audit on a coordinator; `tenantry citus check`.

use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::json;
use tenantry::{
    config::CitusMode,
    db::{citus, local, migrate},
    startup::Application,
};

use crate::helpers::{BASE_DOMAIN, ROLE_PASSWORD, cluster, connect, test_settings};

const SCRIPTS: [&str; 3] = [
    "sql/citus/01_functions.sql",
    "sql/citus/02_distribute.sql",
    "sql/citus/03_roles.sql",
];

/// `sql/citus/02_distribute.sql` with a placement line for `table` added
/// after usage_counters' (what a migration adding a tenant table adds).
fn script_placing(table: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/citus/02_distribute.sql");
    let script = std::fs::read_to_string(path).unwrap();
    let anchor = "select pg_temp.tenant_table('usage_counters', 'users');";
    assert!(script.contains(anchor));
    script.replace(
        anchor,
        &format!("{anchor}\nselect pg_temp.tenant_table('{table}', 'users');"),
    )
}

/// What `citus::check` says of `dbname`, through the runtime role.
async fn tables_finding(dbname: &str) -> String {
    let cluster = cluster().await;
    let client = connect(&cluster.config_for("tenantry_app", dbname)).await;
    let connection = citus::check::Connection {
        variable: "DATABASE_URL",
        client: &client,
    };
    let report = citus::check::run(&[connection], None).await.unwrap();
    let tables = report
        .findings
        .iter()
        .find(|finding| finding.subject == "tables")
        .unwrap();
    assert!(tables.passed, "{report}");
    tables.detail.clone()
}

#[tokio::test]
async fn the_scripts_distribute_rerun_after_a_later_migration_and_place_its_new_tables() {
    let cluster = cluster().await;
    let backend = cluster.backend();
    let dbname = cluster.empty_database().await;
    let mut owner = connect(&cluster.config_for(local::OWNER_ROLE, &dbname)).await;
    let passwords = tenantry::config::RolePasswords::all(ROLE_PASSWORD);

    // Distributed at V4, the schema of the release before this one.
    migrate::run_up_to(&mut owner, &passwords, 4).await.unwrap();
    let first = backend.run_scripts(cluster.superuser(), &dbname, &SCRIPTS);
    assert!(
        first.contains(
            "placed: tenants, tenant_domains, users, notes, audit_events, usage_counters"
        ),
        "{first}"
    );
    let again = backend.run_scripts(cluster.superuser(), &dbname, &SCRIPTS);
    assert!(again.contains("every table is already placed"), "{again}");

    // The later migrations (V5 on), by `tenantry migrate` on the
    // distributed schema, then the scripts as after every migrate.
    let report = migrate::run(&mut owner, &passwords).await.unwrap();
    assert_eq!(
        report.applied,
        (5..=migrate::latest_version()).collect::<Vec<_>>()
    );
    let after = backend.run_scripts(cluster.superuser(), &dbname, &SCRIPTS);
    assert!(after.contains("every table is already placed"), "{after}");
    let app = Application::build(&{
        let mut settings = test_settings(cluster, &dbname);
        settings.citus = CitusMode::On;
        settings
    })
    .await
    .expect("serve starts on the migrated cluster");
    let port = app.port();
    tokio::spawn(app.run_until(std::future::pending()));
    let signup = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/tenants"))
        .header("host", BASE_DOMAIN)
        .json(&json!({"slug": "acme", "name": "Acme",
                      "owner": {"username": "alice", "email": "a@acme.test", "password": "alice-password"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), StatusCode::CREATED);

    // A later migration, run statement by statement as `tenantry migrate`
    // runs one (migrate::execute_script), in one transaction: a column and
    // an index on a distributed table, and a tenant table added the way
    // docs/CITUS.md says (the table, distribute_tenant_table, then its
    // foreign keys, one ADD CONSTRAINT per ALTER TABLE).
    let later = "
        alter table notes add column pinned boolean not null default false;
        create index notes_pinned_idx on notes (tenant_id, pinned);
        create table attachments (
            tenant_id uuid not null, id uuid not null, note_id uuid not null,
            constraint attachments_pkey primary key (tenant_id, id));
        select distribute_tenant_table('attachments');
        alter table attachments
            add constraint attachments_tenant_fkey foreign key (tenant_id) references tenants (id);
        alter table attachments
            add constraint attachments_note_fkey foreign key (tenant_id, note_id) references notes (tenant_id, id);
        alter table attachments enable row level security;
        alter table attachments force row level security;
        create policy tenant_isolation on attachments
            using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
            with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);";
    // All of it in one query is what Citus cannot propagate.
    let whole = owner.batch_execute(&format!("begin; {later}")).await;
    assert!(
        whole
            .as_ref()
            .is_err_and(|error| format!("{error:?}").contains("multiple commands")),
        "{whole:?}"
    );
    owner.batch_execute("rollback").await.unwrap();
    let tx = owner.transaction().await.unwrap();
    // As `tenantry migrate` prepares each migration's transaction.
    tx.batch_execute("set local citus.multi_shard_modify_mode to 'sequential'")
        .await
        .unwrap();
    migrate::execute_script(&tx, later)
        .await
        .map_err(|(offset, error)| format!("at {offset}: {error:?}"))
        .unwrap();
    tx.commit().await.unwrap();
    // The service keeps serving the changed table.
    let login = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/login"))
        .header("host", format!("acme.{BASE_DOMAIN}"))
        .json(&json!({"username": "alice", "password": "alice-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let token: serde_json::Value = login.json().await.unwrap();
    let note = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/notes"))
        .header("host", format!("acme.{BASE_DOMAIN}"))
        .bearer_auth(token["token"].as_str().unwrap())
        .json(&json!({"content": "after the migration"}))
        .send()
        .await
        .unwrap();
    assert_eq!(note.status(), StatusCode::CREATED);
    let placed = backend.run_scripts_with(
        cluster.superuser(),
        &dbname,
        &["-"],
        &script_placing("attachments"),
    );
    assert!(placed.contains("every table is already placed"), "{placed}");
    assert!(tables_finding(&dbname).await.contains("attachments"));

    // One added without it, referencing the registry only: Citus makes it a
    // Citus local table, and the script distributes it, keeping its key.
    migrate::execute_script(
        &owner,
        "create table widgets (
             tenant_id uuid not null, id uuid not null,
             constraint widgets_pkey primary key (tenant_id, id),
             constraint widgets_tenant_fkey foreign key (tenant_id) references tenants (id));
         alter table widgets enable row level security;
         alter table widgets force row level security;
         create policy tenant_isolation on widgets
             using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
             with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);",
    )
    .await
    .map_err(|(offset, error)| format!("at {offset}: {error:?}"))
    .unwrap();
    let placed = backend.run_scripts_with(
        cluster.superuser(),
        &dbname,
        &["-"],
        &script_placing("widgets"),
    );
    assert!(placed.contains("placed: widgets"), "{placed}");
    let kept: i64 = owner
        .query_one(
            "select count(*) from pg_constraint where conname in ('widgets_tenant_fkey', 'attachments_note_fkey', 'notes_user_fkey')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 3, "every foreign key is back");
    assert!(tables_finding(&dbname).await.contains("widgets"));
}

#[tokio::test]
async fn the_boot_audit_passes_citus_own_objects_and_still_catches_ours() {
    let cluster = cluster().await;
    let dbname = cluster.migrated_database().await;
    let mut settings = test_settings(cluster, &dbname);
    settings.citus = CitusMode::On;
    let built = Application::build(&settings).await;
    assert!(built.is_ok(), "{:?}", built.err());
    drop(built);
    // Named like Citus's views, in the same schema, but ours.
    connect(&cluster.superuser_on(&dbname))
        .await
        .batch_execute(
            "create view citus_tenants as select * from tenants;
             grant select on citus_tenants to tenantry_app",
        )
        .await
        .unwrap();
    let error = Application::build(&settings)
        .await
        .err()
        .expect("our own leaky view must stop the start");
    assert!(
        format!("{error:#}").contains("view citus_tenants is readable by this role"),
        "{error:#}"
    );
}

/// `tenantry citus check` on `dbname` with every role's URL: exit status
/// and stdout.
async fn citus_check(dbname: &str) -> (bool, String) {
    let cluster = cluster().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["citus", "check"])
        .env_clear()
        .env("DATABASE_URL", cluster.url_for("tenantry_app", dbname))
        .env(
            "ADMIN_DATABASE_URL",
            cluster.url_for("tenantry_admin", dbname),
        )
        .env(
            "ANALYTICS_DATABASE_URL",
            cluster.url_for("tenantry_analytics", dbname),
        )
        .env(
            "MIGRATION_DATABASE_URL",
            cluster.url_for(local::OWNER_ROLE, dbname),
        )
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn the_cluster_check_passes_every_role_and_names_what_breaks() {
    let cluster = cluster().await;
    let dbname = cluster.migrated_database().await;
    let (passed, report) = citus_check(&dbname).await;
    assert!(passed, "{report}");
    for role in [
        "tenantry_app (DATABASE_URL)",
        "tenantry_admin (ADMIN_DATABASE_URL)",
        "tenantry_analytics (ANALYTICS_DATABASE_URL)",
        "tenantry_registry (through MIGRATION_DATABASE_URL)",
        "tenantry_usage (through MIGRATION_DATABASE_URL)",
    ] {
        for worker in cluster.backend().workers() {
            assert!(
                report.lines().any(
                    |line| line.starts_with(&format!("ok    {role}: logs in on"))
                        && line.contains(&worker)
                ),
                "{role} on {worker}: {report}"
            );
        }
    }
    assert!(report.contains("ok    tables:"), "{report}");
    assert!(report.contains("ok    functions:"), "{report}");
    assert!(report.contains(" checks, 0 failed"), "{report}");

    // Planted: a definer role the coordinator can no longer present, and a
    // role that no longer forwards the tenant.
    connect(&cluster.superuser_on(&dbname))
        .await
        .batch_execute(&format!(
            "delete from pg_dist_authinfo where rolename = 'tenantry_usage';
             alter role tenantry_analytics in database \"{dbname}\" reset citus.propagate_set_commands"
        ))
        .await
        .unwrap();
    let (passed, report) = citus_check(&dbname).await;
    assert!(!passed, "{report}");
    assert!(
        report.contains("FAIL  tenantry_usage (through MIGRATION_DATABASE_URL): cannot log in on"),
        "{report}"
    );
    assert!(
        report.contains(
            "FAIL  tenantry_analytics (ANALYTICS_DATABASE_URL): citus.propagate_set_commands is"
        ),
        "{report}"
    );
    assert!(
        report.contains("ok    tenantry_app (DATABASE_URL): citus.propagate_set_commands = local"),
        "the others still pass: {report}"
    );
}
