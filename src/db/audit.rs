//! The boot-time isolation audit: before serving, the service checks that its
//! own database role cannot get around Row-Level Security, and refuses to
//! start otherwise.
//!
//! RLS only isolates tenants if the connecting role is subject to it, and if
//! every path to tenant rows goes through a policy that compares `tenant_id`.
//! So the audit checks, from the catalog and as the role the service really
//! uses, every way around that we know of:
//!
//! - the role: superuser, BYPASSRLS, REPLICATION (reads the WAL), CREATEROLE
//!   (can grant itself the owner's role), membership in any role, ownership of
//!   anything, CREATE on the database or a schema;
//! - each table with a `tenant_id` column: RLS enabled and forced, a policy,
//!   an owner this role cannot act as, no TRUNCATE (ignores RLS), REFERENCES
//!   or TRIGGER for this role;
//! - each permissive policy that applies to this role on such a table: its
//!   USING and WITH CHECK are exactly the tenant comparison (an extra
//!   `using (true)` policy would OR itself onto the real one);
//! - views readable by this role run as the caller (`security_invoker`);
//!   materialized views and foreign tables (which have no RLS) are not readable;
//! - SECURITY DEFINER functions this role may execute are on [`DEFINER_ALLOWLIST`]
//!   and pin their `search_path`;
//! - the schema is migrated at least as far as this binary expects;
//! - the server has the fixes for the known RLS bugs (CVE-2023-2455 and
//!   CVE-2024-10976: policies applied with the wrong role's plan).

use anyhow::{Context, bail};
use tokio_postgres::Client;

use super::migrate;

/// The tenant comparison as PostgreSQL deparses it: the only USING / WITH
/// CHECK a permissive policy on a tenant table may have for the runtime role.
pub const TENANT_PREDICATE: &str =
    "(tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid)";

/// SECURITY DEFINER functions the runtime role may call: the registry path.
pub const DEFINER_ALLOWLIST: &[&str] = &[
    "public.tenant_by_slug(text)",
    "public.tenant_by_domain(text)",
    "public.tenant_state(uuid)",
    "public.signup_tenant(uuid, text, text, uuid, text, text, text, text, text, uuid[])",
    // Executable only by tenantry_admin: operator onboarding.
    "public.onboard_tenant(uuid, text, text, text, text, text, uuid, text, text, text, text, text, text, text, uuid[])",
    // Executable only by tenantry_analytics; returns aggregates only.
    "public.tenant_usage(text, text)",
];

/// Runs every check as the connected role and fails with the full list of
/// problems if any is found.
pub async fn check(client: &Client) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    problems.extend(role_problems(client).await?);
    problems.extend(schema_version_problems(client).await?);
    problems.extend(tenant_table_problems(client).await?);
    problems.extend(policy_problems(client).await?);
    problems.extend(unguarded_relation_problems(client).await?);
    problems.extend(definer_function_problems(client).await?);
    let version: i32 = client
        .query_one("select current_setting('server_version_num')::int", &[])
        .await
        .context("could not read the server version")?
        .get(0);
    problems.extend(version_problem(version));
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "refusing to start: the database role fails the isolation audit:\n  - {}\n\
         The service must connect as the runtime role (tenantry_app), the operator tools as the admin \
         and analytics roles (tenantry_admin, tenantry_analytics), never as the owner or a superuser; see README, \"Isolation guarantees\".",
        problems.join("\n  - ")
    )
}

