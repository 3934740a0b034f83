//! Request throughput against PostgreSQL's own ceiling, by tenant count.
//!
//! For each tenant count T (`BENCH_TENANTS`, default 10, 1,000 and 10,000)
//! and each distribution (`BENCH_DISTRIBUTIONS`: uniform, and Zipf with
//! `BENCH_ZIPF_S` = 1.1), it creates a database holding T tenants, 3 users
//! each and `BENCH_NOTES` notes in total (default 1,000,000), spread over the
//! tenants as the distribution says, migrated as the owner role and loaded
//! with set-based SQL as the superuser (`benches/throughput/data.rs`). It
//! starts the release binary as `tenantry serve` against it (timing spawn →
//! first 200 on `/readyz`), and drives it over loopback HTTP with
//! `BENCH_CLIENTS` closed-loop keep-alive clients (default 8), each request
//! for a tenant picked as the data is spread (uniformly or by Zipf), with that
//! tenant's `Host` and a token of one of its users minted here:
//!
//! - W1 `GET /api/notes/{id}`, W2 `GET /api/notes` (newest 20), W3 `POST
//!   /api/notes`, W4 `PATCH /api/notes/{id}`, W5 a mix (40/40/10/10), and W6
//!   `POST /api/login` (argon2id-bound; measured where the ceiling is).
//!
//! **The ceiling.** Before the first dataset is measured, a calibration
//! server runs behind a PostgreSQL wire-protocol proxy
//! (`benches/throughput/proxy.rs`) that records every statement the service
//! executes, with its parameters; one request of each workload gives the
//! exact SQL and transaction shape the service sends, whatever the current
//! source says. pgbench (`-M prepared`, same client count, `-j 2`) then runs
//! those statements (`benches/throughput/pgbench.rs`) as the runtime role
//! (RLS applies), as the superuser (no RLS; the statements name `tenant_id`
//! themselves), and the main statement alone, on the datasets named by
//! `BENCH_CEILING` (default `1000-uniform`; `all` or `none`).
//!
//! The proxy also records the session settings the service's connections
//! start with (the `options` startup parameter, e.g. `statement_timeout`);
//! pgbench gets the same through `PGOPTIONS`. After each dataset, both forms
//! of each workload's main statement (the service's plain `$n` parameters,
//! pgbench's `md5(...)` expressions) are prepared with those settings,
//! executed six times and EXPLAIN ANALYZEd (`benches/throughput/plans.rs`),
//! to show where the planner treats them differently.
//!
//! It prints a markdown report: the statements, start-up time, req/s and
//! p50/p90/p99 per workload and dataset with the CPU each party used per
//! request, the ratios R1 (service ÷ pgbench, same statements), R2 (RLS ÷
//! no RLS), R3 (service ÷ the single statement), R5 (10,000 ÷ 10 tenants) and
//! the Zipf skew (largest tenant's p99 ÷ median tenants' p99), each against
//! its target, and a table for the README. It writes
//! `target/bench/throughput.svg` and the pgbench scripts to
//! `target/bench/pgbench/`. It asserts nothing about speed.
//!
//! `cargo bench --bench throughput`. Knobs: `BENCH_TENANTS`,
//! `BENCH_DISTRIBUTIONS`, `BENCH_NOTES`, `BENCH_ZIPF_S`, `BENCH_SECONDS`
//! (whole seconds per phase, default 3), `BENCH_REPEATS` (default 3),
//! `BENCH_CLIENTS` (default 8), `BENCH_WARMUP_SECONDS` (default 2),
//! `BENCH_STARTS` (start-ups timed on the first dataset, default 5),
//! `BENCH_CEILING`, `BENCH_KEEP=1` (keep the databases),
//! `BENCH_STATISTICS=absent` (never analyze the tables, autovacuum off for
//! them: the plans must not depend on statistics), `PGBENCH` (the
//! pgbench binary), `BENCH_CITUS_URL` (below). Server settings
//! (`DATABASE_POOL_SIZE`, `TENANT_CACHE_TTL_MS`, `PASSWORD_HASH_CONCURRENCY`,
//! `TENANT_LIMITS`) are taken from the environment when set there.
//! PostgreSQL is `TEST_DATABASE_URL` (a superuser URL), else 127.0.0.1:5432
//! as `postgres`.
//!
//! **Citus.** With `BENCH_CITUS_URL` (a superuser URL of a Citus
//! coordinator's database in which the workers are registered, e.g.
//! `postgres://postgres@127.0.0.1:9700/postgres`), each dataset is also built
//! on that cluster after its PostgreSQL run: a database of the same name on
//! every node, set up as the cluster tests do (`tenantry migrate` as the
//! owner, then `sql/citus/01_functions.sql`, `02_distribute.sql`,
//! `03_roles.sql`), loaded with the same SQL, and the service (connected to
//! the coordinator as `tenantry_app`, `DATABASE_CITUS=on`) measured with the
//! same W1-W5 phases (start-ups timed on the first dataset; no pgbench, plan
//! check or W6 there). The report gains a "Citus beside PostgreSQL" section:
//! start-up, loading time, req/s, p50 and p99 on each engine and citus ÷
//! postgres (`benches/throughput/citus.rs`, `citus_report.rs`). The database
//! is dropped on every node after its dataset; with `BENCH_KEEP=1` it stays,
//! holding a Citus maintenance worker on every node (a server has
//! `max_worker_processes` of them), so keep few. The role passwords it sets
//! are the test suite's (`tenantry-test-password`), so the two can share a
//! cluster. Without `BENCH_CITUS_URL` nothing of this runs.

