//! The `tenantry` command line: `serve`, `migrate`, and `dev` (the default).

use std::{process::ExitCode, str::FromStr};

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use tokio_postgres::NoTls;

use crate::{
    admin::commands::{self, DomainsCommand, TenantsCommand},
    config::{MigrateSettings, Settings},
    db::migrate,
    dev,
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
    /// Apply pending migrations as the owner role (MIGRATION_DATABASE_URL).
    Migrate,
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
    /// Per-tenant usage through the audited analytics role
    /// (ANALYTICS_DATABASE_URL).
    Stats,
}

/// Parses the command line, runs the command, and maps failure to exit code 1
/// with the cause chain on stderr.
pub async fn run() -> ExitCode {
    let command = Cli::parse().command.unwrap_or(Command::Dev);
    let (default_format, output) = match command {
        Command::Serve | Command::Migrate => (LogFormat::Json, LogOutput::Stdout),
        Command::Dev => (LogFormat::Pretty, LogOutput::Stdout),
        Command::Tenants { .. } | Command::Domains { .. } | Command::Stats => {
            (LogFormat::Pretty, LogOutput::Stderr)
        }
    };
    let format = match LogFormat::from_env(default_format) {
        Ok(format) => format,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = telemetry::init(format, output) {
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    }
    let result = match command {
        Command::Serve => serve().await,
        Command::Migrate => run_migrations().await,
        Command::Dev => dev::run().await,
        Command::Tenants { command } => commands::tenants(command).await,
        Command::Domains { command } => commands::domains(command).await,
        Command::Stats => commands::stats().await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if format == LogFormat::Json {
                tracing::error!(error = format!("{error:#}"), "tenantry failed");
            }
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let app = Application::build(&settings).await?;
    tracing::info!(port = app.port(), base_domain = %settings.base_domain, "listening");
    app.run_until_stopped().await
}

async fn run_migrations() -> anyhow::Result<()> {
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
    let report = migrate::run(&mut client, &settings.passwords).await?;
    tracing::info!(applied = ?report.applied, version = report.version, "database is migrated");
    Ok(())
}
