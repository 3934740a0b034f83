//! The test harness: every test gets its own world.
//!
//! Each test gets a database of its own (made by `backend.rs`: a clone of a
//! migrated template on plain PostgreSQL; a database on every node of a
//! Citus cluster, distributed as docs/CITUS.md says, in the Citus target)
//! and runs the real server on a random loopback port, connected as the
//! runtime role, as in production. `TestApp::admin` is a superuser connection to the
//! test's database: it bypasses RLS, for arranging state the API cannot
//! create and for checking what really is in the tables.

#![allow(
    dead_code,
    reason = "each test module uses a different part of the harness"
)]

use std::{net::SocketAddr, time::Duration};

use reqwest::{Method, RequestBuilder, Response, StatusCode, header::HOST};
use secrecy::SecretString;
use serde_json::{Value, json};
use tenantry::{
    admin::Admin,
    config::{
        AdminApiSettings, CitusMode, ClientLimitSettings, DatabaseSettings, HashingSettings,
        JwtSettings, LimitSettings, OpsSettings, Settings, SignupMode,
    },
    db::local,
    domain::{LimitsDocument, TenantId, TenantRecord, TenantStatus},
    limits::Limits,
    startup::Application,
    tenant::Tenant,
};
use tokio::sync::OnceCell;

use crate::{
    backend::{self, Backend},
    dns::TestDns,
};
use tokio_postgres::{Client, Config, NoTls};
use uuid::Uuid;

/// Tenants live under this base domain in tests.
pub const BASE_DOMAIN: &str = "example.test";
/// Password of the owner and runtime roles in the test cluster.
pub const ROLE_PASSWORD: &str = "tenantry-test-password";
/// Signing keys: `current` signs, `previous` still verifies.
pub const JWT_CURRENT: (&str, &str) = ("current", "test-signing-key-current-0123456789abcdef");
pub const JWT_PREVIOUS: (&str, &str) = ("previous", "test-signing-key-previous-0123456789abcde");
pub const JWT_ISSUER: &str = "tenantry-test";
/// The bearer token of the `/admin` API in tests.
pub const ADMIN_API_TOKEN: &str = "test-admin-api-token-0123456789abcdef";
/// Binds the current transaction to the tenant `$1` (a uuid) the way the
/// service does, for tests that act as a database role directly:
/// `bind_tenant` sets it with `SET LOCAL`, which (unlike `set_config`) also
/// reaches the workers of a Citus cluster.
pub const BIND_TENANT: &str = "select * from bind_tenant($1, 5000, null, null, null)";

/// Where the test databases live (see `backend.rs`).
pub struct TestCluster {
    superuser: Config,
    backend: Backend,
}

static CLUSTER: OnceCell<TestCluster> = OnceCell::const_new();

/// The shared cluster, set up once per test process.
pub async fn cluster() -> &'static TestCluster {
    CLUSTER
        .get_or_init(|| async { TestCluster::set_up().await })
        .await
}

impl TestCluster {
    async fn set_up() -> Self {
        Self::set_up_on(backend::superuser_config().await).await
    }

    /// The harness on the server `superuser` reaches: the owner role, the
    /// migrated template. Tests that stop their server build one of their own.
    pub async fn set_up_on(superuser: Config) -> Self {
        let admin = connect(&superuser).await;
        // Serialise set-up across test processes of the same cluster.
        admin
            .execute("select pg_advisory_lock(7357)", &[])
            .await
            .expect("set-up lock");
        local::ensure_owner_role(&admin).await.expect("owner role");
        admin
            .batch_execute(&format!(
                "alter role {} password '{ROLE_PASSWORD}'",
                local::OWNER_ROLE
            ))
            .await
            .expect("owner password");
        let backend = Backend::set_up(&superuser, &admin).await;
        admin
            .execute("select pg_advisory_unlock(7357)", &[])
            .await
            .expect("set-up unlock");
        Self { superuser, backend }
    }

    /// A connection config for `user` (with the test password) on `dbname`.
    pub fn config_for(&self, user: &str, dbname: &str) -> Config {
        let mut config = self.superuser.clone();
        config.user(user).password(ROLE_PASSWORD).dbname(dbname);
        config
    }

