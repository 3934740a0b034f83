//! The bench databases: T tenants, a few users each, about `BENCH_NOTES`
//! notes in total spread uniformly or Zipf-skewed over the tenants, written
//! with set-based SQL as the superuser.
//!
//! Every id is derived from small integers with `md5`, so that the load
//! generator (in Rust) and pgbench (in its `\set` arithmetic plus an `md5()`
//! in SQL) can name any row without looking it up:
//!
//! - tenant `t` (1..=T): id `md5('t' || t)`, slug `tenant-{t}`;
//! - its user `u` (1..=U): id `md5('u' || (t * 1000 + u))`, username `user{u}`;
//! - its note `k` (1..=count(t)): id `md5('n' || (t * 10^7 + k))`, owned by
//!   user `(k - 1) % U + 1`.
//!
//! `count(t) = max(U, floor(N · t^-s / H + 0.5))` with `H = Σ t^-s`: `s = 0`
//! is uniform, `s = BENCH_ZIPF_S` (1.1) is Zipf. The same floating-point
//! expression is evaluated by PostgreSQL (here), by Rust (the load
//! generator), and by pgbench (its scripts), and the counts are checked
//! against the database after loading.

use std::{
    fmt,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use md5::{Digest, Md5};
use secrecy::SecretString;
use tenantry::db::{local, migrate};

use crate::common::connect;
use tokio_postgres::{Client, Config};
use uuid::Uuid;

/// Users per tenant.
pub const USERS_PER_TENANT: u32 = 3;
/// Every user's password (W6 signs in with it).
pub const USER_PASSWORD: &str = "bench-user-password";
/// `user key = t * USER_KEY + u`.
pub const USER_KEY: i64 = 1_000;
/// `note key = t * NOTE_KEY + k`.
pub const NOTE_KEY: i64 = 10_000_000;
/// The runtime role's password. Roles are cluster-wide, and the test suite
/// (which may run against the same server at the same time) sets this one;
/// using it too keeps the two from locking each other out.
pub const APP_PASSWORD: &str = "tenantry-test-password";

/// How notes (and requests) are spread over tenants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Distribution {
    Uniform,
    /// Zipf with this exponent: tenant `t` gets a share ∝ t^-s.
    Zipf(f64),
}

impl Distribution {
    /// The exponent `s` (0 for uniform).
    pub fn exponent(self) -> f64 {
        match self {
            Self::Uniform => 0.0,
            Self::Zipf(s) => s,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::Zipf(_) => "zipf",
        }
    }
}

/// One bench database.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub tenants: u32,
    pub notes: u64,
    pub distribution: Distribution,
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} tenants, {}", self.tenants, self.distribution.name())
    }
}

impl Spec {
    /// `H = Σ_{t=1}^{T} t^-s`, summed in order (the scripts embed it).
    pub fn harmonic(&self) -> f64 {
        let s = self.distribution.exponent();
        (1..=self.tenants).map(|t| f64::from(t).powf(-s)).sum()
    }

    /// Notes of tenant `t` (1-based).
    pub fn count(&self, t: u32, harmonic: f64) -> i64 {
        let s = self.distribution.exponent();
        let share = (self.notes as f64 * f64::from(t).powf(-s) / harmonic + 0.5).floor();
        (share as i64).max(i64::from(USERS_PER_TENANT))
    }

    /// Notes of every tenant, index `t - 1`.
    pub fn counts(&self) -> Vec<i64> {
        let harmonic = self.harmonic();
        (1..=self.tenants)
            .map(|t| self.count(t, harmonic))
            .collect()
    }

    /// The database's name.
    pub fn database(&self) -> String {
        format!(
            "bench_throughput_{}_{}_{}",
            self.tenants,
            self.distribution.name(),
            std::process::id()
        )
    }
}

/// The uuid `md5(text)`, as PostgreSQL's `md5(text)::uuid` makes it.
pub fn md5_uuid(text: &str) -> Uuid {
    let digest: [u8; 16] = Md5::digest(text.as_bytes()).into();
    Uuid::from_bytes(digest)
}

pub fn tenant_id(t: u32) -> Uuid {
    md5_uuid(&format!("t{t}"))
}

pub fn user_id(t: u32, u: u32) -> Uuid {
    md5_uuid(&format!("u{}", i64::from(t) * USER_KEY + i64::from(u)))
}

pub fn note_id(t: u32, k: i64) -> Uuid {
    md5_uuid(&format!("n{}", i64::from(t) * NOTE_KEY + k))
}

pub fn slug(t: u32) -> String {
    format!("tenant-{t}")
}

pub fn username(u: u32) -> String {
    format!("user{u}")
}

/// The owner (1-based user number) of note `k`.
pub fn owner_of(k: i64) -> u32 {
    u32::try_from((k - 1).rem_euclid(i64::from(USERS_PER_TENANT)) + 1).unwrap_or(1)
}

/// Drops the database `name` if it exists (sessions are terminated).
pub async fn drop_database(admin: &Client, name: &str) -> anyhow::Result<()> {
    admin
        .batch_execute(&format!("drop database if exists \"{name}\" with (force)"))
        .await
        .with_context(|| format!("could not drop {name}"))
}

/// Creates, migrates and fills the database of `spec`; returns how long
/// loading took (migration excluded).
pub async fn create(
    superuser: &Config,
    admin: &Client,
    spec: &Spec,
    password_hash: &str,
) -> anyhow::Result<Duration> {
    let name = spec.database();
    drop_database(admin, &name).await?;
    local::ensure_owner_role(admin).await?;
    local::ensure_database(admin, &name, None).await?;
    let mut config = superuser.clone();
    config.dbname(&name);
    let mut client = connect(&config).await?;
    client.batch_execute("set role tenantry_owner").await?;
    let passwords = tenantry::config::RolePasswords {
        runtime: Some(SecretString::from(APP_PASSWORD.to_owned())),
        ..tenantry::config::RolePasswords::default()
    };
    migrate::run(&mut client, &passwords)
        .await
        .context("could not migrate the bench database")?;
    client.batch_execute("reset role").await?;
    fill(&client, spec, password_hash).await
}

