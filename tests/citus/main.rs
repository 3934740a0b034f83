//! The cluster target: the API's isolation and lifecycle suites, unchanged,
//! against a real Citus cluster, and the cluster's own tests (routing,
//! distribution, shards moved under load, a migration on the cluster).
//!
//! ```sh
//! CITUS_URL=postgres://postgres@127.0.0.1:9700/postgres cargo test --test citus
//! ```
//!
//! `CITUS_URL` is a superuser URL of the coordinator, in a database where
//! the workers are registered; without it every test fails (see
//! `backend.rs`, and docs/CITUS.md, "Testing on a cluster"). It is not part
//! of `cargo test` (no cluster runs in CI); `.ci/run` compiles and lints it.

// A failed unwrap is a failed test with its location; helpers outside
// #[test] functions are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

// The harness, with this target's backend (Citus) in place of the plain one.
mod backend;
#[path = "../api/dns.rs"]
mod dns;
#[path = "../api/helpers.rs"]
mod helpers;

// The shared suites.
#[path = "../api/admin_api.rs"]
mod admin_api;
#[path = "../api/analytics.rs"]
mod analytics;
#[path = "../api/backfill.rs"]
mod backfill;
mod cluster;
#[path = "../api/database.rs"]
mod database;
#[path = "../api/domains.rs"]
mod domains;
#[path = "../api/limits.rs"]
mod limits;
#[path = "../api/matrix.rs"]
mod matrix;
#[path = "../api/notes.rs"]
mod notes;
#[path = "../api/offboarding.rs"]
mod offboarding;
#[path = "../api/onboarding.rs"]
mod onboarding;
#[path = "../api/openapi.rs"]
mod openapi;
#[path = "../api/releases.rs"]
mod releases;
mod routing;
mod shards;
#[path = "../api/tenancy.rs"]
mod tenancy;
#[path = "../api/tokens.rs"]
mod tokens;
#[path = "../api/transfer.rs"]
mod transfer;
#[path = "../api/users.rs"]
mod users;