    /// The superuser config on `dbname`.
    pub fn superuser_on(&self, dbname: &str) -> Config {
        let mut config = self.superuser.clone();
        config.dbname(dbname);
        config
    }

    /// A URL for `user` on `dbname`, as `DATABASE_URL` takes it.
    pub fn url_for(&self, user: &str, dbname: &str) -> String {
        let host = match self.superuser.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = self.superuser.get_ports().first().copied().unwrap_or(5432);
        format!("postgres://{user}:{ROLE_PASSWORD}@{host}:{port}/{dbname}")
    }

    /// A new, empty database owned by the owner role (not migrated).
    pub async fn empty_database(&'static self) -> TestDatabase {
        self.new_database(false).await
    }

    /// A new database, migrated as the owner role (and, on Citus,
    /// distributed as docs/CITUS.md says).
    pub async fn migrated_database(&'static self) -> TestDatabase {
        self.new_database(true).await
    }

    async fn new_database(&'static self, migrated: bool) -> TestDatabase {
        let created = unix_seconds();
        let name = format!(
            "test_{created}_{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        self.backend
            .new_database(&self.superuser, &name, migrated)
            .await;
        TestDatabase {
            name,
            cluster: self,
        }
    }

    /// Where the databases live (the engine-specific part of the harness).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The superuser's connection config (on the default database).
    pub fn superuser(&self) -> &Config {
        &self.superuser
    }

    /// Lets the backend reclaim `dbname` once its test is done with it.
    pub fn release_database(&self, dbname: &str) {
        self.backend.release_database(&self.superuser, dbname);
    }
}

pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A test's own database, dropped when the test is done with it (see
/// `release_database`). Reads as its name.
pub struct TestDatabase {
    name: String,
    cluster: &'static TestCluster,
}

impl std::ops::Deref for TestDatabase {
    type Target = str;

    fn deref(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        self.cluster.release_database(&self.name);
    }
}

/// Connects and drives the connection in the background.
pub async fn connect(config: &Config) -> Client {
    let (client, connection) = config.connect(NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Settings for a test server on `dbname`: port 0, runtime role, small pool.
pub fn test_settings(cluster: &TestCluster, dbname: &str) -> Settings {
    Settings {
        host: [127, 0, 0, 1].into(),
        port: 0,
        base_domain: BASE_DOMAIN.parse().expect("base domain"),
        database: DatabaseSettings {
            url: SecretString::from(cluster.url_for("tenantry_app", dbname)),
            pool_size: 4,
            pool_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            tenant_queue_timeout: Duration::from_secs(1),
        },
        jwt: JwtSettings {
            keys: vec![
                (JWT_CURRENT.0.to_owned(), SecretString::from(JWT_CURRENT.1)),
                (
                    JWT_PREVIOUS.0.to_owned(),
                    SecretString::from(JWT_PREVIOUS.1),
                ),
            ],
            issuer: JWT_ISSUER.to_owned(),
            ttl: Duration::from_secs(3600),
        },
        signup: SignupMode::Open,
        password_hashing: HashingSettings {
            concurrency: 4,
            queue_timeout: Duration::from_secs(10),
            max_queue: 1_000,
        },
        request_timeout: Duration::from_secs(15),
        header_read_timeout: Duration::from_secs(10),
        max_body_bytes: 128 * 1024,
        tenant_cache_ttl: Duration::ZERO,
        shutdown_timeout: Duration::from_secs(5),
        citus: CitusMode::Auto,
        release: Default::default(),
        admin_api: Some(AdminApiSettings {
            token: SecretString::from(ADMIN_API_TOKEN),
            ops: ops_settings(cluster, dbname, None),
        }),
        limits: unlimited(),
    }
}

/// Limits no ordinary test reaches: rates, quotas and the per-client limit
/// out of the way, a plan share as large as the test pool, and the usual
/// statement timeout. Tests of the limits set their own.
pub fn unlimited() -> LimitSettings {
    let every_plan = r#"{"requests_per_second": 1000000, "burst": 1000000, "max_db_connections": 4,
        "statement_timeout_ms": 5000, "max_users": null, "max_notes": null}"#;
    let document = format!(
        r#"{{"plans": {{"free": {every_plan}, "pro": {every_plan}, "enterprise": {every_plan}}}}}"#
    );
    LimitSettings {
        document: LimitsDocument::parse(&document).expect("limits document"),
        instances: 1,
        client: ClientLimitSettings {
            per_minute: 1_000_000,
            burst: 1_000_000,
            trusted_proxy_hops: 0,
        },
        sweep_interval: Duration::from_secs(60),
    }
}

/// `tenant` as a tenant transaction takes it, under the limits of `settings`.
pub fn tenant_handle(settings: &LimitSettings, tenant: &TestTenant, plan: &str) -> Tenant {
    let record = TenantRecord {
        id: TenantId::from_uuid(tenant.id),
        slug: tenant.slug.clone(),
        name: format!("{} Inc.", tenant.slug),
        plan: tenantry::domain::Plan::parse(plan).expect("a plan"),
        status: TenantStatus::Active,
        ring: tenantry::domain::Ring::default(),
        api_version: tenantry::domain::ApiVersion::NEWEST,
    };
    let policy = Limits::new(settings).policy(&record);
    Tenant::new(record, policy)
}

/// The operator settings for `dbname`: the admin and analytics roles, and
/// `dns` as the resolver (none: a closed loopback port, so nothing resolves).
pub fn ops_settings(cluster: &TestCluster, dbname: &str, dns: Option<SocketAddr>) -> OpsSettings {
    let role = |user: &str| DatabaseSettings {
        url: SecretString::from(cluster.url_for(user, dbname)),
        pool_size: 2,
        pool_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(30),
        tenant_queue_timeout: Duration::from_secs(1),
    };
    OpsSettings {
        admin_database: role("tenantry_admin"),
        analytics_database: Some(role("tenantry_analytics")),
        dns_resolver: Some(dns.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9)))),
    }
}

