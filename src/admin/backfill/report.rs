//! Where a backfill stands, ring by ring: `tenantry migrate backfill <name>
//! --status`, and the end of every run.
//!
//! The report starts from the registry and joins `backfill_progress` to it,
//! so it counts the tenants that exist now: a tenant purged after its
//! backfill started leaves a progress row that no ring counts, and a tenant
//! onboarded into (or moved to) a ring after that ring was done counts as
//! not started, so the ring is no longer done until the backfill runs again.

use serde::Serialize;

use super::{Admin, Backfill};
use crate::{domain::Ring, error::Result};

/// Where `backfill` stands in the rings asked about.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillReport {
    pub backfill: &'static str,
    pub description: &'static str,
    /// Every ring of the report is done.
    pub done: bool,
    /// In the order canary, early, stable.
    pub rings: Vec<RingReport>,
}

/// Where a backfill stands in one ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RingReport {
    pub ring: Ring,
    /// Tenants in the ring now.
    pub tenants: i64,
    /// Tenants with nothing left to fill.
    pub finished: i64,
    /// Tenants the backfill started and has not finished.
    pub in_progress: i64,
    /// Tenants with no progress yet.
    pub not_started: i64,
    /// Of the tenants not started, those created after the ring's backfill
    /// began: onboarded since, so the run did not see them.
    pub onboarded_since: i64,
    /// Rows filled so far in the ring's tenants (since the last `--restart`).
    pub rows_done: i64,
    /// Every tenant of the ring is finished (a ring without tenants is).
    pub done: bool,
    /// Why a ring that had finished tenants is not done, when that is
    /// worth saying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl RingReport {
    fn new(
        ring: Ring,
        [tenants, finished, in_progress, onboarded_since, rows_done]: [i64; 5],
    ) -> Self {
        let not_started = tenants - finished - in_progress;
        let note = (onboarded_since > 0).then(|| {
            format!(
                "{onboarded_since} tenant(s) onboarded after the ring's backfill began, so \
                 not started: the ring is not done until the backfill runs again"
            )
        });
        Self {
            ring,
            tenants,
            finished,
            in_progress,
            not_started,
            onboarded_since,
            rows_done,
            done: finished == tenants,
            note,
        }
    }
}

impl Admin {
    /// Where `backfill` stands in each of `rings`; reads only.
    pub async fn backfill_status(
        &self,
        backfill: &Backfill,
        rings: &[Ring],
    ) -> Result<BackfillReport> {
        let rows = self
            .db
            .query(
                "with began as (
                     select t.ring, min(p.started_at) as at
                     from tenants t
                     join backfill_progress p on p.tenant = t.id and p.backfill = $1
                     group by t.ring
                 )
                 select t.ring, count(*), count(p.finished_at),
                        count(p.tenant) filter (where p.finished_at is null),
                        count(*) filter (where p.tenant is null and t.created_at > b.at),
                        coalesce(sum(p.rows_done), 0)::bigint
                 from tenants t
                 left join backfill_progress p on p.tenant = t.id and p.backfill = $1
                 left join began b on b.ring = t.ring
                 group by t.ring",
                &[&backfill.name],
            )
            .await?;
        let mut found = Vec::new();
        for row in &rows {
            let ring = Ring::from_db(row.try_get(0)?)?;
            let counts = [
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
                row.try_get(4)?,
                row.try_get(5)?,
            ];
            found.push(RingReport::new(ring, counts));
        }
        let rings: Vec<RingReport> = rings
            .iter()
            .map(|ring| {
                found
                    .iter()
                    .find(|report| report.ring == *ring)
                    .cloned()
                    .unwrap_or_else(|| RingReport::new(*ring, [0; 5]))
            })
            .collect();
        Ok(BackfillReport {
            backfill: backfill.name,
            description: backfill.description,
            done: rings.iter().all(|ring| ring.done),
            rings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_is_done_when_every_tenant_is_finished() {
        assert!(RingReport::new(Ring::Canary, [0; 5]).done);
        assert!(RingReport::new(Ring::Canary, [2, 2, 0, 0, 7]).done);
        let late = RingReport::new(Ring::Canary, [3, 2, 0, 1, 7]);
        assert!(!late.done);
        assert_eq!(late.not_started, 1);
        assert!(
            late.note.is_some(),
            "a tenant that came after the run is explained"
        );
        let running = RingReport::new(Ring::Stable, [3, 1, 1, 0, 7]);
        assert!(!running.done);
        assert_eq!((running.in_progress, running.not_started), (1, 1));
        assert!(running.note.is_none());
    }
}
