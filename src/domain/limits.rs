//! What each plan allows, and the `TENANT_LIMITS` document that overrides it
//! per plan and per tenant.
//!
//! Precedence, most specific first: the tenant's entry in `tenants` (by slug),
//! then its plan's entry in `plans`, then the built-in defaults of
//! [`TenantLimits::plan_default`]. Each field falls through on its own, so an
//! override names only what it changes. The tenant's plan itself is the
//! registry's `plan` column (set at onboarding, changed with
//! `tenantry tenants plan`); the document never changes which plan a tenant is on.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, ensure};
use serde::{Deserialize, Deserializer, Serialize};

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::{Plan, Slug};

/// The longest `statement_timeout_ms` accepted: a day.
const MAX_STATEMENT_TIMEOUT_MS: u64 = 86_400_000;

/// Everything a tenant may use. Quotas of `None` are unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TenantLimits {
    /// Sustained requests per second, over all of the tenant's users.
    #[schema(example = 10)]
    pub requests_per_second: u32,
    /// Requests allowed at once above the sustained rate.
    #[schema(example = 20)]
    pub burst: u32,
    /// Database connections the tenant may hold at once (of each instance's pool).
    #[schema(example = 2)]
    pub max_db_connections: usize,
    /// `statement_timeout` of the tenant's transactions.
    #[serde(rename = "statement_timeout_ms", serialize_with = "as_millis")]
    #[schema(value_type = u64, example = 2000)]
    pub statement_timeout: Duration,
    /// Most users; `null` is unlimited.
    #[schema(example = 10)]
    pub max_users: Option<u64>,
    /// Most notes; `null` is unlimited.
    #[schema(example = 1000)]
    pub max_notes: Option<u64>,
}

fn as_millis<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
}

impl TenantLimits {
    /// The built-in defaults of `plan` (the README's plan table).
    pub fn plan_default(plan: Plan) -> Self {
        let (requests_per_second, burst, max_db_connections, timeout_ms, max_users, max_notes) =
            match plan {
                Plan::Free => (10, 20, 2, 2_000, Some(10), Some(1_000)),
                Plan::Pro => (50, 100, 4, 5_000, Some(250), Some(100_000)),
                Plan::Enterprise => (200, 400, 8, 8_000, None, None),
            };
        Self {
            requests_per_second,
            burst,
            max_db_connections,
            statement_timeout: Duration::from_millis(timeout_ms),
            max_users,
            max_notes,
        }
    }

    /// These limits with the fields `changes` sets replaced.
    fn overridden_by(mut self, changes: &LimitsOverride) -> Self {
        let LimitsOverride {
            requests_per_second,
            burst,
            max_db_connections,
            statement_timeout_ms,
            max_users,
            max_notes,
        } = changes;
        self.requests_per_second = requests_per_second.unwrap_or(self.requests_per_second);
        self.burst = burst.unwrap_or(self.burst);
        self.max_db_connections = max_db_connections.unwrap_or(self.max_db_connections);
        if let Some(millis) = statement_timeout_ms {
            self.statement_timeout = Duration::from_millis(*millis);
        }
        self.max_users = max_users.unwrap_or(self.max_users);
        self.max_notes = max_notes.unwrap_or(self.max_notes);
        self
    }
}

/// The `TENANT_LIMITS` document (or the file `TENANT_LIMITS_FILE` names):
/// overrides by plan name and by tenant slug.
///
/// ```json
/// {"plans":   {"free": {"requests_per_second": 5}},
///  "tenants": {"acme": {"requests_per_second": 100, "burst": 200, "max_notes": null}}}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsDocument {
    #[serde(default)]
    plans: BTreeMap<String, LimitsOverride>,
    #[serde(default)]
    tenants: BTreeMap<String, LimitsOverride>,
}

/// Some fields of [`TenantLimits`]; absent fields are inherited. For the
/// quotas, absent inherits and `null` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsOverride {
    requests_per_second: Option<u32>,
    burst: Option<u32>,
    max_db_connections: Option<usize>,
    statement_timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    max_users: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    max_notes: Option<Option<u64>>,
}

/// Tells "absent" (`None`, via `default`) from `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(deserializer).map(Some)
}

impl LimitsDocument {
    /// Parses and checks a document; errors name the offending path.
    pub fn parse(json: &str) -> anyhow::Result<Self> {
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let document: Self = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|error| anyhow::anyhow!("at {}: {}", error.path(), error.inner()))?;
        for (name, changes) in &document.plans {
            Plan::parse(name).map_err(|message| anyhow::anyhow!("plans.{name}: {message}"))?;
            changes.check().with_context(|| format!("plans.{name}"))?;
        }
        for (slug, changes) in &document.tenants {
            Slug::parse(slug).map_err(|message| anyhow::anyhow!("tenants.{slug}: {message}"))?;
            changes.check().with_context(|| format!("tenants.{slug}"))?;
        }
        Ok(document)
    }

    /// The limits of `plan`: its defaults with its `plans` entry applied.
    pub fn plan(&self, plan: Plan) -> TenantLimits {
        let defaults = TenantLimits::plan_default(plan);
        match self.plans.get(plan.as_str()) {
            Some(changes) => defaults.overridden_by(changes),
            None => defaults,
        }
    }

    /// Each tenant with an entry in `tenants`, as (slug, its entry).
    pub fn tenant_overrides(&self) -> impl Iterator<Item = (&str, &LimitsOverride)> {
        self.tenants
            .iter()
            .map(|(slug, changes)| (slug.as_str(), changes))
    }
}

