//! Release rings at the edge (docs/ROLLOUT.md): an operator moves a tenant
//! to a ring, exports Terraform's `tenants` variable, and the file carries
//! the ring the load balancer routes the tenant's hosts by (tests/infra.rs
//! checks what Terraform makes of it).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};
use crate::operations::{tempdir, tenantry};

/// Runs `tenantry tenants export-tfvars --output PATH` and reads the file.
async fn export(app: &TestApp, path: &std::path::Path) -> Value {
    let outcome = tenantry(
        app,
        &[
            "tenants",
            "export-tfvars",
            "--output",
            path.to_str().unwrap(),
        ],
    )
    .await;
    outcome.json();
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn a_tenant_moved_to_canary_is_exported_in_canary_and_back_in_stable() {
    // Arrange: two tenants, both in the default ring; acme has limits in
    // the file already.
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    app.onboard("globex").await;
    app.add_domain("notes.acme.io", acme.id).await;
    let dir = tempdir("rings");
    let path = dir.join("tenants.auto.tfvars.json");
    std::fs::write(
        &path,
        r#"{"tenants": {"acme": {"plan": "free", "limits": {"burst": 5}}}}"#,
    )
    .unwrap();

    // Act: the admin API moves acme to canary, then the export.
    let moved = app
        .admin_call(
            Method::PATCH,
            "/admin/tenants/acme",
            Some(json!({"ring": "canary"})),
        )
        .await;
    assert_eq!(moved.status(), StatusCode::OK);
    let file = export(&app, &path).await;

    // Assert: acme (with its domain and limits) in canary, globex stable.
    assert_eq!(
        file["tenants"]["acme"],
        json!({"plan": "free", "ring": "canary", "custom_domains": ["notes.acme.io"],
               "limits": {"burst": 5}})
    );
    assert_eq!(file["tenants"]["globex"]["ring"], "stable");

    // Act: the CLI moves it back (the rollback of a tenant), export again.
    let back = tenantry(&app, &["tenants", "ring", "acme", "stable"]).await;
    assert!(back.success, "{}", back.stderr);
    let file = export(&app, &path).await;

    // Assert
    assert_eq!(file["tenants"]["acme"]["ring"], "stable");
    assert_eq!(file["tenants"]["acme"]["limits"], json!({"burst": 5}));
    assert_eq!(file["tenants"]["globex"]["ring"], "stable");
}
