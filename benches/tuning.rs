//! Build and pool-size tuning: the same load against several builds of the
//! service and several `DATABASE_POOL_SIZE` values, interleaved, on one
//! dataset. It is how the release profile (LTO, codegen units, allocator) and
//! the pool-size default were chosen; `benches/tuning.sh` builds the profile
//! variants and runs this twice (builds, then pool sizes). See docs/BENCHMARKS.md's
//! "Build and pool tuning".
//!
//! Knobs: `BENCH_BUILDS` (`label=path,...`: the `tenantry` binaries to
//! compare; default this bench's own build as `bench-profile`),
//! `BENCH_POOL_SIZES` (default `10`), `BENCH_TENANTS` (one count, default
//! 1,000, uniform), `BENCH_NOTES` (default 1,000,000), `BENCH_SECONDS`
//! (default 3), `BENCH_REPEATS` (default 3), `BENCH_CLIENTS` (default 8),
//! `BENCH_WARMUP_SECONDS` (default 2). Every (build, pool size) variant runs
//! each repetition in turn, so a slow minute on a shared machine hurts all of
//! them alike. It prints, per variant and workload, the median req/s, p99 and
//! the server's and PostgreSQL's CPU per request (the CPU figures move least
//! with other load on the machine), and asserts nothing about speed.
//! PostgreSQL is `TEST_DATABASE_URL` (a superuser URL), else 127.0.0.1:5432 as
//! `postgres`.

// The throughput bench's modules; this bench uses part of each.
mod common;
#[path = "throughput/data.rs"]
#[allow(dead_code, reason = "shared with the throughput bench")]
mod data;
#[path = "throughput/load.rs"]
#[allow(dead_code, reason = "shared with the throughput bench")]
mod load;
#[path = "throughput/server.rs"]
#[allow(dead_code, reason = "shared with the throughput bench")]
mod server;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use tokio_postgres::Config;

use self::{
    common::{Machine, Setting, env_or, median, percentile, superuser_config},
    data::{Distribution, Spec},
    load::{Picker, Target, Workload},
    server::{Backends, Cpu, Server},
};

/// The workloads compared: reads, a list, a write and the mix.
const WORKLOADS: [Workload; 4] = [Workload::W1, Workload::W2, Workload::W3, Workload::W5];

/// One binary to compare.
struct Build {
    label: String,
    binary: PathBuf,
}

/// A build served with one pool size.
struct Variant<'a> {
    build: &'a Build,
    pool: usize,
}

/// One measured phase of one variant.
struct Measured {
    variant: usize,
    workload: Workload,
    throughput: f64,
    p99: Option<f64>,
    server_us: f64,
    postgres_us: f64,
    errors: usize,
}

struct Options {
    builds: Vec<Build>,
    pools: Vec<usize>,
    spec: Spec,
    seconds: Duration,
    repeats: usize,
    clients: usize,
    warmup: Duration,
}

