//! Noisy neighbours against the real binary: does one tenant's flood, or a
//! flood of logins, slow down everybody else?
//!
//! It starts the release binary as `tenantry dev` in a child process, with a
//! private PostgreSQL cluster in a temporary directory and free ports, and
//! drives it over loopback HTTP:
//!
//! - **Scenario 1, noisy neighbour.** Tenant B (globex) reads one note at a
//!   steady rate, open loop (requests go out on a timer and latency counts
//!   from the scheduled send time, so queueing is included), first alone and
//!   then while tenant A (acme) floods at `BENCH_FLOOD_FACTOR` times its
//!   configured request rate. The phases alternate, alone, flood, alone, ...
//! - **Scenario 2, login flood.** The same steady traffic, alone and while
//!   logins arrive at `BENCH_FLOOD_FACTOR` times the measured hashing capacity
//!   (`PASSWORD_HASH_CONCURRENCY` / the median time of a sequential login),
//!   once with the per-client limit on logins off (so the hashing semaphore
//!   sheds) and once with it on.
//!
//! It prints figures as a markdown report and asserts nothing about speed.
//! The load generator shares the machine with the server and PostgreSQL.
//!
//! `cargo bench --bench noisy_neighbour`. Knobs: `BENCH_SECONDS` (length of a
//! measured phase, default 8), `BENCH_REPEATS` (scenario 1 pairs, default 3),
//! `BENCH_LOGIN_REPEATS` (scenario 2 pairs per configuration, default 2),
//! `BENCH_RATE` (B's requests per second, default 50), `BENCH_FLOOD_FACTOR`
//! (default 10), `BENCH_KEEP_DIR=1` (keep the data directory and server logs).
//! The server settings `TENANT_LIMITS`, `DATABASE_POOL_SIZE`,
//! `TENANT_DB_QUEUE_TIMEOUT_MS`, `PASSWORD_HASH_CONCURRENCY`,
//! `PASSWORD_HASH_QUEUE_TIMEOUT_MS`, and `CLIENT_RATE_LIMIT_PER_MINUTE` /
//! `CLIENT_RATE_LIMIT_BURST` (for the "client limit on" run) are taken from
//! the environment when set there, else the bench's own values are used; the
//! report prints every one.

mod common;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs::{self, File},
    future::Future,
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};
use common::{Machine, Setting, env_or, fmt_count, fmt_ms, median, percentile};
use futures_util::{StreamExt, stream};
use reqwest::{
    Client, RequestBuilder,
    header::{AUTHORIZATION, CONTENT_TYPE, HOST},
};
use serde_json::{Value, json};
use tokio::{task::JoinSet, time::Instant};

/// A demo tenant `tenantry dev` seeds, and its owner.
#[derive(Debug, Clone, Copy)]
struct DemoTenant {
    slug: &'static str,
    host: &'static str,
    username: &'static str,
    password: &'static str,
}

/// Tenant A, the noisy one.
const ACME: DemoTenant = DemoTenant {
    slug: "acme",
    host: "acme.localhost",
    username: "alice",
    password: "alice-demo-password",
};
/// Tenant B, the well-behaved one.
const GLOBEX: DemoTenant = DemoTenant {
    slug: "globex",
    host: "globex.localhost",
    username: "bob",
    password: "bob-demo-password",
};

