//! tenantry: a multi-tenant SaaS backend that serves many tenants from shared
//! PostgreSQL tables and isolates them with Row-Level Security.
//!
//! The request path, from Host to RLS:
//!
//! 1. [`startup`] layers: request id, tracing, JSON errors, timeout, body limit.
//! 2. [`tenant`]: the Host is canonicalised and resolved to a tenant through
//!    the registry (cached); unknown hosts are a 404 before anything else.
//! 3. [`auth`]: the bearer token is verified for that tenant only, and the
//!    request counted against the tenant's rate ([`limits`]): a limited
//!    request is refused before it reaches the database.
//! 4. [`api`] handlers validate input into [`domain`] types.
//! 5. [`db::Db::transaction`] opens a transaction, sets `app.tenant_id`
//!    transaction-locally, and hands out a [`db::TenantTx`], the only type
//!    tenant queries accept; PostgreSQL's policies do the isolating.
//!
//! Modules: [`config`] (settings from the environment), [`error`] (the one
//! error type), [`telemetry`] (logs), [`cli`] (`serve`, `migrate`, `dev`),
//! [`dev`] (local development).

pub mod accounts;
pub mod admin;
pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod dev;
pub mod domain;
pub mod error;
pub mod limits;
pub mod onboarding;
pub mod paging;
pub mod serve;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tenant;