#[path = "throughput/citus.rs"]
mod citus;
#[path = "throughput/citus_report.rs"]
mod citus_report;
mod common;
#[path = "throughput/data.rs"]
mod data;
#[path = "throughput/load.rs"]
mod load;
#[path = "throughput/pgbench.rs"]
mod pgbench;
#[path = "throughput/plans.rs"]
mod plans;
#[path = "throughput/plot.rs"]
mod plot;
#[path = "throughput/proxy.rs"]
mod proxy;
#[path = "throughput/report.rs"]
mod report;
#[path = "throughput/server.rs"]
mod server;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use tokio_postgres::{Client, Config, config::Host};

use self::{
    common::{Machine, Setting, env_or, superuser_config},
    data::{Distribution, Spec},
    load::{Picker, Target, Workload},
    pgbench::{Login, Translated, Variant},
    server::{Backends, Cpu, Server},
};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` does not, and must
    // not spend minutes here.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("throughput benchmark: run it with `cargo bench --bench throughput`");
        return Ok(());
    }
    let options = Options::from_env()?;
    let machine = Machine::read();
    let superuser = superuser_config()?;
    let admin = common::connect(&superuser).await?;
    let postgres = PostgresInfo::read(&admin).await?;
    let cluster = citus::Cluster::from_env().await?;
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench");
    fs::create_dir_all(out_dir.join("pgbench"))?;
    let settings = server::bench_settings(Setting::new("DATABASE_POOL_SIZE", "10".to_owned()));
    eprintln!("computing the users' argon2id hash ...");
    let bench = Bench {
        pgbench: find_pgbench()?,
        upstream: upstream(&superuser)?,
        superuser,
        admin,
        settings,
        out_dir,
        password_hash: data::password_hash()?,
        options,
    };
    let mut results = report::Results::default();
    let mut on_citus = report::Results::default();
    let specs = bench.options.specs();
    for (index, spec) in specs.iter().enumerate() {
        let outcome = bench.dataset(index, spec, &mut results).await;
        if !bench.options.keep {
            data::drop_database(&bench.admin, &spec.database()).await?;
        }
        outcome.with_context(|| format!("dataset {spec}"))?;
        if let Some(cluster) = &cluster {
            let outcome = bench
                .citus_dataset(cluster, index, spec, &mut on_citus)
                .await;
            if !bench.options.keep {
                cluster.drop_database(&spec.database()).await?;
            }
            outcome.with_context(|| format!("dataset {spec} on Citus"))?;
        }
    }
    let svg = bench.out_dir.join("throughput.svg");
    let context = report::Context {
        machine: &machine,
        postgres: &postgres,
        options: &bench.options,
        settings: &bench.settings,
        specs: &specs,
        svg: &svg,
        scripts: &bench.out_dir.join("pgbench"),
        citus: cluster.as_ref().map(|cluster| (cluster, &on_citus)),
    };
    let rendered = report::render(&context, &results);
    println!("{rendered}");
    let markdown = bench.out_dir.join("throughput.md");
    fs::write(&markdown, &rendered)
        .with_context(|| format!("could not write {}", markdown.display()))?;
    eprintln!("wrote {}", markdown.display());
    report::plot(&context, &results)?;
    eprintln!("wrote {}", svg.display());
    Ok(())
}

/// The bench's own knobs.
pub struct Options {
    pub tenants: Vec<u32>,
    pub distributions: Vec<Distribution>,
    pub notes: u64,
    pub seconds: Duration,
    pub repeats: usize,
    pub clients: usize,
    pub warmup: Duration,
    pub starts: usize,
    pub ceiling: Vec<String>,
    pub keep: bool,
}

impl Options {
    fn from_env() -> anyhow::Result<Self> {
        let tenants = list("BENCH_TENANTS", "10,1000,10000")
            .iter()
            .map(|t| {
                t.parse::<u32>()
                    .ok()
                    .filter(|t| (1..=100_000).contains(t))
                    .with_context(|| format!("BENCH_TENANTS: {t:?} is not a count of 1 to 100000"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let zipf_s: f64 = env_or("BENCH_ZIPF_S", 1.1)?;
        if !(1.001..=10.0).contains(&zipf_s) {
            bail!("BENCH_ZIPF_S must be in 1.001..=10 (pgbench's random_zipfian needs > 1)");
        }
        let distributions = list("BENCH_DISTRIBUTIONS", "uniform,zipf")
            .iter()
            .map(|d| match d.as_str() {
                "uniform" => Ok(Distribution::Uniform),
                "zipf" => Ok(Distribution::Zipf(zipf_s)),
                other => bail!("BENCH_DISTRIBUTIONS: {other:?} is not uniform or zipf"),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let notes: u64 = env_or("BENCH_NOTES", 1_000_000)?;
        let max_tenants = tenants.iter().copied().max().unwrap_or(1);
        if notes < u64::from(max_tenants) * u64::from(data::USERS_PER_TENANT) || notes > 50_000_000
        {
            bail!("BENCH_NOTES must be at least 3 per tenant and at most 50,000,000");
        }
        let seconds: u64 = env_or("BENCH_SECONDS", 3)?;
        let clients: usize = env_or("BENCH_CLIENTS", 8)?;
        if seconds == 0 || clients == 0 || tenants.is_empty() || distributions.is_empty() {
            bail!(
                "BENCH_SECONDS, BENCH_CLIENTS, BENCH_TENANTS and BENCH_DISTRIBUTIONS must not be zero or empty"
            );
        }
        Ok(Self {
            tenants,
            distributions,
            notes,
            seconds: Duration::from_secs(seconds),
            repeats: env_or("BENCH_REPEATS", 3_usize)?.max(1),
            clients,
            warmup: Duration::from_secs_f64(env_or("BENCH_WARMUP_SECONDS", 2.0_f64)?.max(0.0)),
            starts: env_or("BENCH_STARTS", 5_usize)?.max(1),
            ceiling: list("BENCH_CEILING", "1000-uniform"),
            keep: std::env::var("BENCH_KEEP").is_ok_and(|value| value == "1"),
        })
    }

    /// Every dataset, tenant count by tenant count.
    pub fn specs(&self) -> Vec<Spec> {
        self.tenants
            .iter()
            .flat_map(|&tenants| {
                self.distributions.iter().map(move |&distribution| Spec {
                    tenants,
                    notes: self.notes,
                    distribution,
                })
            })
            .collect()
    }

    /// Whether pgbench runs on `spec`.
    pub fn ceiling_at(&self, spec: &Spec) -> bool {
        let name = format!("{}-{}", spec.tenants, spec.distribution.name());
        self.ceiling
            .iter()
            .any(|entry| entry == "all" || *entry == name || *entry == spec.tenants.to_string())
    }
}

fn list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
        .split(',')
        .map(|item| item.trim().to_lowercase())
        .filter(|item| !item.is_empty())
        .collect()
}

/// `host:port` of the server, which must be reachable over TCP (the proxy
/// and the service connect there).
fn upstream(config: &Config) -> anyhow::Result<(String, u16)> {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => bail!(
            "PostgreSQL at a Unix socket ({}): this bench needs a TCP address",
            path.display()
        ),
        None => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Ok((host, port))
}

/// `PGBENCH`, else pgbench next to the server binaries, else on `PATH`.
fn find_pgbench() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PGBENCH") {
        return Ok(PathBuf::from(path));
    }
    if let Ok(dir) = tenantry::db::local::find_bin_dir()
        && dir.join("pgbench").is_file()
    {
        return Ok(dir.join("pgbench"));
    }
    let on_path = std::process::Command::new("pgbench")
        .arg("--version")
        .output();
    if on_path.is_ok_and(|output| output.status.success()) {
        return Ok(PathBuf::from("pgbench"));
    }
    bail!(
        "pgbench was not found: install PostgreSQL's client tools (Debian: postgresql-client) or set PGBENCH"
    )
}

/// What the report says about PostgreSQL.
pub struct PostgresInfo {
    pub version: String,
    pub settings: Vec<(String, String)>,
}

impl PostgresInfo {
    async fn read(admin: &Client) -> anyhow::Result<Self> {
        let version: String = admin.query_one("show server_version", &[]).await?.get(0);
        let mut settings = Vec::new();
        for name in [
            "shared_buffers",
            "synchronous_commit",
            "fsync",
            "max_connections",
            "jit",
            "work_mem",
        ] {
            let value: String = admin.query_one(&format!("show {name}"), &[]).await?.get(0);
            settings.push((name.to_owned(), value));
        }
        Ok(Self { version, settings })
    }
}

/// The request calibration records (and the plan check explains): tenant 1
/// (the largest under Zipf), its note 2 and that note's owner.
fn calibration_request() -> pgbench::Request {
    pgbench::Request {
        tenant: 1,
        user: data::owner_of(2),
        note: 2,
    }
}

/// Everything a dataset's run needs.
struct Bench {
    options: Options,
    superuser: Config,
    admin: Client,
    upstream: (String, u16),
    settings: Vec<Setting>,
    pgbench: PathBuf,
    out_dir: PathBuf,
    password_hash: String,
}

impl Bench {
    fn database_url(&self, port: u16, database: &str) -> String {
        format!(
            "postgres://tenantry_app:{}@{}:{port}/{database}?sslmode=disable",
            data::APP_PASSWORD,
            self.upstream.0
        )
    }

    fn login(&self, runtime_role: bool, database: &str) -> Login {
        let (user, password) = if runtime_role {
            (
                "tenantry_app".to_owned(),
                Some(data::APP_PASSWORD.to_owned()),
            )
        } else {
            (
                self.superuser.get_user().unwrap_or("postgres").to_owned(),
                self.superuser
                    .get_password()
                    .map(|password| String::from_utf8_lossy(password).into_owned()),
            )
        };
        Login {
            host: self.upstream.0.clone(),
            port: self.upstream.1,
            user,
            password,
            dbname: database.to_owned(),
        }
    }

    /// Loads, serves and measures one dataset.
    async fn dataset(
        &self,
        index: usize,
        spec: &Spec,
        results: &mut report::Results,
    ) -> anyhow::Result<()> {
        let database = spec.database();
        eprintln!(
            "[{spec}] creating {database} ({} notes) ...",
            self.options.notes
        );
        let loaded = data::create(&self.superuser, &self.admin, spec, &self.password_hash).await?;
        eprintln!("[{spec}] loaded in {:.1} s", loaded.as_secs_f64());
        results.datasets.push(report::Dataset::of(spec, loaded));
        let picker = std::sync::Arc::new(Picker::new(spec));
        let tokens = std::sync::Arc::new(load::mint_tokens(spec.tenants)?);
        if results.translated.is_empty() {
            let (translated, options) = self.calibrate(&database, &picker, &tokens).await?;
            results.translated = translated;
            results.session_options = options;
        }
        let url = self.database_url(self.upstream.1, &database);
        let log = self.out_dir.join(format!("server-{}.log", spec.database()));
        let starts = if index == 0 { self.options.starts } else { 1 };
        let mut server = self
            .serve(&url, &self.settings, &log, starts, spec, results)
            .await?;
        let target = Target {
            base: format!("http://127.0.0.1:{}", server.port),
            picker,
            tokens,
        };
        self.warm_up(&target).await?;
        let ceiling = self.options.ceiling_at(spec) && !results.translated.is_empty();
        let scripts = if ceiling {
            self.write_scripts(spec, &results.translated)?
        } else {
            BTreeMap::new()
        };
        for rep in 0..self.options.repeats {
            for workload in Workload::MEASURED {
                eprintln!(
                    "[{spec}] repetition {}/{}: {} ...",
                    rep + 1,
                    self.options.repeats,
                    workload.name()
                );
                self.measure_service(index, spec, &server, &target, workload, rep, results)
                    .await?;
                if ceiling {
                    for variant in Variant::ALL {
                        self.measure_pgbench(index, spec, workload, variant, &scripts, results)
                            .await?;
                    }
                }
            }
            if ceiling || (index == 0 && !self.options.ceiling.iter().any(|c| c != "none")) {
                eprintln!(
                    "[{spec}] repetition {}/{}: W6 ...",
                    rep + 1,
                    self.options.repeats
                );
                self.measure_service(index, spec, &server, &target, Workload::W6, rep, results)
                    .await?;
            }
        }
        let mut app = self.superuser.clone();
        app.user("tenantry_app")
            .password(data::APP_PASSWORD)
            .dbname(&database);
        let client = common::connect(&app).await?;
        let options = results.session_options.clone();
        for check in plans::check(
            &client,
            &results.translated,
            &calibration_request(),
            options.as_deref(),
        )
        .await
        {
            results.plans.push((index, check));
        }
        server.stop()?;
        if let Some(dataset) = results.datasets.last_mut() {
            dataset.log_problems = server.log_problems();
        }
        Ok(())
    }

    /// Starts the server `starts` times (each start-up is recorded, the
    /// previous server stopped) and returns the last one.
    async fn serve(
        &self,
        url: &str,
        settings: &[Setting],
        log: &Path,
        starts: usize,
        spec: &Spec,
        results: &mut report::Results,
    ) -> anyhow::Result<Server> {
        let mut server = None;
        for _ in 0..starts {
            if let Some(mut previous) = server.take() {
                Server::stop(&mut previous)?;
            }
            let started = Server::start(
                Path::new(env!("CARGO_BIN_EXE_tenantry")),
                url,
                settings,
                log,
            )
            .await?;
            eprintln!(
                "[{spec}] server ready in {:.0} ms",
                started.startup.as_secs_f64() * 1000.0
            );
            results.startups.push(started.startup);
            server = Some(started);
        }
        server.context("no server was started")
    }

    /// `BENCH_WARMUP_SECONDS` of W5, unmeasured.
    async fn warm_up(&self, target: &Target) -> anyhow::Result<()> {
        if !self.options.warmup.is_zero() {
            load::run(
                target,
                Workload::W5,
                self.options.clients,
                self.options.warmup,
                7,
            )
            .await?;
        }
        Ok(())
    }

    #[expect(clippy::too_many_arguments, reason = "the measurement's coordinates")]
    async fn measure_service(
        &self,
        index: usize,
        spec: &Spec,
        server: &Server,
        target: &Target,
        workload: Workload,
        rep: usize,
        results: &mut report::Results,
    ) -> anyhow::Result<()> {
        let backends = Backends::of(&spec.database());
        let before = Cpu::read(Some(server.pid()));
        let backends_before = backends.snapshot();
        let seed = (rep as u64 + 1) * 1_000_003 + index as u64 * 7919 + workload as u64;
        let phase = load::run(
            target,
            workload,
            self.options.clients,
            self.options.seconds,
            seed,
        )
        .await?;
        let mut cpu = Cpu::read(Some(server.pid())).since(&before);
        cpu.postgres = Some(Backends::used(&backends_before, &backends.snapshot()));
        results.add_service(index, spec, workload, &phase, cpu);
        Ok(())
    }

    async fn measure_pgbench(
        &self,
        index: usize,
        spec: &Spec,
        workload: Workload,
        variant: Variant,
        scripts: &BTreeMap<(Workload, &'static str), PathBuf>,
        results: &mut report::Results,
    ) -> anyhow::Result<()> {
        let parts: Vec<(Workload, u32)> = match workload {
            Workload::W5 => Workload::MIX.to_vec(),
            other => vec![(other, 1)],
        };
        let mut files = Vec::new();
        let mut defines: Vec<(String, String)> = Vec::new();
        for (part, weight) in parts {
            let path = scripts
                .get(&(part, variant.name()))
                .with_context(|| format!("no pgbench script for {}", part.name()))?;
            files.push((path.clone(), weight));
            if let Some(translated) = results.translated.get(&part) {
                for define in &translated.defines {
                    if !defines.iter().any(|(name, _)| *name == define.0) {
                        defines.push(define.clone());
                    }
                }
            }
        }
        let login = self.login(variant == Variant::Service, &spec.database());
        let run = pgbench::run(
            &self.pgbench,
            &login,
            &files,
            &defines,
            self.options.clients,
            pgbench::whole_seconds(self.options.seconds),
            &self.out_dir.join("pgbench-log"),
            &Backends::of(&spec.database()),
            results.session_options.as_deref(),
        )
        .await?;
        if let Some(failure) = &run.failure {
            eprintln!(
                "[{spec}] pgbench {} {}: {failure}",
                workload.name(),
                variant.name()
            );
        }
        results.add_pgbench(index, workload, variant, run);
        Ok(())
    }

    /// Writes every script of `spec`; returns them by (workload, variant).
    fn write_scripts(
        &self,
        spec: &Spec,
        translated: &BTreeMap<Workload, Translated>,
    ) -> anyhow::Result<BTreeMap<(Workload, &'static str), PathBuf>> {
        let mut paths = BTreeMap::new();
        for (workload, translated) in translated {
            if *workload == Workload::W6 {
                continue;
            }
            for variant in Variant::ALL {
                let path = self.out_dir.join("pgbench").join(format!(
                    "{}-{}-{}-{}.sql",
                    spec.tenants,
                    spec.distribution.name(),
                    workload.name().to_lowercase(),
                    variant.name()
                ));
                fs::write(&path, pgbench::script(translated, variant, spec))
                    .with_context(|| format!("could not write {}", path.display()))?;
                paths.insert((*workload, variant.name()), path);
            }
        }
        Ok(paths)
    }

    /// Runs a server behind the capture proxy and records one request of
    /// each workload (after two unrecorded ones that warm the tenant cache
    /// and the connections' statement caches).
    async fn calibrate(
        &self,
        database: &str,
        picker: &std::sync::Arc<Picker>,
        tokens: &std::sync::Arc<Vec<String>>,
    ) -> anyhow::Result<(BTreeMap<Workload, Translated>, Option<String>)> {
        eprintln!("calibrating: recording the SQL of one request per workload ...");
        let proxy = proxy::Proxy::start(format!("{}:{}", self.upstream.0, self.upstream.1)).await?;
        let url = self.database_url(proxy.port(), database);
        let log = self.out_dir.join("server-calibration.log");
        let mut server = Server::start(
            Path::new(env!("CARGO_BIN_EXE_tenantry")),
            &url,
            &self.settings,
            &log,
        )
        .await?;
        let target = Target {
            base: format!("http://127.0.0.1:{}", server.port),
            picker: std::sync::Arc::clone(picker),
            tokens: std::sync::Arc::clone(tokens),
        };
        let client = load::http_client()?;
        let context = calibration_request();
        let pick = load::Pick {
            tenant: context.tenant,
            note: context.note,
            user: context.user,
        };
        let mut translated = BTreeMap::new();
        for workload in [
            Workload::W1,
            Workload::W2,
            Workload::W3,
            Workload::W4,
            Workload::W6,
        ] {
            for _ in 0..2 {
                load::send(&client, &target, workload, pick).await;
            }
            proxy.clear();
            let status = load::send(&client, &target, workload, pick).await;
            // The proxy records a message before forwarding it, and the
            // answer comes after COMMIT was answered; nothing is missing.
            let events = proxy.take();
            let expected = if workload == Workload::W3 { 201 } else { 200 };
            if status != expected {
                bail!(
                    "calibration: {} answered {status}, not {expected}; server log:\n{}",
                    workload.describe(),
                    server::log_tail(&log)
                );
            }
            translated.insert(workload, pgbench::translate(workload, &events, &context)?);
        }
        server.stop()?;
        let options = proxy.options();
        drop(proxy);
        Ok((translated, options))
    }
}
