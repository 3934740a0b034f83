//! The operator commands of the CLI: `tenantry tenants ...`, `tenantry
//! domains ...` and `tenantry stats`. Each one calls the same [`Admin`]
//! method as the `/admin` API, prints its result as JSON on stdout (for `jq`
//! and scripts), and progress and errors on stderr.

use std::{
    io::{self, BufRead, IsTerminal, Write},
    path::Path,
};

use anyhow::{Context, bail};
use serde::Serialize;

use super::{
    Admin,
    tenants::{NewTenantRequest, TenantChange},
    transfer::ImportTarget,
};
use crate::{
    accounts::NewUserRequest,
    auth::password::PasswordHasher,
    config::CliOpsSettings,
    db::analytics::AnalyticsDb,
    domain::{ApiVersion, Plan, Ring, Slug, TenantStatus},
    error::ApiError,
    paging::{Cursor, Page},
};

/// How the platform audit log names the CLI.
mod args;
mod files;

pub use self::args::{CreateArgs, DomainsCommand, TenantsCommand};

use self::files::{export_to, import_from};

const ACTOR: &str = "cli";

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
            let plan = Some(plan);
            print(
                &change(
                    &admin,
                    &slug,
                    TenantChange {
                        plan,
                        ..TenantChange::default()
                    },
                )
                .await?,
            )
        }
        TenantsCommand::Ring { slug, ring } => {
            let ring = Some(Ring::parse(&ring).map_err(anyhow::Error::msg)?);
            print(
                &change(
                    &admin,
                    &slug,
                    TenantChange {
                        ring,
                        ..TenantChange::default()
                    },
                )
                .await?,
            )
        }
        TenantsCommand::ApiVersion { slug, version } => {
            let api_version = Some(ApiVersion::parse(&version).map_err(anyhow::Error::msg)?);
            let change_to = TenantChange {
                api_version,
                ..TenantChange::default()
            };
            print(&change(&admin, &slug, change_to).await?)
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
            status: Some(status),
            ..TenantChange::default()
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
