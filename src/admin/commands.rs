//! The operator commands of the CLI: `tenantry tenants ...`, `tenantry
//! domains ...` and `tenantry stats`. Each one calls the same [`Admin`]
//! method as the `/admin` API, prints its result as JSON on stdout (for `jq`
//! and scripts), and progress and errors on stderr.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use flate2::{Compression, bufread::MultiGzDecoder, write::GzEncoder};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::{
    Admin,
    purge::DEFAULT_BATCH_SIZE,
    tenants::{NewTenantRequest, TenantChange},
    transfer::{ExportSummary, ImportTarget},
};
use crate::{
    accounts::NewUserRequest,
    auth::password::PasswordHasher,
    config::CliOpsSettings,
    db::analytics::AnalyticsDb,
    domain::{Plan, Slug, TenantStatus},
    error::ApiError,
    paging::{Cursor, Page},
};

/// How the platform audit log names the CLI.
const ACTOR: &str = "cli";

/// `tenantry tenants ...`
#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// List every tenant, newest first.
    List,
    /// Show a tenant with its row counts and custom domains.
    Show { slug: String },
    /// Create a tenant, its owner and optionally a custom domain, in one
    /// transaction. The owner's password is read from the first line of stdin.
    Create(CreateArgs),
    /// Move a tenant to another plan (free, pro, enterprise).
    Plan { slug: String, plan: String },
    /// Suspend a tenant: its next request is refused (403), even with tokens
    /// already issued. Its data stays.
    Suspend { slug: String },
    /// Resume a suspended tenant.
    Resume { slug: String },
    /// Offboard a tenant: suspend it, optionally export it, then purge it.
    Delete {
        slug: String,
        /// Export the tenant to this file before purging it (`.gz`: gzip).
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
        /// Rows per purge transaction; larger tenants are purged in batches.
        #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
        batch_size: i64,
        /// Confirm: the tenant's data is deleted for good.
        #[arg(long)]
        yes: bool,
    },
    /// Remove every row of a suspended tenant and its registry entry. Re-run
    /// to finish a purge that was interrupted.
    Purge {
        slug: String,
        /// Rows per purge transaction; larger tenants are purged in batches.
        #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
        batch_size: i64,
        /// Confirm: the tenant's data is deleted for good.
        #[arg(long)]
        yes: bool,
    },
    /// Write a tenant to an NDJSON export (see docs/OPERATIONS.md, "Export format").
    Export {
        slug: String,
        /// Output file (default stdout); a name ending in `.gz` is gzipped.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Gzip the output even without a `.gz` name.
        #[arg(long)]
        gzip: bool,
    },
    /// Write Terraform's `tenants` variable (plan, verified custom domains)
    /// from the registry, keeping the `limits` already in the file.
    ExportTfvars {
        /// The `*.auto.tfvars.json` file to write (replaced atomically).
        #[arg(
            short,
            long,
            value_name = "FILE",
            default_value = "infra/tenants.auto.tfvars.json"
        )]
        output: PathBuf,
    },
    /// Restore a tenant from an export (plain or gzipped; `-` for stdin),
    /// atomically: into the same tenant (which must not exist), over it with
    /// `--replace` (suspended; its rows are replaced in the same
    /// transaction), or beside it as a new tenant with `--as`.
    Import {
        file: PathBuf,
        /// Import as a new tenant with this slug (fresh ids, no custom domains).
        #[arg(long = "as", value_name = "SLUG", conflicts_with = "replace")]
        as_slug: Option<String>,
        /// Replace the suspended tenant's rows with the file's, in one
        /// transaction: if anything fails, it keeps what it had.
        #[arg(long)]
        replace: bool,
    },
}

/// `tenantry tenants create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    slug: String,
    /// Display name.
    #[arg(long)]
    name: String,
    /// free (default), pro or enterprise.
    #[arg(long)]
    plan: Option<String>,
    #[arg(long)]
    owner_username: String,
    #[arg(long)]
    owner_email: String,
    /// A custom domain to add, pending verification.
    #[arg(long)]
    domain: Option<String>,
    /// Repeating the command with the same key returns the tenant it created.
    #[arg(long)]
    idempotency_key: Option<String>,
}