/// A running server on its own database.
pub struct TestApp {
    /// The admin token when the app runs with `SIGNUP_MODE=admin`.
    pub admin_token: Option<String>,
    pub port: u16,
    pub dbname: TestDatabase,
    pub cluster: &'static TestCluster,
    /// Superuser on this test's database: bypasses RLS.
    pub admin: Client,
    pub http: reqwest::Client,
    /// The DNS server the app verifies custom domains against.
    pub dns: TestDns,
}

/// A tenant created through the API, with its owner signed in.
#[derive(Clone)]
pub struct TestTenant {
    pub id: Uuid,
    pub slug: String,
    pub host: String,
    pub owner_id: Uuid,
    pub token: String,
}

/// Starts a server with the default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server after `customize` adjusted its settings.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on(cluster().await, customize).await
}

/// Starts a server on a database of `cluster` after `customize` adjusted its settings.
pub async fn spawn_app_on(
    cluster: &'static TestCluster,
    customize: impl FnOnce(&mut Settings),
) -> TestApp {
    let dbname = cluster.migrated_database().await;
    let dns = TestDns::start().await;
    let mut settings = test_settings(cluster, &dbname);
    if let Some(api) = &mut settings.admin_api {
        api.ops.dns_resolver = Some(dns.address);
    }
    customize(&mut settings);
    let admin_token = match &settings.signup {
        SignupMode::AdminOnly { admin_token } => {
            Some(secrecy::ExposeSecret::expose_secret(admin_token).to_owned())
        }
        SignupMode::Open => None,
    };
    let app = Application::build(&settings)
        .await
        .expect("the test server starts");
    let port = app.port();
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        admin_token,
        port,
        admin: connect(&cluster.superuser_on(&dbname)).await,
        dbname,
        cluster,
        dns,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
    }
}

impl TestApp {
    /// The operator operations on this test's database, as the CLI gets them.
    pub fn ops(&self) -> Admin {
        Admin::connect(
            &ops_settings(self.cluster, &self.dbname, Some(self.dns.address)),
            BASE_DOMAIN.parse().expect("base domain"),
        )
        .expect("admin pools")
    }

    /// `method path` on the apex with the admin API token.
    pub async fn admin_call(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        self.call(method, BASE_DOMAIN, path, ADMIN_API_TOKEN, body)
            .await
    }

