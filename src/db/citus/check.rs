//! `tenantry citus check`: what an operator runs after setting up a cluster
//! (or changing one), printing what passed and what did not.
//!
//! Through each connection string it is given, it checks what that role
//! needs: the cluster's shape as the role sees it (tables placed, function
//! variants), the setting that forwards the tenant to the workers, and that
//! the role gets in on every worker. Through the owner's connection (a
//! member of the NOLOGIN-by-default definer roles) it checks that the
//! definer roles get in too: Citus connects to the workers as them when
//! onboarding writes the registry and when `tenant_usage` counts rows.

use std::fmt;

use anyhow::Context;
use tokio_postgres::Client;

use super::{VARIANT_FUNCTIONS, distribution, setting_problem, variant_problems};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub passed: bool,
    /// What was checked: `tables`, `functions`, or a role.
    pub subject: String,
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed { "ok  " } else { "FAIL" };
        write!(f, "{verdict}  {}: {}", self.subject, self.detail)
    }
}

/// The report of a check.
#[derive(Debug, Default)]
pub struct Report {
    /// `Citus 13.2.2, coordinator database s4, workers ...`.
    pub cluster: String,
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether every finding passed.
    pub fn passed(&self) -> bool {
        !self.findings.is_empty() && self.findings.iter().all(|finding| finding.passed)
    }

    fn push(&mut self, passed: bool, subject: &str, detail: String) {
        self.findings.push(Finding {
            passed,
            subject: subject.to_owned(),
            detail,
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.cluster)?;
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        let failed = self.findings.iter().filter(|f| !f.passed).count();
        writeln!(f, "{} checks, {failed} failed", self.findings.len())
    }
}

/// A role to check and where its connection came from (for the report).
#[derive(Debug)]
pub struct Connection<'a> {
    /// The environment variable the connection string came from.
    pub variable: &'a str,
    pub client: &'a Client,
}

/// Checks the cluster through `login` (the service's roles, as configured)
/// and, with `owner`, the definer roles it can act as.
pub async fn run(
    login: &[Connection<'_>],
    owner: Option<&Connection<'_>>,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let Some(first) = login.first().or(owner) else {
        anyhow::bail!(
            "nothing to check: set DATABASE_URL, ADMIN_DATABASE_URL, ANALYTICS_DATABASE_URL or MIGRATION_DATABASE_URL"
        );
    };
    if !describe_cluster(first.client, &mut report).await? {
        return Ok(report);
    }
    shape(first.client, &mut report).await?;
    for connection in login {
        let role = current_user(connection.client).await?;
        let subject = format!("{role} ({})", connection.variable);
        match setting_problem(connection.client).await? {
            None => report.push(
                true,
                &subject,
                "citus.propagate_set_commands = local".to_owned(),
            ),
            Some(problem) => report.push(false, &subject, problem),
        }
        reach(connection.client, &subject, &mut report).await?;
    }
    if let Some(owner) = owner {
        for role in ["tenantry_registry", "tenantry_usage"] {
            let subject = format!("{role} (through {})", owner.variable);
            owner
                .client
                .batch_execute(&format!("set role {role}"))
                .await
                .with_context(|| {
                    format!("could not act as {role} (is the owner a member of it?)")
                })?;
            let reached = reach(owner.client, &subject, &mut report).await;
            owner.client.batch_execute("reset role").await?;
            reached?;
        }
    }
    Ok(report)
}

/// The cluster line; false (with a failed finding) when this is no Citus
/// coordinator.
async fn describe_cluster(client: &Client, report: &mut Report) -> anyhow::Result<bool> {
    let installed: bool = client
        .query_one(
            "select exists (select 1 from pg_extension where extname = 'citus')",
            &[],
        )
        .await
        .context("could not look for the citus extension")?
        .get(0);
    if !installed {
        report.cluster = "not a Citus database".to_owned();
        report.push(
            false,
            "citus",
            "the citus extension is not installed in this database".to_owned(),
        );
        return Ok(false);
    }
    let row = client
        .query_one(
            "select citus_version(), current_database()::text,
                    (select string_agg(nodename || ':' || nodeport, ', ' order by nodename, nodeport)
                     from pg_dist_node where noderole = 'primary' and groupid <> 0 and isactive)",
            &[],
        )
        .await
        .context("could not read the cluster's nodes")?;
    let version: String = row.get(0);
    let database: String = row.get(1);
    let workers: Option<String> = row.get(2);
    let short = version.split(" on ").next().unwrap_or(&version);
    report.cluster = format!(
        "{short}, database {database}, workers: {}",
        workers.as_deref().unwrap_or("none")
    );
    Ok(true)
}

/// Tables and function variants, as the first connection sees them.
async fn shape(client: &Client, report: &mut Report) -> anyhow::Result<()> {
    let placed = distribution(client).await?;
    if placed.problems.is_empty() {
        let shards: i64 = client
            .query_one(
                "select count(*) from pg_dist_shard where logicalrelid = 'users'::regclass",
                &[],
            )
            .await
            .context("could not count the shards")?
            .get(0);
        report.push(
            true,
            "tables",
            format!(
                "reference: {}; distributed by tenant_id, colocated (group {}, {shards} shards each): {}",
                placed.reference.join(", "),
                placed.colocation.unwrap_or_default(),
                placed.distributed.join(", "),
            ),
        );
    }
    for problem in placed.problems {
        report.push(false, "tables", problem);
    }
    let variants = variant_problems(client).await?;
    if variants.is_empty() {
        let names: Vec<&str> = VARIANT_FUNCTIONS
            .iter()
            .map(|function| function.split('(').next().unwrap_or(function))
            .collect();
        report.push(
            true,
            "functions",
            format!("the Citus variants of {}", names.join(", ")),
        );
    }
    for problem in variants {
        report.push(false, "functions", problem);
    }
    Ok(())
}

async fn current_user(client: &Client) -> anyhow::Result<String> {
    Ok(client
        .query_one("select current_user::text", &[])
        .await
        .context("could not read the current user")?
        .get(0))
}

/// Whether the current user gets in on every worker: a command on each, over
/// a connection Citus opens as that user.
async fn reach(client: &Client, subject: &str, report: &mut Report) -> anyhow::Result<()> {
    let rows = client
        .query(
            "select nodename || ':' || nodeport, success, result
             from run_command_on_workers('select current_user') order by 1",
            &[],
        )
        .await
        .context("could not run a command on the workers")?;
    let (reached, failed): (Vec<_>, Vec<_>) = rows.iter().partition(|row| row.get::<_, bool>(1));
    if !reached.is_empty() {
        let nodes: Vec<String> = reached.iter().map(|row| row.get(0)).collect();
        report.push(true, subject, format!("logs in on {}", nodes.join(", ")));
    }
    for row in failed {
        let (node, result): (String, String) = (row.get(0), row.get(2));
        report.push(false, subject, format!("cannot log in on {node}: {result}"));
    }
    if rows.is_empty() {
        report.push(
            false,
            subject,
            "the cluster has no active worker".to_owned(),
        );
    }
    Ok(())
}