/// `tenantry domains ...`
#[derive(Debug, Subcommand)]
pub enum DomainsCommand {
    /// Add a custom domain to a tenant, pending verification; prints the TXT
    /// record to publish.
    Add { slug: String, domain: String },
    /// List a tenant's custom domains.
    List { slug: String },
    /// Remove a custom domain from a tenant.
    Remove { slug: String, domain: String },
    /// Check the domain's TXT record (through DNS_RESOLVER) and, if it holds
    /// the token, mark the domain verified: it routes from then on.
    Verify { slug: String, domain: String },
}

/// Runs `tenantry tenants ...`.
pub async fn tenants(command: TenantsCommand) -> anyhow::Result<()> {
    let settings = CliOpsSettings::from_env()?;
    let admin = connect(&settings).await?;
    match command {
        TenantsCommand::List => print(&list_all(&admin).await?),
        TenantsCommand::Show { slug } => print(&admin.show_tenant(&slug).await.map_err(explain)?),
        TenantsCommand::Create(args) => print(&create(&admin, &settings, args).await?),
        TenantsCommand::Plan { slug, plan } => {
            let plan = Plan::parse(&plan).map_err(anyhow::Error::msg)?;
            print(
                &change(
                    &admin,
                    &slug,
                    TenantChange {
                        plan: Some(plan),
                        status: None,
                    },
                )
                .await?,
            )
        }
        TenantsCommand::Suspend { slug } => {
            print(&set_status(&admin, &slug, TenantStatus::Suspended).await?)
        }
        TenantsCommand::Resume { slug } => {
            print(&set_status(&admin, &slug, TenantStatus::Active).await?)
        }
        TenantsCommand::Delete {
            slug,
            export,
            batch_size,
            yes,
        } => {
            confirm(yes, &slug)?;
            if export.as_deref() == Some(Path::new("-")) {
                bail!("--export needs a file: stdout carries the command's result");
            }
            set_status(&admin, &slug, TenantStatus::Suspended).await?;
            if let Some(path) = export {
                export_to(&admin, &slug, Some(&path), false).await?;
            }
            eprintln!("purging {slug}");
            print(
                &admin
                    .purge_tenant(&slug, batch_size, None)
                    .await
                    .map_err(explain)?,
            )
        }
        TenantsCommand::Purge {
            slug,
            batch_size,
            yes,
        } => {
            confirm(yes, &slug)?;
            print(
                &admin
                    .purge_tenant(&slug, batch_size, None)
                    .await
                    .map_err(explain)?,
            )
        }
        TenantsCommand::Export { slug, output, gzip } => {
            match export_to(&admin, &slug, output.as_deref(), gzip).await? {
                // Written to a file: the summary is the command's result.
                Some(summary) => print(&summary),
                None => Ok(()),
            }
        }
        TenantsCommand::ExportTfvars { output } => {
            let tenants = list_all(&admin).await?;
            let registry = admin
                .registry_for_terraform(&tenants)
                .await
                .map_err(explain)?;
            let summary = super::tfvars::write(&output, &registry)?;
            for slug in &summary.removed {
                eprintln!("removed {slug} (no longer in the registry), with its limits");
            }
            print(&summary)
        }
        TenantsCommand::Import {
            file,
            as_slug,
            replace,
        } => {
            let as_slug = as_slug
                .as_deref()
                .map(Slug::parse)
                .transpose()
                .map_err(|m| anyhow::anyhow!("--as: {m}"))?;
            let target = match (&as_slug, replace) {
                (Some(slug), _) => ImportTarget::As(slug),
                (None, true) => ImportTarget::Replace,
                (None, false) => ImportTarget::Same,
            };
            print(&import_from(&admin, &file, target).await?)
        }
    }
}

/// Runs `tenantry domains ...`.
pub async fn domains(command: DomainsCommand) -> anyhow::Result<()> {
    let settings = CliOpsSettings::from_env()?;
    let admin = connect(&settings).await?;
    match command {
        DomainsCommand::Add { slug, domain } => print(
            &admin
                .add_domain(&slug, &domain, None)
                .await
                .map_err(explain)?,
        ),
        DomainsCommand::List { slug } => print(&admin.list_domains(&slug).await.map_err(explain)?),
        DomainsCommand::Remove { slug, domain } => {
            admin
                .remove_domain(&slug, &domain, None)
                .await
                .map_err(explain)?;
            eprintln!("removed {domain} from {slug}");
            Ok(())
        }
        DomainsCommand::Verify { slug, domain } => print(
            &admin
                .verify_domain(&slug, &domain, None)
                .await
                .map_err(explain)?,
        ),
    }
}