    /// A request to `path` with the given Host header.
    pub fn request(&self, method: Method, host: &str, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("http://127.0.0.1:{}{path}", self.port))
            .header(HOST, host)
    }

    pub fn get(&self, host: &str, path: &str) -> RequestBuilder {
        self.request(Method::GET, host, path)
    }

    pub fn post(&self, host: &str, path: &str) -> RequestBuilder {
        self.request(Method::POST, host, path)
    }

    pub fn patch(&self, host: &str, path: &str) -> RequestBuilder {
        self.request(Method::PATCH, host, path)
    }

    pub fn delete(&self, host: &str, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, host, path)
    }

    /// The host of tenant `slug`.
    pub fn host(slug: &str) -> String {
        format!("{slug}.{BASE_DOMAIN}")
    }

    /// Onboards `slug` with owner `{slug}-owner` and signs the owner in.
    pub async fn onboard(&self, slug: &str) -> TestTenant {
        let mut request = self.post(BASE_DOMAIN, "/api/tenants");
        if let Some(token) = &self.admin_token {
            request = request.bearer_auth(token);
        }
        let response = request
            .json(&json!({
                "slug": slug,
                "name": format!("{slug} Inc."),
                "owner": { "username": format!("{slug}-owner"), "email": format!("owner@{slug}.test"), "password": "owner-password" }
            }))
            .send()
            .await
            .expect("onboarding request");
        assert_eq!(response.status(), StatusCode::CREATED, "onboarding {slug}");
        let body: Value = response.json().await.expect("json");
        let host = Self::host(slug);
        let token = self
            .login(&host, &format!("{slug}-owner"), "owner-password")
            .await;
        TestTenant {
            id: body["tenant"]["id"]
                .as_str()
                .expect("tenant id")
                .parse()
                .expect("uuid"),
            slug: slug.to_owned(),
            owner_id: body["owner"]["id"]
                .as_str()
                .expect("owner id")
                .parse()
                .expect("uuid"),
            host,
            token,
        }
    }

    /// Registers a member on `host` and returns (user id, token).
    pub async fn register(&self, host: &str, username: &str) -> (Uuid, String) {
        let response = self
            .post(host, "/api/register")
            .json(&json!({ "username": username, "email": format!("{username}@mail.test"), "password": "member-password" }))
            .send()
            .await
            .expect("register request");
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "registering {username} on {host}"
        );
        let body: Value = response.json().await.expect("json");
        let id = body["id"].as_str().expect("id").parse().expect("uuid");
        (id, self.login(host, username, "member-password").await)
    }

    /// Signs in and returns the bearer token.
    pub async fn login(&self, host: &str, username: &str, password: &str) -> String {
        let response = self
            .post(host, "/api/login")
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .expect("login request");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "login of {username} on {host}"
        );
        let body: Value = response.json().await.expect("json");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Creates a note and returns its id.
    pub async fn create_note(&self, tenant: &TestTenant, content: &str) -> Uuid {
        let response = self
            .post(&tenant.host, "/api/notes")
            .bearer_auth(&tenant.token)
            .json(&json!({ "content": content }))
            .send()
            .await
            .expect("create note");
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        body["id"].as_str().expect("id").parse().expect("uuid")
    }

    /// A digest of every row `tenant` has in every tenant table, read as the
    /// superuser: equal digests before and after mean nothing changed.
    pub async fn fingerprint(&self, tenant: Uuid) -> String {
        let row = self
            .admin
            .query_one(
                "select (select coalesce(md5(string_agg(u::text, '|' order by u.id)), '-') from users u where u.tenant_id = $1)
                     || (select coalesce(md5(string_agg(n::text, '|' order by n.id)), '-') from notes n where n.tenant_id = $1)
                     || (select coalesce(md5(string_agg(d::text, '|' order by d.domain)), '-') from tenant_domains d where d.tenant_id = $1)
                     || (select coalesce(md5(string_agg(c::text, '|' order by c.resource)), '-') from usage_counters c where c.tenant_id = $1)
                     || (select coalesce(md5(t::text), '-') from tenants t where t.id = $1)",
                &[&tenant],
            )
            .await
            .expect("fingerprint");
        row.get(0)
    }

    /// [`TestApp::fingerprint`] plus the tenant's audit trail: equal digests
    /// mean nothing at all of the tenant changed, not even its trail.
    pub async fn full_fingerprint(&self, tenant: Uuid) -> String {
        format!(
            "{}{}",
            self.fingerprint(tenant).await,
            self.trail_digest(tenant, "").await
        )
    }

    /// A digest of `tenant`'s audit events, leaving out events whose action
    /// is `except`.
    pub async fn trail_digest(&self, tenant: Uuid, except: &str) -> String {
        self.admin
            .query_one(
                "select coalesce(md5(string_agg(a::text, '|' order by a.id)), '-') from audit_events a
                 where a.tenant_id = $1 and a.action <> $2",
                &[&tenant, &except],
            )
            .await
            .expect("trail digest")
            .get(0)
    }

    /// Rows `tenant` has in every table, registry included (superuser).
    pub async fn rows_of(&self, tenant: Uuid) -> i64 {
        let mut total = 0;
        for table in tenantry::admin::purge::PURGE_ORDER {
            total += self.count(table, tenant).await;
        }
        total + self.count_where("tenants", "id", tenant).await
    }

    /// Rows of `table` whose `column` is `value` (superuser).
    pub async fn count_where(&self, table: &str, column: &str, value: Uuid) -> i64 {
        self.admin
            .query_one(
                &format!("select count(*) from {table} where {column} = $1"),
                &[&value],
            )
            .await
            .expect("count")
            .get(0)
    }

    /// Rows of `table` belonging to `tenant`, counted as the superuser.
    /// The stored content of `note`, read over a new superuser connection
    /// (so it works after a test has cut the old ones).
    pub async fn note_content(&self, note: Uuid) -> String {
        let fresh = connect(&self.cluster.superuser_on(&self.dbname)).await;
        fresh
            .query_one("select content from notes where id = $1", &[&note])
            .await
            .expect("the note exists")
            .get(0)
    }

    /// How many of `contents` are stored as notes, over a new connection.
    pub async fn notes_stored_among(&self, contents: &[String]) -> usize {
        let fresh = connect(&self.cluster.superuser_on(&self.dbname)).await;
        let stored: i64 = fresh
            .query_one(
                "select count(*) from notes where content = any($1)",
                &[&contents],
            )
            .await
            .expect("count notes")
            .get(0);
        usize::try_from(stored).expect("a count")
    }

    pub async fn count(&self, table: &str, tenant: Uuid) -> i64 {
        self.admin
            .query_one(
                &format!("select count(*) from {table} where tenant_id = $1"),
                &[&tenant],
            )
            .await
            .expect("count")
            .get(0)
    }

    /// A direct connection as the runtime role, outside the service.
    pub async fn connect_as_runtime_role(&self) -> Client {
        connect(&self.cluster.config_for("tenantry_app", &self.dbname)).await
    }
}

