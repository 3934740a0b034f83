//! Per-tenant export and import: a round trip restores the same tenant
//! exactly, an import beside the original leaves it untouched, and a bad
//! file or a failure half-way imports nothing.

use indicatif::ProgressBar;
use reqwest::StatusCode;
use serde_json::Value;
use tenantry::{
    admin::{
        Admin,
        tenants::TenantChange,
        transfer::{self, ImportTarget},
    },
    domain::{Slug, TenantStatus},
    error::ApiError,
};
use uuid::Uuid;

use crate::helpers::{TestApp, TestTenant, note_contents, spawn_app};

/// A tenant with an owner, a member with two notes, an owner's note, and a
/// verified custom domain.
async fn populated(app: &TestApp, slug: &str) -> TestTenant {
    let tenant = app.onboard(slug).await;
    let (_, member) = app.register(&tenant.host, &format!("{slug}-member")).await;
    for content in ["first", "second"] {
        let response = app
            .call(
                reqwest::Method::POST,
                &tenant.host,
                "/api/notes",
                &member,
                Some(serde_json::json!({"content": content})),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    app.create_note(&tenant, "the owner's note").await;
    app.add_domain(&format!("notes.{slug}.io"), tenant.id).await;
    tenant
}

pub async fn export(ops: &Admin, slug: &str) -> Vec<u8> {
    let mut file = Vec::new();
    ops.export_tenant(slug, &mut file, &ProgressBar::hidden(), None)
        .await
        .expect("export");
    file
}

pub async fn import(
    ops: &Admin,
    file: &[u8],
    as_slug: Option<&str>,
) -> Result<transfer::ImportSummary, ApiError> {
    let slug = as_slug.map(|slug| Slug::parse(slug).unwrap());
    let target = slug.as_ref().map_or(ImportTarget::Same, ImportTarget::As);
    ops.import_tenant(&mut &file[..], target, &ProgressBar::hidden(), None)
        .await
}

async fn set_status(ops: &Admin, slug: &str, status: TenantStatus) {
    ops.update_tenant(
        slug,
        TenantChange {
            status: Some(status),
            ..TenantChange::default()
        },
        None,
    )
    .await
    .expect("status");
}

/// Every row in the database, counted per table (superuser).
async fn all_rows(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in [
        "tenants",
        "tenant_domains",
        "users",
        "notes",
        "audit_events",
    ] {
        counts.push(
            app.admin
                .query_one(&format!("select count(*) from {table}"), &[])
                .await
                .unwrap()
                .get(0),
        );
    }
    counts
}

#[tokio::test]
async fn export_purge_import_gives_back_the_same_tenant() {
    let app = spawn_app().await;
    let acme = populated(&app, "acme").await;
    let globex = populated(&app, "globex").await;
    let neighbour = app.full_fingerprint(globex.id).await;
    let ops = app.ops();
    set_status(&ops, "acme", TenantStatus::Suspended).await;
    let before = app.fingerprint(acme.id).await;

    let file = export(&ops, "acme").await;
    let trail = app.trail_digest(acme.id, "").await;
    let lines: Vec<Value> = file
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines[0]["format"], transfer::FORMAT);
    assert_eq!(lines[0]["version"], transfer::VERSION);
    assert_eq!(lines[0]["tenant"]["slug"], "acme");
    assert_eq!(lines[0]["rows"]["notes"], 3);
    assert!(lines.last().unwrap()["end"]["sha256"].is_string());
    assert!(
        lines.iter().any(|line| line["table"] == "users"
            && line["row"]["password_hash"]
                .as_str()
                .is_some_and(|h| h.starts_with("$argon2id$"))),
        "users travel with their password hashes"
    );

    ops.purge_tenant("acme", 5_000, None).await.expect("purge");
    assert_eq!(app.rows_of(acme.id).await, 0);

    let summary = import(&ops, &file, None).await.expect("import");
    assert_eq!(summary.tenant.id.to_string(), acme.id.to_string());
    assert_eq!(summary.rows["notes"], 3);
    assert_eq!(
        app.fingerprint(acme.id).await,
        before,
        "the same rows, column for column"
    );
    assert_eq!(
        app.trail_digest(acme.id, "tenant.imported").await,
        trail,
        "the trail, including the export"
    );
    assert_eq!(app.full_fingerprint(globex.id).await, neighbour);

    // The same logins work, and see the same notes.
    set_status(&ops, "acme", TenantStatus::Active).await;
    let member = app
        .login(&acme.host, "acme-member", "member-password")
        .await;
    let page = app.get_json(&acme.host, "/api/notes", &member).await;
    assert_eq!(note_contents(&page), ["second", "first"]);
    let owner = app
        .login("notes.acme.io", "acme-owner", "owner-password")
        .await;
    let page = app.get_json("notes.acme.io", "/api/notes", &owner).await;
    assert_eq!(note_contents(&page), ["the owner's note"]);
    let trail = app
        .get_json(&acme.host, "/api/audit?limit=100", &owner)
        .await;
    let actions: Vec<&str> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"tenant.imported") && actions.contains(&"tenant.exported"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn importing_beside_the_original_makes_a_new_tenant_and_touches_nothing_else() {
    let app = spawn_app().await;
    let acme = populated(&app, "acme").await;
    let ops = app.ops();
    let file = export(&ops, "acme").await;
    let original = app.full_fingerprint(acme.id).await;

    // Not over the original.
    let refused = import(&ops, &file, None).await;
    assert!(matches!(refused, Err(ApiError::Conflict(_))), "{refused:?}");
    assert_eq!(app.full_fingerprint(acme.id).await, original);

    let summary = import(&ops, &file, Some("acme-copy"))
        .await
        .expect("import as a copy");
    assert_eq!(summary.skipped_domains, ["notes.acme.io"]);
    let copy: Uuid = summary.tenant.id.to_string().parse().unwrap();
    assert_ne!(copy, acme.id);
    assert_eq!(
        app.full_fingerprint(acme.id).await,
        original,
        "the original is untouched"
    );
    assert_eq!(app.count("users", copy).await, 2);
    assert_eq!(app.count("notes", copy).await, 3);
    assert_eq!(app.count("tenant_domains", copy).await, 0);
    // Each tenant's ids read on their own (a join across two tenants would
    // need a repartition on Citus).
    let mut ids = Vec::new();
    for tenant in [acme.id, copy] {
        let rows = app
            .admin
            .query("select id from users where tenant_id = $1", &[&tenant])
            .await
            .unwrap();
        ids.push(
            rows.iter()
                .map(|row| row.get::<_, Uuid>(0))
                .collect::<Vec<_>>(),
        );
    }
    assert!(ids[1].iter().all(|id| !ids[0].contains(id)), "fresh ids");

    let host = TestApp::host("acme-copy");
    let member = app.login(&host, "acme-member", "member-password").await;
    let page = app.get_json(&host, "/api/notes", &member).await;
    assert_eq!(
        note_contents(&page),
        ["second", "first"],
        "notes still belong to their (remapped) authors"
    );

    // The slug is now taken.
    let again = import(&ops, &file, Some("acme-copy")).await;
    assert!(matches!(again, Err(ApiError::Conflict(_))), "{again:?}");
}

/// `file` with line `index` (0-based) replaced by `line`.
fn with_line(file: &[u8], index: usize, line: &str) -> Vec<u8> {
    let text = String::from_utf8(file.to_vec()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[index] = line.to_owned();
    format!("{}\n", lines.join("\n")).into_bytes()
}

#[tokio::test]
async fn a_damaged_file_imports_nothing_and_says_where() {
    let app = spawn_app().await;
    let acme = populated(&app, "acme").await;
    let globex = populated(&app, "globex").await;
    let ops = app.ops();
    let file = export(&ops, "acme").await;
    set_status(&ops, "acme", TenantStatus::Suspended).await;
    ops.purge_tenant("acme", 5_000, None).await.expect("purge");
    let rows = all_rows(&app).await;
    let neighbour = app.full_fingerprint(globex.id).await;

    let text = String::from_utf8(file.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let middle = lines.len() / 2;
    let edited_note = lines
        .iter()
        .position(|line| {
            line.contains("\"table\":\"notes\"") && line.contains("\"content\":\"first\"")
        })
        .map(|index| with_line(&file, index, &lines[index].replace("first", "FIRST")))
        .unwrap();
    let foreign_row = with_line(
        &file,
        middle,
        &lines[middle].replace(&acme.id.to_string(), &globex.id.to_string()),
    );
    let garbage_at = format!("line {}: not valid JSON", middle + 1);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "cut mid-line",
            file[..file.len() - 20].to_vec(),
            "cut short",
        ),
        (
            "without its end line",
            lines[..lines.len() - 1]
                .join("\n")
                .into_bytes()
                .into_iter()
                .chain(*b"\n")
                .collect(),
            "without its end line",
        ),
        (
            "garbage in the middle",
            with_line(&file, middle, "{not json"),
            &garbage_at,
        ),
        ("an edited note", edited_note, "checksum"),
        ("a row of another tenant", foreign_row, "another tenant"),
        (
            "a newer format",
            with_line(
                &file,
                0,
                &lines[0].replace("\"version\":1", "\"version\":2"),
            ),
            "version 2 is not supported",
        ),
        (
            "not an export",
            b"{\"hello\": 1}\n".to_vec(),
            "not a tenant export",
        ),
        ("empty", Vec::new(), "empty"),
    ];
    for (case, damaged, expected) in cases {
        let error = import(&ops, &damaged, None).await.expect_err(case);
        let ApiError::BadRequest(message) = &error else {
            panic!("{case}: expected a clear file error, got {error:?}");
        };
        assert!(message.contains(expected), "{case}: {message}");
        assert_eq!(all_rows(&app).await, rows, "{case}: something was imported");
    }
    assert_eq!(app.full_fingerprint(globex.id).await, neighbour);

    import(&ops, &file, None)
        .await
        .expect("the intact file still imports");
    assert_eq!(app.count("notes", acme.id).await, 3);
}

#[tokio::test]
async fn a_database_failure_half_way_through_an_import_rolls_all_of_it_back() {
    let app = spawn_app().await;
    let acme = populated(&app, "acme").await;
    let ops = app.ops();
    let file = export(&ops, "acme").await;
    set_status(&ops, "acme", TenantStatus::Suspended).await;
    ops.purge_tenant("acme", 5_000, None).await.expect("purge");
    let rows = all_rows(&app).await;
    // Users are in by the time notes are inserted; the notes insert fails.
    app.plant(&[
        "create function refuse() returns trigger language plpgsql as $$
         begin raise exception 'injected failure'; end $$",
        "create trigger injected before insert on notes for each row execute function refuse()",
    ])
    .await;

    let failed = import(&ops, &file, None).await;
    assert!(failed.is_err());
    assert_eq!(
        all_rows(&app).await,
        rows,
        "nothing of the tenant, not even its registry row"
    );

    app.admin
        .batch_execute("drop trigger injected on notes")
        .await
        .unwrap();
    import(&ops, &file, None).await.expect("import");
    assert_eq!(
        app.rows_of(acme.id).await,
        i64::try_from(file.iter().filter(|b| **b == b'\n').count()).unwrap() - 2 + 1 + 1 + 2,
        "every row of the file (minus header and end), the registry row, the import's own event, \
         and the two usage counters its inserts rebuilt"
    );
    for resource in ["users", "notes"] {
        let counted: i64 = app
            .admin
            .query_one(
                "select used from usage_counters where tenant_id = $1 and resource = $2",
                &[&acme.id, &resource],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(counted, app.count(resource, acme.id).await, "{resource}");
    }
}

/// Imports `file` over its own (suspended) tenant, as `tenants import --replace` does.
async fn replace(ops: &Admin, file: &[u8]) -> Result<transfer::ImportSummary, ApiError> {
    ops.import_tenant(
        &mut &file[..],
        ImportTarget::Replace,
        &ProgressBar::hidden(),
        None,
    )
    .await
}

#[tokio::test]
async fn replacing_a_tenant_keeps_all_it_had_until_the_import_has_succeeded() {
    let app = spawn_app().await;
    let acme = populated(&app, "acme").await;
    let globex = populated(&app, "globex").await;
    let neighbour = app.full_fingerprint(globex.id).await;
    let ops = app.ops();
    // The backup, then a day of work that the restore gives up.
    let backup = export(&ops, "acme").await;
    app.create_note(&acme, "written after the backup").await;
    app.register(&acme.host, "late-user").await;

    // Only a suspended tenant is replaced.
    let active = replace(&ops, &backup).await;
    assert!(matches!(active, Err(ApiError::Conflict(_))), "{active:?}");
    set_status(&ops, "acme", TenantStatus::Suspended).await;
    let today = app.full_fingerprint(acme.id).await;

    // A failure half-way (the users are replaced by then, the notes insert
    // fails): the tenant keeps every row it had, and its status.
    app.plant(&[
        "create function refuse() returns trigger language plpgsql as $$
         begin raise exception 'injected failure'; end $$",
        "create trigger injected before insert on notes for each row execute function refuse()",
    ])
    .await;
    let failed = replace(&ops, &backup).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(
        app.full_fingerprint(acme.id).await,
        today,
        "nothing of acme changed"
    );
    app.admin
        .batch_execute("drop trigger injected on notes")
        .await
        .unwrap();

    let summary = replace(&ops, &backup).await.expect("replace");
    let replaced = summary.replaced.expect("what was replaced");
    assert_eq!((replaced["notes"], replaced["users"]), (4, 3));
    assert_eq!((summary.rows["notes"], summary.rows["users"]), (3, 2));
    assert_eq!(app.count("notes", acme.id).await, 3);
    assert_eq!(app.count("users", acme.id).await, 2);
    assert_eq!(
        app.full_fingerprint(globex.id).await,
        neighbour,
        "globex is untouched"
    );
    // The backup's state, usage counters included, and its logins work.
    for resource in ["users", "notes"] {
        let counted: i64 = app
            .admin
            .query_one(
                "select used from usage_counters where tenant_id = $1 and resource = $2",
                &[&acme.id, &resource],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(counted, app.count(resource, acme.id).await, "{resource}");
    }
    set_status(&ops, "acme", TenantStatus::Active).await;
    let member = app
        .login(&acme.host, "acme-member", "member-password")
        .await;
    let page = app.get_json(&acme.host, "/api/notes", &member).await;
    assert_eq!(note_contents(&page), ["second", "first"]);
}
