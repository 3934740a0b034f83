//! Data migrations by ring: `tenantry migrate backfill <name>`.
//!
//! A backfill fills what an expand migration added (a nullable column) in
//! the rows written before it, tenant by tenant, ring by ring (canary, early,
//! stable), in batches. Each batch is one tenant transaction of the admin
//! role ([`AdminDb::transaction`](crate::db::admin::AdminDb::transaction)),
//! so RLS still decides which rows a batch can see: only its tenant's. The
//! same transaction moves the tenant's `backfill_progress` row (V8) on: the
//! last key done, the rows filled, and `finished_at` once the tenant has no
//! more rows to fill. Progress is therefore exact: a run stopped at any point
//! (a crash, a kill, a lost connection) loses at most the batch in flight,
//! which rolled back with its progress, and the next run skips the finished
//! tenants and continues the others after their last key.
//!
//! Backfills are named entries of [`BACKFILLS`]: the next one is an entry
//! (its batch statement and the migration it needs), not a new command. The
//! per-ring report ([`BackfillReport`]) is in `report.rs`.

mod report;

use serde::Serialize;
use uuid::Uuid;

pub use self::report::{BackfillReport, RingReport};
use super::Admin;
use crate::{
    db::{Consistency, TenantTx},
    domain::{Ring, TenantId},
    error::{ApiError, Result},
};

/// Rows per batch (one transaction each) unless the operator says otherwise.
pub const DEFAULT_BATCH_SIZE: i64 = 1_000;

/// A named data migration, run tenant by tenant in batches.
#[derive(Debug)]
pub struct Backfill {
    /// What the operator types: `tenantry migrate backfill <name>`.
    pub name: &'static str,
    /// One line for the help text and the report.
    pub description: &'static str,
    /// The schema version that added what it fills; an older database is
    /// refused (there is nothing to fill yet, and the statement would fail).
    pub since_version: i32,
    /// One batch, run in a transaction bound to the tenant `$1` (uuid): fill
    /// up to `$3` (bigint) rows, in primary-key order, whose key is at least
    /// `$2` (uuid; the nil uuid, the smallest, at the start). It must not
    /// match a row it already filled: that is what makes `$2` inclusive and
    /// a re-run harmless. Returns one row: the last key of the batch (NULL
    /// when it was empty), the rows the batch selected and the rows it filled
    /// (fewer when a writer filled some meanwhile). A batch that selected
    /// fewer than `$3` rows was the tenant's last.
    pub batch_sql: &'static str,
}

/// Every backfill this binary knows, oldest first.
pub const BACKFILLS: &[Backfill] = &[Backfill {
    name: "note-size",
    description: "fill notes.size_bytes = octet_length(content) where it is NULL (V8)",
    since_version: 8,
    // Keyset over the primary key (tenant_id, id): each batch is one index
    // range scan, however many rows the tenant has. `size_bytes is null` is
    // checked again in the update, against the row as it is when locked.
    batch_sql: "with batch as (
                    select id from notes
                    where tenant_id = $1 and id >= $2 and size_bytes is null
                    order by id
                    limit $3
                ), filled as (
                    update notes n set size_bytes = octet_length(n.content)
                    from batch
                    where n.tenant_id = $1 and n.id = batch.id and n.size_bytes is null
                    returning n.id
                )
                -- PostgreSQL 15 has no max(uuid): the last key by order.
                select (select id from batch order by id desc limit 1),
                       (select count(*) from batch), (select count(*) from filled)",
}];

impl Backfill {
    /// The backfill called `name`, or an error that lists the known ones.
    pub fn find(name: &str) -> anyhow::Result<&'static Self> {
        BACKFILLS
            .iter()
            .find(|backfill| backfill.name == name)
            .ok_or_else(|| {
                let known: Vec<String> = BACKFILLS
                    .iter()
                    .map(|b| format!("{} ({})", b.name, b.description))
                    .collect();
                anyhow::anyhow!(
                    "unknown backfill {name:?}; known backfills: {}",
                    known.join(", ")
                )
            })
    }
}

