//! The shape of `tenantry tenants ...` and `tenantry domains ...`: their
//! subcommands, arguments and help texts (clap).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::admin::purge::DEFAULT_BATCH_SIZE;

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
    /// Move a tenant to another release ring (canary, early, stable). The
    /// load balancer follows once `export-tfvars` and `terraform apply` ran;
    /// until then the revision of its old ring serves it (and counts the
    /// mismatch).
    Ring { slug: String, ring: String },
    /// Pin a tenant to another dated API version (its clients may still ask
    /// for any version per request with the `Api-Version` header).
    ApiVersion { slug: String, version: String },
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
    /// Write Terraform's `tenants` variable (plan, release ring, verified
    /// custom domains) from the registry, keeping the `limits` already in
    /// the file.
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
    pub(super) slug: String,
    /// Display name.
    #[arg(long)]
    pub(super) name: String,
    /// free (default), pro or enterprise.
    #[arg(long)]
    pub(super) plan: Option<String>,
    #[arg(long)]
    pub(super) owner_username: String,
    #[arg(long)]
    pub(super) owner_email: String,
    /// A custom domain to add, pending verification.
    #[arg(long)]
    pub(super) domain: Option<String>,
    /// Repeating the command with the same key returns the tenant it created.
    #[arg(long)]
    pub(super) idempotency_key: Option<String>,
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
