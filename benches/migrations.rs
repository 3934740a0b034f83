//! How long one expand-style migration takes as tenants grow, in our design
//! (shared tables with a `tenant_id` column, isolated by RLS) and in the
//! schema-per-tenant design (django-tenants style: one schema per tenant,
//! each with its own tables, migrated one schema after the other).
//!
//! For each tenant count it creates a database (`bench_*`), fills it with
//! `USERS_PER_TENANT` users and `USERS_PER_TENANT × NOTES_PER_USER` notes per
//! tenant with set-based SQL, then times the same change to `notes`: add a
//! nullable column, build an index (plain `create index`), add a CHECK
//! constraint `not valid` and validate it. Each design applies it as its
//! migrator would: one transaction for the shared table, one transaction per
//! schema for schema-per-tenant. The databases are dropped afterwards.
//!
//! `cargo bench --bench migrations`; `BENCH_TENANTS=10,1000` picks the tenant
//! counts (default 10 and 10,000). PostgreSQL is `TEST_DATABASE_URL` (a
//! superuser URL), else 127.0.0.1:5432 as `postgres`, as for the tests.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tenantry::db::{local, migrate};
use tokio_postgres::{Client, Config};

use common::{connect, superuser_config};

const USERS_PER_TENANT: i64 = 3;
const NOTES_PER_USER: i64 = 7;
/// Schemas created per transaction (each takes about a dozen locks).
const SCHEMAS_PER_BATCH: i64 = 100;
const DEFAULT_TENANTS: &[i64] = &[10, 10_000];
/// A note's content, about 100 characters, the same in both designs.
const CONTENT: &str = "'note ' || n || ': ' || repeat('lorem ipsum ', 8)";