impl LimitsOverride {
    /// The limits of a tenant on `plan` with this entry: the plan's limits
    /// (from `document`) with these fields replaced.
    pub fn applied_to(&self, plan_limits: TenantLimits) -> TenantLimits {
        plan_limits.overridden_by(self)
    }

    fn check(&self) -> anyhow::Result<()> {
        ensure!(
            self.requests_per_second != Some(0),
            "requests_per_second must be at least 1"
        );
        ensure!(self.burst != Some(0), "burst must be at least 1");
        ensure!(
            self.max_db_connections != Some(0),
            "max_db_connections must be at least 1"
        );
        ensure!(
            self.statement_timeout_ms
                .is_none_or(|ms| (1..=MAX_STATEMENT_TIMEOUT_MS).contains(&ms)),
            "statement_timeout_ms must be between 1 and {MAX_STATEMENT_TIMEOUT_MS} \
             (0 would disable the timeout)"
        );
        for (name, quota) in [("max_users", self.max_users), ("max_notes", self.max_notes)] {
            ensure!(
                quota
                    .flatten()
                    .is_none_or(|n| n >= 1 && i64::try_from(n).is_ok()),
                "{name} must be a positive number (at most 2^63 - 1), or null for unlimited"
            );
        }
        Ok(())
    }
}

/// A limiter's verdict for the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStatus {
    /// Requests the bucket holds when full (the burst).
    pub limit: u32,
    /// Requests left in the bucket after this one.
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
}

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

impl RateLimitStatus {
    /// Writes `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
    /// (whole seconds, rounded up), the header fields of the IETF httpapi
    /// draft that clients and gateways most widely understand.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(self.limit));
        headers.insert(
            RATELIMIT_REMAINING.clone(),
            HeaderValue::from(self.remaining),
        );
        headers.insert(
            RATELIMIT_RESET.clone(),
            HeaderValue::from(whole_seconds(self.reset)),
        );
    }

    /// The more restrictive of two statuses (a request checked by two
    /// limiters reports the one closer to refusing it).
    pub fn tighter(self, other: Self) -> Self {
        if other.remaining < self.remaining {
            other
        } else {
            self
        }
    }
}

/// `duration` in whole seconds, rounded up.
pub fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_entries_override_plan_entries_which_override_defaults() {
        let document = LimitsDocument::parse(
            r#"{"plans": {"free": {"requests_per_second": 5, "max_notes": 50}},
                "tenants": {"acme": {"burst": 7, "max_notes": null}}}"#,
        )
        .expect("valid");
        let free = document.plan(Plan::Free);
        assert_eq!(free.requests_per_second, 5);
        assert_eq!(free.burst, TenantLimits::plan_default(Plan::Free).burst);
        assert_eq!(free.max_notes, Some(50));
        let (slug, changes) = document.tenant_overrides().next().expect("acme");
        assert_eq!(slug, "acme");
        let acme = changes.applied_to(free.clone());
        assert_eq!(acme.requests_per_second, 5, "inherited from the plan entry");
        assert_eq!(acme.burst, 7);
        assert_eq!(acme.max_notes, None, "null is unlimited");
        assert_eq!(acme.max_users, free.max_users, "absent is inherited");
        assert_eq!(
            document.plan(Plan::Pro),
            TenantLimits::plan_default(Plan::Pro)
        );
    }

    #[test]
    fn bad_documents_are_refused_with_the_path() {
        let cases = [
            (r#"{"plans": {"gold": {}}}"#, "plans.gold"),
            (r#"{"tenants": {"Not A Slug": {}}}"#, "tenants.Not A Slug"),
            (r#"{"tenants": {"acme": {"rps": 5}}}"#, "tenants.acme"),
            (
                r#"{"tenants": {"acme": {"burst": 0}}}"#,
                "burst must be at least 1",
            ),
            (
                r#"{"plans": {"pro": {"requests_per_second": -1}}}"#,
                "plans.pro.requests_per_second",
            ),
            (r#"{"plan": {}}"#, "unknown field"),
            ("not json", "expected"),
            (
                r#"{"plans": {"free": {"max_users": 0}}}"#,
                "max_users must be a positive",
            ),
            (
                r#"{"plans": {"free": {"max_notes": 9223372036854775808}}}"#,
                "max_notes must be a positive",
            ),
            (
                r#"{"plans": {"free": {"statement_timeout_ms": 3000000000}}}"#,
                "between 1 and",
            ),
        ];
        for (json, expected) in cases {
            let error = format!("{:#}", LimitsDocument::parse(json).expect_err(json));
            assert!(error.contains(expected), "{json}: {error}");
        }
    }
}
