//! The `tenantry` command line: `serve`, `migrate`, `citus check`, and `dev`
//! (the default).

use std::{
    io::Write,
    process::ExitCode,
    str::FromStr,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::NoTls;

use crate::{
    admin::{
        Admin,
        backfill::{self, Backfill},
        commands::{self, DomainsCommand, TenantsCommand},
    },
    config::{CitusCheckSettings, CliOpsSettings, MigrateSettings, Settings},
    db::{citus, migrate},
    dev,
    domain::Ring,
    startup::Application,
    telemetry::{self, LogFormat, LogOutput},
};

/// A multi-tenant SaaS backend: shared PostgreSQL tables isolated by Row-Level Security.
#[derive(Debug, Parser)]
#[command(name = "tenantry", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (production). Needs DATABASE_URL (the runtime role),
    /// JWT_KEYS, and ADMIN_TOKEN unless SIGNUP_MODE=open.
    Serve,
    /// Apply pending migrations as the owner role (MIGRATION_DATABASE_URL);
    /// `migrate backfill` runs data migrations as the admin role.
    Migrate(MigrateArgs),
    /// Local development, the default: a private PostgreSQL cluster unless
    /// DATABASE_URL is set, demo tenants, and curl examples to paste.
    Dev,
    /// Operate on tenants: create, list, show, plan, suspend, resume, delete,
    /// purge, export, import. Needs ADMIN_DATABASE_URL (the admin role).
    Tenants {
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// Manage custom domains: add, list, remove, verify.
    Domains {
        #[command(subcommand)]
        command: DomainsCommand,
    },
    /// Per-tenant usage through the audited analytics role; needs only
    /// ANALYTICS_DATABASE_URL.
    Stats,
    /// Citus: check that a cluster is set up for tenantry (docs/CITUS.md).
    Citus {
        #[command(subcommand)]
        command: CitusCommand,
    },
}

#[derive(Debug, Clone, Copy, Subcommand)]
enum CitusCommand {
    /// Check the cluster through every role connection string that is set
    /// (DATABASE_URL, ADMIN_DATABASE_URL, ANALYTICS_DATABASE_URL) and, with
    /// MIGRATION_DATABASE_URL, the definer roles: tables placed, function
    /// variants, the tenant setting, every role able to log in on every
    /// worker. Prints what passed; exits 1 if anything failed.
    Check,
}

/// `migrate --status` exits with this code when migrations are pending.
pub const EXIT_MIGRATIONS_PENDING: u8 = 3;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct MigrateArgs {
    #[command(subcommand)]
    command: Option<MigrateCommand>,
    /// Only show which migrations are applied and which are pending; change
    /// nothing. Exit code 0: up to date; 3: migrations pending; 1: error, or a
    /// history this binary refuses (an edited migration, a newer release's).
    #[arg(long, conflicts_with = "dry_run")]
    status: bool,
    /// Apply the pending migrations in one transaction that is then rolled
    /// back, and show how long each took. Takes the same locks as a real run.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Subcommand)]
enum MigrateCommand {
    /// Run a named data migration (a backfill) tenant by tenant, ring by
    /// ring, in batches, as the admin role (ADMIN_DATABASE_URL); re-run to
    /// resume. Prints progress on stderr and the per-ring report as JSON on
    /// stdout. Exit code 0: every ring asked for is done; 3: work remains;
    /// 1: error. Backfills: note-size.
    Backfill(BackfillArgs),
}

#[derive(Debug, Args)]
struct BackfillArgs {
    /// The backfill: note-size.
    name: String,
    /// Only this ring (canary, early, stable); without it, every ring in
    /// that order.
    #[arg(long)]
    ring: Option<String>,
    /// Rows per batch; each batch is one transaction of one tenant.
    #[arg(long, default_value_t = backfill::DEFAULT_BATCH_SIZE,
          value_parser = clap::value_parser!(i64).range(1..))]
    batch_size: i64,
    /// Only print the per-ring report; change nothing.
    #[arg(long, conflicts_with_all = ["batch_size", "restart"])]
    status: bool,
    /// Forget the progress of the rings first and scan every tenant again:
    /// after a backfill's statement changed, or rows were loaded without
    /// triggers (`pg_restore --disable-triggers`) into finished tenants, or
    /// to prove nothing was missed. To continue an interrupted run, run
    /// again without it.
    #[arg(long)]
    restart: bool,
}

