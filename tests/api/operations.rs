//! The operator commands as an operator runs them: the real `tenantry`
//! binary against the test's database, next to the running service. These
//! are the operations guide (docs/OPERATIONS.md), step by step.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::helpers::{BASE_DOMAIN, TestApp, expect_error, note_contents, spawn_app};

const BINARY: &str = env!("CARGO_BIN_EXE_tenantry");

/// What a command did.
pub(crate) struct Outcome {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Outcome {
    /// The JSON the command printed, after checking it succeeded.
    pub(crate) fn json(&self) -> Value {
        assert!(self.success, "the command failed: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// `tenantry <args>` against `dbname`, as docs/OPERATIONS.md has an operator run it,
/// with `stdin` on its standard input. Asynchronous: the DNS responder and
/// the service run on the test's runtime meanwhile.
async fn tenantry_on(app: &TestApp, dbname: &str, args: &[&str], stdin: &str) -> Outcome {
    let mut child = tokio::process::Command::new(BINARY)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "ADMIN_DATABASE_URL",
            app.cluster.url_for("tenantry_admin", dbname),
        )
        .env(
            "ANALYTICS_DATABASE_URL",
            app.cluster.url_for("tenantry_analytics", dbname),
        )
        .env("BASE_DOMAIN", BASE_DOMAIN)
        .env("DNS_RESOLVER", app.dns.address.to_string())
        .env("PASSWORD_HASH_CONCURRENCY", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tenantry");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .await
        .unwrap();
    let output = child.wait_with_output().await.unwrap();
    Outcome {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `tenantry <args>` against the test's database.
pub(crate) async fn tenantry(app: &TestApp, args: &[&str]) -> Outcome {
    tenantry_on(app, &app.dbname, args, "").await
}

#[tokio::test]
async fn a_tenant_from_onboarding_to_offboarding_with_the_cli() {
    let app = spawn_app().await;
    let neighbour = app.onboard("globex").await;
    let dir = tempdir("lifecycle");
    let create = [
        "tenants",
        "create",
        "acme",
        "--name",
        "Acme Corp",
        "--plan",
        "pro",
        "--owner-username",
        "wile",
        "--owner-email",
        "wile@acme.test",
        "--domain",
        "notes.acme.io",
        "--idempotency-key",
        "acme-1",
    ];

    // Onboarding; the password comes from stdin; a retry is answered the same.
    let created = tenantry_on(&app, &app.dbname, &create, "road-runner-password\n")
        .await
        .json();
    assert_eq!(created["tenant"]["slug"], "acme");
    assert_eq!(created["replayed"], false);
    let retried = tenantry_on(&app, &app.dbname, &create, "road-runner-password\n")
        .await
        .json();
    assert_eq!(retried["replayed"], true);
    assert_eq!(retried["tenant"]["id"], created["tenant"]["id"]);
    let missing = tenantry_on(
        &app,
        &app.dbname,
        &[
            "tenants",
            "create",
            "x-co",
            "--name",
            "X",
            "--owner-username",
            "xx",
            "--owner-email",
            "x@x.test",
        ],
        "",
    )
    .await;
    assert!(
        !missing.success && missing.stderr.contains("password"),
        "{}",
        missing.stderr
    );
    let host = TestApp::host("acme");
    let token = app.login(&host, "wile", "road-runner-password").await;
    let response = app
        .post(&host, "/api/notes")
        .bearer_auth(&token)
        .json(&serde_json::json!({"content": "anvil"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    // Custom domain: publish the printed record, verify, and it routes.
    let domains = tenantry(&app, &["domains", "list", "acme"]).await.json();
    let record = &domains[0]["verification"];
    app.dns.publish_txt(
        record["name"].as_str().unwrap(),
        record["value"].as_str().unwrap(),
    );
    let verified = tenantry(&app, &["domains", "verify", "acme", "notes.acme.io"])
        .await
        .json();
    assert_eq!(verified["verified"], true);
    let page = app.get_json("notes.acme.io", "/api/notes", &token).await;
    assert_eq!(note_contents(&page), ["anvil"]);
    let added = tenantry(&app, &["domains", "add", "acme", "www.acme.io"])
        .await
        .json();
    assert_eq!(added["verified"], false);
    assert!(
        tenantry(&app, &["domains", "remove", "acme", "www.acme.io"])
            .await
            .success
    );

    // Listing, showing, plans.
    let listed = tenantry(&app, &["tenants", "list"]).await.json();
    let slugs: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["acme", "globex"]);
    assert_eq!(
        tenantry(&app, &["tenants", "plan", "acme", "enterprise"])
            .await
            .json()["plan"],
        "enterprise"
    );
    let shown = tenantry(&app, &["tenants", "show", "acme"]).await.json();
    assert_eq!(
        (
            shown["counts"]["users"].as_i64(),
            shown["counts"]["notes"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let stats = tenantry(&app, &["stats"]).await.json();
    assert_eq!(stats["tenants"].as_array().unwrap().len(), 2);

    // Suspension applies to the token already issued.
    assert_eq!(
        tenantry(&app, &["tenants", "suspend", "acme"]).await.json()["status"],
        "suspended"
    );
    let response = app
        .get(&host, "/api/notes")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(response, StatusCode::FORBIDDEN).await,
        "tenant_suspended"
    );

    // Export (gzipped by its name), purge, import: the same tenant again.
    let backup = dir.join("acme.ndjson.gz");
    let exported = tenantry(
        &app,
        &["tenants", "export", "acme", "-o", backup.to_str().unwrap()],
    )
    .await
    .json();
    assert_eq!(exported["rows"]["notes"], 1);
    assert_eq!(std::fs::read(&backup).unwrap()[..2], [0x1f, 0x8b], "gzip");
    let unconfirmed = tenantry(&app, &["tenants", "purge", "acme"]).await;
    assert!(
        !unconfirmed.success && unconfirmed.stderr.contains("--yes"),
        "{}",
        unconfirmed.stderr
    );
    let before = app
        .fingerprint(created["tenant"]["id"].as_str().unwrap().parse().unwrap())
        .await;
    let purged = tenantry(&app, &["tenants", "purge", "acme", "--yes"])
        .await
        .json();
    assert_eq!(purged["deleted"]["notes"], 1);
    let imported = tenantry(&app, &["tenants", "import", backup.to_str().unwrap()])
        .await
        .json();
    assert_eq!(imported["tenant"]["slug"], "acme");
    let id = imported["tenant"]["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(app.fingerprint(id).await, before);
    tenantry(&app, &["tenants", "resume", "acme"]).await.json();
    let token = app.login(&host, "wile", "road-runner-password").await;
    assert_eq!(
        note_contents(&app.get_json(&host, "/api/notes", &token).await),
        ["anvil"]
    );

    // Offboarding in one command: suspend, export, purge.
    let last = dir.join("acme-final.ndjson");
    let deleted = tenantry(
        &app,
        &[
            "tenants",
            "delete",
            "acme",
            "--export",
            last.to_str().unwrap(),
            "--yes",
        ],
    )
    .await
    .json();
    assert_eq!(deleted["tenant"]["slug"], "acme");
    assert!(
        std::fs::read_to_string(&last).unwrap().starts_with("{\""),
        "a plain NDJSON export"
    );
    assert_eq!(app.rows_of(id).await, 0);
    let missing = tenantry(&app, &["tenants", "show", "acme"]).await;
    assert!(
        !missing.success && missing.stderr.contains("tenant not found"),
        "{}",
        missing.stderr
    );
    let response = app
        .get(&TestApp::host("globex"), "/api/notes")
        .bearer_auth(&neighbour.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn one_tenant_is_restored_from_a_full_database_backup_without_touching_the_others() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    app.create_note(&acme, "precious").await;
    app.create_note(&globex, "before the backup").await;
    let healthy = app.fingerprint(acme.id).await;

    // Last night's backup of the whole database.
    let dir = tempdir("backup");
    let dump = dir.join("nightly.dump");
    pg_tool(
        &app,
        "pg_dump",
        &[
            "--format=custom",
            "--file",
            dump.to_str().unwrap(),
            &superuser_url(&app, &app.dbname),
        ],
    );

    // Today: acme loses its notes to a bug; globex keeps working.
    app.admin
        .execute("delete from notes where tenant_id = $1", &[&acme.id])
        .await
        .unwrap();
    app.create_note(&globex, "after the backup").await;
    let globex_now = app.full_fingerprint(globex.id).await;

    // 1. Restore the backup into a scratch database.
    let scratch = app.cluster.empty_database().await;
    pg_tool(
        &app,
        "pg_restore",
        &[
            "--exit-on-error",
            "--dbname",
            &superuser_url(&app, &scratch),
            dump.to_str().unwrap(),
        ],
    );
    // 2. Export the tenant from the restored copy.
    let file = dir.join("acme.ndjson.gz");
    tenantry_on(
        &app,
        &scratch,
        &["tenants", "export", "acme", "-o", file.to_str().unwrap()],
        "",
    )
    .await
    .json();
    // 3. In production: suspend, keep a copy of today's state, replace the
    //    tenant's rows with the restored copy (one transaction), resume.
    let today = dir.join("acme-before-restore.ndjson.gz");
    for step in [
        vec!["tenants", "suspend", "acme"],
        vec!["tenants", "export", "acme", "-o", today.to_str().unwrap()],
        vec!["tenants", "import", file.to_str().unwrap(), "--replace"],
        vec!["tenants", "resume", "acme"],
    ] {
        tenantry(&app, &step).await.json();
    }

    assert_eq!(
        app.fingerprint(acme.id).await,
        healthy,
        "acme is as it was at the backup"
    );
    assert_eq!(
        app.full_fingerprint(globex.id).await,
        globex_now,
        "globex keeps today's work"
    );
    let page = app
        .get_json(&globex.host, "/api/notes", &globex.token)
        .await;
    assert_eq!(
        note_contents(&page),
        ["after the backup", "before the backup"]
    );
    let token = app.login(&acme.host, "acme-owner", "owner-password").await;
    assert_eq!(
        note_contents(&app.get_json(&acme.host, "/api/notes", &token).await),
        ["precious"]
    );
}

#[tokio::test]
async fn operator_commands_fail_clearly() {
    let app = spawn_app().await;
    app.onboard("acme").await;
    let cases: [(&[&str], &str); 6] = [
        (&["tenants", "show", "nobody"], "tenant not found"),
        (&["tenants", "plan", "acme", "gold"], "plan must be one of"),
        (
            &["tenants", "import", "/nonexistent/file.ndjson"],
            "could not open /nonexistent/file.ndjson",
        ),
        (&["tenants", "import", "-", "--as", "Bad Slug"], "--as"),
        (
            &["domains", "add", "acme", "acme.example.test"],
            "the service's own",
        ),
        (
            &["tenants", "purge", "acme", "--yes"],
            "suspend the tenant before purging it",
        ),
    ];
    for (args, expected) in cases {
        let outcome = tenantry(&app, args).await;
        assert!(!outcome.success, "{args:?} succeeded");
        assert!(
            outcome.stderr.contains(expected),
            "{args:?}: {}",
            outcome.stderr
        );
        assert!(
            outcome.stdout.is_empty(),
            "{args:?} printed a result: {}",
            outcome.stdout
        );
    }
    // As the owner role (which owns every table), the tools refuse to run.
    let owner = Command::new(BINARY)
        .args(["tenants", "list"])
        .env_clear()
        .env(
            "ADMIN_DATABASE_URL",
            app.cluster.url_for("tenantry_owner", &app.dbname),
        )
        .output()
        .unwrap();
    assert!(!owner.status.success());
    let stderr = String::from_utf8_lossy(&owner.stderr);
    assert!(
        stderr.contains("fails the isolation audit") && stderr.contains("owns"),
        "{stderr}"
    );
    assert!(owner.stdout.is_empty());
    // Usage statistics need the analytics role only.
    let stats = Command::new(BINARY)
        .arg("stats")
        .env_clear()
        .env(
            "ANALYTICS_DATABASE_URL",
            app.cluster.url_for("tenantry_analytics", &app.dbname),
        )
        .output()
        .unwrap();
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    let report: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(report["tenants"][0]["slug"], "acme");
    let unconfigured = Command::new(BINARY)
        .args(["tenants", "list"])
        .env_clear()
        .output()
        .unwrap();
    assert!(!unconfigured.status.success());
    assert!(
        String::from_utf8_lossy(&unconfigured.stderr).contains("ADMIN_DATABASE_URL is required")
    );
}

fn superuser_url(app: &TestApp, dbname: &str) -> String {
    let config = app.cluster.superuser_on(dbname);
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    match config.get_password() {
        Some(password) => format!(
            "postgres://{user}:{}@{host}:{port}/{dbname}",
            String::from_utf8_lossy(password)
        ),
        None => format!("postgres://{user}@{host}:{port}/{dbname}"),
    }
}

/// Runs a PostgreSQL client program from the server's binaries.
fn pg_tool(_app: &TestApp, program: &str, args: &[&str]) {
    let bin = tenantry::db::local::find_bin_dir()
        .expect("PostgreSQL binaries")
        .join(program);
    let output = Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    assert!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A fresh directory under the target dir, removed when the test passes
/// (a failed test's files stay, to be looked at).
pub(crate) fn tempdir(name: &str) -> TempDir {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ops-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

pub(crate) struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[tokio::test]
async fn terraforms_tenant_file_follows_the_registry_and_keeps_its_limits() {
    // Arrange: acme (moved to pro) with a verified and a pending domain,
    // globex on free; a file from an earlier export where acme has limits
    // and a tenant that no longer exists is listed.
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    app.onboard("globex").await;
    app.add_domain("notes.acme.io", acme.id).await;
    assert!(
        tenantry(&app, &["domains", "add", "acme", "pending.acme.io"])
            .await
            .success
    );
    assert!(
        tenantry(&app, &["tenants", "plan", "acme", "pro"])
            .await
            .success
    );
    let dir = tempdir("tfvars");
    let path = dir.join("tenants.auto.tfvars.json");
    std::fs::write(
        &path,
        r#"{"tenants": {"acme": {"plan": "free", "custom_domains": [], "limits": {"requests_per_second": 100, "max_notes": 0}},
                        "initech": {"plan": "pro", "limits": {"burst": 5}}},
            "plan_limits": {"free": {"burst": 30}}}"#,
    )
    .unwrap();

    // Act
    let export = [
        "tenants",
        "export-tfvars",
        "--output",
        path.to_str().unwrap(),
    ];
    let outcome = tenantry(&app, &export).await;

    // Assert: the summary, then the file Terraform reads.
    let summary = outcome.json();
    assert_eq!(summary["tenants"], 2);
    assert_eq!(summary["custom_domains"], 1);
    assert_eq!(summary["added"], serde_json::json!(["globex"]));
    assert_eq!(summary["removed"], serde_json::json!(["initech"]));
    assert!(
        outcome.stderr.contains("removed initech"),
        "{}",
        outcome.stderr
    );
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        file,
        serde_json::json!({
            "tenants": {
                "acme": {"plan": "pro", "ring": "stable", "custom_domains": ["notes.acme.io"],
                         "limits": {"requests_per_second": 100, "max_notes": 0}},
                "globex": {"plan": "free", "ring": "stable", "custom_domains": [], "limits": {}}
            },
            "plan_limits": {"free": {"burst": 30}}
        })
    );

    // A file that is not a tenants file is refused and left as it was.
    std::fs::write(&path, "[1, 2]").unwrap();
    let refused = tenantry(&app, &export).await;
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("not a JSON object"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "[1, 2]");
}
