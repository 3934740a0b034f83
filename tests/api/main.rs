//! Integration tests: the real server on a loopback port, against a real
//! PostgreSQL, one fresh database per test (see helpers.rs).

mod helpers;
mod database;
mod tenancy;
