//! Isolation at the database level, as the runtime role, without the service:
//! these hold even for a query the application gets wrong.

use tokio_postgres::{Client, error::SqlState};
use uuid::Uuid;

use crate::helpers::{TestApp, TestTenant, spawn_app, tenant_handle, unlimited};

/// Two tenants, each with a note, and a custom domain for acme.
async fn two_tenants(app: &TestApp) -> (TestTenant, TestTenant) {
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    app.create_note(&acme, "acme note").await;
    app.create_note(&globex, "globex note").await;
    app.add_domain("notes.acme.io", acme.id).await;
    (acme, globex)
}

async fn count(client: &Client, table: &str) -> i64 {
    client
        .query_one(&format!("select count(*) from {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

fn sqlstate(error: &tokio_postgres::Error) -> SqlState {
    error
        .code()
        .cloned()
        .unwrap_or_else(|| panic!("expected a database error, got {error}"))
}

#[tokio::test]
async fn without_a_tenant_the_runtime_role_sees_nothing_and_writes_nothing() {
    let app = spawn_app().await;
    let (acme, _) = two_tenants(&app).await;
    let runtime = app.connect_as_runtime_role().await;

    for table in ["users", "notes"] {
        assert_eq!(
            count(&runtime, table).await,
            0,
            "{table} leaked rows without a tenant"
        );
    }
    // The registry is not readable at all, only through the lookup functions.
    for table in ["tenants", "tenant_domains"] {
        let error = runtime
            .query(&format!("select count(*) from {table}"), &[])
            .await
            .expect_err(table);
        assert_eq!(sqlstate(&error), SqlState::INSUFFICIENT_PRIVILEGE);
    }
    let insert = runtime
        .execute(
            "insert into notes (tenant_id, id, user_id, content) values ($1, $2, $3, 'sneaky')",
            &[&acme.id, &Uuid::now_v7(), &acme.owner_id],
        )
        .await
        .expect_err("insert without a tenant must fail");
    assert_eq!(sqlstate(&insert), SqlState::INSUFFICIENT_PRIVILEGE);
    assert_eq!(app.count("notes", acme.id).await, 1);
}

#[tokio::test]
async fn an_empty_tenant_setting_fails_closed_without_an_error() {
    let app = spawn_app().await;
    two_tenants(&app).await;
    let runtime = app.connect_as_runtime_role().await;
    // What a pooled session looks like after a transaction used the setting.
    runtime
        .batch_execute("select set_config('app.tenant_id', '', false)")
        .await
        .unwrap();
    assert_eq!(count(&runtime, "notes").await, 0);
    assert_eq!(count(&runtime, "users").await, 0);
}

#[tokio::test]
async fn with_a_tenant_set_only_that_tenants_rows_are_visible_or_writable() {
    let app = spawn_app().await;
    let (acme, globex) = two_tenants(&app).await;
    let globex_before = app.fingerprint(globex.id).await;
    let mut runtime = app.connect_as_runtime_role().await;
    let tx = runtime.transaction().await.unwrap();
    tx.execute(crate::helpers::BIND_TENANT, &[&acme.id])
        .await
        .unwrap();

    let visible: Vec<Uuid> = tx
        .query("select tenant_id from notes", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(visible, [acme.id]);
    let users: Vec<Uuid> = tx
        .query("select tenant_id from users", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(users, [acme.id]);

    // Reaching for globex's rows by id changes nothing.
    let updated = tx
        .execute(
            "update notes set content = 'pwned' where tenant_id = $1",
            &[&globex.id],
        )
        .await
        .unwrap();
    let deleted = tx
        .execute("delete from users where tenant_id = $1", &[&globex.id])
        .await
        .unwrap();
    assert_eq!((updated, deleted), (0, 0));
    tx.commit().await.unwrap();
    assert_eq!(app.fingerprint(globex.id).await, globex_before);
}

#[tokio::test]
async fn writing_another_tenants_id_is_rejected_by_with_check() {
    let app = spawn_app().await;
    let (acme, globex) = two_tenants(&app).await;
    let globex_before = app.fingerprint(globex.id).await;
    let mut runtime = app.connect_as_runtime_role().await;

    let attempts = [
        (
            &*format!(
                "insert into notes (tenant_id, id, user_id, content) values ($1, gen_random_uuid(), '{}', 'planted')",
                acme.owner_id
            ),
            "insert a row carrying globex's tenant_id",
        ),
        (
            "update notes set tenant_id = $1",
            "move acme's note into globex",
        ),
        (
            "update users set tenant_id = $1",
            "move acme's user into globex",
        ),
    ];
    // An insert is refused by WITH CHECK on both engines; a move by WITH
    // CHECK on PostgreSQL, and before that by Citus, which never changes a
    // row's distribution column.
    let refusal = |sql: &str| {
        if sql.starts_with("update") {
            crate::backend::MOVE_REFUSAL
        } else {
            SqlState::INSUFFICIENT_PRIVILEGE
        }
    };
    for (sql, what) in attempts {
        let tx = runtime.transaction().await.unwrap();
        tx.execute(crate::helpers::BIND_TENANT, &[&acme.id])
            .await
            .unwrap();
        let error = tx.execute(sql, &[&globex.id]).await.expect_err(what);
        assert_eq!(sqlstate(&error), refusal(sql), "{what}: {error}");
    }
    assert_eq!(app.fingerprint(globex.id).await, globex_before);
}

#[tokio::test]
async fn the_runtime_role_cannot_disable_drop_or_bypass_the_policies() {
    let app = spawn_app().await;
    let (acme, globex) = two_tenants(&app).await;
    let before = (
        app.fingerprint(acme.id).await,
        app.fingerprint(globex.id).await,
    );
    let runtime = app.connect_as_runtime_role().await;

    for sql in [
        "alter table notes disable row level security",
        "alter table notes no force row level security",
        "drop policy tenant_isolation on notes",
        "create policy open_door on notes using (true)",
        "truncate notes",
        "truncate users cascade",
        "select * from tenants",
        "insert into tenants (id, slug, name) values (gen_random_uuid(), 'rogue', 'Rogue')",
        "select * from tenant_domains",
        "delete from tenant_domains",
        "create table stash (tenant_id uuid)",
        "set role tenantry_registry",
    ] {
        let result = runtime.batch_execute(sql).await;
        let error = result.expect_err(sql);
        assert_eq!(
            sqlstate(&error),
            SqlState::INSUFFICIENT_PRIVILEGE,
            "{sql}: {error}"
        );
    }
    // row_security = off does not bypass anything: it turns the query into an error.
    runtime
        .batch_execute("set row_security = off")
        .await
        .unwrap();
    let error = runtime
        .query("select * from notes", &[])
        .await
        .expect_err("row_security=off must not bypass RLS");
    assert_eq!(sqlstate(&error), SqlState::INSUFFICIENT_PRIVILEGE);

    assert_eq!(
        (
            app.fingerprint(acme.id).await,
            app.fingerprint(globex.id).await
        ),
        before
    );
}

#[tokio::test]
async fn tenant_lookup_functions_answer_only_the_exact_question() {
    let app = spawn_app().await;
    let (acme, globex) = two_tenants(&app).await;
    let runtime = app.connect_as_runtime_role().await;

    let by_domain = runtime
        .query("select id from tenant_by_domain('notes.acme.io')", &[])
        .await
        .unwrap();
    assert_eq!(
        by_domain
            .iter()
            .map(|r| r.get::<_, Uuid>(0))
            .collect::<Vec<_>>(),
        [acme.id]
    );
    let by_slug = runtime
        .query("select id from tenant_by_slug('globex')", &[])
        .await
        .unwrap();
    assert_eq!(
        by_slug
            .iter()
            .map(|r| r.get::<_, Uuid>(0))
            .collect::<Vec<_>>(),
        [globex.id]
    );
    for pattern in ["%", "notes.acme.%", "", "NOTES.ACME.IO"] {
        let rows = runtime
            .query("select id from tenant_by_domain($1)", &[&pattern])
            .await
            .unwrap();
        assert!(rows.is_empty(), "{pattern:?} must not match");
    }
    assert!(
        runtime
            .query("select id from tenant_by_slug('%')", &[])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn sign_up_only_runs_inside_a_transaction_bound_to_the_new_tenant() {
    let app = spawn_app().await;
    let (acme, _) = two_tenants(&app).await;
    let mut runtime = app.connect_as_runtime_role().await;
    let new_id = Uuid::now_v7();

    let unbound = runtime
        .execute(
            "select * from signup_tenant($1, 'rogue', 'Rogue', gen_random_uuid(), 'owner', 'o@rogue.test', 'x', 'anonymous', null,
                                         array[gen_random_uuid(), gen_random_uuid(), gen_random_uuid()])",
            &[&new_id],
        )
        .await;
    assert_eq!(
        sqlstate(&unbound.expect_err("no tenant bound")),
        SqlState::INSUFFICIENT_PRIVILEGE
    );

    let tx = runtime.transaction().await.unwrap();
    tx.execute(crate::helpers::BIND_TENANT, &[&acme.id])
        .await
        .unwrap();
    let other = tx
        .execute(
            "select * from signup_tenant($1, 'rogue', 'Rogue', gen_random_uuid(), 'owner', 'o@rogue.test', 'x', 'anonymous', null,
                                         array[gen_random_uuid(), gen_random_uuid(), gen_random_uuid()])",
            &[&new_id],
        )
        .await;
    assert_eq!(
        sqlstate(&other.expect_err("bound to acme, not the new id")),
        SqlState::INSUFFICIENT_PRIVILEGE
    );
    drop(tx);

    let rogue = app
        .admin
        .query_opt("select 1 from tenants where slug = 'rogue'", &[])
        .await
        .unwrap();
    assert!(rogue.is_none());
}

#[tokio::test]
async fn a_pooled_connection_does_not_carry_a_tenant_into_the_next_checkout() {
    let app = spawn_app().await;
    let (acme, _) = two_tenants(&app).await;
    let db = single_connection_db(&app);
    let tenant = tenant_handle(&unlimited(), &acme, "free");

    let seen = db
        .transaction(tenant.visitor(), async |tx| {
            Ok(tx.query("select id from notes", &[]).await?.len())
        })
        .await
        .unwrap();
    assert_eq!(seen, 1);

    let client = db.pool().get().await.unwrap();
    let setting: Option<String> = client
        .query_one("select current_setting('app.tenant_id', true)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        setting.as_deref(),
        Some(""),
        "the tenant must not outlive the transaction"
    );
    assert_eq!(count(&client, "notes").await, 0);
    assert_transaction_closed(&client).await;
}

#[tokio::test]
async fn a_cancelled_tenant_transaction_leaves_a_clean_connection() {
    let app = spawn_app().await;
    let (acme, _) = two_tenants(&app).await;
    let db = single_connection_db(&app);
    let tenant = tenant_handle(&unlimited(), &acme, "free");

    let slow = db.transaction(tenant.visitor(), async |tx| {
        tx.query("select pg_sleep(30)", &[]).await?;
        Ok(())
    });
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), slow)
            .await
            .is_err(),
        "should time out"
    );
    // The abandoned statement is cancelled on the server at once (a COMMIT
    // may be queued behind a last statement; cancelling turns it into a
    // ROLLBACK), not left to run its 30 s.
    let waited = std::time::Instant::now();
    loop {
        let running: i64 = app
            .admin
            .query_one("select count(*) from pg_stat_activity where datname = current_database() and query = 'select pg_sleep(30)' and state = 'active'", &[])
            .await
            .unwrap()
            .get(0);
        if running == 0 {
            break;
        }
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(5),
            "the abandoned pg_sleep is still running"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // ... and the next checkout does not wait for it: the abandoned
    // connection was closed, not returned, so the checkout is a new one.
    let waited = std::time::Instant::now();

    let client = db.pool().get().await.unwrap();
    assert!(
        waited.elapsed() < std::time::Duration::from_secs(3),
        "checkout took {:?}",
        waited.elapsed()
    );
    let setting: Option<String> = client
        .query_one("select current_setting('app.tenant_id', true)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        setting.as_deref().is_none_or(str::is_empty),
        "no tenant on the next checkout: {setting:?}"
    );
    assert_eq!(count(&client, "notes").await, 0);
    assert_transaction_closed(&client).await;
}

#[tokio::test]
async fn a_failed_tenant_transaction_does_not_poison_the_pool() {
    let app = spawn_app().await;
    let (acme, _) = two_tenants(&app).await;
    let db = single_connection_db(&app);
    let tenant = tenant_handle(&unlimited(), &acme, "free");

    let failed = db
        .transaction(tenant.visitor(), async |tx| {
            // A unique violation aborts the transaction server-side.
            tx.execute("insert into users (tenant_id, id, username, email, password_hash) select tenant_id, id, username, email, password_hash from users", &[])
                .await?;
            Ok(())
        })
        .await;
    assert!(failed.is_err());

    let seen = db
        .transaction(tenant.visitor(), async |tx| {
            Ok(tx.query("select id from notes", &[]).await?.len())
        })
        .await;
    assert_eq!(
        seen.unwrap(),
        1,
        "the next transaction on the same connection works"
    );
}

/// A `Db` of the runtime role with a single connection, so every checkout
/// reuses the connection the previous one used.
fn single_connection_db(app: &TestApp) -> tenantry::db::Db {
    let mut settings = crate::helpers::test_settings(app.cluster, &app.dbname).database;
    settings.pool_size = 1;
    tenantry::db::Db::connect(&settings).unwrap()
}

/// Two statements in one open transaction share a transaction id; in
/// autocommit they do not.
async fn assert_transaction_closed(client: &Client) {
    let first: i64 = client
        .query_one("select txid_current()", &[])
        .await
        .unwrap()
        .get(0);
    let second: i64 = client
        .query_one("select txid_current()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(
        first, second,
        "a transaction was left open on the pooled connection"
    );
}

#[tokio::test]
async fn options_in_the_database_url_are_kept() {
    let app = spawn_app().await;
    let mut settings = crate::helpers::test_settings(app.cluster, &app.dbname).database;
    let url = format!(
        "{}?options=-c%20lock_timeout%3D1234",
        app.cluster.url_for("tenantry_app", &app.dbname)
    );
    settings.url = url.into();
    let db = tenantry::db::Db::connect(&settings).unwrap();
    let client = db.pool().get().await.unwrap();
    let lock_timeout: String = client
        .query_one("show lock_timeout", &[])
        .await
        .unwrap()
        .get(0);
    let statement_timeout: String = client
        .query_one("show statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    let idle: String = client
        .query_one("show idle_in_transaction_session_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        (
            lock_timeout.as_str(),
            statement_timeout.as_str(),
            idle.as_str()
        ),
        ("1234ms", "5s", "10s")
    );
}

#[tokio::test]
async fn with_tenant_binds_tenant_statement_timeout_and_quotas_inside_one_transaction() {
    let app = spawn_app().await;
    let (acme, _) = two_tenants(&app).await;
    let db = single_connection_db(&app);
    let mut limits = unlimited();
    limits.document = tenantry::domain::LimitsDocument::parse(
        r#"{"plans": {"pro": {"statement_timeout_ms": 4321, "max_users": 7, "max_notes": null}}}"#,
    )
    .unwrap();
    let tenant = tenant_handle(&limits, &acme, "pro");

    let (settings, first, second) = db
        .transaction(tenant.visitor(), async |tx| {
            let row = tx
                .query_one(
                    "select current_setting('app.tenant_id'), current_setting('statement_timeout'),
                            current_setting('app.max_users'), current_setting('app.max_notes'), txid_current()",
                    &[],
                )
                .await?;
            let again: i64 = tx.query_one("select txid_current()", &[]).await?.get(0);
            let settings: [String; 4] = [row.get(0), row.get(1), row.get(2), row.get(3)];
            Ok((settings, row.get::<_, i64>(4), again))
        })
        .await
        .unwrap();
    assert_eq!(
        settings,
        [
            acme.id.to_string(),
            "4321ms".to_owned(),
            "7".to_owned(),
            String::new()
        ],
        "the tenant, its plan's statement timeout and its quotas ('' is unlimited) apply to the transaction"
    );
    assert_eq!(
        first, second,
        "everything ran in one transaction, after the tenant was set"
    );
}

#[tokio::test]
async fn an_upsert_on_another_tenants_natural_key_is_a_fresh_insert() {
    let app = spawn_app().await;
    let (acme, globex) = two_tenants(&app).await;
    let globex_before = app.fingerprint(globex.id).await;
    let mut runtime = app.connect_as_runtime_role().await;
    let tx = runtime.transaction().await.unwrap();
    tx.execute(crate::helpers::BIND_TENANT, &[&acme.id])
        .await
        .unwrap();
    // globex's owner is called globex-owner; acme claims the same name with an upsert.
    let inserted = tx
        .execute(
            "insert into users (tenant_id, id, username, email, password_hash)
             values ($1, gen_random_uuid(), 'globex-owner', 'owner@globex.test', 'x')
             on conflict (tenant_id, lower(username)) do nothing",
            &[&acme.id],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(inserted, 1, "no conflict across tenants: a new row in acme");
    assert_eq!(
        app.fingerprint(globex.id).await,
        globex_before,
        "globex's row untouched"
    );
    assert_eq!(app.count("users", acme.id).await, 2);
}

/// Runs `sql` as the runtime role in a transaction bound to `tenant` (as a
/// stolen runtime credential would), and returns the SQLSTATE it failed with.
async fn refused_inside_the_tenant(app: &TestApp, tenant: &TestTenant, sql: &str) -> SqlState {
    let mut runtime = app.connect_as_runtime_role().await;
    let tx = runtime.transaction().await.unwrap();
    tx.execute(crate::helpers::BIND_TENANT, &[&tenant.id])
        .await
        .unwrap();
    let error = tx.batch_execute(sql).await.expect_err(sql);
    sqlstate(&error)
}

#[tokio::test]
async fn bound_to_its_own_tenant_the_runtime_role_still_cannot_bend_its_rules() {
    let app = spawn_app().await;
    let (acme, globex) = two_tenants(&app).await;
    app.register(&acme.host, "acme-member").await;
    app.create_note(&acme, "a note").await;
    let before = (
        app.full_fingerprint(acme.id).await,
        app.full_fingerprint(globex.id).await,
    );
    let owner = acme.id.to_string();
    let member = Uuid::now_v7();
    let cases: [(&str, String); 8] = [
        // Lift its quota for good by rewriting its counter (to a value the
        // CHECK would allow).
        (
            "set a usage counter",
            "update usage_counters set used = 0".to_owned(),
        ),
        (
            "upsert a usage counter",
            format!(
                "insert into usage_counters (tenant_id, resource, used) values ('{owner}', 'notes', 0)
                 on conflict (tenant_id, resource) do update set used = 0"
            ),
        ),
        // ... or from a temporary trigger of its own, where the guard would
        // see a trigger depth of 2.
        (
            "create a temporary table",
            "create temporary table stash (x int)".to_owned(),
        ),
        // Promote a member to owner, or make one: owners come from onboarding.
        (
            "promote a user",
            format!("update users set role = 'owner' where tenant_id = '{owner}'"),
        ),
        (
            "create an owner",
            format!(
                "insert into users (tenant_id, id, username, email, password_hash, role)
                 values ('{owner}', '{member}', 'mallory', 'm@acme.test', 'x', 'owner')"
            ),
        ),
        // Write an event that claims an operator did it.
        (
            "claim to be an operator",
            format!(
                "insert into audit_events (tenant_id, id, actor_kind, action)
                 values ('{owner}', gen_random_uuid(), 'admin', 'tenant.suspended')"
            ),
        ),
        // Rewrite the trail.
        (
            "rewrite the trail",
            "update audit_events set action = 'nothing.happened'".to_owned(),
        ),
        // Read the registry beyond the one host it resolves.
        ("list the tenants", "select slug from tenants".to_owned()),
    ];
    for (what, sql) in cases {
        let state = refused_inside_the_tenant(&app, &acme, &sql).await;
        assert_eq!(state, SqlState::INSUFFICIENT_PRIVILEGE, "{what}");
    }
    assert_eq!(
        app.full_fingerprint(acme.id).await,
        before.0,
        "acme unchanged"
    );
    // What it may do still works: its own rows, counted by the trigger.
    let note = app.create_note(&acme, "another note").await;
    assert_ne!(note, uuid::Uuid::nil());
    let counted: i64 = app
        .admin
        .query_one(
            "select used from usage_counters where tenant_id = $1 and resource = 'notes'",
            &[&acme.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(counted, app.count("notes", acme.id).await);
    assert_eq!(
        app.full_fingerprint(globex.id).await,
        before.1,
        "globex untouched"
    );
}

#[tokio::test]
async fn the_runtime_roles_limits_each_catch_a_planted_defect() {
    let app = spawn_app().await;
    let (acme, _) = two_tenants(&app).await;
    // Each rule, taken away as a careless migration would: the write it
    // stopped goes through.
    let plants = [
        (
            "drop trigger usage_counters_written_by_the_trigger_only on usage_counters",
            "update usage_counters set used = 0",
        ),
        (
            "grant update on users to tenantry_app",
            "update users set role = 'owner'",
        ),
        (
            "drop trigger users_registered_as_members_only on users",
            "insert into users (tenant_id, id, username, email, password_hash, role)
             values (current_setting('app.tenant_id')::uuid, '00000000-0000-7000-8000-000000000002',
                     'mallory', 'm@acme.test', 'x', 'owner')",
        ),
        (
            "drop trigger audit_events_never_in_an_operators_name on audit_events",
            "insert into audit_events (tenant_id, id, actor_kind, action)
             values (current_setting('app.tenant_id')::uuid, '00000000-0000-7000-8000-000000000001', 'admin', 'tenant.suspended')",
        ),
    ];
    for (plant, sql) in plants {
        app.plant(&[plant]).await;
        let mut runtime = app.connect_as_runtime_role().await;
        let tx = runtime.transaction().await.unwrap();
        tx.execute(crate::helpers::BIND_TENANT, &[&acme.id])
            .await
            .unwrap();
        tx.batch_execute(sql)
            .await
            .unwrap_or_else(|error| panic!("with {plant:?}, {sql:?} should go through: {error}"));
    }
}

/// BEGIN, `bind_request`, an insert of a note into acme and COMMIT, sent
/// together in one round trip as the service sends them; answers the
/// binding's SQLSTATE (if it refused) and whether COMMIT reported success.
async fn pipelined_write(
    client: &Client,
    acme: &TestTenant,
    tenant: Uuid,
    user: Option<Uuid>,
    requirement: &str,
) -> Option<String> {
    let note = Uuid::now_v7();
    let bind_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&tenant, &user, &requirement];
    let insert_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&acme.id, &note, &acme.owner_id];
    // Prepared first, as the service's statements are: an unprepared one
    // would go out as Parse, wait for its answer, and fall behind COMMIT.
    let bind = client
        .prepare("select * from bind_request($1, 5000, null, null, $2, $3)")
        .await
        .unwrap();
    let insert = client
        .prepare("insert into notes (tenant_id, id, user_id, content) values ($1, $2, $3, 'behind a verdict')")
        .await
        .unwrap();
    let (begun, bound, inserted, committed) = tokio::join!(
        biased;
        client.batch_execute("begin"),
        client.query_one(&bind, &bind_params),
        client.execute(&insert, &insert_params),
        client.batch_execute("commit"),
    );
    begun.unwrap();
    committed.unwrap();
    match bound {
        Ok(_) => {
            inserted.unwrap_or_else(|error| panic!("{requirement} on {tenant}: {error}"));
            None
        }
        Err(error) => {
            assert!(
                inserted.is_err(),
                "{requirement}: the insert ran after a refusal"
            );
            Some(sqlstate(&error).code().to_owned())
        }
    }
}

#[tokio::test]
async fn a_refused_binding_aborts_the_transaction_so_a_commit_sent_behind_it_rolls_back() {
    let app = spawn_app().await;
    let (acme, globex) = two_tenants(&app).await;
    let (member, _) = app.register(&acme.host, "bob").await;
    app.admin
        .execute(
            "update tenants set status = 'suspended' where id = $1",
            &[&globex.id],
        )
        .await
        .unwrap();
    let client = app.connect_as_runtime_role().await;
    let notes_of_acme = || app.count("notes", acme.id);
    let before = notes_of_acme().await;

    for (tenant, user, requirement, refusal) in [
        (Uuid::new_v4(), None, "active", "TB404"),
        (globex.id, None, "active", "TB403"),
        (acme.id, Some(Uuid::new_v4()), "user", "TB401"),
        (acme.id, Some(member), "owner", "TB402"),
        (acme.id, None, "new", "TB409"),
        (acme.id, None, "everything", "TB500"),
    ] {
        let refused = pipelined_write(&client, &acme, tenant, user, requirement).await;
        assert_eq!(refused.as_deref(), Some(refusal), "{requirement}");
        assert_eq!(
            notes_of_acme().await,
            before,
            "{requirement}: nothing committed"
        );
    }
    // The control: the same pipeline with a binding that holds commits.
    for (user, requirement) in [
        (None, "active"),
        (Some(acme.owner_id), "owner"),
        (Some(member), "user"),
    ] {
        assert_eq!(
            pipelined_write(&client, &acme, acme.id, user, requirement).await,
            None
        );
    }
    assert_eq!(notes_of_acme().await, before + 3);
}
