//! Integration tests: the real server on a loopback port, against a real
//! PostgreSQL, one fresh database per test (see helpers.rs).

// A failed unwrap is a failed test with its location; helpers outside
// #[test] functions are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used, reason = "tests fail loudly by design")]

mod admin_api;
mod analytics;
mod backend;
mod backfill;
mod catalog;
mod citus;
mod dashboard;
mod database;
mod dns;
mod domains;
mod faults;
mod helpers;
mod hosts;
mod input;
mod layers;
mod lifecycle;
mod limits;
mod matrix;
mod migrations;
mod notes;
mod offboarding;
mod onboarding;
mod openapi;
mod operations;
mod plans;
mod releases;
mod resilience;
mod rollout_edge;
mod routing;
mod source;
mod telemetry;
mod tenancy;
mod tokens;
mod transfer;
mod users;