/// Asserts the status and the JSON error shape, and returns the error code.
pub async fn expect_error(response: Response, status: StatusCode) -> String {
    let actual = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "error content type was {content_type:?}: {text}"
    );
    assert_no_internals(&text);
    let body: Value = serde_json::from_str(&text).expect("error body is JSON");
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object in {text}"));
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message in {text}"
    );
    error["code"].as_str().expect("error code").to_owned()
}

/// Fails if a response body shows database or Rust internals.
pub fn assert_no_internals(text: &str) {
    let lower = text.to_lowercase();
    for leak in [
        "postgres",
        "sql",
        "constraint",
        "violates",
        "relation",
        "panicked",
        "tenantry::",
        "struct ",
        "stack",
        "rls",
    ] {
        assert!(
            !lower.contains(leak),
            "response leaks internals ({leak}): {text}"
        );
    }
}

impl TestApp {
    /// Sends `request` verbatim over a fresh TCP connection (for requests an
    /// HTTP client refuses to build) and returns the status and body. The
    /// request should carry `Connection: close`.
    pub async fn raw(&self, request: &[u8]) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        stream.write_all(request).await.expect("write");
        let mut response = Vec::new();
        // The server may answer (e.g. 413) and close before reading everything we send.
        let _ =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}

impl TestApp {
    /// `method path` on `host` as the holder of `token`, with an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        host: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.request(method, host, path).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    /// GET `path` on `host` as the holder of `token`, expecting 200 and JSON.
    pub async fn get_json(&self, host: &str, path: &str, token: &str) -> Value {
        let response = self.call(Method::GET, host, path, token, None).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path} on {host}");
        response.json().await.expect("json body")
    }
}

