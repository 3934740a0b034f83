//! The service's OpenTelemetry metrics. Every per-request metric carries the
//! tenant (`tenant.id`, and `tenant.slug`, which is one-to-one with it) when
//! the request was resolved to one, so a noisy or failing tenant shows up on
//! its own line. Never user ids, raw paths or hosts: those are unbounded.
//!
//! | name | instrument, unit | attributes |
//! |---|---|---|
//! | `http.server.request.duration` | histogram, `s` | `http.route`, `http.request.method`, `http.response.status_class`, `release.ring` (the revision's), `tenant.id`, `tenant.slug` |
//! | `tenantry.ring.mismatches` | counter, `{request}` | `release.ring` (the revision's), `tenant.ring`, `tenant.slug` |
//! | `tenantry.rate_limit.rejections` | counter, `{request}` | `tenant.id`, `tenant.slug`, `http.route`, `reason` (`rate_limited`, `tenant_busy`) |
//! | `tenantry.db.tenant_transaction.duration` | histogram, `s` | `tenant.id`, `outcome` (`commit`, `rollback`) |
//! | `tenantry.auth.logins` | counter, `{login}` | `tenant.id`, `tenant.slug`, `outcome` (`success`, `invalid_credentials`, `error`) |
//! | `db.client.connection.count` | gauge, `{connection}` | `db.client.connection.pool.name`, `db.client.connection.state` (`idle`, `used`) |
//! | `db.client.connection.max` | gauge, `{connection}` | `db.client.connection.pool.name` |
//! | `db.client.connection.pending_requests` | gauge, `{request}` | `db.client.connection.pool.name` |
//!
//! Instruments come from the global meter provider the first time they are
//! used. Without export nothing is recorded (not even the attributes built).

use std::{sync::OnceLock, time::Duration};

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, Meter},
};

use super::{http::TenantLabels, metrics_exported};
use crate::domain::{Ring, TenantId};

/// Seconds: from 5 ms to 10 s, the boundaries OpenTelemetry's HTTP semantic
/// conventions recommend (the SDK's defaults are meant for milliseconds).
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

struct Instruments {
    request_duration: Histogram<f64>,
    rejections: Counter<u64>,
    transaction_duration: Histogram<f64>,
    logins: Counter<u64>,
    ring_mismatches: Counter<u64>,
}

fn meter() -> Meter {
    opentelemetry::global::meter("tenantry")
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = meter();
        Instruments {
            request_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            rejections: meter
                .u64_counter("tenantry.rate_limit.rejections")
                .with_unit("{request}")
                .with_description(
                    "Requests refused with 429 by a rate limit or the tenant's pool share.",
                )
                .build(),
            transaction_duration: meter
                .f64_histogram("tenantry.db.tenant_transaction.duration")
                .with_unit("s")
                .with_description(
                    "Duration of tenant transactions, from checkout to COMMIT or ROLLBACK.",
                )
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            logins: meter
                .u64_counter("tenantry.auth.logins")
                .with_unit("{login}")
                .with_description("Login attempts by outcome.")
                .build(),
            ring_mismatches: meter
                .u64_counter("tenantry.ring.mismatches")
                .with_unit("{request}")
                .with_description(
                    "Requests served by a revision of another release ring than their tenant's.",
                )
                .build(),
        }
    })
}

fn tenant_attributes(tenant: Option<&TenantLabels>, attributes: &mut Vec<KeyValue>) {
    if let Some(tenant) = tenant {
        attributes.push(KeyValue::new("tenant.id", tenant.id.clone()));
        attributes.push(KeyValue::new("tenant.slug", tenant.slug.clone()));
    }
}

/// One HTTP request served: `route` is the route template, `method` one of
/// the known methods or `_OTHER`.
pub(super) fn request_served(
    route: &str,
    method: &'static str,
    status: u16,
    ring: Ring,
    tenant: Option<&TenantLabels>,
    elapsed: Duration,
) {
    if !metrics_exported() {
        return;
    }
    let mut attributes = vec![
        KeyValue::new("http.route", route.to_owned()),
        KeyValue::new("http.request.method", method),
        KeyValue::new("http.response.status_class", status_class(status)),
        KeyValue::new("release.ring", ring.as_str()),
    ];
    tenant_attributes(tenant, &mut attributes);
    instruments()
        .request_duration
        .record(elapsed.as_secs_f64(), &attributes);
}