/// A tenant a run worked on, for progress output.
#[derive(Debug, Clone, Serialize)]
pub struct TenantProgress {
    pub ring: Ring,
    pub slug: String,
    /// Rows filled so far, this run and earlier ones.
    pub rows_done: i64,
    /// Whether the tenant has no more rows to fill.
    pub finished: bool,
}

/// What one run did, beside the report of where the backfill stands.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RunSummary {
    /// Tenants this run worked on (finished ones are skipped).
    pub tenants: u64,
    /// Rows this run filled.
    pub rows_filled: i64,
    /// Batches, one transaction each.
    pub batches: u64,
}

/// A tenant of a ring and where it stands.
struct Pending {
    id: TenantId,
    slug: String,
    last_id: Option<Uuid>,
    rows_done: i64,
}

impl Admin {
    /// Refuses a database whose schema is older than `backfill` needs, or
    /// that was never migrated, naming the command that fixes it.
    pub async fn check_backfill_schema(&self, backfill: &Backfill) -> anyhow::Result<()> {
        let needs = format!(
            "backfill {} needs schema version {} or later",
            backfill.name, backfill.since_version
        );
        // Unreadable too below the latest version: sql/grants.sql, which
        // lets the admin role read it, is applied with the latest only.
        let rows = self
            .db
            .query(
                "select coalesce(max(version), 0) from schema_migrations",
                &[],
            )
            .await
            .map_err(|error| {
                anyhow::Error::from(error).context(format!(
                    "{needs}; the admin role cannot read schema_migrations: \
                     run `tenantry migrate` first"
                ))
            })?;
        let version: i32 = rows
            .first()
            .map(|row| row.try_get(0))
            .transpose()?
            .unwrap_or(0);
        anyhow::ensure!(
            version >= backfill.since_version,
            "{needs}; the database is at version {version}: run `tenantry migrate` first"
        );
        Ok(())
    }

    /// Runs `backfill` over the tenants of `rings`, in that order, `batch_size`
    /// rows per transaction, calling `progress` after every batch; then
    /// reports where it stands. With `restart`, the rings' progress is
    /// forgotten first, so that every tenant is scanned again (for rows
    /// loaded without triggers into tenants already done, or a changed
    /// backfill).
    pub async fn run_backfill(
        &self,
        backfill: &Backfill,
        rings: &[Ring],
        batch_size: i64,
        restart: bool,
        mut progress: impl FnMut(&TenantProgress),
    ) -> Result<(BackfillReport, RunSummary)> {
        if batch_size < 1 {
            return Err(ApiError::invalid(
                "batch_size",
                "batch size must be at least 1",
            ));
        }
        // Two runs of one backfill would do the same batches twice over (row
        // locks keep the result right, not the work or the progress lines).
        let lock = format!("tenantry migrate backfill {}", backfill.name);
        self.db
            .exclusively(&lock, async || {
                self.run_backfill_rings(backfill, rings, batch_size, restart, &mut progress)
                    .await
            })
            .await?
            .ok_or(ApiError::Conflict(
                "another run of this backfill is in progress; wait for it, or stop it first",
            ))
    }

    /// [`Self::run_backfill`]'s work, under its lock.
    async fn run_backfill_rings(
        &self,
        backfill: &Backfill,
        rings: &[Ring],
        batch_size: i64,
        restart: bool,
        progress: &mut impl FnMut(&TenantProgress),
    ) -> Result<(BackfillReport, RunSummary)> {
        let mut summary = RunSummary::default();
        for ring in rings {
            if restart {
                self.forget_progress(backfill, *ring).await?;
            }
            for tenant in self.pending_tenants(backfill, *ring).await? {
                summary.tenants += 1;
                self.backfill_tenant(backfill, *ring, tenant, batch_size, &mut summary, progress)
                    .await?;
            }
        }
        Ok((self.backfill_status(backfill, rings).await?, summary))
    }

