//! Rate-limit state is bounded: keys that went idle are dropped by the
//! sweep, and the heap returns to where it was before they arrived.
//!
//! Its own test binary, because it counts every allocation of the process
//! (an instrumented global allocator) and must be the only test running.

use std::{
    alloc::System,
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, HeaderValue};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tenantry::{
    config::{ClientLimitSettings, LimitSettings},
    domain::{LimitsDocument, TenantId, TenantRecord, TenantStatus},
    limits::{Bucket, Limits},
};
use uuid::Uuid;

#[global_allocator]
static HEAP: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const KEYS: u32 = 100_000;

/// Bytes currently allocated by the whole process (stats_alloc already
/// counts reallocations into the allocated and deallocated totals).
fn live_bytes() -> i64 {
    let stats = HEAP.stats();
    i64::try_from(stats.bytes_allocated).expect("fits")
        - i64::try_from(stats.bytes_deallocated).expect("fits")
}

/// Fast-refilling limits (a key is idle again within microseconds), behind
/// one trusted proxy so that every `X-Forwarded-For` value is a new client.
fn settings() -> LimitSettings {
    LimitSettings {
        document: LimitsDocument::parse(
            r#"{"plans": {"free": {"requests_per_second": 1000000, "burst": 1}}}"#,
        )
        .expect("document"),
        instances: 1,
        client: ClientLimitSettings {
            per_minute: 60_000_000,
            burst: 1,
            trusted_proxy_hops: 1,
        },
        sweep_interval: Duration::from_secs(60),
    }
}

fn tenant(id: Uuid) -> TenantRecord {
    TenantRecord {
        id: TenantId::from_uuid(id),
        slug: "acme".to_owned(),
        name: "Acme".to_owned(),
        plan: tenantry::domain::Plan::Free,
        status: TenantStatus::Active,
        ring: tenantry::domain::Ring::Stable,
        api_version: tenantry::domain::ApiVersion::NEWEST,
    }
}

#[test]
fn idle_limiter_keys_are_swept_and_the_heap_returns_to_its_baseline() {
    let limits = Limits::new(&settings());
    let peer: SocketAddr = "10.0.0.1:4000".parse().expect("peer");
    let policy = limits.policy(&tenant(Uuid::nil()));
    let mut headers = HeaderMap::new();
    // Warm up whatever is allocated once (the clock, the maps' first shards).
    headers.insert("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
    limits
        .clients()
        .admit("login", &headers, Some(peer))
        .expect("admitted");
    policy
        .admit(TenantId::from_uuid(Uuid::nil()), Bucket::SignedIn)
        .expect("admitted");
    std::thread::sleep(Duration::from_millis(10));
    limits.sweep();
    assert_eq!(limits.tracked_keys(), 0);
    let baseline = live_bytes();

    let started = Instant::now();
    for n in 0..KEYS {
        // 100,000 clients (10.x.y.z, as spoofed addresses would arrive) and
        // 100,000 tenants.
        let [_, a, b, c] = n.to_be_bytes();
        let client = format!("10.{a}.{b}.{c}");
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_str(&client).expect("header"),
        );
        limits
            .clients()
            .admit("login", &headers, Some(peer))
            .expect("admitted");
        policy
            .admit(
                TenantId::from_uuid(Uuid::from_u128(u128::from(n) + 1)),
                Bucket::SignedIn,
            )
            .expect("admitted");
    }
    let grown = live_bytes() - baseline;
    assert_eq!(limits.tracked_keys(), 2 * KEYS as usize);
    assert!(
        grown > 2 * i64::from(KEYS) * 16,
        "the keys' state is on the heap: {grown} bytes"
    );

    std::thread::sleep(Duration::from_millis(10));
    limits.sweep();
    let left = live_bytes() - baseline;
    assert_eq!(limits.tracked_keys(), 0, "every idle key was dropped");
    assert!(
        left < 4 * 1024,
        "{left} bytes still held after the sweep (peak {grown} bytes, {:?})",
        started.elapsed()
    );
    println!("200,000 keys: {grown} bytes at peak, {left} bytes after the sweep");
}