/// Parses the command line, runs the command, and maps failure to exit code 1
/// with the cause chain on stderr.
pub async fn run() -> ExitCode {
    let command = Cli::parse().command.unwrap_or(Command::Dev);
    let (default_format, output) = match &command {
        // A report on stdout: logs go to stderr.
        Command::Migrate(MigrateArgs {
            command: Some(_), ..
        }) => (LogFormat::Pretty, LogOutput::Stderr),
        Command::Migrate(MigrateArgs {
            status, dry_run, ..
        }) if *status || *dry_run => (LogFormat::Json, LogOutput::Stderr),
        Command::Serve | Command::Migrate(_) => (LogFormat::Json, LogOutput::Stdout),
        Command::Dev => (LogFormat::Pretty, LogOutput::Stdout),
        Command::Tenants { .. }
        | Command::Domains { .. }
        | Command::Stats
        | Command::Citus { .. } => (LogFormat::Pretty, LogOutput::Stderr),
    };
    let format = match LogFormat::from_env(default_format) {
        Ok(format) => format,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = match telemetry::init(format, output) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        Command::Serve => serve().await.map(|()| ExitCode::SUCCESS),
        Command::Migrate(MigrateArgs {
            command: Some(MigrateCommand::Backfill(args)),
            ..
        }) => run_backfill(args).await,
        Command::Migrate(args) => run_migrations(args).await,
        Command::Dev => dev::run().await.map(|()| ExitCode::SUCCESS),
        Command::Tenants { command } => {
            commands::tenants(command).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Domains { command } => {
            commands::domains(command).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Stats => commands::stats().await.map(|()| ExitCode::SUCCESS),
        Command::Citus {
            command: CitusCommand::Check,
        } => citus_check().await,
    };
    let code = match result {
        Ok(code) => code,
        Err(error) => {
            if format == LogFormat::Json {
                tracing::error!(error = format!("{error:#}"), "tenantry failed");
            }
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    };
    // After the server drained: the last requests' spans and metrics go out.
    telemetry.shutdown().await;
    code
}

async fn serve() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let app = Application::build(&settings).await?;
    tracing::info!(port = app.port(), base_domain = %settings.base_domain, "listening");
    app.run_until_stopped().await
}

async fn citus_check() -> anyhow::Result<ExitCode> {
    let settings = CitusCheckSettings::from_env()?;
    let mut clients = Vec::new();
    for (variable, url) in &settings.login {
        clients.push((*variable, connect(variable, url).await?));
    }
    let owner = match &settings.owner {
        Some(url) => Some(connect("MIGRATION_DATABASE_URL", url).await?),
        None => None,
    };
    let login: Vec<citus::check::Connection<'_>> = clients
        .iter()
        .map(|(variable, client)| citus::check::Connection { variable, client })
        .collect();
    let owner = owner.as_ref().map(|client| citus::check::Connection {
        variable: "MIGRATION_DATABASE_URL",
        client,
    });
    let report = citus::check::run(&login, owner.as_ref()).await?;
    print!("{report}");
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One plain connection for `variable`'s connection string.
async fn connect(variable: &str, url: &SecretString) -> anyhow::Result<tokio_postgres::Client> {
    let config = tokio_postgres::Config::from_str(url.expose_secret())
        .with_context(|| format!("{variable} is not a valid PostgreSQL connection string"))?;
    let (client, connection) = config
        .connect(NoTls)
        .await
        .with_context(|| format!("could not connect with {variable}"))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::error!(error = %error, "database connection failed");
        }
    });
    Ok(client)
}

async fn run_migrations(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let settings = MigrateSettings::from_env()?;
    let config = tokio_postgres::Config::from_str(settings.url.expose_secret())
        .context("MIGRATION_DATABASE_URL is not a valid PostgreSQL connection string")?;
    let (mut client, connection) = config
        .connect(NoTls)
        .await
        .context("could not connect as the owner role")?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::error!(error = %error, "migration connection failed");
        }
    });
    if args.status {
        let status = migrate::status(&client).await?;
        print!("{status}");
        return match status.verdict() {
            migrate::Verdict::UpToDate => Ok(ExitCode::SUCCESS),
            migrate::Verdict::Pending => Ok(ExitCode::from(EXIT_MIGRATIONS_PENDING)),
            migrate::Verdict::Diverged => anyhow::bail!("{}", status.problems().join("; ")),
        };
    }
    if args.dry_run {
        print!("{}", migrate::dry_run(&mut client).await?);
        return Ok(ExitCode::SUCCESS);
    }
    let report = migrate::run(&mut client, &settings.passwords).await?;
    tracing::info!(applied = ?report.applied, version = report.version, "database is migrated");
    Ok(ExitCode::SUCCESS)
}

/// `tenantry migrate backfill`: checks its arguments before connecting, so
/// a wrong name or ring changes nothing.
async fn run_backfill(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let backfill = Backfill::find(&args.name)?;
    let rings = match &args.ring {
        Some(ring) => vec![Ring::parse(ring).map_err(|m| anyhow::anyhow!("--ring {ring:?}: {m}"))?],
        None => Ring::ALL.to_vec(),
    };
    let settings = CliOpsSettings::from_env()?;
    let admin = Admin::connect(&settings.ops, settings.base_domain.clone())?;
    // Before the audit, which would refuse an old schema less specifically.
    admin.check_backfill_schema(backfill).await?;
    admin.audit_roles().await?;
    let report = if args.status {
        admin.backfill_status(backfill, &rings).await?
    } else {
        // A line per finished tenant, and every 10 s for a long one.
        let mut last_line = Instant::now();
        let (report, summary) = admin
            .run_backfill(backfill, &rings, args.batch_size, args.restart, |tenant| {
                if tenant.finished || last_line.elapsed() >= Duration::from_secs(10) {
                    let state = if tenant.finished { "done" } else { "running" };
                    eprintln!(
                        "{} {}: {}: {state}, {} rows filled",
                        backfill.name, tenant.ring, tenant.slug, tenant.rows_done
                    );
                    last_line = Instant::now();
                }
            })
            .await?;
        eprintln!(
            "{}: this run filled {} rows in {} batches over {} tenants",
            backfill.name, summary.rows_filled, summary.batches, summary.tenants
        );
        report
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &report)?;
    writeln!(out)?;
    Ok(if report.done {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_MIGRATIONS_PENDING)
    })
}