/// One request served by a revision of `ring` for a tenant of another ring.
pub(super) fn ring_mismatch(ring: Ring, tenant: &TenantLabels) {
    if !metrics_exported() {
        return;
    }
    let attributes = [
        KeyValue::new("release.ring", ring.as_str()),
        KeyValue::new("tenant.ring", tenant.ring.as_str()),
        KeyValue::new("tenant.slug", tenant.slug.clone()),
    ];
    instruments().ring_mismatches.add(1, &attributes);
}

/// One request refused with a 429 (`reason` is its error code).
pub(super) fn request_rejected(route: &str, reason: &'static str, tenant: Option<&TenantLabels>) {
    if !metrics_exported() {
        return;
    }
    let mut attributes = vec![
        KeyValue::new("http.route", route.to_owned()),
        KeyValue::new("reason", reason),
    ];
    tenant_attributes(tenant, &mut attributes);
    instruments().rejections.add(1, &attributes);
}

/// How a login attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Success,
    InvalidCredentials,
    /// Anything else: busy hashing, database unavailable, ...
    Error,
}

/// One login attempt on the tenant `id` (`slug`).
pub fn login_attempted(id: TenantId, slug: &str, outcome: LoginOutcome) {
    if !metrics_exported() {
        return;
    }
    let outcome = match outcome {
        LoginOutcome::Success => "success",
        LoginOutcome::InvalidCredentials => "invalid_credentials",
        LoginOutcome::Error => "error",
    };
    let attributes = [
        KeyValue::new("outcome", outcome),
        KeyValue::new("tenant.id", id.to_string()),
        KeyValue::new("tenant.slug", slug.to_owned()),
    ];
    instruments().logins.add(1, &attributes);
}

/// One tenant transaction, from checkout to its end.
pub fn tenant_transaction(tenant: TenantId, committed: bool, elapsed: Duration) {
    if !metrics_exported() {
        return;
    }
    let attributes = [
        KeyValue::new("tenant.id", tenant.to_string()),
        KeyValue::new("outcome", if committed { "commit" } else { "rollback" }),
    ];
    instruments()
        .transaction_duration
        .record(elapsed.as_secs_f64(), &attributes);
}

/// Reports the pool's size, use and waiters at every metric collection, for
/// as long as the pool exists. `name` tells pools apart.
pub fn observe_pool(pool: &deadpool_postgres::Pool, name: &'static str) {
    let meter = meter();
    let pool_name = KeyValue::new("db.client.connection.pool.name", name);
    let weak = pool.weak();
    let attributes = pool_name.clone();
    meter
        .u64_observable_gauge("db.client.connection.count")
        .with_unit("{connection}")
        .with_description("Connections open in the pool, by state.")
        .with_callback(move |gauge| {
            if let Some(pool) = weak.upgrade() {
                let status = pool.status();
                let idle = u64::try_from(status.available).unwrap_or(0);
                let used = u64::try_from(status.size).unwrap_or(0).saturating_sub(idle);
                for (state, value) in [("idle", idle), ("used", used)] {
                    let state = KeyValue::new("db.client.connection.state", state);
                    gauge.observe(value, &[attributes.clone(), state]);
                }
            }
        })
        .build();
    let weak = pool.weak();
    let attributes = [pool_name.clone()];
    meter
        .u64_observable_gauge("db.client.connection.max")
        .with_unit("{connection}")
        .with_description("The most connections the pool may open.")
        .with_callback(move |gauge| {
            if let Some(pool) = weak.upgrade() {
                let max = u64::try_from(pool.status().max_size).unwrap_or(0);
                gauge.observe(max, &attributes);
            }
        })
        .build();
    let weak = pool.weak();
    let attributes = [pool_name];
    meter
        .u64_observable_gauge("db.client.connection.pending_requests")
        .with_unit("{request}")
        .with_description("Requests waiting for a connection from the pool.")
        .with_callback(move |gauge| {
            if let Some(pool) = weak.upgrade() {
                let waiting = u64::try_from(pool.status().waiting).unwrap_or(0);
                gauge.observe(waiting, &attributes);
            }
        })
        .build();
}

/// `2xx`, `4xx`, ...: the status as the dashboards group it.
fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_into_their_class() {
        assert_eq!(status_class(200), "2xx");
        assert_eq!(status_class(201), "2xx");
        assert_eq!(status_class(304), "3xx");
        assert_eq!(status_class(429), "4xx");
        assert_eq!(status_class(503), "5xx");
    }
}