impl Options {
    fn from_env() -> anyhow::Result<Self> {
        let builds = match std::env::var("BENCH_BUILDS") {
            Ok(raw) if !raw.trim().is_empty() => raw
                .split(',')
                .map(parse_build)
                .collect::<anyhow::Result<Vec<_>>>()?,
            _ => vec![Build {
                label: "bench-profile".to_owned(),
                binary: PathBuf::from(env!("CARGO_BIN_EXE_tenantry")),
            }],
        };
        let pools = std::env::var("BENCH_POOL_SIZES")
            .unwrap_or_else(|_| "10".to_owned())
            .split(',')
            .map(|size| match size.trim().parse::<usize>() {
                Ok(size @ 1..=200) => Ok(size),
                _ => bail!("BENCH_POOL_SIZES: {size:?} is not a pool size of 1 to 200"),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tenants: u32 = env_or("BENCH_TENANTS", 1000)?;
        let notes: u64 = env_or("BENCH_NOTES", 1_000_000)?;
        if tenants == 0 || tenants > 100_000 || notes < u64::from(tenants) * 3 {
            bail!("BENCH_TENANTS must be 1 to 100,000 and BENCH_NOTES at least 3 per tenant");
        }
        let clients: usize = env_or("BENCH_CLIENTS", 8)?;
        let seconds: u64 = env_or("BENCH_SECONDS", 3)?;
        if clients == 0 || seconds == 0 {
            bail!("BENCH_CLIENTS and BENCH_SECONDS must not be zero");
        }
        Ok(Self {
            builds,
            pools,
            spec: Spec {
                tenants,
                notes,
                distribution: Distribution::Uniform,
            },
            seconds: Duration::from_secs(seconds),
            repeats: env_or("BENCH_REPEATS", 3_usize)?.max(1),
            clients,
            warmup: Duration::from_secs_f64(env_or("BENCH_WARMUP_SECONDS", 2.0_f64)?.max(0.0)),
        })
    }

    fn variants(&self) -> Vec<Variant<'_>> {
        self.builds
            .iter()
            .flat_map(|build| self.pools.iter().map(move |&pool| Variant { build, pool }))
            .collect()
    }
}

/// `label=path`, the path an existing file.
fn parse_build(item: &str) -> anyhow::Result<Build> {
    let (label, path) = item
        .split_once('=')
        .with_context(|| format!("BENCH_BUILDS: {item:?} is not label=path"))?;
    let binary = PathBuf::from(path.trim());
    if !binary.is_file() {
        bail!("BENCH_BUILDS: {} is not a file", binary.display());
    }
    Ok(Build {
        label: label.trim().to_owned(),
        binary,
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` does not, and must
    // not spend minutes here.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("tuning benchmark: run it with benches/tuning.sh or `cargo bench --bench tuning`");
        return Ok(());
    }
    let options = Options::from_env()?;
    let machine = Machine::read();
    let superuser = superuser_config()?;
    let admin = common::connect(&superuser).await?;
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let spec = options.spec;
    let database = spec.database();
    eprintln!("[{spec}] creating {database} ({} notes) ...", spec.notes);
    let password_hash = data::password_hash()?;
    data::create(&superuser, &admin, &spec, &password_hash).await?;
    let outcome = measure_all(&options, &superuser, &out_dir).await;
    data::drop_database(&admin, &database).await?;
    let measured = outcome?;
    let report = render(&options, &machine, &measured);
    println!("{report}");
    let path = out_dir.join("tuning.md");
    std::fs::write(&path, &report)
        .with_context(|| format!("could not write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Every repetition of every variant, variants interleaved.
async fn measure_all(
    options: &Options,
    superuser: &Config,
    out_dir: &Path,
) -> anyhow::Result<Vec<Measured>> {
    let spec = options.spec;
    let target_parts = (
        Arc::new(Picker::new(&spec)),
        Arc::new(load::mint_tokens(spec.tenants)?),
    );
    let host = match superuser.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => bail!("the bench needs PostgreSQL over TCP"),
    };
    let port = superuser.get_ports().first().copied().unwrap_or(5432);
    let url = format!(
        "postgres://tenantry_app:{}@{host}:{port}/{}?sslmode=disable",
        data::APP_PASSWORD,
        spec.database()
    );
    let variants = options.variants();
    let mut measured = Vec::new();
    for rep in 0..options.repeats {
        for (index, variant) in variants.iter().enumerate() {
            eprintln!(
                "repetition {}/{}: {} with a pool of {} ...",
                rep + 1,
                options.repeats,
                variant.build.label,
                variant.pool
            );
            let settings = server::bench_settings(Setting::fixed(
                "DATABASE_POOL_SIZE",
                &variant.pool.to_string(),
            ));
            let log = out_dir.join(format!(
                "tuning-{}-{}.log",
                variant.build.label, variant.pool
            ));
            let mut server = Server::start(&variant.build.binary, &url, &settings, &log).await?;
            let target = Target {
                base: format!("http://127.0.0.1:{}", server.port),
                picker: Arc::clone(&target_parts.0),
                tokens: Arc::clone(&target_parts.1),
            };
            if !options.warmup.is_zero() {
                load::run(&target, Workload::W5, options.clients, options.warmup, 7).await?;
            }
            for workload in WORKLOADS {
                let backends = Backends::of(&spec.database());
                let before = Cpu::read(Some(server.pid()));
                let backends_before = backends.snapshot();
                let seed = (rep as u64 + 1) * 1_000_003 + workload as u64;
                let phase =
                    load::run(&target, workload, options.clients, options.seconds, seed).await?;
                let cpu = Cpu::read(Some(server.pid())).since(&before);
                let postgres = Backends::used(&backends_before, &backends.snapshot());
                let requests = phase.samples.len().max(1) as f64;
                measured.push(Measured {
                    variant: index,
                    workload,
                    throughput: phase.throughput(),
                    p99: percentile(&phase.latencies(|_| true), 0.99),
                    server_us: cpu.server / requests * 1e6,
                    postgres_us: postgres / requests * 1e6,
                    errors: phase.errors(),
                });
            }
            server.stop()?;
        }
    }
    Ok(measured)
}

fn render(options: &Options, machine: &Machine, measured: &[Measured]) -> String {
    let mut out = String::new();
    let spec = options.spec;
    let _ = writeln!(
        out,
        "## Build and pool tuning\n\n{} tenants (uniform), {} notes; {} closed-loop clients; {} s × {} repetitions, variants interleaved, medians.\nMachine: {}{}.\n",
        spec.tenants,
        spec.notes,
        options.clients,
        options.seconds.as_secs(),
        options.repeats,
        machine.describe(),
        if machine.busy() {
            " (not a quiet machine)"
        } else {
            ""
        },
    );
    let _ = writeln!(
        out,
        "req/s, p99 ms, and CPU µs per request of the server / of PostgreSQL:\n"
    );
    let _ = write!(out, "| build | binary | pool |");
    for workload in WORKLOADS {
        let _ = write!(out, " {} |", workload.name());
    }
    let _ = write!(out, "\n|---|---:|---:|");
    for _ in WORKLOADS {
        let _ = write!(out, "---:|");
    }
    out.push('\n');
    for (index, variant) in options.variants().iter().enumerate() {
        let size = std::fs::metadata(&variant.build.binary).map_or_else(
            |_| "?".to_owned(),
            |m| format!("{:.1} MB", m.len() as f64 / 1e6),
        );
        let _ = write!(
            out,
            "| {} | {size} | {} |",
            variant.build.label, variant.pool
        );
        for workload in WORKLOADS {
            let runs: Vec<&Measured> = measured
                .iter()
                .filter(|m| m.variant == index && m.workload == workload)
                .collect();
            let pick = |f: fn(&Measured) -> Option<f64>| {
                median(runs.iter().filter_map(|m| f(m)).collect())
            };
            let errors: usize = runs.iter().map(|m| m.errors).sum();
            let _ = write!(
                out,
                " {} ({}; {}/{}){} |",
                pick(|m| Some(m.throughput)).map_or("-".to_owned(), |v| format!("{v:.0}")),
                pick(|m| m.p99).map_or("-".to_owned(), |v| format!("{v:.2}")),
                pick(|m| Some(m.server_us)).map_or("-".to_owned(), |v| format!("{v:.0}")),
                pick(|m| Some(m.postgres_us)).map_or("-".to_owned(), |v| format!("{v:.0}")),
                if errors > 0 {
                    format!(" ⚠ {errors} errors")
                } else {
                    String::new()
                },
            );
        }
        out.push('\n');
    }
    out
}
