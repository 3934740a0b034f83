//! Tenants and releases: API versions pinned per tenant and overridden per
//! request, deprecation headers, the `/v1` paths, a document per version,
//! and release rings set by operators.

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use tenantry::{
    admin::tenants::TenantChange,
    domain::{ApiDeprecation, ApiVersion, Ring},
};

use crate::helpers::{BASE_DOMAIN, TestApp, TestTenant, expect_error, spawn_app, spawn_app_with};

const FIRST: &str = "2026-11-22";
const SECOND: &str = "2026-12-07";

async fn pin(app: &TestApp, slug: &str, version: ApiVersion) {
    let change = TenantChange {
        api_version: Some(version),
        ..TenantChange::default()
    };
    app.ops().update_tenant(slug, change, None).await.unwrap();
}

/// `GET path` as the tenant's owner, with `Api-Version: version` if given.
async fn list(
    app: &TestApp,
    tenant: &TestTenant,
    path: &str,
    version: Option<&str>,
) -> (HeaderMap, Value) {
    let mut request = app.get(&tenant.host, path).bearer_auth(&tenant.token);
    if let Some(version) = version {
        request = request.header("api-version", version);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    let headers = response.headers().clone();
    (headers, response.json().await.unwrap())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|value| value.to_str().unwrap())
}

/// The keys of a JSON object, sorted.
fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn each_tenant_is_answered_in_its_pinned_version_by_the_same_binary() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    app.create_note(&acme, "acme's note").await;
    app.create_note(&globex, "globex's note").await;
    pin(&app, "acme", ApiVersion::V2026_11_22).await;

    let (headers, page) = list(&app, &acme, "/v1/notes", None).await;
    assert_eq!(header(&headers, "api-version"), Some(FIRST));
    assert_eq!(keys(&page), ["next_cursor", "notes"]);
    assert_eq!(page["notes"][0]["content"], "acme's note");

    let (headers, page) = list(&app, &globex, "/v1/notes", None).await;
    assert_eq!(header(&headers, "api-version"), Some(SECOND));
    assert_eq!(keys(&page), ["data", "has_more", "next_cursor"]);
    assert_eq!(page["data"][0]["content"], "globex's note");
    assert_eq!(page["has_more"], false);

    // The paths the API had before are the same v1 routes.
    assert_eq!(
        list(&app, &acme, "/api/notes", None).await.1,
        list(&app, &acme, "/v1/notes", None).await.1
    );
    // No deprecation configured: no deprecation headers.
    assert_eq!(header(&headers, "deprecation"), None);
    assert_eq!(header(&headers, "sunset"), None);
}

#[tokio::test]
async fn the_api_version_header_overrides_the_pin_for_one_request() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    for _ in 0..3 {
        app.create_note(&acme, "a note").await;
    }
    let (headers, page) = list(&app, &acme, "/v1/notes?limit=2", Some(FIRST)).await;
    assert_eq!(header(&headers, "api-version"), Some(FIRST));
    assert_eq!(keys(&page), ["next_cursor", "notes"]);
    assert_eq!(page["notes"].as_array().unwrap().len(), 2);

    let (headers, page) = list(&app, &acme, "/v1/notes?limit=2", None).await;
    assert_eq!(header(&headers, "api-version"), Some(SECOND));
    assert_eq!(page["has_more"], true);
    assert!(page["next_cursor"].is_string());

    // And the other way: a tenant pinned to the first asks for the second.
    pin(&app, "acme", ApiVersion::V2026_11_22).await;
    let (headers, page) = list(&app, &acme, "/api/notes", Some(SECOND)).await;
    assert_eq!(header(&headers, "api-version"), Some(SECOND));
    assert_eq!(keys(&page), ["data", "has_more", "next_cursor"]);
}

