//! Citus (distributed PostgreSQL): detecting it, and refusing to serve on a
//! cluster that is not set up for tenant isolation.
//!
//! The service's SQL is the same on plain PostgreSQL and on a Citus
//! coordinator: every tenant query names its tenant (`where tenant_id = $1`),
//! so Citus routes it to one shard. What differs lives in the database, in
//! `sql/citus/` (see docs/CITUS.md): variants of `bind_tenant` and the
//! quota triggers that reach the workers, the distribution of the tables,
//! and `citus.propagate_set_commands = 'local'` for the service's roles.
//! Without that setting Citus does not forward the tenant to the workers,
//! whose RLS policies then see no tenant: every query would find nothing.
//! So on Citus the service checks all of it at start-up, and refuses to
//! start with the list of what is missing. `DATABASE_CITUS` says whether to
//! expect Citus (`on`), not (`off`), or to look (`auto`, the default: the
//! `citus` extension is installed in the database).

pub mod check;

use std::fmt;

use crate::config::CitusMode;
use anyhow::{Context, bail};
use tokio_postgres::Client;

/// What the service runs on, as found at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    PostgreSql,
    Citus,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PostgreSql => "postgresql",
            Self::Citus => "citus",
        })
    }
}

/// The marker in the body of each function `sql/citus/01_functions.sql`
/// replaces; a migration that replaces one again drops it.
pub const VARIANT_MARKER: &str = "tenantry:citus-variant";

/// The functions that must be the Citus variants on a Citus cluster.
pub const VARIANT_FUNCTIONS: &[&str] = &[
    "bind_tenant(uuid, integer, bigint, bigint, uuid)",
    "count_tenant_rows()",
    "tenant_usage(text, text)",
];

/// Finds the engine as `mode` asks and, on Citus, checks that the cluster
/// is set up as `sql/citus/` sets it up. Errors name what is missing.
pub async fn detect(client: &Client, mode: CitusMode) -> anyhow::Result<Engine> {
    if mode == CitusMode::Off {
        return Ok(Engine::PostgreSql);
    }
    let installed: bool = client
        .query_one(
            "select exists (select 1 from pg_extension where extname = 'citus')",
            &[],
        )
        .await
        .context("could not look for the citus extension")?
        .get(0);
    match (mode, installed) {
        (_, true) => {
            let problems = cluster_problems(client).await?;
            if !problems.is_empty() {
                bail!(
                    "refusing to start: this database is a Citus coordinator that is not set up for \
                     tenantry:\n  - {}\nApply sql/citus/01_functions.sql and sql/citus/02_distribute.sql \
                     on the coordinator after `tenantry migrate` (docs/CITUS.md).",
                    problems.join("\n  - ")
                );
            }
            Ok(Engine::Citus)
        }
        (CitusMode::On, false) => bail!(
            "DATABASE_CITUS=on, but the citus extension is not installed in this database: \
             connect DATABASE_URL to the Citus coordinator (where `create extension citus` has run), \
             or set DATABASE_CITUS=auto or off for plain PostgreSQL (docs/CITUS.md)"
        ),
        _ => Ok(Engine::PostgreSql),
    }
}

/// What is missing on a Citus coordinator, as the connected role sees it.
async fn cluster_problems(client: &Client) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    problems.extend(setting_problem(client).await?);
    problems.extend(distribution(client).await?.problems);
    problems.extend(variant_problems(client).await?);
    Ok(problems)
}

/// `citus.propagate_set_commands` for the connected role, unless it is
/// `local`: without it the tenant would not reach the workers.
async fn setting_problem(client: &Client) -> anyhow::Result<Option<String>> {
    let row = client
        .query_one(
            "select current_setting('citus.propagate_set_commands', true), current_user::text",
            &[],
        )
        .await
        .context("could not read citus.propagate_set_commands")?;
    let (propagation, role): (Option<String>, String) = (row.get(0), row.get(1));
    Ok((propagation.as_deref() != Some("local")).then(|| {
        format!(
            "citus.propagate_set_commands is {propagation:?} for role {role}, not 'local': the tenant \
             would not reach the workers (sql/citus/03_roles.sql sets it)"
        )
    }))
}

/// How the tables are placed, as far as tenant isolation cares.
struct Distribution {
    problems: Vec<String>,
    reference: Vec<String>,
    distributed: Vec<String>,
    colocation: Option<i32>,
}