async fn role_problems(client: &Client) -> anyhow::Result<Vec<String>> {
    let row = client
        .query_one(
            "select current_user::text, r.rolsuper, r.rolbypassrls, r.rolreplication, r.rolcreaterole,
                    (select count(*) from pg_class c where c.relowner = r.oid),
                    array(select g.rolname::text from pg_auth_members m join pg_roles g on g.oid = m.roleid
                          where m.member = r.oid order by 1),
                    has_database_privilege(r.oid, current_database(), 'CREATE'),
                    has_database_privilege(r.oid, current_database(), 'TEMPORARY'),
                    array(select n.nspname::text from pg_namespace n
                          where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_%'
                            and has_schema_privilege(r.oid, n.oid, 'CREATE') order by 1)
             from pg_roles r where r.rolname = current_user",
            &[],
        )
        .await
        .context("could not read the role's attributes")?;
    let role: String = row.get(0);
    let mut problems = Vec::new();
    let attributes = [
        (1, "is a superuser (superusers bypass RLS)"),
        (2, "has BYPASSRLS"),
        (
            3,
            "has REPLICATION (it could read every tenant from the WAL)",
        ),
        (
            4,
            "has CREATEROLE (it could grant itself the table owner's role)",
        ),
    ];
    for (column, what) in attributes {
        if row.get::<_, bool>(column) {
            problems.push(format!("role {role} {what}"));
        }
    }
    let owned: i64 = row.get(5);
    if owned > 0 {
        problems.push(format!(
            "role {role} owns {owned} relation(s); the runtime role must own nothing"
        ));
    }
    let memberships: Vec<String> = row.get(6);
    if !memberships.is_empty() {
        problems.push(format!(
            "role {role} is a member of role(s) {}; the runtime role must belong to no role",
            memberships.join(", ")
        ));
    }
    if row.get::<_, bool>(7) {
        problems.push(format!("role {role} can create schemas in this database"));
    }
    if row.get::<_, bool>(8) {
        problems.push(format!(
            "role {role} can create temporary objects in this database (functions and triggers \
             of its own would run past the guard triggers)"
        ));
    }
    let schemas: Vec<String> = row.get(9);
    if !schemas.is_empty() {
        problems.push(format!(
            "role {role} can create objects in schema(s) {}",
            schemas.join(", ")
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

/// Tables with a `tenant_id` column, in user schemas (a SQL fragment).
const TENANT_TABLES: &str = "
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p')
      and n.nspname not in ('pg_catalog', 'information_schema')
      and exists (select 1 from pg_attribute a
                  where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped)";

async fn tenant_table_problems(client: &Client) -> anyhow::Result<Vec<String>> {
    let rows = client
        .query(
            &format!(
                "select c.oid::regclass::text, c.relrowsecurity, c.relforcerowsecurity,
                        exists (select 1 from pg_policy p where p.polrelid = c.oid),
                        pg_has_role(current_user, c.relowner, 'MEMBER'),
                        has_table_privilege(current_user, c.oid, 'TRUNCATE'),
                        has_table_privilege(current_user, c.oid, 'REFERENCES'),
                        has_table_privilege(current_user, c.oid, 'TRIGGER')
                 {TENANT_TABLES} order by 1"
            ),
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
            (row.get::<_, bool>(6), "grants REFERENCES to this role"),
            (row.get::<_, bool>(7), "grants TRIGGER to this role"),
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

/// Permissive policies OR together, so one loose policy that applies to the
/// runtime role undoes the tenant comparison of all the others.
async fn policy_problems(client: &Client) -> anyhow::Result<Vec<String>> {
    let rows = client
        .query(
            &format!(
                "select c.oid::regclass::text, p.polname::text,
                        pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
                 from pg_policy p join pg_class c on c.oid = p.polrelid
                 where p.polpermissive
                   and (0 = any(p.polroles) or (select oid from pg_roles where rolname = current_user) = any(p.polroles))
                   and c.oid in (select c.oid {TENANT_TABLES})
                 order by 1, 2"
            ),
            &[],
        )
        .await
        .context("could not read the policies from the catalog")?;
    let mut problems = Vec::new();
    for row in &rows {
        let (table, policy): (String, String) = (row.get(0), row.get(1));
        let using: Option<String> = row.get(2);
        let check: Option<String> = row.get(3);
        // An INSERT-only policy has no USING; a SELECT or DELETE one no WITH CHECK;
        // a FOR ALL one without WITH CHECK checks writes with its USING.
        let using_ok = using.as_deref().is_none_or(|expr| expr == TENANT_PREDICATE);
        let check_ok = check.as_deref().is_none_or(|expr| expr == TENANT_PREDICATE);
        if !(using_ok && check_ok) || (using.is_none() && check.is_none()) {
            problems.push(format!(
                "policy {policy} on {table} applies to this role but does not compare tenant_id with app.tenant_id"
            ));
        }
    }
    Ok(problems)
}

/// A SQL condition: the object `oid` of catalog `catalog` belongs to an
/// installed extension (Citus's `citus_tables` view, its definer functions),
/// as `pg_depend` records it. Such objects come with the extension, are
/// owned and maintained by it, and hold no tenant rows; the audit is about
/// this schema's own objects, so it leaves them out, from the catalog rather
/// than from a list of names (an object of ours named like Citus's is still
/// checked).
fn extension_member(catalog: &str, oid: &str) -> String {
    format!(
        "exists (select 1 from pg_depend d
                 where d.classid = '{catalog}'::regclass and d.objid = {oid} and d.deptype = 'e')"
    )
}

/// Views run with their owner's rights unless `security_invoker`; materialized
/// views and foreign tables have no RLS at all.
async fn unguarded_relation_problems(client: &Client) -> anyhow::Result<Vec<String>> {
    let rows = client
        .query(
            &format!(
                "select c.oid::regclass::text, c.relkind::text,
                    coalesce(c.reloptions @> array['security_invoker=true'], false)
             from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where c.relkind in ('v', 'm', 'f')
               and n.nspname not in ('pg_catalog', 'information_schema')
               and not {member}
               and has_any_column_privilege(current_user, c.oid, 'SELECT')
             order by 1",
                member = extension_member("pg_class", "c.oid")
            ),
            &[],
        )
        .await
        .context("could not read views from the catalog")?;
    let mut problems = Vec::new();
    for row in &rows {
        let (name, kind, invoker): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
        match kind.as_str() {
            "v" if invoker => {}
            "v" => problems.push(format!(
                "view {name} is readable by this role and runs with its owner's rights"
            )),
            "m" => problems.push(format!(
                "materialized view {name} is readable by this role (no RLS applies)"
            )),
            _ => problems.push(format!(
                "foreign table {name} is readable by this role (no RLS applies)"
            )),
        }
    }
    Ok(problems)
}

async fn definer_function_problems(client: &Client) -> anyhow::Result<Vec<String>> {
    let rows = client
        .query(
            &format!(
                "select n.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')',
                    coalesce(array_to_string(p.proconfig, ' '), '') like '%search_path=%'
             from pg_proc p join pg_namespace n on n.oid = p.pronamespace
             where p.prosecdef
               and n.nspname not in ('pg_catalog', 'information_schema')
               and not {member}
               and has_function_privilege(current_user, p.oid, 'EXECUTE')
             order by 1",
                member = extension_member("pg_proc", "p.oid")
            ),
            &[],
        )
        .await
        .context("could not read SECURITY DEFINER functions from the catalog")?;
    let mut problems = Vec::new();
    for row in &rows {
        let (function, pinned): (String, bool) = (row.get(0), row.get(1));
        if !DEFINER_ALLOWLIST.contains(&function.as_str()) {
            problems.push(format!("SECURITY DEFINER function {function} is executable by this role and not on the allowlist"));
        } else if !pinned {
            problems.push(format!(
                "SECURITY DEFINER function {function} does not pin its search_path"
            ));
        }
    }
    Ok(problems)
}

/// The first minor release of each major with the fixes for CVE-2023-2455
/// and CVE-2024-10976 (row security planned under one role, run under another).
const PATCHED_MINORS: &[(i32, i32)] = &[(12, 21), (13, 17), (14, 14), (15, 9), (16, 5), (17, 1)];

/// A problem if the server (as `server_version_num`) lacks those fixes.
pub fn version_problem(server_version_num: i32) -> Option<String> {
    let (major, minor) = (server_version_num / 10_000, server_version_num % 100);
    if major < PATCHED_MINORS[0].0 {
        return Some(format!(
            "PostgreSQL {major} is not supported; use 12 or later (15 or later recommended)"
        ));
    }
    let required = PATCHED_MINORS
        .iter()
        .find(|(m, _)| *m == major)
        .map(|(_, minor)| *minor)?;
    (minor < required).then(|| {
        format!("PostgreSQL {major}.{minor} has known row-security bugs (CVE-2023-2455, CVE-2024-10976); upgrade to {major}.{required} or later")
    })
}

#[cfg(test)]
mod tests {
    use super::version_problem;

    #[test]
    fn servers_without_the_row_security_fixes_are_refused() {
        assert!(version_problem(150_008).is_some_and(|p| p.contains("upgrade to 15.9")));
        assert_eq!(version_problem(150_009), None);
        assert_eq!(version_problem(150_020), None);
        assert!(version_problem(160_004).is_some());
        assert_eq!(version_problem(170_001), None);
        assert_eq!(
            version_problem(180_000),
            None,
            "newer majors ship with the fixes"
        );
        assert!(version_problem(110_022).is_some_and(|p| p.contains("not supported")));
    }
}
