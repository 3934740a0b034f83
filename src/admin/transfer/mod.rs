//! Export and import of one tenant: backup and recovery of a single tenant
//! without touching any other.
//!
//! # The format: `tenantry.tenant-export`, version 1
//!
//! UTF-8 NDJSON (one JSON object per line, `\n`-terminated), optionally
//! gzip-compressed as a whole:
//!
//! 1. a header: `{"format": "tenantry.tenant-export", "version": 1,
//!    "schema_version": 2, "exported_at": "...", "tenant": {..registry row..},
//!    "rows": {"tenant_domains": 1, "users": 3, ...}}`;
//! 2. one line per row, tables in [`EXPORT_ORDER`] (parents first), each
//!    `{"table": "users", "row": {..every column..}}`, the row exactly as
//!    PostgreSQL's `to_jsonb` renders it (password hashes included: the file
//!    is as sensitive as the database);
//! 3. an end line: `{"end": {"rows": {...}, "sha256": "..."}}`, the SHA-256
//!    of every byte before it. A file without it was cut short.
//!
//! An import restores into one transaction: all of the file or nothing. Into
//! the same tenant (same id, same slug: after a purge, or from a backup), or,
//! with `--as <slug>`, into a new tenant beside the original, with fresh ids
//! and every reference remapped; custom domains stay with the original then
//! (a domain belongs to one tenant) and are reported as skipped.
//! Rows of an older schema version import with the columns added since at
//! their defaults; a newer export is refused.
//!
//! Writing a file is `export.rs`; reading one back, `import.rs`.

mod export;
mod file;
mod import;
mod rows;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::{admin::TenantSummary, domain::Slug};

/// The `format` of the header line.
pub const FORMAT: &str = "tenantry.tenant-export";
/// The version of the format this build writes and reads.
pub const VERSION: u32 = 1;
/// Tenant tables in the order they are written and restored: a table comes
/// after every table it references. A test checks it names every table with
/// a `tenant_id` column.
pub const EXPORT_ORDER: &[&str] = &["tenant_domains", "users", "notes", "audit_events"];
/// Tenant tables whose rows are derived from the others and rebuilt by
/// triggers as an import inserts those (the usage counters behind plan
/// quotas), so they are neither written nor read.
pub const DERIVED_TABLES: &[&str] = &["usage_counters"];
/// Columns holding ids of the tenant's own rows, which an import `--as` a
/// new tenant replaces with fresh ids (consistently, so references still
/// match). A test checks every uuid column of a tenant table is listed.
pub const REMAPPED_COLUMNS: &[&str] = &["id", "user_id", "actor_id", "subject"];

/// The first line of an export.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    schema_version: i32,
    exported_at: DateTime<Utc>,
    tenant: Map<String, Value>,
    rows: BTreeMap<String, u64>,
}

/// The last line's content.
#[derive(Debug, Serialize, Deserialize)]
struct End {
    rows: BTreeMap<String, u64>,
    sha256: String,
}

/// What an export wrote.
#[derive(Debug, Serialize)]
pub struct ExportSummary {
    pub tenant: TenantSummary,
    pub rows: BTreeMap<String, u64>,
    /// Bytes written (before compression).
    pub bytes: u64,
}

/// What an import restored.
#[derive(Debug, Serialize)]
pub struct ImportSummary {
    pub tenant: TenantSummary,
    pub rows: BTreeMap<String, u64>,
    /// Custom domains in the file that were not imported (`--as`).
    pub skipped_domains: Vec<String>,
    /// With `--replace`: the rows the tenant had, per table, deleted in the
    /// same transaction as the import.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced: Option<BTreeMap<String, u64>>,
}

/// Where an import puts the file's tenant.
#[derive(Debug, Clone, Copy)]
pub enum ImportTarget<'a> {
    /// The exported tenant itself (same id and slug), which must not exist
    /// (after a purge, or into another database).
    Same,
    /// A new tenant with this slug beside the original: fresh ids, no
    /// custom domains.
    As(&'a Slug),
    /// The exported tenant itself, which exists and is suspended: its rows
    /// are replaced by the file's in one transaction, so a failed import
    /// leaves it exactly as it was (the restore of one tenant from a backup).
    Replace,
}

/// Lower-case hexadecimal of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