#[tokio::test]
async fn an_unknown_api_version_is_422_naming_the_header_and_nothing_is_done() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    for bad in ["2026-12-08", "v2", "latest", ""] {
        let response = app
            .post(&acme.host, "/v1/notes")
            .bearer_auth(&acme.token)
            .header("api-version", bad)
            .json(&json!({"content": "must not be stored"}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers().get("api-version").unwrap(),
            SECOND,
            "{bad:?}: the answer is in the newest version"
        );
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad:?}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "validation_failed", "{bad:?}");
        assert_eq!(body["error"]["field"], "Api-Version", "{bad:?}");
    }
    assert_eq!(app.count("notes", acme.id).await, 0);
}

#[tokio::test]
async fn a_deprecated_version_answers_with_deprecation_and_sunset_headers() {
    let app = spawn_app_with(|settings| {
        settings.release.deprecations =
            vec![ApiDeprecation::parse("2026-11-22:2026-12-07:2027-06-30").unwrap()];
    })
    .await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    pin(&app, "acme", ApiVersion::V2026_11_22).await;

    let (headers, _) = list(&app, &acme, "/v1/notes", None).await;
    assert_eq!(header(&headers, "api-version"), Some(FIRST));
    assert_eq!(header(&headers, "deprecation"), Some("@1796601600"));
    assert_eq!(
        header(&headers, "sunset"),
        Some("Wed, 30 Jun 2027 00:00:00 GMT")
    );

    // Errors in the deprecated version carry them too.
    let missing = app
        .get(&acme.host, &format!("/v1/notes/{}", uuid::Uuid::now_v7()))
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.headers().get("deprecation").unwrap(), "@1796601600");

    // The newest version is not deprecated, whether pinned or asked for.
    let (headers, _) = list(&app, &globex, "/v1/notes", None).await;
    assert_eq!(header(&headers, "deprecation"), None);
    assert_eq!(header(&headers, "sunset"), None);
    let (headers, _) = list(&app, &acme, "/v1/notes", Some(SECOND)).await;
    assert_eq!(header(&headers, "api-version"), Some(SECOND));
    assert_eq!(header(&headers, "deprecation"), None);
    // And a client on the newest asking for the old one is told.
    let (headers, _) = list(&app, &globex, "/v1/notes", Some(FIRST)).await;
    assert_eq!(
        header(&headers, "sunset"),
        Some("Wed, 30 Jun 2027 00:00:00 GMT")
    );
}