/// Runs `tenantry stats`, with the analytics role alone.
pub async fn stats() -> anyhow::Result<()> {
    let analytics = AnalyticsDb::connect(&crate::config::analytics_from_env()?)?;
    analytics.audit().await?;
    print(&analytics.usage(ACTOR, None).await.map_err(explain)?)
}

/// The operations, once the roles they connect as pass the isolation audit.
async fn connect(settings: &CliOpsSettings) -> anyhow::Result<Admin> {
    let admin = Admin::connect(&settings.ops, settings.base_domain.clone())?;
    admin.audit_roles().await?;
    Ok(admin)
}

/// Every tenant, page by page.
async fn list_all(admin: &Admin) -> anyhow::Result<Vec<super::TenantSummary>> {
    let mut page = Page {
        limit: 100,
        after: None,
    };
    let mut all = Vec::new();
    loop {
        let mut tenants = admin.list_tenants(page, None).await.map_err(explain)?;
        let more = page
            .finish(&mut tenants, |tenant| {
                (tenant.created_at, *tenant.id.as_uuid())
            })
            .is_some();
        page.after = tenants.last().map(|last| Cursor {
            at: last.created_at,
            id: *last.id.as_uuid(),
        });
        all.extend(tenants);
        if !more {
            return Ok(all);
        }
    }
}

async fn create(
    admin: &Admin,
    settings: &CliOpsSettings,
    args: CreateArgs,
) -> anyhow::Result<super::tenants::CreatedTenant> {
    let password = read_password()?;
    let request = NewTenantRequest {
        slug: args.slug,
        name: args.name,
        plan: args.plan,
        owner: NewUserRequest {
            username: args.owner_username,
            email: args.owner_email,
            password,
        },
        domain: args.domain,
    };
    let hasher = PasswordHasher::new(settings.password_hashing)?;
    let new = request
        .validate(&hasher, &admin.base_domain, args.idempotency_key)
        .await
        .map_err(explain)?;
    let created = admin.create_tenant(new, None).await.map_err(explain)?;
    if created.replayed {
        eprintln!("already created by an earlier request with this idempotency key");
    }
    Ok(created)
}

/// The owner's password: the first line of stdin (not an argument, which
/// other users of the machine could read in the process list).
fn read_password() -> anyhow::Result<String> {
    if io::stdin().is_terminal() {
        eprint!("owner password: ");
    }
    let mut line = String::new();
    io::stdin()
        .lock()
        .read_line(&mut line)
        .context("could not read the owner's password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!(
            "the owner's password is read from stdin; none was given (e.g. `printf '%s\\n' \"$PASSWORD\" | tenantry tenants create ...`)"
        );
    }
    Ok(password)
}

async fn set_status(
    admin: &Admin,
    slug: &str,
    status: TenantStatus,
) -> anyhow::Result<super::TenantSummary> {
    change(
        admin,
        slug,
        TenantChange {
            plan: None,
            status: Some(status),
        },
    )
    .await
}

async fn change(
    admin: &Admin,
    slug: &str,
    change: TenantChange,
) -> anyhow::Result<super::TenantSummary> {
    admin
        .update_tenant(slug, change, None)
        .await
        .map_err(explain)
}

fn confirm(yes: bool, slug: &str) -> anyhow::Result<()> {
    if yes {
        Ok(())
    } else {
        bail!(
            "this deletes every row of tenant {slug} for good; add --yes to confirm (export it first: `tenantry tenants export {slug} -o {slug}.ndjson.gz`)"
        )
    }
}

