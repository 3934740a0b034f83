//! The boot-time isolation audit: before serving, the service checks that its
//! own database role cannot get around Row-Level Security, and refuses to
//! start otherwise.
//!
//! RLS only isolates tenants if the connecting role is subject to it. A
//! superuser or BYPASSRLS role ignores every policy; a table owner (or a
//! member of the owner's role) can switch RLS off; a table without FORCE
//! exempts its owner; TRUNCATE ignores RLS entirely. Any of these is one
//! misconfigured secret away in production, so each is checked here, from the
//! catalog, as the role the service really uses.

use anyhow::{Context, bail};
use tokio_postgres::Client;

use super::migrate;

/// Runs every check as the connected role and fails with the full list of
/// problems if any is found.
pub async fn check(client: &Client) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    problems.extend(role_problems(client).await?);
    problems.extend(schema_version_problems(client).await?);
    problems.extend(tenant_table_problems(client).await?);
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "refusing to start: the database role fails the isolation audit:\n  - {}\n\
         The service must connect as the runtime role (tenantry_app), not as the owner or a superuser; \
         see README, \"Isolation guarantees\".",
        problems.join("\n  - ")
    )
}

async fn role_problems(client: &Client) -> anyhow::Result<Vec<String>> {
    let row = client
        .query_one(
            "select current_user::text, r.rolsuper, r.rolbypassrls,
                    (select count(*) from pg_class c where c.relowner = r.oid) as owned,
                    array(select other.rolname::text from pg_roles other
                          where (other.rolsuper or other.rolbypassrls) and other.oid <> r.oid
                            and pg_has_role(r.oid, other.oid, 'MEMBER')) as privileged_memberships
             from pg_roles r where r.rolname = current_user",
            &[],
        )
        .await
        .context("could not read the role's attributes")?;
    let role: String = row.get(0);
    let mut problems = Vec::new();
    if row.get::<_, bool>(1) {
        problems.push(format!(
            "role {role} is a superuser (superusers bypass RLS)"
        ));
    }
    if row.get::<_, bool>(2) {
        problems.push(format!("role {role} has BYPASSRLS"));
    }
    let owned: i64 = row.get(3);
    if owned > 0 {
        problems.push(format!(
            "role {role} owns {owned} relation(s); the runtime role must own nothing"
        ));
    }
    let memberships: Vec<String> = row.get(4);
    if !memberships.is_empty() {
        problems.push(format!(
            "role {role} is a member of superuser/BYPASSRLS role(s): {}",
            memberships.join(", ")
        ));
    }
    Ok(problems)
}

async fn schema_version_problems(client: &Client) -> anyhow::Result<Vec<String>> {
    let expected = migrate::latest_version();
    let found = match client
        .query_one(
            "select coalesce(max(version), 0) from schema_migrations",
            &[],
        )
        .await
    {
        Ok(row) => row.get::<_, i32>(0),
        Err(error) if error.as_db_error().is_some() => {
            return Ok(vec![
                "schema_migrations is missing or unreadable: run `tenantry migrate` as the owner role first".into(),
            ]);
        }
        Err(error) => return Err(error).context("could not read schema_migrations"),
    };
    // A newer schema is fine (expand/contract deploys); an older one is not.
    if found < expected {
        return Ok(vec![format!(
            "the database schema is at version {found}, this binary needs {expected}: run `tenantry migrate`"
        )]);
    }
    Ok(Vec::new())
}

/// Every table with a `tenant_id` column must have RLS enabled and forced, at
/// least one policy, an owner the runtime role cannot act as, and no TRUNCATE
/// for the runtime role.
async fn tenant_table_problems(client: &Client) -> anyhow::Result<Vec<String>> {
    let rows = client
        .query(
            "select c.oid::regclass::text, c.relrowsecurity, c.relforcerowsecurity,
                    exists (select 1 from pg_policy p where p.polrelid = c.oid),
                    pg_has_role(current_user, c.relowner, 'MEMBER'),
                    has_table_privilege(current_user, c.oid, 'TRUNCATE')
             from pg_class c
             join pg_namespace n on n.oid = c.relnamespace
             where c.relkind in ('r', 'p')
               and n.nspname not in ('pg_catalog', 'information_schema')
               and exists (select 1 from pg_attribute a
                           where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped)
             order by 1",
            &[],
        )
        .await
        .context("could not read the tenant tables from the catalog")?;
    let mut problems = Vec::new();
    for row in &rows {
        let table: String = row.get(0);
        let checks = [
            (!row.get::<_, bool>(1), "has row-level security disabled"),
            (!row.get::<_, bool>(2), "does not FORCE row-level security"),
            (!row.get::<_, bool>(3), "has no RLS policy"),
            (
                row.get::<_, bool>(4),
                "is owned by this role or a role it belongs to",
            ),
            (
                row.get::<_, bool>(5),
                "can be TRUNCATEd by this role (TRUNCATE ignores RLS)",
            ),
        ];
        problems.extend(
            checks
                .iter()
                .filter(|(failed, _)| *failed)
                .map(|(_, what)| format!("table {table} {what}")),
        );
    }
    if rows.is_empty() {
        problems.push("no table has a tenant_id column: is this the right database?".to_owned());
    }
    Ok(problems)
}