/// The timed migration on `table`; `tenant_key` leads the index (our design's
/// indexes lead with `tenant_id`).
fn steps(table: &str, tenant_key: &str) -> [(&'static str, String); 4] {
    [
        (
            "add column",
            format!("alter table {table} add column archived_at timestamptz"),
        ),
        (
            "index",
            format!(
                "create index notes_archived_idx on {table} ({tenant_key}user_id, archived_at)"
            ),
        ),
        (
            "check not valid",
            format!(
                "alter table {table} add constraint notes_archived_after_created \
                 check (archived_at is null or archived_at >= created_at) not valid"
            ),
        ),
        (
            "validate",
            format!("alter table {table} validate constraint notes_archived_after_created"),
        ),
    ]
}

/// One design at one tenant count.
struct Measurement {
    tenants: i64,
    design: &'static str,
    notes: i64,
    setup: Duration,
    steps: [Duration; 4],
    migration: Duration,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` does not, and must
    // not spend minutes here.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("migrations benchmark: run it with `cargo bench --bench migrations`");
        return Ok(());
    }
    let counts = tenant_counts()?;
    let superuser = superuser_config()?;
    let admin = connect(&superuser).await?;
    local::ensure_owner_role(&admin).await?;
    let mut results = Vec::new();
    for &tenants in &counts {
        for design in ["shared tables", "schema per tenant"] {
            eprintln!("{design}, {tenants} tenants ...");
            let name = format!(
                "bench_{}_{tenants}_{}",
                design.replace(' ', "_"),
                std::process::id()
            );
            let result = in_database(&superuser, &admin, &name, async |client| {
                if design == "shared tables" {
                    shared_tables(client, tenants).await
                } else {
                    schema_per_tenant(client, tenants).await
                }
            })
            .await?;
            eprintln!(
                "  setup {:.1} s, migration {:.3} s",
                result.setup.as_secs_f64(),
                result.migration.as_secs_f64()
            );
            results.push(result);
        }
    }
    print_results(&results);
    Ok(())
}

fn tenant_counts() -> anyhow::Result<Vec<i64>> {
    let Ok(list) = std::env::var("BENCH_TENANTS") else {
        return Ok(DEFAULT_TENANTS.to_vec());
    };
    list.split(',')
        .map(|count| {
            count
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|count| *count > 0)
                .with_context(|| format!("BENCH_TENANTS: {count:?} is not a positive number"))
        })
        .collect()
}

/// Runs `f` on a superuser connection to a new database `name`, then drops it.
async fn in_database<T>(
    superuser: &Config,
    admin: &Client,
    name: &str,
    f: impl AsyncFnOnce(&mut Client) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let drop_sql = format!("drop database if exists \"{name}\" with (force)");
    admin.batch_execute(&drop_sql).await?;
    local::ensure_database(admin, name, None).await?;
    let mut config = superuser.clone();
    config.dbname(name);
    let outcome = match connect(&config).await {
        Ok(mut client) => f(&mut client).await,
        Err(error) => Err(error),
    };
    admin
        .batch_execute(&drop_sql)
        .await
        .with_context(|| format!("could not drop {name}"))?;
    outcome
}

/// Our design: migrated as the owner role, filled as the superuser (which
/// bypasses RLS), migrated again as the owner.
async fn shared_tables(client: &mut Client, tenants: i64) -> anyhow::Result<Measurement> {
    client.batch_execute("set role tenantry_owner").await?;
    migrate::run(client, &tenantry::config::RolePasswords::default()).await?;
    client.batch_execute("reset role").await?;
    let started = Instant::now();
    client
        .execute(
            "insert into tenants (id, slug, name)
             select gen_random_uuid(), 'tenant-' || i, 'Tenant ' || i from generate_series(1, $1::bigint) i",
            &[&tenants],
        )
        .await?;
    client
        .execute(
            "insert into users (tenant_id, id, username, email, password_hash, role)
             select t.id, gen_random_uuid(), 'user' || u, 'user' || u || '@example.test', 'x',
                    case u when 1 then 'owner' else 'member' end
             from tenants t cross join generate_series(1, $1::bigint) u",
            &[&USERS_PER_TENANT],
        )
        .await?;
    client
        .execute(
            &format!(
                "insert into notes (tenant_id, id, user_id, content)
                 select u.tenant_id, gen_random_uuid(), u.id, {CONTENT}
                 from users u cross join generate_series(1, $1::bigint) n"
            ),
            &[&NOTES_PER_USER],
        )
        .await?;
    let setup = started.elapsed();
    let notes: i64 = client
        .query_one("select count(*) from notes", &[])
        .await?
        .get(0);
    expect_notes(notes, tenants)?;
    client.batch_execute("set role tenantry_owner").await?;
    let mut measurement = Measurement {
        tenants,
        design: "shared tables",
        notes,
        setup,
        steps: [Duration::ZERO; 4],
        migration: Duration::ZERO,
    };
    migrate_notes(client, "notes", "tenant_id, ", &mut measurement).await?;
    Ok(measurement)
}

/// Schema-per-tenant: `tenant_{i}.users` and `tenant_{i}.notes`, the same
/// rows per tenant, created `SCHEMAS_PER_BATCH` schemas per transaction.
async fn schema_per_tenant(client: &mut Client, tenants: i64) -> anyhow::Result<Measurement> {
    client.batch_execute("set role tenantry_owner").await?;
    let started = Instant::now();
    let mut first = 1;
    while first <= tenants {
        let last = (first + SCHEMAS_PER_BATCH - 1).min(tenants);
        client
            .batch_execute(&format!(
                "do $$
                 declare s text;
                 begin
                     for i in {first}..{last} loop
                         s := 'tenant_' || i;
                         execute format('create schema %I', s);
                         execute format('create table %I.users (id uuid primary key, username text not null unique,
                             email text not null, password_hash text not null, role text not null default ''member'',
                             created_at timestamptz not null default now())', s);
                         execute format('create table %I.notes (id uuid primary key,
                             user_id uuid not null references %I.users (id) on delete cascade,
                             content text not null check (char_length(content) between 1 and 10000),
                             created_at timestamptz not null default now(), updated_at timestamptz not null default now())', s, s);
                         execute format('create index notes_owner_newest_idx on %I.notes (user_id, created_at desc, id desc)', s);
                         execute format('insert into %I.users (id, username, email, password_hash)
                             select gen_random_uuid(), ''user'' || u, ''user'' || u || ''@example.test'', ''x''
                             from generate_series(1, {USERS_PER_TENANT}) u', s);
                         execute format('insert into %I.notes (id, user_id, content)
                             select gen_random_uuid(), u.id, %s from %I.users u cross join generate_series(1, {NOTES_PER_USER}) n',
                             s, $c${CONTENT}$c$, s);
                     end loop;
                 end $$"
            ))
            .await
            .with_context(|| format!("could not create schemas {first}..{last}"))?;
        first = last + 1;
    }
    let setup = started.elapsed();
    let per_tenant: i64 = client
        .query_one(
            &format!("select count(*) * {tenants} from tenant_{tenants}.notes"),
            &[],
        )
        .await?
        .get(0);
    expect_notes(per_tenant, tenants)?;
    let mut measurement = Measurement {
        tenants,
        design: "schema per tenant",
        notes: per_tenant,
        setup,
        steps: [Duration::ZERO; 4],
        migration: Duration::ZERO,
    };
    for i in 1..=tenants {
        migrate_notes(client, &format!("tenant_{i}.notes"), "", &mut measurement).await?;
    }
    Ok(measurement)
}

/// Applies [`steps`] to `table` in one transaction, adding the time of each
/// step (and of the whole, commit included) to `measurement`.
async fn migrate_notes(
    client: &mut Client,
    table: &str,
    tenant_key: &str,
    measurement: &mut Measurement,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let transaction = client.transaction().await?;
    for ((label, sql), total) in steps(table, tenant_key).iter().zip(&mut measurement.steps) {
        let step = Instant::now();
        transaction
            .batch_execute(sql)
            .await
            .with_context(|| format!("{label} on {table}"))?;
        *total += step.elapsed();
    }
    transaction.commit().await?;
    measurement.migration += started.elapsed();
    Ok(())
}

fn expect_notes(notes: i64, tenants: i64) -> anyhow::Result<()> {
    let expected = tenants * USERS_PER_TENANT * NOTES_PER_USER;
    if notes != expected {
        bail!("expected {expected} notes for {tenants} tenants, found {notes}");
    }
    Ok(())
}

fn print_results(results: &[Measurement]) {
    let step_names = steps("notes", "").map(|(label, _)| label);
    println!(
        "\n{:>8}  {:<17}  {:>10}  {:>9}  {:>11}  {:>13}  {}",
        "tenants",
        "design",
        "notes rows",
        "setup s",
        "migration s",
        "per tenant ms",
        step_names.map(|name| format!("{name} ms")).join(" / ")
    );
    for m in results {
        #[expect(
            clippy::cast_precision_loss,
            reason = "a tenant count is far below 2^52"
        )]
        let per_tenant_ms = m.migration.as_secs_f64() * 1000.0 / m.tenants as f64;
        println!(
            "{:>8}  {:<17}  {:>10}  {:>9.1}  {:>11.3}  {:>13.3}  {}",
            m.tenants,
            m.design,
            m.notes,
            m.setup.as_secs_f64(),
            m.migration.as_secs_f64(),
            per_tenant_ms,
            m.steps
                .map(|step| format!("{:.1}", step.as_secs_f64() * 1000.0))
                .join(" / ")
        );
    }
}