/// Loads the rows of `spec` into a migrated database (as the superuser) and
/// checks them; returns how long loading took. The same SQL on plain
/// PostgreSQL and on a Citus coordinator whose tables are distributed.
pub async fn fill(client: &Client, spec: &Spec, password_hash: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    load(client, spec, password_hash).await?;
    let loaded = started.elapsed();
    check_counts(client, spec).await?;
    Ok(loaded)
}

async fn load(client: &Client, spec: &Spec, password_hash: &str) -> anyhow::Result<()> {
    let tenants = spec.tenants;
    let users = USERS_PER_TENANT;
    let notes = spec.notes;
    let s = spec.distribution.exponent();
    let harmonic = spec.harmonic();
    // Triggers off for the load (the quota counters are written below from
    // the rows themselves, and the foreign keys hold by construction). On
    // Citus this reaches the coordinator only: the shards' triggers count
    // the rows as they arrive, and the counters below overwrite theirs.
    client
        .batch_execute("set session_replication_role = replica")
        .await?;
    client
        .batch_execute(&format!(
            "insert into tenants (id, slug, name, plan)
             select md5('t' || t)::uuid, 'tenant-' || t, 'Tenant ' || t, 'enterprise'
             from generate_series(1, {tenants}) t"
        ))
        .await
        .context("could not insert the tenants")?;
    client
        .execute(
            &format!(
                "insert into users (tenant_id, id, username, email, password_hash, role, created_at)
                 select md5('t' || t)::uuid, md5('u' || (t::bigint * {USER_KEY} + u))::uuid,
                        'user' || u, 'user' || u || '@bench.test', $1,
                        case when u = 1 then 'owner' else 'member' end, now() - interval '1 day'
                 from generate_series(1, {tenants}) t, generate_series(1, {users}) u"
            ),
            &[&password_hash],
        )
        .await
        .context("could not insert the users")?;
    client
        .batch_execute(&format!(
            "insert into notes (tenant_id, id, user_id, content, created_at, updated_at)
             select md5('t' || c.t)::uuid, md5('n' || (c.t::bigint * {NOTE_KEY} + k))::uuid,
                    md5('u' || (c.t::bigint * {USER_KEY} + (k - 1) % {users} + 1))::uuid,
                    'note ' || k || ': ' || repeat('lorem ipsum ', 8),
                    now() - k * interval '1 second', now() - k * interval '1 second'
             from (select t, greatest({users}, floor({notes}::float8 * power(t::float8, ({neg_s:?})::float8)
                                                     / ({harmonic:?})::float8 + 0.5))::bigint as cnt
                   from generate_series(1, {tenants}) t) c,
                  generate_series(1, c.cnt) k",
            neg_s = -s,
        ))
        .await
        .context("could not insert the notes")?;
    client
        .batch_execute(
            "insert into usage_counters (tenant_id, resource, used)
             select tenant_id, 'users', count(*) from users group by tenant_id
             union all
             select tenant_id, 'notes', count(*) from notes group by tenant_id
             on conflict (tenant_id, resource) do update set used = excluded.used;
             set session_replication_role = origin",
        )
        .await
        .context("could not insert the usage counters")?;
    // BENCH_STATISTICS=absent: the tables are never analyzed (autovacuum off
    // for them, so it stays that way), as after a restore or a bulk load;
    // the request path's plans must not depend on statistics.
    let tables = "tenants, users, notes, usage_counters";
    if statistics_absent() {
        for table in tables.split(", ") {
            client
                .batch_execute(&format!(
                    "alter table {table} set (autovacuum_enabled = false)"
                ))
                .await?;
        }
        client.batch_execute(&format!("vacuum {tables}")).await?;
    } else {
        client
            .batch_execute(&format!("vacuum analyze {tables}"))
            .await?;
    }
    Ok(())
}

/// Whether `BENCH_STATISTICS=absent` asks for datasets without statistics.
pub fn statistics_absent() -> bool {
    std::env::var("BENCH_STATISTICS").is_ok_and(|value| value == "absent")
}

/// The notes per tenant in the database must be the ones the load generator
/// and pgbench compute.
async fn check_counts(client: &Client, spec: &Spec) -> anyhow::Result<()> {
    let expected = spec.counts();
    let rows = client
        .query(
            "select t, coalesce(c.used, 0)
             from generate_series(1, $1::int) t
             left join usage_counters c on c.tenant_id = md5('t' || t)::uuid and c.resource = 'notes'
             order by t",
            &[&i32::try_from(spec.tenants)?],
        )
        .await?;
    let mut wrong = 0;
    for (row, expected) in rows.iter().zip(&expected) {
        let found: i64 = row.get(1);
        if found != *expected {
            wrong += 1;
        }
    }
    if wrong > 0 || rows.len() != expected.len() {
        bail!(
            "{wrong} of {} tenants have another note count in the database than the bench computes",
            spec.tenants
        );
    }
    Ok(())
}

/// One argon2id hash (m = 19 MiB, t = 2, p = 1, as the service makes them)
/// of [`USER_PASSWORD`], computed once and given to every user.
pub fn password_hash() -> anyhow::Result<String> {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, Version};
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|error| anyhow::anyhow!("argon2 parameters: {error}"))?;
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(USER_PASSWORD.as_bytes())
        .map_err(|error| anyhow::anyhow!("argon2 hashing failed: {error}"))?;
    Ok(hash.to_string())
}