#[tokio::test]
async fn every_route_answers_under_v1() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let created = app
        .post(&acme.host, "/v1/notes")
        .bearer_auth(&acme.token)
        .json(&json!({"content": "through v1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/v1/notes/"), "{location}");
    let note = app.get_json(&acme.host, &location, &acme.token).await;
    assert_eq!(note["content"], "through v1");
    let me = app.get_json(&acme.host, "/v1/me", &acme.token).await;
    assert_eq!(me["user"]["username"], "acme-owner");
    assert_eq!(me["tenant"]["api_version"], SECOND);

    let tenants = app
        .call(
            Method::GET,
            BASE_DOMAIN,
            "/v1/admin/tenants",
            crate::helpers::ADMIN_API_TOKEN,
            None,
        )
        .await;
    assert_eq!(tenants.status(), StatusCode::OK);
    let tenants: Value = tenants.json().await.unwrap();
    assert_eq!(tenants["tenants"][0]["slug"], "acme", "{tenants}");

    for missing in ["/v1", "/v1/", "/v10/notes", "/v1/nothing-here"] {
        let response = app
            .get(&acme.host, missing)
            .bearer_auth(&acme.token)
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test]
async fn each_version_has_its_own_openapi_document() {
    let app = spawn_app().await;
    let document = |path: &'static str, version: Option<&'static str>| {
        let app = &app;
        async move {
            let mut request = app.get("any-host.invalid", path);
            if let Some(version) = version {
                request = request.header("api-version", version);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let served = header(response.headers(), "api-version")
                .unwrap()
                .to_owned();
            (served, response.json::<Value>().await.unwrap())
        }
    };
    let page_schema = |document: &Value| {
        document["paths"]["/v1/notes"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (served, first) = document("/openapi/2026-11-22", None).await;
    assert_eq!(
        (served.as_str(), first["info"]["version"].as_str()),
        (FIRST, Some(FIRST))
    );
    assert_eq!(page_schema(&first), "#/components/schemas/NotePage");
    assert_eq!(
        keys(&first["components"]["schemas"]["NotePage"]["properties"]),
        ["next_cursor", "notes"]
    );
    assert!(first["components"]["schemas"].get("NoteList").is_none());

    let (served, second) = document("/openapi/2026-12-07", None).await;
    assert_eq!(
        (served.as_str(), second["info"]["version"].as_str()),
        (SECOND, Some(SECOND))
    );
    assert_eq!(page_schema(&second), "#/components/schemas/NoteList");
    assert!(second["components"]["schemas"].get("NotePage").is_none());

    // /openapi.json is the newest's, or the one the request names.
    assert_eq!(document("/openapi.json", None).await.1, second);
    assert_eq!(document("/openapi.json", Some(FIRST)).await.1, first);
    assert_eq!(document("/v1/openapi.json", Some(FIRST)).await.1, first);

    let unknown = app
        .get("any-host.invalid", "/openapi/2020-01-01")
        .send()
        .await
        .unwrap();
    expect_error(unknown, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn sign_up_pins_the_newest_version_which_is_the_registrys_default() {
    let app = spawn_app().await;
    let response = app
        .post(BASE_DOMAIN, "/v1/tenants")
        .json(&json!({
            "slug": "acme", "name": "Acme",
            "owner": {"username": "owner", "email": "owner@acme.test", "password": "owner-password"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["tenant"]["api_version"], SECOND);
    assert_eq!(body["tenant"]["ring"], "stable");
    let stored: (String, String) = {
        let row = app
            .admin
            .query_one(
                "select api_version, ring from tenants where slug = 'acme'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(
        stored,
        (ApiVersion::NEWEST.to_string(), "stable".to_owned())
    );
    let default: String = app
        .admin
        .query_one(
            "select column_default from information_schema.columns
             where table_name = 'tenants' and column_name = 'api_version'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(default, format!("'{}'::text", ApiVersion::NEWEST));
}

#[tokio::test]
async fn operators_move_a_tenant_between_rings_and_versions_and_each_move_is_in_its_trail() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    let before = app.full_fingerprint(globex.id).await;

    let moved = app
        .admin_call(
            Method::PATCH,
            "/v1/admin/tenants/acme",
            Some(json!({"ring": "canary", "api_version": FIRST})),
        )
        .await;
    assert_eq!(moved.status(), StatusCode::OK);
    let moved: Value = moved.json().await.unwrap();
    assert_eq!(
        (moved["ring"].as_str(), moved["api_version"].as_str()),
        (Some("canary"), Some(FIRST))
    );

    // The service sees both on the next request.
    let (headers, _) = list(&app, &acme, "/v1/notes", None).await;
    assert_eq!(header(&headers, "api-version"), Some(FIRST));

    let shown = app.ops().show_tenant("acme").await.unwrap();
    assert_eq!(
        (shown.tenant.ring, shown.tenant.api_version),
        (Ring::Canary, ApiVersion::V2026_11_22)
    );
    let trail: Vec<(String, Value)> = app
        .admin
        .query(
            "select action, details from audit_events where tenant_id = $1
             and action in ('tenant.ring_changed', 'tenant.api_version_changed') order by action",
            &[&acme.id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        trail,
        [
            (
                "tenant.api_version_changed".to_owned(),
                json!({"from": SECOND, "to": FIRST})
            ),
            (
                "tenant.ring_changed".to_owned(),
                json!({"from": "stable", "to": "canary"})
            ),
        ]
    );

    // Setting what is already there changes nothing and records nothing.
    let events = app.count_where("audit_events", "tenant_id", acme.id).await;
    let again = app
        .admin_call(
            Method::PATCH,
            "/v1/admin/tenants/acme",
            Some(json!({"ring": "canary"})),
        )
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(
        app.count_where("audit_events", "tenant_id", acme.id).await,
        events
    );

    for (body, field) in [
        (json!({"ring": "beta"}), "ring"),
        (json!({"api_version": "2026-12-08"}), "api_version"),
        (
            json!({"ring": "early", "api_version": "soon"}),
            "api_version",
        ),
    ] {
        let refused = app
            .admin_call(Method::PATCH, "/v1/admin/tenants/acme", Some(body.clone()))
            .await;
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let error: Value = refused.json().await.unwrap();
        assert_eq!(error["error"]["field"], field, "{body}: {error}");
    }
    let shown = app.ops().show_tenant("acme").await.unwrap();
    assert_eq!(
        shown.tenant.ring,
        Ring::Canary,
        "a refused change changes nothing"
    );
    assert_eq!(
        app.full_fingerprint(globex.id).await,
        before,
        "another tenant is untouched"
    );
}

#[tokio::test]
async fn a_notes_size_follows_its_content_on_every_write_whichever_revision_writes_it() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let note = app.create_note(&acme, "héllo").await;
    assert_eq!(size_of(&app, note).await, Some(6), "é is two bytes");
    let updated = app
        .patch(&acme.host, &format!("/v1/notes/{note}"))
        .bearer_auth(&acme.token)
        .json(&json!({"content": "日本"}))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(size_of(&app, note).await, Some(6));
    // A revision from before the column, whose statements do not name it.
    app.admin
        .execute("update notes set content = 'abc' where id = $1", &[&note])
        .await
        .unwrap();
    assert_eq!(size_of(&app, note).await, Some(3));
    // And nobody can store a size that is not the content's.
    app.admin
        .execute("update notes set size_bytes = 99 where id = $1", &[&note])
        .await
        .unwrap();
    assert_eq!(size_of(&app, note).await, Some(3));
}

async fn size_of(app: &TestApp, note: uuid::Uuid) -> Option<i32> {
    app.admin
        .query_one("select size_bytes from notes where id = $1", &[&note])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_tenants_ring_and_version_travel_with_its_export_and_an_older_export_keeps_the_first_version()
 {
    use sha2::{Digest, Sha256};

    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    app.create_note(&acme, "kept").await;
    let ops = app.ops();
    let change = TenantChange {
        ring: Some(Ring::Canary),
        api_version: Some(ApiVersion::V2026_11_22),
        status: Some(tenantry::domain::TenantStatus::Suspended),
        ..TenantChange::default()
    };
    ops.update_tenant("acme", change, None).await.unwrap();
    let file = crate::transfer::export(&ops, "acme").await;
    let mut lines: Vec<Value> = file
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect();
    assert_eq!(lines[0]["tenant"]["ring"], "canary");
    assert_eq!(lines[0]["tenant"]["api_version"], FIRST);

    ops.purge_tenant("acme", 5_000, None).await.unwrap();
    let summary = crate::transfer::import(&ops, &file, None).await.unwrap();
    assert_eq!(
        (summary.tenant.ring, summary.tenant.api_version),
        (Ring::Canary, ApiVersion::V2026_11_22)
    );

    // The same file as a release before rings and versions wrote it: no
    // `ring`, no `api_version`, schema version 7, its checksum recomputed.
    let header = lines[0].as_object_mut().unwrap();
    header["schema_version"] = json!(7);
    let tenant = header["tenant"].as_object_mut().unwrap();
    tenant.remove("ring");
    tenant.remove("api_version");
    let mut older = Vec::new();
    for line in &lines[..lines.len() - 1] {
        older.extend(serde_json::to_vec(line).unwrap());
        older.push(b'\n');
    }
    let digest: String = Sha256::digest(&older)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let mut end = lines.last().unwrap().clone();
    end["end"]["sha256"] = json!(digest);
    older.extend(serde_json::to_vec(&end).unwrap());
    older.push(b'\n');

    ops.purge_tenant("acme", 5_000, None).await.unwrap();
    let summary = crate::transfer::import(&ops, &older, None).await.unwrap();
    assert_eq!(
        (summary.tenant.ring, summary.tenant.api_version),
        (Ring::Stable, ApiVersion::V2026_11_22),
        "served the first version before it was exported, and still"
    );
    assert_eq!(summary.rows["notes"], 1);
}