/// Exports to `path` (or stdout). A file is written under a temporary name
/// and renamed when complete, so a failed export never leaves a file that
/// looks like a backup. Returns the summary of an export to a file.
async fn export_to(
    admin: &Admin,
    slug: &str,
    path: Option<&Path>,
    gzip: bool,
) -> anyhow::Result<Option<ExportSummary>> {
    let progress = progress_bar("rows");
    let gzip = gzip || path.is_some_and(|path| path.extension().is_some_and(|ext| ext == "gz"));
    let Some(path) = path.filter(|path| path != &Path::new("-")) else {
        let mut out = Sink::new(Box::new(io::stdout().lock()), gzip);
        let summary = admin
            .export_tenant(slug, &mut out, &progress, None)
            .await
            .map_err(explain)?;
        out.finish().context("could not write the export")?;
        progress.finish_and_clear();
        eprintln!(
            "exported {} ({} rows)",
            summary.tenant.slug,
            summary.rows.values().sum::<u64>()
        );
        return Ok(None);
    };
    let partial = path.with_file_name(format!(
        ".{}.partial",
        path.file_name()
            .map(|name| name.to_string_lossy())
            .unwrap_or_default()
    ));
    // Owner-only (it holds password hashes), and never through a link
    // someone planted under the temporary name.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| {
            format!(
                "could not create {} (left by an interrupted export? remove it)",
                partial.display()
            )
        })?;
    let mut out = Sink::new(Box::new(BufWriter::new(file.try_clone()?)), gzip);
    let outcome = admin
        .export_tenant(slug, &mut out, &progress, None)
        .await
        .map_err(explain);
    // On disk before anyone purges the tenant on the strength of this file.
    let written = outcome.and_then(|summary| {
        out.finish()
            .and_then(|()| file.sync_all())
            .context("could not write the export")?;
        Ok(summary)
    });
    let summary = match written {
        Ok(summary) => summary,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };
    if let Err(error) = std::fs::rename(&partial, path) {
        let _ = std::fs::remove_file(&partial);
        return Err(error)
            .with_context(|| format!("could not move the export to {}", path.display()));
    }
    // The rename itself on disk too: a purge may follow at once.
    let directory = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(directory)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("could not flush {}", directory.display()))?;
    progress.finish_and_clear();
    eprintln!("exported {} to {}", summary.tenant.slug, path.display());
    Ok(Some(summary))
}

/// Where an export goes: plain or gzipped.
enum Sink {
    Plain(Box<dyn Write>),
    Gzip(GzEncoder<Box<dyn Write>>),
}

impl Sink {
    fn new(out: Box<dyn Write>, gzip: bool) -> Self {
        if gzip {
            Self::Gzip(GzEncoder::new(out, Compression::default()))
        } else {
            Self::Plain(out)
        }
    }

    /// Writes everything out, including the gzip trailer, reporting errors
    /// that dropping would swallow.
    fn finish(self) -> io::Result<()> {
        match self {
            Self::Plain(mut out) => out.flush(),
            Self::Gzip(encoder) => encoder.finish()?.flush(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(out) => out.write(bytes),
            Self::Gzip(out) => out.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(out) => out.flush(),
            Self::Gzip(out) => out.flush(),
        }
    }
}

async fn import_from(
    admin: &Admin,
    path: &Path,
    target: ImportTarget<'_>,
) -> anyhow::Result<super::transfer::ImportSummary> {
    let (input, size): (Box<dyn Read>, Option<u64>) = if path == Path::new("-") {
        (Box::new(io::stdin().lock()), None)
    } else {
        let file =
            File::open(path).with_context(|| format!("could not open {}", path.display()))?;
        let size = file.metadata().ok().map(|metadata| metadata.len());
        (Box::new(file), size)
    };
    let mut input = BufReader::new(input);
    let gzipped = input
        .fill_buf()
        .context("could not read the export")?
        .starts_with(&[0x1f, 0x8b]);
    let progress = progress_bar("bytes");
    let mut reader: Box<dyn BufRead> = if gzipped {
        Box::new(BufReader::new(MultiGzDecoder::new(input)))
    } else {
        if let Some(size) = size {
            progress.set_length(size);
        }
        Box::new(input)
    };
    let summary = admin
        .import_tenant(&mut reader, target, &progress, None)
        .await
        .map_err(explain)?;
    progress.finish_and_clear();
    for domain in &summary.skipped_domains {
        eprintln!(
            "not imported: custom domain {domain} (it stays with the original tenant; add another with `tenantry domains add`)"
        );
    }
    Ok(summary)
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
fn progress_bar(unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let template =
        format!("{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} ({{eta}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

fn print(value: &impl Serialize) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// An operation's error as an operator should read it: the message, the
/// field, and for unexpected failures the whole cause chain (the CLI is not
/// a client surface; its user runs the database).
fn explain(error: ApiError) -> anyhow::Error {
    match error {
        ApiError::Validation { field, message } => anyhow::anyhow!("{field}: {message}"),
        ApiError::Unexpected(cause) => cause,
        ApiError::Unavailable(cause) => cause.context("temporarily unavailable; try again"),
        other => anyhow::anyhow!("{other}"),
    }
}