/// Tenant tables (a tenant_id column in the primary key) must be
/// hash-distributed by tenant_id in one colocation group; the registry
/// (tables with a tenant_id outside their key, or referenced by a foreign
/// key) must be reference tables.
async fn distribution(client: &Client) -> anyhow::Result<Distribution> {
    let rows = client
        .query(
            "with t as (
                 select c.oid, c.relname::text as name,
                        exists (select 1 from pg_constraint k join pg_attribute a
                                  on a.attrelid = k.conrelid and a.attnum = any(k.conkey)
                                where k.conrelid = c.oid and k.contype = 'p' and a.attname = 'tenant_id') as tenant,
                        exists (select 1 from pg_constraint f where f.confrelid = c.oid and f.contype = 'f')
                          or exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id')
                          as registry
                 from pg_class c
                 where c.relkind in ('r', 'p') and c.relnamespace = 'public'::regnamespace)
             select t.name, t.tenant, t.registry, p.partmethod::text,
                    coalesce(pg_catalog.column_to_column_name(p.logicalrelid, p.partkey), ''),
                    p.colocationid, p.repmodel::text
             from t left join pg_dist_partition p on p.logicalrelid = t.oid
             where t.tenant or t.registry
             order by t.name",
            &[],
        )
        .await
        .context("could not read the distribution of the tables")?;
    let mut found = Distribution {
        problems: Vec::new(),
        reference: Vec::new(),
        distributed: Vec::new(),
        colocation: None,
    };
    for row in rows {
        let (name, tenant, method): (String, bool, Option<String>) =
            (row.get(0), row.get(1), row.get(3));
        let key: String = row.get(4);
        let group: Option<i32> = row.get(5);
        // Reference tables and Citus local tables (which Citus makes of a
        // local table that references a reference table) both have
        // partmethod 'n'; only reference tables are replicated ('t').
        let replication: Option<String> = row.get(6);
        if tenant {
            if method.as_deref() != Some("h") || key != "tenant_id" {
                found.problems.push(format!(
                    "tenant table {name} is not distributed by tenant_id"
                ));
            } else if found.colocation.is_some_and(|first| Some(first) != group) {
                found.problems.push(format!(
                    "tenant table {name} is not colocated with the other tenant tables"
                ));
            } else {
                found.colocation = found.colocation.or(group);
                found.distributed.push(name);
            }
        } else if method.as_deref() != Some("n") || replication.as_deref() != Some("t") {
            found
                .problems
                .push(format!("registry table {name} is not a reference table"));
        } else {
            found.reference.push(name);
        }
    }
    Ok(found)
}

/// The functions of [`VARIANT_FUNCTIONS`] that are not (or no longer) the
/// Citus variants, and counting triggers that do not name their resource
/// (on a shard, the table's name is the shard's): `sql/citus/01_functions.sql`
/// was not applied, or a migration replaced them since.
pub async fn variant_problems(client: &Client) -> anyhow::Result<Vec<String>> {
    let mut problems: Vec<String> = client
        .query(
            "select 'trigger ' || t.tgname || ' on ' || c.relname || ' does not pass its table''s name to count_tenant_rows'
             from pg_trigger t join pg_class c on c.oid = t.tgrelid
             where t.tgfoid = to_regprocedure('count_tenant_rows()')
               and (t.tgnargs <> 1 or t.tgargs <> convert_to(c.relname::text, 'UTF8') || '\\000'::bytea)
             order by 1",
            &[],
        )
        .await
        .context("could not read the counting triggers")?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for function in VARIANT_FUNCTIONS {
        let source: Option<String> = client
            .query_one(
                "select prosrc from pg_proc where oid = to_regprocedure($1)",
                &[function],
            )
            .await
            .with_context(|| format!("could not read {function}"))?
            .get(0);
        if !source.is_some_and(|body| body.contains(VARIANT_MARKER)) {
            problems.push(format!(
                "{function} is not the Citus variant of sql/citus/01_functions.sql"
            ));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_parses_case_insensitively_and_refuses_anything_else() {
        assert_eq!("auto".parse(), Ok(CitusMode::Auto));
        assert_eq!("ON".parse(), Ok(CitusMode::On));
        assert_eq!("Off".parse(), Ok(CitusMode::Off));
        assert!("yes".parse::<CitusMode>().is_err());
        assert!("".parse::<CitusMode>().is_err());
    }
}