/// Notes B reads (one at a time, round robin) and notes A has (read 100 at a time).
const B_NOTES: usize = 300;
const A_NOTES: usize = 100;
/// A's flood request: a page of 100 notes, heavier than B's single note.
const A_FLOOD_PATH: &str = "/api/notes?limit=100";
/// The per-client limit when it is meant to be out of the way.
const CLIENT_LIMIT_OFF: &str = "1000000";
/// The per-client limit of the "client limit on" run, unless set in the environment.
const CLIENT_LIMIT_ON_PER_MINUTE: &str = "60";
const CLIENT_LIMIT_ON_BURST: &str = "10";
/// A flood starts this long before the steady traffic is measured.
const RAMP: Duration = Duration::from_secs(1);
/// Quiet time between phases, so queues drain and buckets refill.
const GAP: Duration = Duration::from_secs(1);
/// Unmeasured steady traffic after each server start.
const WARM_UP: Duration = Duration::from_secs(2);
/// Requests a generator keeps outstanding at most; past it, sends are skipped
/// (and counted), so a server that stops answering cannot exhaust the client.
const MAX_IN_FLIGHT: usize = 1000;
/// How long a phase waits for its outstanding requests after its last send.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);
/// Sequential logins timed to estimate the hashing capacity (after 2 unmeasured).
const LOGIN_SAMPLES: usize = 10;
const B_P99_TARGET: f64 = 1.5;
const LOGIN_P99_TARGET: f64 = 2.0;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` does not, and must
    // not spend minutes here.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("noisy_neighbour benchmark: run it with `cargo bench --bench noisy_neighbour`");
        return Ok(());
    }
    let options = Options::from_env()?;
    let machine = Machine::read();
    let settings = ServerSettings::from_env(machine.cores)?;
    let acme_rps = settings.acme_requests_per_second()?;
    let work = WorkDir::create(options.keep_dir)?;
    print_header(&options, &machine, &settings, acme_rps);

    // Server 1: the per-client login limit out of the way. Scenario 1, the
    // hashing capacity, then the login flood that the semaphore must shed.
    let mut server = Server::start(&work, 1, &settings.with_client_limit(false)).await?;
    let api = Api::new(server.port)?;
    let bob = api.login(GLOBEX).await?;
    let alice = api.login(ACME).await?;
    eprintln!("seeding notes ...");
    let b_notes = ensure_notes(&bob, B_NOTES).await?;
    ensure_notes(&alice, A_NOTES).await?;
    steady(&bob, &b_notes, options.rate, WARM_UP).await;

    let flood_rate = acme_rps * options.flood_factor;
    let mut pairs = Vec::new();
    for pair in 1..=options.repeats {
        eprintln!("scenario 1, pair {pair}/{}: B alone ...", options.repeats);
        let alone = steady(&bob, &b_notes, options.rate, options.phase).await;
        tokio::time::sleep(GAP).await;
        eprintln!(
            "scenario 1, pair {pair}/{}: B while A floods ...",
            options.repeats
        );
        let flood_client = api.fresh()?;
        let a_flood = open_loop(flood_rate, RAMP + options.phase, |_| {
            send(flood_client.get(A_FLOOD_PATH, ACME.host, Some(&alice.bearer)))
        });
        let b_measured = async {
            tokio::time::sleep(RAMP).await;
            steady(&bob, &b_notes, options.rate, options.phase).await
        };
        let (flood, b_flood) = tokio::join!(a_flood, b_measured);
        pairs.push(Pair {
            alone,
            flooded: b_flood,
            flood,
        });
        tokio::time::sleep(GAP).await;
    }
    print_noisy(&options, acme_rps, flood_rate, &pairs);

    eprintln!("timing {LOGIN_SAMPLES} sequential logins ...");
    let login_time = api.login_time(GLOBEX).await?;
    let capacity = settings.hash_concurrency()? / login_time.as_secs_f64();
    let login_flood = LoginFlood {
        rate: capacity * options.flood_factor,
        capacity,
        login_time,
    };
    let off = login_scenario(&api, &bob, &b_notes, &options, &login_flood, "off").await?;
    print_logins(&options, &settings, &login_flood, false, &off);
    server.stop()?;

    // Server 2, same data: the per-client limit on logins on.
    let mut server = Server::start(&work, 2, &settings.with_client_limit(true)).await?;
    let api = Api::new(server.port)?;
    let bob = api.login(GLOBEX).await?;
    let b_notes = ensure_notes(&bob, B_NOTES).await?;
    steady(&bob, &b_notes, options.rate, WARM_UP).await;
    let on = login_scenario(&api, &bob, &b_notes, &options, &login_flood, "on").await?;
    print_logins(&options, &settings, &login_flood, true, &on);
    server.stop()?;
    println!("Load average at the end: {}", Machine::read().load);
    Ok(())
}

/// The bench's own knobs.
struct Options {
    phase: Duration,
    repeats: usize,
    login_repeats: usize,
    rate: f64,
    flood_factor: f64,
    keep_dir: bool,
}

impl Options {
    fn from_env() -> anyhow::Result<Self> {
        let seconds: f64 = env_or("BENCH_SECONDS", 8.0)?;
        let rate: f64 = env_or("BENCH_RATE", 50.0)?;
        let flood_factor: f64 = env_or("BENCH_FLOOD_FACTOR", 10.0)?;
        for (name, value) in [
            ("BENCH_SECONDS", seconds),
            ("BENCH_RATE", rate),
            ("BENCH_FLOOD_FACTOR", flood_factor),
        ] {
            if !(value.is_finite() && value > 0.0) {
                bail!("{name} must be a positive number, got {value}");
            }
        }
        Ok(Self {
            phase: Duration::from_secs_f64(seconds),
            repeats: env_or("BENCH_REPEATS", 3_usize)?.max(1),
            login_repeats: env_or("BENCH_LOGIN_REPEATS", 2_usize)?.max(1),
            rate,
            flood_factor,
            keep_dir: std::env::var("BENCH_KEEP_DIR").is_ok_and(|value| value == "1"),
        })
    }
}

/// The server's configuration for the run.
struct ServerSettings {
    /// Used by both servers.
    common: Vec<Setting>,
    /// The per-client login limit of the "client limit on" server.
    client_on: [Setting; 2],
}

impl ServerSettings {
    fn from_env(cores: usize) -> anyhow::Result<Self> {
        let limits = json!({
            "tenants": {
                ACME.slug: {
                    "requests_per_second": 50, "burst": 50, "max_db_connections": 4,
                    "statement_timeout_ms": 2000, "max_users": 1000, "max_notes": 100_000,
                },
                GLOBEX.slug: {
                    "requests_per_second": 2000, "burst": 2000, "max_db_connections": 8,
                    "statement_timeout_ms": 2000, "max_users": 1000, "max_notes": 100_000,
                },
            }
        });
        let common = vec![
            Setting::new("TENANT_LIMITS", serde_json::to_string(&limits)?),
            Setting::new("DATABASE_POOL_SIZE", "10".to_owned()),
            Setting::new("TENANT_DB_QUEUE_TIMEOUT_MS", "1000".to_owned()),
            // The server's own default, made explicit for the report.
            Setting::new("PASSWORD_HASH_CONCURRENCY", (cores / 2).max(1).to_string()),
            Setting::new("PASSWORD_HASH_QUEUE_TIMEOUT_MS", "1000".to_owned()),
            Setting::new(
                "PASSWORD_HASH_MAX_QUEUE",
                ((cores / 2).max(1) * 8).to_string(),
            ),
        ];
        Ok(Self {
            common,
            client_on: [
                Setting::new(
                    "CLIENT_RATE_LIMIT_PER_MINUTE",
                    CLIENT_LIMIT_ON_PER_MINUTE.to_owned(),
                ),
                Setting::new("CLIENT_RATE_LIMIT_BURST", CLIENT_LIMIT_ON_BURST.to_owned()),
            ],
        })
    }

    fn get(&self, name: &str) -> anyhow::Result<&str> {
        self.common
            .iter()
            .find(|setting| setting.name == name)
            .map(|setting| setting.value.as_str())
            .with_context(|| format!("no setting {name}"))
    }

    /// acme's `requests_per_second` in `TENANT_LIMITS`: A floods at a multiple of it.
    fn acme_requests_per_second(&self) -> anyhow::Result<f64> {
        let limits: Value = serde_json::from_str(self.get("TENANT_LIMITS")?)
            .context("TENANT_LIMITS is not JSON")?;
        limits["tenants"][ACME.slug]["requests_per_second"]
            .as_f64()
            .filter(|rps| *rps > 0.0)
            .context("TENANT_LIMITS must set tenants.acme.requests_per_second (A floods at a multiple of it)")
    }

    fn hash_concurrency(&self) -> anyhow::Result<f64> {
        let raw = self.get("PASSWORD_HASH_CONCURRENCY")?;
        raw.parse::<u32>()
            .ok()
            .filter(|permits| *permits > 0)
            .map(f64::from)
            .with_context(|| format!("PASSWORD_HASH_CONCURRENCY={raw:?} is not a positive number"))
    }

    fn with_client_limit(&self, on: bool) -> Vec<Setting> {
        let mut all = self.common.clone();
        if on {
            all.extend(self.client_on.iter().cloned());
        } else {
            all.push(Setting::fixed(
                "CLIENT_RATE_LIMIT_PER_MINUTE",
                CLIENT_LIMIT_OFF,
            ));
            all.push(Setting::fixed("CLIENT_RATE_LIMIT_BURST", CLIENT_LIMIT_OFF));
        }
        all
    }
}

/// A temporary directory for the cluster and the server logs, removed at the end.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn create(keep: bool) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("tenantry-noisy-{}", std::process::id()));
        fs::create_dir_all(&path)
            .with_context(|| format!("could not create {}", path.display()))?;
        // Run as root, the cluster belongs to the `postgres` user, which must
        // be able to reach it.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        Ok(Self { path, keep })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept {}", self.path.display());
        } else if let Err(error) = fs::remove_dir_all(&self.path) {
            eprintln!("could not remove {}: {error}", self.path.display());
        }
    }
}

/// `tenantry dev` in a child process. Dropping it stops the server (SIGTERM,
/// which stops its cluster), so an error or a panic leaves nothing running.
struct Server {
    child: Child,
    port: u16,
    cluster_dir: PathBuf,
    log: PathBuf,
    stopped: bool,
}

impl Server {
    /// Starts the server and waits until it has seeded the demo tenants and is ready.
    async fn start(work: &WorkDir, number: u32, settings: &[Setting]) -> anyhow::Result<Self> {
        let (port, pg_port) = free_ports()?;
        let cluster_dir = work.path.join("devdb");
        let log = work.path.join(format!("server-{number}.log"));
        let output =
            File::create(&log).with_context(|| format!("could not create {}", log.display()))?;
        eprintln!("starting tenantry dev #{number} on port {port} (PostgreSQL on {pg_port}) ...");
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantry"));
        command
            .arg("dev")
            .env_remove("DATABASE_URL")
            .env_remove("ADMIN_DATABASE_URL")
            .env_remove("ANALYTICS_DATABASE_URL")
            .env("DEV_DATA_DIR", &cluster_dir)
            .env("DEV_PG_PORT", pg_port.to_string())
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("BASE_DOMAIN", "localhost")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn");
        for setting in settings {
            command.env(setting.name, &setting.value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .context("could not start the tenantry binary")?;
        let mut server = Self {
            child,
            port,
            cluster_dir,
            log,
            stopped: false,
        };
        server.wait_until_ready().await?;
        Ok(server)
    }

    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let client = http_client()?;
        let readyz = format!("http://127.0.0.1:{}/readyz", self.port);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "tenantry dev exited ({status}) before it was ready; its log:\n{}",
                    log_tail(&self.log)
                );
            }
            let seeded = fs::read_to_string(&self.log).is_ok_and(|log| log.contains("--- end ---"));
            if seeded {
                let ready = client.get(&readyz).send().await;
                if ready.is_ok_and(|response| response.status().is_success()) {
                    eprintln!("  ready after {:.1} s", started.elapsed().as_secs_f64());
                    return Ok(());
                }
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                bail!(
                    "tenantry dev was not ready after {} s; its log:\n{}",
                    STARTUP_TIMEOUT.as_secs(),
                    log_tail(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM, then wait for the server to stop its cluster; SIGKILL (and
    /// stop the orphaned cluster) if it takes longer than 30 s.
    fn stop(&mut self) -> anyhow::Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let pid = self.child.id().to_string();
        if self.child.try_wait()?.is_none() {
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while self.child.try_wait()?.is_none() {
                if std::time::Instant::now() > deadline {
                    eprintln!("tenantry dev did not stop after SIGTERM; killing it");
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        stop_orphaned_cluster(&self.cluster_dir)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("could not stop tenantry dev: {error:#}");
        }
    }
}

/// Stops the cluster in `root` if it still runs (its server was killed).
fn stop_orphaned_cluster(root: &Path) -> anyhow::Result<()> {
    let pid_file = root.join("data").join("postmaster.pid");
    let Some(pid) = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|text| text.lines().next().map(str::to_owned))
    else {
        return Ok(());
    };
    eprintln!("stopping the orphaned PostgreSQL cluster (pid {pid})");
    // SIGINT is PostgreSQL's fast shutdown.
    let _ = Command::new("kill").args(["-INT", pid.trim()]).status();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while pid_file.exists() {
        if std::time::Instant::now() > deadline {
            bail!("the cluster in {} did not stop", root.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Two free loopback ports (bound together, so they differ).
fn free_ports() -> anyhow::Result<(u16, u16)> {
    let first = TcpListener::bind("127.0.0.1:0")?;
    let second = TcpListener::bind("127.0.0.1:0")?;
    Ok((first.local_addr()?.port(), second.local_addr()?.port()))
}

fn log_tail(path: &Path) -> String {
    let log = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn http_client() -> anyhow::Result<Client> {
    Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("could not build the HTTP client")
}

/// The server's address and one HTTP client (connection pool).
#[derive(Clone)]
struct Api {
    client: Client,
    base: String,
}

impl Api {
    fn new(port: u16) -> anyhow::Result<Self> {
        Ok(Self {
            client: http_client()?,
            base: format!("http://127.0.0.1:{port}"),
        })
    }

    /// The same server through a new client, so a flood's connections are its own.
    fn fresh(&self) -> anyhow::Result<Self> {
        Ok(Self {
            client: http_client()?,
            base: self.base.clone(),
        })
    }

    fn get(&self, path: &str, host: &str, bearer: Option<&str>) -> RequestBuilder {
        let request = self
            .client
            .get(format!("{}{path}", self.base))
            .header(HOST, host);
        match bearer {
            Some(bearer) => request.header(AUTHORIZATION, bearer),
            None => request,
        }
    }

    fn post(&self, path: &str, host: &str, bearer: Option<&str>, body: String) -> RequestBuilder {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(HOST, host)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        match bearer {
            Some(bearer) => request.header(AUTHORIZATION, bearer),
            None => request,
        }
    }

    fn login_request(&self, tenant: DemoTenant, password: &str) -> RequestBuilder {
        let body = json!({ "username": tenant.username, "password": password }).to_string();
        self.post("/api/login", tenant.host, None, body)
    }

    /// Signs in as the tenant's owner (waiting out 429s and 503s).
    async fn login(&self, tenant: DemoTenant) -> anyhow::Result<Session> {
        let body = with_retries(|| self.login_request(tenant, tenant.password), 200)
            .await
            .with_context(|| format!("could not sign in to {}", tenant.slug))?;
        let token = body["token"]
            .as_str()
            .with_context(|| format!("no token in the login answer {body}"))?;
        Ok(Session {
            api: self.clone(),
            tenant,
            bearer: format!("Bearer {token}"),
        })
    }

    /// The median time of `LOGIN_SAMPLES` sequential logins.
    async fn login_time(&self, tenant: DemoTenant) -> anyhow::Result<Duration> {
        let mut times = Vec::new();
        for sample in 0..LOGIN_SAMPLES + 2 {
            let started = Instant::now();
            self.login(tenant).await?;
            if sample >= 2 {
                times.push(started.elapsed());
            }
        }
        times.sort();
        times
            .get(times.len() / 2)
            .copied()
            .context("no login was timed")
    }
}

/// A signed-in owner of a tenant.
struct Session {
    api: Api,
    tenant: DemoTenant,
    bearer: String,
}

impl Session {
    fn get(&self, path: &str) -> RequestBuilder {
        self.api.get(path, self.tenant.host, Some(&self.bearer))
    }

    fn post(&self, path: &str, body: &Value) -> RequestBuilder {
        self.api
            .post(path, self.tenant.host, Some(&self.bearer), body.to_string())
    }
}

/// Sends the request `build` makes until it gets `expected`, waiting out 429
/// and 503 answers; returns the answer's JSON.
async fn with_retries(build: impl Fn() -> RequestBuilder, expected: u16) -> anyhow::Result<Value> {
    for _ in 0..60 {
        let response = build().send().await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        if status == expected {
            return serde_json::from_str(&body).context("the answer is not JSON");
        }
        if status != 429 && status != 503 {
            bail!("expected {expected}, got {status}: {body}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("still refused (429/503) after 60 tries")
}

/// The ids of at least `want` notes of the session's user, creating the missing ones.
async fn ensure_notes(session: &Session, want: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/notes?limit=100&cursor={cursor}"),
            None => "/api/notes?limit=100".to_owned(),
        };
        let page = with_retries(|| session.get(&path), 200).await?;
        let notes = page["data"].as_array().context("no notes in the list")?;
        ids.extend(
            notes
                .iter()
                .filter_map(|note| note["id"].as_str().map(str::to_owned)),
        );
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() || ids.len() >= want {
            break;
        }
    }
    let missing = want.saturating_sub(ids.len());
    let created: Vec<anyhow::Result<String>> = stream::iter(0..missing)
        .map(|n| async move {
            let body = json!({
                "content": format!("benchmark note {n}: {}", "lorem ipsum ".repeat(8).trim_end())
            });
            let note = with_retries(|| session.post("/api/notes", &body), 201).await?;
            note["id"]
                .as_str()
                .map(str::to_owned)
                .context("no id in the created note")
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for id in created {
        ids.push(id?);
    }
    ids.truncate(want);
    Ok(ids)
}

/// What happened to one request.
#[derive(Debug, Clone)]
enum Outcome {
    /// An HTTP answer, with the error `code` of a 4xx or 5xx JSON body.
    Answered { status: u16, code: Option<String> },
    /// No answer: timeout, connection error, ...
    Failed(&'static str),
    /// Not sent: too many requests of this generator were outstanding.
    Skipped,
    /// Still outstanding when the phase ended.
    Unfinished,
}

impl Outcome {
    fn status(&self) -> Option<u16> {
        match self {
            Self::Answered { status, .. } => Some(*status),
            Self::Failed(_) | Self::Skipped | Self::Unfinished => None,
        }
    }

    /// "200", "503 overloaded", "timeout", ...
    fn label(&self) -> String {
        match self {
            Self::Answered {
                status,
                code: Some(code),
            } => format!("{status} {code}"),
            Self::Answered { status, code: None } => status.to_string(),
            Self::Failed(kind) => (*kind).to_owned(),
            Self::Skipped => "not sent (backlog)".to_owned(),
            Self::Unfinished => "unanswered at the end".to_owned(),
        }
    }
}

/// One request: its outcome and its latency from its scheduled send time.
#[derive(Debug, Clone)]
struct Sample {
    outcome: Outcome,
    latency: Duration,
}

async fn send(request: RequestBuilder) -> Outcome {
    let failed = |error: &reqwest::Error| {
        if error.is_timeout() {
            Outcome::Failed("timeout")
        } else if error.is_connect() {
            Outcome::Failed("connect error")
        } else {
            Outcome::Failed("transport error")
        }
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return failed(&error),
    };
    let status = response.status().as_u16();
    match response.bytes().await {
        Ok(body) => {
            let code = (status >= 400)
                .then(|| serde_json::from_slice::<Value>(&body).ok())
                .flatten()
                .and_then(|body| body["error"]["code"].as_str().map(str::to_owned));
            Outcome::Answered { status, code }
        }
        Err(error) => failed(&error),
    }
}

/// Open-loop load: request `i` is scheduled at `i / rate` seconds, whether or
/// not earlier ones were answered, and its latency counts from that time.
async fn open_loop<F, Fut>(rate: f64, duration: Duration, mut make: F) -> Vec<Sample>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let start = Instant::now();
    let count = (rate * duration.as_secs_f64()).round() as u64;
    let mut in_flight = JoinSet::new();
    let mut samples = Vec::new();
    let unfinished = Sample {
        outcome: Outcome::Unfinished,
        latency: Duration::ZERO,
    };
    for i in 0..count {
        let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(scheduled).await;
        while let Some(done) = in_flight.try_join_next() {
            samples.push(done.unwrap_or_else(|_| unfinished.clone()));
        }
        if in_flight.len() >= MAX_IN_FLIGHT {
            samples.push(Sample {
                outcome: Outcome::Skipped,
                latency: Duration::ZERO,
            });
            continue;
        }
        let request = make(i);
        in_flight.spawn(async move {
            let outcome = request.await;
            Sample {
                outcome,
                latency: scheduled.elapsed(),
            }
        });
    }
    let deadline = Instant::now() + DRAIN_GRACE;
    loop {
        match tokio::time::timeout_at(deadline, in_flight.join_next()).await {
            Ok(Some(done)) => samples.push(done.unwrap_or_else(|_| unfinished.clone())),
            Ok(None) => break,
            Err(_) => {
                samples.extend(std::iter::repeat_n(unfinished, in_flight.len()));
                in_flight.abort_all();
                break;
            }
        }
    }
    samples
}

/// B's steady traffic: one note after the other, round robin.
async fn steady(session: &Session, notes: &[String], rate: f64, duration: Duration) -> Vec<Sample> {
    open_loop(rate, duration, |i| {
        let id = &notes[usize::try_from(i).unwrap_or(0) % notes.len()];
        send(session.get(&format!("/api/notes/{id}")))
    })
    .await
}

/// One alone/flood pair of scenario 1.
struct Pair {
    alone: Vec<Sample>,
    flooded: Vec<Sample>,
    flood: Vec<Sample>,
}

/// The login flood's rate and where it comes from.
struct LoginFlood {
    rate: f64,
    capacity: f64,
    login_time: Duration,
}

/// Alternates B alone and B during a login flood, `login_repeats` times.
async fn login_scenario(
    api: &Api,
    bob: &Session,
    notes: &[String],
    options: &Options,
    flood: &LoginFlood,
    label: &str,
) -> anyhow::Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for pair in 1..=options.login_repeats {
        let of = options.login_repeats;
        eprintln!("scenario 2 (client limit {label}), pair {pair}/{of}: B alone ...");
        let alone = steady(bob, notes, options.rate, options.phase).await;
        tokio::time::sleep(GAP).await;
        eprintln!(
            "scenario 2 (client limit {label}), pair {pair}/{of}: B during a login flood ..."
        );
        let flood_api = api.fresh()?;
        let logins = open_loop(flood.rate, RAMP + options.phase, |i| {
            // Half right, half wrong passwords: 200s and 401s both cost a hash.
            let password = if i % 2 == 0 {
                GLOBEX.password
            } else {
                "not-the-password"
            };
            send(flood_api.login_request(GLOBEX, password))
        });
        let measured = async {
            tokio::time::sleep(RAMP).await;
            steady(bob, notes, options.rate, options.phase).await
        };
        let (logins, flooded) = tokio::join!(logins, measured);
        pairs.push(Pair {
            alone,
            flooded,
            flood: logins,
        });
        // Let the hashing queue and the client bucket settle.
        tokio::time::sleep(GAP * 2).await;
    }
    Ok(pairs)
}

// ---- statistics ----

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Sorted latencies (ms) of the samples that got an answer (or failed) and match `keep`.
fn latencies(samples: &[Sample], keep: impl Fn(&Outcome) -> bool) -> Vec<f64> {
    let mut sorted: Vec<f64> = samples
        .iter()
        .filter(|sample| {
            matches!(
                sample.outcome,
                Outcome::Answered { .. } | Outcome::Failed(_)
            ) && keep(&sample.outcome)
        })
        .map(|sample| ms(sample.latency))
        .collect();
    sorted.sort_by(f64::total_cmp);
    sorted
}

fn count(samples: &[Sample], keep: impl Fn(&Outcome) -> bool) -> usize {
    samples
        .iter()
        .filter(|sample| keep(&sample.outcome))
        .count()
}

fn has_status(statuses: &'static [u16]) -> impl Fn(&Outcome) -> bool {
    move |outcome| {
        outcome
            .status()
            .is_some_and(|status| statuses.contains(&status))
    }
}

fn breakdown(samples: &[Sample], keep: impl Fn(&Outcome) -> bool) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for sample in samples.iter().filter(|sample| keep(&sample.outcome)) {
        *counts.entry(sample.outcome.label()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(label, n)| format!("{n} × {label}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// B's figures in one phase: p50, p90, p99 (ms) and errors (anything but a 200).
struct Steady {
    sent: usize,
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    errors: usize,
}

impl Steady {
    fn of(samples: &[Sample]) -> Self {
        let sorted = latencies(samples, |_| true);
        Self {
            sent: samples.len(),
            p50: percentile(&sorted, 0.50),
            p90: percentile(&sorted, 0.90),
            p99: percentile(&sorted, 0.99),
            errors: count(samples, |outcome| outcome.status() != Some(200)),
        }
    }

    fn median(all: &[Self]) -> MedianSteady {
        let pick = |f: fn(&Self) -> Option<f64>| median(all.iter().filter_map(f).collect());
        MedianSteady {
            sent: median(all.iter().map(|s| s.sent as f64).collect()),
            p50: pick(|s| s.p50),
            p90: pick(|s| s.p90),
            p99: pick(|s| s.p99),
            errors: median(all.iter().map(|s| s.errors as f64).collect()),
        }
    }
}

struct MedianSteady {
    sent: Option<f64>,
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    errors: Option<f64>,
}

// ---- report ----

/// `flooded / alone` of the medians, and per pair, with how many pairs meet `target`.
fn p99_ratio(pairs: &[Pair], target: f64) -> String {
    let alone: Vec<Steady> = pairs.iter().map(|pair| Steady::of(&pair.alone)).collect();
    let flooded: Vec<Steady> = pairs.iter().map(|pair| Steady::of(&pair.flooded)).collect();
    let per_pair: Vec<Option<f64>> = alone
        .iter()
        .zip(&flooded)
        .map(|(alone, flooded)| Some(flooded.p99? / alone.p99?))
        .collect();
    let within = per_pair
        .iter()
        .filter(|ratio| ratio.is_some_and(|ratio| ratio <= target))
        .count();
    let overall = Steady::median(&flooded)
        .p99
        .zip(Steady::median(&alone).p99)
        .map(|(flooded, alone)| flooded / alone);
    let listed = per_pair
        .iter()
        .map(|ratio| ratio.map_or_else(|| "–".to_owned(), |ratio| format!("{ratio:.2}")))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "**{}** (target ≤ {target}; per pair {listed}: within target in {within} of {})",
        overall.map_or_else(|| "–".to_owned(), |ratio| format!("{ratio:.2}")),
        pairs.len()
    )
}

fn print_header(options: &Options, machine: &Machine, settings: &ServerSettings, acme_rps: f64) {
    let commit = common::commit();
    let mut out = String::new();
    let _ = writeln!(out, "\n## tenantry noisy-neighbour benchmark\n");
    let _ = writeln!(
        out,
        "- machine: {}{}",
        machine.describe(),
        if machine.busy() {
            " (busy: other work was running, such as the build before this run or another \
             process's tests; expect more spread)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "- the load generator (this process, tokio multi-thread runtime), the server (`tenantry dev`, \
         release build of commit {commit}) and its PostgreSQL cluster all share these {} cores: \
         every figure includes their contention, and the client's own delays count as latency",
        machine.cores
    );
    let _ = writeln!(
        out,
        "- B (globex): open-loop `GET /api/notes/{{id}}` at {} req/s over {B_NOTES} notes; latency \
         from the scheduled send time; {:.0} s per phase; A (acme) floods `GET {A_FLOOD_PATH}` at \
         {:.0} req/s ({} × its limit of {acme_rps} req/s); floods start {} s before B is measured",
        options.rate,
        options.phase.as_secs_f64(),
        acme_rps * options.flood_factor,
        options.flood_factor,
        RAMP.as_secs()
    );
    let _ = writeln!(
        out,
        "- repetitions: {} alone/flood pairs in scenario 1, {} per configuration in scenario 2, interleaved; medians over them\n",
        options.repeats, options.login_repeats
    );
    let _ = writeln!(out, "| server setting | value |\n|---|---|");
    for setting in &settings.common {
        let _ = writeln!(out, "| {} | {} |", setting.name, setting.shown());
    }
    let [per_minute, burst] = &settings.client_on;
    let _ = writeln!(
        out,
        "| CLIENT_RATE_LIMIT_PER_MINUTE | `{CLIENT_LIMIT_OFF}` (scenario 1, login flood \"client limit off\"); {} (\"client limit on\") |",
        per_minute.shown()
    );
    let _ = writeln!(
        out,
        "| CLIENT_RATE_LIMIT_BURST | `{CLIENT_LIMIT_OFF}` (scenario 1, login flood \"client limit off\"); {} (\"client limit on\") |",
        burst.shown()
    );
    let _ = writeln!(
        out,
        "| fixed | `LOG_FORMAT=json RUST_LOG=warn HOST=127.0.0.1 BASE_DOMAIN=localhost`, free `PORT` and `DEV_PG_PORT`, a temporary `DEV_DATA_DIR` |"
    );
    println!("{out}");
}

fn steady_cells(steady: &Steady) -> String {
    format!(
        "{} | {} | {} | {} | {}",
        steady.sent,
        fmt_ms(steady.p50),
        fmt_ms(steady.p90),
        fmt_ms(steady.p99),
        steady.errors
    )
}

fn median_cells(steady: &MedianSteady) -> String {
    format!(
        "{} | {} | {} | {} | {}",
        fmt_count(steady.sent),
        fmt_ms(steady.p50),
        fmt_ms(steady.p90),
        fmt_ms(steady.p99),
        fmt_count(steady.errors)
    )
}

fn print_noisy(options: &Options, acme_rps: f64, flood_rate: f64, pairs: &[Pair]) {
    let mut out = String::new();
    let _ = writeln!(out, "### Scenario 1: noisy neighbour\n");
    let _ = writeln!(
        out,
        "B = globex reading one note at {} req/s; A = acme flooding at {flood_rate:.0} req/s \
         (limit {acme_rps} req/s). Latencies in ms.\n",
        options.rate
    );
    let _ = writeln!(
        out,
        "| phase | B sent | B p50 | B p90 | B p99 | B errors | A sent | A 200 | A 429 | A other |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let not_429_or_200 = |outcome: &Outcome| !has_status(&[200, 429])(outcome);
    let mut a_counts = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for (n, pair) in pairs.iter().enumerate() {
        let n = n + 1;
        let _ = writeln!(
            out,
            "| alone {n} | {} | | | | |",
            steady_cells(&Steady::of(&pair.alone))
        );
        let counts = [
            pair.flood.len(),
            count(&pair.flood, has_status(&[200])),
            count(&pair.flood, has_status(&[429])),
            count(&pair.flood, not_429_or_200),
        ];
        for (all, value) in a_counts.iter_mut().zip(counts) {
            all.push(value as f64);
        }
        let [sent, ok, limited, other] = counts;
        let _ = writeln!(
            out,
            "| flood {n} | {} | {sent} | {ok} | {limited} | {other} |",
            steady_cells(&Steady::of(&pair.flooded))
        );
    }
    let alone: Vec<Steady> = pairs.iter().map(|pair| Steady::of(&pair.alone)).collect();
    let flooded: Vec<Steady> = pairs.iter().map(|pair| Steady::of(&pair.flooded)).collect();
    let _ = writeln!(
        out,
        "| **median alone** | {} | | | | |",
        median_cells(&Steady::median(&alone))
    );
    let [sent, ok, limited, other] = a_counts.map(median);
    let _ = writeln!(
        out,
        "| **median flood** | {} | {} | {} | {} | {} |",
        median_cells(&Steady::median(&flooded)),
        fmt_count(sent),
        fmt_count(ok),
        fmt_count(limited),
        fmt_count(other)
    );
    let _ = writeln!(
        out,
        "\nB p99 under flood / alone: {}",
        p99_ratio(pairs, B_P99_TARGET)
    );
    let flood_seconds = (RAMP + options.phase).as_secs_f64();
    let _ = writeln!(
        out,
        "A's 200s per second during its flood: {} (its limit: {acme_rps} req/s, burst included)",
        ok.map_or_else(|| "–".to_owned(), |ok| format!("{:.1}", ok / flood_seconds))
    );
    let b_errors: Vec<Sample> = pairs
        .iter()
        .flat_map(|pair| pair.alone.iter().chain(&pair.flooded))
        .cloned()
        .collect();
    if b_errors
        .iter()
        .any(|sample| sample.outcome.status() != Some(200))
    {
        let _ = writeln!(
            out,
            "B's errors, all phases: {}",
            breakdown(&b_errors, |outcome| outcome.status() != Some(200))
        );
    }
    let floods: Vec<Sample> = pairs.iter().flat_map(|pair| pair.flood.clone()).collect();
    if count(&floods, not_429_or_200) > 0 {
        let _ = writeln!(
            out,
            "A's other outcomes, all floods: {}",
            breakdown(&floods, not_429_or_200)
        );
    }
    if count(&floods, has_status(&[429])) == 0 {
        let _ = writeln!(
            out,
            "\n> A got no 429: this binary does not enforce `TENANT_LIMITS`, so these are the figures without per-tenant limits."
        );
    }
    println!("{out}");
}

fn print_logins(
    options: &Options,
    settings: &ServerSettings,
    flood: &LoginFlood,
    client_limit: bool,
    pairs: &[Pair],
) {
    let (per_minute, burst) = if client_limit {
        let [per_minute, burst] = &settings.client_on;
        (per_minute.value.as_str(), burst.value.as_str())
    } else {
        (CLIENT_LIMIT_OFF, CLIENT_LIMIT_OFF)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Scenario 2: login flood, client limit {} (CLIENT_RATE_LIMIT_PER_MINUTE={per_minute}, CLIENT_RATE_LIMIT_BURST={burst})\n",
        if client_limit { "on" } else { "off" }
    );
    let flood_seconds = (RAMP + options.phase).as_secs_f64();
    let _ = writeln!(
        out,
        "Hashing capacity: a sequential login takes {} ms (median of {LOGIN_SAMPLES}), so \
         PASSWORD_HASH_CONCURRENCY / that ≈ {:.0} logins/s. Flood: `POST /api/login` on globex \
         as bob, right and wrong password alternating, open loop at {:.0}/s for {flood_seconds:.0} s, \
         all from 127.0.0.1. B = globex reading one note at {} req/s. Latencies in ms; \"rejected\" \
         = 429 + 503, \"hashed\" = 200 + 401.\n",
        fmt_ms(Some(ms(flood.login_time))),
        flood.capacity,
        flood.rate,
        options.rate
    );
    let _ = writeln!(
        out,
        "| phase | B sent | B p50 | B p90 | B p99 | B errors | logins | 200 | 401 | 429 | 503 | other | rejected p50 | rejected p99 | hashed p50 | hashed p99 |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let other = |outcome: &Outcome| !has_status(&[200, 401, 429, 503])(outcome);
    let mut columns: [Vec<f64>; 10] = Default::default();
    for (n, pair) in pairs.iter().enumerate() {
        let n = n + 1;
        let _ = writeln!(
            out,
            "| alone {n} | {} | | | | | | | | | | |",
            steady_cells(&Steady::of(&pair.alone))
        );
        let logins = &pair.flood;
        let rejected = latencies(logins, has_status(&[429, 503]));
        let hashed = latencies(logins, has_status(&[200, 401]));
        let row = [
            Some(logins.len() as f64),
            Some(count(logins, has_status(&[200])) as f64),
            Some(count(logins, has_status(&[401])) as f64),
            Some(count(logins, has_status(&[429])) as f64),
            Some(count(logins, has_status(&[503])) as f64),
            Some(count(logins, other) as f64),
            percentile(&rejected, 0.50),
            percentile(&rejected, 0.99),
            percentile(&hashed, 0.50),
            percentile(&hashed, 0.99),
        ];
        for (column, value) in columns.iter_mut().zip(row) {
            column.extend(value);
        }
        let _ = writeln!(
            out,
            "| flood {n} | {} | {} |",
            steady_cells(&Steady::of(&pair.flooded)),
            login_cells(&row)
        );
    }
    let alone: Vec<Steady> = pairs.iter().map(|pair| Steady::of(&pair.alone)).collect();
    let flooded: Vec<Steady> = pairs.iter().map(|pair| Steady::of(&pair.flooded)).collect();
    let _ = writeln!(
        out,
        "| **median alone** | {} | | | | | | | | | | |",
        median_cells(&Steady::median(&alone))
    );
    let medians = columns.map(median);
    let _ = writeln!(
        out,
        "| **median flood** | {} | {} |",
        median_cells(&Steady::median(&flooded)),
        login_cells(&medians)
    );
    let _ = writeln!(
        out,
        "\nB p99 during the login flood / alone: {}",
        p99_ratio(pairs, LOGIN_P99_TARGET)
    );
    let hashed_per_second = medians[1]
        .zip(medians[2])
        .map(|(ok, wrong)| (ok + wrong) / flood_seconds);
    let _ = writeln!(
        out,
        "Hashed logins per second during the flood (median): {} (capacity estimate {:.0}/s)",
        hashed_per_second.map_or_else(|| "–".to_owned(), |rate| format!("{rate:.1}")),
        flood.capacity
    );
    let logins: Vec<Sample> = pairs.iter().flat_map(|pair| pair.flood.clone()).collect();
    let not_hashed = |outcome: &Outcome| !has_status(&[200, 401])(outcome);
    if count(&logins, not_hashed) > 0 {
        let _ = writeln!(
            out,
            "Logins not hashed, all floods: {}",
            breakdown(&logins, not_hashed)
        );
    }
    let b_all: Vec<Sample> = pairs
        .iter()
        .flat_map(|pair| pair.alone.iter().chain(&pair.flooded))
        .cloned()
        .collect();
    if b_all
        .iter()
        .any(|sample| sample.outcome.status() != Some(200))
    {
        let _ = writeln!(
            out,
            "B's errors, all phases: {}",
            breakdown(&b_all, |outcome| outcome.status() != Some(200))
        );
    }
    if client_limit && count(&logins, has_status(&[429])) == 0 {
        let _ = writeln!(
            out,
            "\n> No login got a 429: this binary does not enforce `CLIENT_RATE_LIMIT_*`, so this run is the same as \"client limit off\"."
        );
    }
    println!("{out}");
}

fn login_cells(row: &[Option<f64>; 10]) -> String {
    let [
        sent,
        ok,
        wrong,
        limited,
        busy,
        other,
        rejected_50,
        rejected_99,
        hashed_50,
        hashed_99,
    ] = *row;
    format!(
        "{} | {} | {} | {} | {} | {} | {} | {} | {} | {}",
        fmt_count(sent),
        fmt_count(ok),
        fmt_count(wrong),
        fmt_count(limited),
        fmt_count(busy),
        fmt_count(other),
        fmt_ms(rejected_50),
        fmt_ms(rejected_99),
        fmt_ms(hashed_50),
        fmt_ms(hashed_99)
    )
}