/// The contents of a page of notes, in order.
pub fn note_contents(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("a page of notes")
        .iter()
        .map(|note| note["content"].as_str().expect("content").to_owned())
        .collect()
}

impl TestApp {
    /// Plants a defect (a failing trigger, say) as the superuser, one
    /// statement at a time: Citus propagates each DDL statement to the
    /// workers on its own, and refuses triggers on its tables unless
    /// `citus.enable_unsafe_triggers` is on (plain PostgreSQL ignores it).
    pub async fn plant(&self, statements: &[&str]) {
        self.admin
            .batch_execute("set citus.enable_unsafe_triggers = on")
            .await
            .expect("allow triggers on Citus tables");
        for statement in statements {
            self.admin
                .batch_execute(statement)
                .await
                .unwrap_or_else(|error| panic!("plant {statement}: {error}"));
        }
    }

    /// Registers `domain` for `tenant` directly in the registry, already verified.
    pub async fn add_domain(&self, domain: &str, tenant: Uuid) {
        self.admin
            .execute(
                "insert into tenant_domains (domain, tenant_id, verification_token, verified_at) values ($1, $2, 'test', now())",
                &[&domain, &tenant],
            )
            .await
            .expect("insert tenant_domains");
    }
}

/// A superuser session holding a row lock on a note, so a request that
/// updates that note is provably in flight until [`RowLock::release`].
pub struct RowLock(Client);

impl TestApp {
    /// Locks `note` (`select .. for update` in an open transaction).
    pub async fn lock_note(&self, note: Uuid) -> RowLock {
        let session = connect(&self.cluster.superuser_on(&self.dbname)).await;
        // With its tenant named, so that Citus can route the lock to the
        // note's shard.
        let tenant: Uuid = session
            .query_one("select tenant_id from notes where id = $1", &[&note])
            .await
            .expect("the note's tenant")
            .get(0);
        session
            .batch_execute(&format!(
                "begin; select 1 from notes where tenant_id = '{tenant}' and id = '{note}' for update"
            ))
            .await
            .expect("lock the note");
        RowLock(session)
    }

    /// Waits until a runtime-role session of this database waits on a lock.
    pub async fn wait_until_blocked_on_a_lock(&self) {
        self.wait_until_blocked_on_locks(1).await;
    }

    /// Waits until `sessions` runtime-role sessions of this database wait on a lock.
    pub async fn wait_until_blocked_on_locks(&self, sessions: i64) {
        for _ in 0..200 {
            let waiting: i64 = self
                .admin
                .query_one(
                    &format!(
                        "select count(*) from {}
                         where datname = current_database() and usename = 'tenantry_app' and wait_event_type = 'Lock'",
                        backend::ACTIVITY
                    ),
                    &[],
                )
                .await
                .expect("pg_stat_activity")
                .get(0);
            if waiting >= sessions {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("fewer than {sessions} requests of the service ever waited on a lock");
    }
}

impl RowLock {
    /// Commits the locking transaction.
    pub async fn release(self) {
        self.0
            .batch_execute("commit")
            .await
            .expect("release the lock");
    }
}

/// A correctly signed access token for `user` of `tenant` that expired a
/// minute ago (beyond the 5 s leeway).
pub fn expired_token(tenant: Uuid, user: Uuid) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": user, "tenant": tenant, "role": "member", "iat": now - 3600, "exp": now - 60,
        "iss": JWT_ISSUER, "aud": format!("tenant:{tenant}"), "jti": Uuid::new_v4(),
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(JWT_CURRENT.0.to_owned());
    header.typ = Some("at+jwt".to_owned());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_CURRENT.1.as_bytes()),
    )
    .expect("sign")
}