    /// Runs batches for `tenant` until it has no more rows to fill, or until
    /// it left the registry (purged meanwhile).
    async fn backfill_tenant(
        &self,
        backfill: &Backfill,
        ring: Ring,
        mut tenant: Pending,
        batch_size: i64,
        summary: &mut RunSummary,
        progress: &mut impl FnMut(&TenantProgress),
    ) -> Result<()> {
        loop {
            let start = tenant.last_id.unwrap_or(Uuid::nil());
            let batch = self
                .db
                .transaction(tenant.id, Consistency::PerStatement, async |tx| {
                    run_batch(&tx, backfill, start, batch_size).await
                })
                .await?;
            let Some(batch) = batch else {
                tracing::info!(tenant.slug = %tenant.slug, "tenant {} was purged; skipped", tenant.slug);
                return Ok(());
            };
            summary.batches += 1;
            summary.rows_filled += batch.filled;
            tenant.rows_done += batch.filled;
            tenant.last_id = batch.last_id.or(tenant.last_id);
            progress(&TenantProgress {
                ring,
                slug: tenant.slug.clone(),
                rows_done: tenant.rows_done,
                finished: batch.finished,
            });
            if batch.finished {
                return Ok(());
            }
        }
    }

    /// The tenants of `ring` that `backfill` has not finished, oldest first,
    /// with where each one stopped.
    async fn pending_tenants(&self, backfill: &Backfill, ring: Ring) -> Result<Vec<Pending>> {
        let rows = self
            .db
            .query(
                "select t.id, t.slug, p.last_id, coalesce(p.rows_done, 0)
                 from tenants t
                 left join backfill_progress p on p.tenant = t.id and p.backfill = $1
                 where t.ring = $2 and p.finished_at is null
                 order by t.created_at, t.id",
                &[&backfill.name, &ring.as_str()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Pending {
                    id: TenantId::from_uuid(row.try_get(0)?),
                    slug: row.try_get(1)?,
                    last_id: row.try_get(2)?,
                    rows_done: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Deletes the progress rows of `ring`'s tenants (and of tenants no
    /// longer in the registry): the next batches start them from scratch.
    /// Two statements, not a `delete .. where not exists (select .. from
    /// tenants)`: on Citus `tenants` is a reference table and
    /// `backfill_progress` a coordinator-local one, and Citus refuses a
    /// modification of a local table that reads a reference table.
    async fn forget_progress(&self, backfill: &Backfill, ring: Ring) -> Result<()> {
        let others: Vec<Uuid> = self
            .db
            .query("select id from tenants where ring <> $1", &[&ring.as_str()])
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        self.db
            .query(
                "delete from backfill_progress where backfill = $1 and tenant <> all($2)",
                &[&backfill.name, &others],
            )
            .await?;
        Ok(())
    }
}

/// What one batch did.
struct Batch {
    last_id: Option<Uuid>,
    filled: i64,
    finished: bool,
}

/// One batch of `backfill` and its progress row, in the tenant transaction
/// `tx`; `None` when the tenant is no longer in the registry.
async fn run_batch(
    tx: &TenantTx<'_>,
    backfill: &Backfill,
    start: Uuid,
    batch_size: i64,
) -> Result<Option<Batch>> {
    let tenant = *tx.tenant_id().as_uuid();
    let registered = tx
        .query_opt("select 1 from tenants where id = $1", &[&tenant])
        .await?;
    if registered.is_none() {
        return Ok(None);
    }
    let row = tx
        .query_one(backfill.batch_sql, &[&tenant, &start, &batch_size])
        .await?;
    let last_id: Option<Uuid> = row.try_get(0)?;
    let selected: i64 = row.try_get(1)?;
    let filled: i64 = row.try_get(2)?;
    let finished = selected < batch_size;
    // In the batch's transaction: the progress row says exactly what committed.
    tx.execute(
        "insert into backfill_progress as p (backfill, tenant, last_id, rows_done, finished_at)
         values ($1, $2, $3, $4, case when $5 then now() end)
         on conflict (backfill, tenant) do update set
             last_id = coalesce(excluded.last_id, p.last_id),
             rows_done = p.rows_done + excluded.rows_done,
             updated_at = now(),
             finished_at = excluded.finished_at",
        &[&backfill.name, &tenant, &last_id, &filled, &finished],
    )
    .await?;
    Ok(Some(Batch {
        last_id,
        filled,
        finished,
    }))
}
