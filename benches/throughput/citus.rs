//! The Citus mode (`BENCH_CITUS_URL`): each dataset is also built on a Citus
//! cluster and the service measured against it, beside plain PostgreSQL.
//!
//! `BENCH_CITUS_URL` is a superuser URL of a coordinator's database in which
//! the workers are registered. Each dataset's database is set up exactly as
//! the cluster tests do it (`tests/citus/backend.rs`, after docs/CITUS.md):
//! the database owned by `tenantry_owner` and the `citus` extension on every
//! node; the coordinator and the workers registered in it, the owner's
//! password in `pg_dist_authinfo`; `tenantry migrate` as the owner; then
//! `sql/citus/01_functions.sql`, `02_distribute.sql` and `03_roles.sql`
//! through psql as the superuser. The rows are loaded with the same SQL as
//! on plain PostgreSQL (`data::fill`), the service connects to the
//! coordinator as `tenantry_app`, and the database is dropped on every node
//! afterwards (unless `BENCH_KEEP=1`): each Citus database holds a
//! maintenance worker on every node, of which a server has few. The report
//! section is in `citus_report.rs`.

use std::{path::Path, str::FromStr, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use tenantry::db::{local, migrate};
use tokio_postgres::{Client, Config, config::Host};

use super::{
    Bench, data,
    load::{self, Picker, Target, Workload},
    report,
    server::Server,
};
use crate::common::{Setting, connect};

/// The keys the cluster tests serialise set-up with (in the URL's
/// database, where they take them too): the owner role, then a database.
const OWNER_LOCK: i64 = 7357;
const SET_UP_LOCK: i64 = 7358;

/// The scripts that distribute a migrated database, in order.
const SCRIPTS: [&str; 3] = [
    "sql/citus/01_functions.sql",
    "sql/citus/02_distribute.sql",
    "sql/citus/03_roles.sql",
];

/// A node of the cluster, as the coordinator registered it.
#[derive(Debug, Clone)]
struct Node {
    host: String,
    port: u16,
}

impl Node {
    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The cluster of `BENCH_CITUS_URL`: the coordinator first, then the workers.
pub struct Cluster {
    superuser: Config,
    nodes: Vec<Node>,
    /// e.g. "Citus 13.2.2 on PostgreSQL 15.20".
    pub version: String,
}

impl Cluster {
    /// The cluster of `BENCH_CITUS_URL`, if it is set.
    pub async fn from_env() -> anyhow::Result<Option<Self>> {
        let Some(url) = std::env::var("BENCH_CITUS_URL")
            .ok()
            .filter(|url| !url.trim().is_empty())
        else {
            return Ok(None);
        };
        let superuser =
            Config::from_str(&url).context("BENCH_CITUS_URL is not a PostgreSQL URL")?;
        let admin = connect(&superuser)
            .await
            .context("could not connect to BENCH_CITUS_URL")?;
        let version: Option<String> = admin
            .query_one(
                "select case when exists (select 1 from pg_extension where extname = 'citus')
                        then split_part(citus_version(), ' on ', 1) || ' on PostgreSQL '
                             || current_setting('server_version') end",
                &[],
            )
            .await?
            .get(0);
        let version = version.context(
            "BENCH_CITUS_URL's database has no citus extension: point it at a Citus coordinator's database \
             in which the workers are registered",
        )?;
        let mut nodes = vec![coordinator(&superuser)?];
        nodes.extend(workers(&admin).await?);
        if nodes.len() < 2 {
            bail!("no worker is registered in BENCH_CITUS_URL's database (citus_add_node)");
        }
        Ok(Some(Self {
            superuser,
            nodes,
            version,
        }))
    }

    /// "127.0.0.1:9700 with 2 workers (127.0.0.1:9701, 127.0.0.1:9702)".
    pub fn describe(&self) -> String {
        let workers: Vec<String> = self.nodes[1..].iter().map(Node::address).collect();
        format!(
            "coordinator {} with {} workers ({})",
            self.nodes[0].address(),
            workers.len(),
            workers.join(", ")
        )
    }

    /// Whether every node is on this machine (then /proc sees its backends).
    pub fn is_local(&self) -> bool {
        self.nodes
            .iter()
            .all(|node| matches!(node.host.as_str(), "127.0.0.1" | "localhost" | "::1"))
    }

    /// `DATABASE_URL` of the service: the runtime role on the coordinator.
    pub fn database_url(&self, database: &str) -> String {
        let coordinator = &self.nodes[0];
        format!(
            "postgres://tenantry_app:{}@{}:{}/{database}?sslmode=disable",
            data::APP_PASSWORD,
            coordinator.host,
            coordinator.port
        )
    }

    /// Creates, distributes and fills the database of `spec` on the
    /// cluster; returns how long loading took (set-up excluded).
    pub async fn create(&self, spec: &data::Spec, password_hash: &str) -> anyhow::Result<Duration> {
        let name = spec.database();
        self.drop_database(&name).await?;
        self.locked(OWNER_LOCK, self.ensure_owner()).await?;
        self.locked(SET_UP_LOCK, self.set_up(&name)).await?;
        let client = connect(&self.config(&self.nodes[0], None, &name)).await?;
        data::fill(&client, spec, password_hash).await
    }

    /// Drops database `name` on every node, if it exists.
    pub async fn drop_database(&self, name: &str) -> anyhow::Result<()> {
        for node in &self.nodes {
            let admin = connect(&self.config(node, None, "postgres")).await?;
            data::drop_database(&admin, name)
                .await
                .with_context(|| format!("on {}", node.address()))?;
        }
        Ok(())
    }

    /// Runs `work` holding the advisory lock `key` in the URL's database
    /// (released when its connection closes, on error too).
    async fn locked(
        &self,
        key: i64,
        work: impl Future<Output = anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        let lock = connect(&self.superuser).await?;
        lock.execute("select pg_advisory_lock($1)", &[&key]).await?;
        let outcome = work.await;
        drop(lock);
        outcome
    }

    /// The owner role (Citus propagates it to the workers) with the
    /// password the coordinator presents for it.
    async fn ensure_owner(&self) -> anyhow::Result<()> {
        let admin = connect(&self.superuser).await?;
        local::ensure_owner_role(&admin).await?;
        admin
            .batch_execute(&format!(
                "alter role {} password '{}'",
                local::OWNER_ROLE,
                data::APP_PASSWORD
            ))
            .await
            .context("could not set the owner's password")
    }

    async fn set_up(&self, name: &str) -> anyhow::Result<()> {
        for node in &self.nodes {
            self.create_on(node, name)
                .await
                .with_context(|| format!("could not create {name} on {}", node.address()))?;
        }
        self.register_nodes(name).await?;
        let coordinator = &self.nodes[0];
        let mut owner = connect(&self.config(coordinator, Some(local::OWNER_ROLE), name)).await?;
        migrate::run(
            &mut owner,
            &tenantry::config::RolePasswords::all(data::APP_PASSWORD),
        )
        .await
        .context("could not migrate the bench database on the coordinator")?;
        self.run_scripts(name).await
    }

    /// The database, owned by the owner role, with the citus extension.
    async fn create_on(&self, node: &Node, name: &str) -> anyhow::Result<()> {
        let admin = connect(&self.config(node, None, "postgres")).await?;
        admin
            .batch_execute(&format!(
                "create database \"{name}\" owner {}",
                local::OWNER_ROLE
            ))
            .await?;
        connect(&self.config(node, None, name))
            .await?
            .batch_execute("create extension citus")
            .await?;
        Ok(())
    }

    /// The coordinator and the workers, as the new database knows them, and
    /// the owner's password for its DDL's connections to the workers.
    async fn register_nodes(&self, name: &str) -> anyhow::Result<()> {
        let coordinator = &self.nodes[0];
        let client = connect(&self.config(coordinator, None, name)).await?;
        client
            .execute(
                "select citus_set_coordinator_host($1, $2)",
                &[&coordinator.host, &i32::from(coordinator.port)],
            )
            .await
            .context("could not register the coordinator")?;
        for worker in &self.nodes[1..] {
            client
                .execute(
                    "select citus_add_node($1, $2)",
                    &[&worker.host, &i32::from(worker.port)],
                )
                .await
                .with_context(|| format!("could not add the worker {}", worker.address()))?;
        }
        client
            .execute(
                "insert into pg_dist_authinfo (nodeid, rolename, authinfo) values (0, $1, $2)",
                &[
                    &local::OWNER_ROLE,
                    &format!("password={}", data::APP_PASSWORD),
                ],
            )
            .await
            .context("could not give the owner's password to pg_dist_authinfo")?;
        Ok(())
    }

    /// `sql/citus/` through psql as the superuser, with every role's password.
    async fn run_scripts(&self, name: &str) -> anyhow::Result<()> {
        let coordinator = &self.nodes[0];
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut command = tokio::process::Command::new("psql");
        command
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&coordinator.host)
            .arg("-p")
            .arg(coordinator.port.to_string())
            .arg("-U")
            .arg(self.superuser.get_user().unwrap_or("postgres"))
            .arg("-d")
            .arg(name);
        for variable in [
            "RUNTIME_ROLE_PASSWORD",
            "ADMIN_ROLE_PASSWORD",
            "ANALYTICS_ROLE_PASSWORD",
            "DEFINER_ROLE_PASSWORD",
        ] {
            command.env(variable, data::APP_PASSWORD);
        }
        if let Some(password) = self.superuser.get_password() {
            command.env("PGPASSWORD", String::from_utf8_lossy(password).into_owned());
        }
        for script in SCRIPTS {
            command.arg("-f").arg(root.join(script));
        }
        let output = command
            .output()
            .await
            .context("could not run psql (install PostgreSQL's client tools)")?;
        if !output.status.success() {
            bail!(
                "psql {} failed:\n{}",
                SCRIPTS.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// A fresh config (`host` on a copy would add an address, not replace
    /// it) for `role` (default: the superuser) on `node`'s `dbname`.
    fn config(&self, node: &Node, role: Option<&str>, dbname: &str) -> Config {
        let mut config = Config::new();
        config
            .host(&node.host)
            .port(node.port)
            .dbname(dbname)
            .connect_timeout(Duration::from_secs(5));
        match role {
            Some(role) => config.user(role).password(data::APP_PASSWORD),
            None => {
                config.user(self.superuser.get_user().unwrap_or("postgres"));
                if let Some(password) = self.superuser.get_password() {
                    config.password(password);
                }
                &mut config
            }
        };
        config
    }
}

/// The coordinator: where `superuser` connects (over TCP).
fn coordinator(superuser: &Config) -> anyhow::Result<Node> {
    let host = match superuser.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => bail!(
            "BENCH_CITUS_URL names a Unix socket ({}): the workers need the coordinator's TCP address",
            path.display()
        ),
        None => "127.0.0.1".to_owned(),
    };
    let port = superuser.get_ports().first().copied().unwrap_or(5432);
    Ok(Node { host, port })
}

/// The active primary workers registered in the URL's database.
async fn workers(admin: &Client) -> anyhow::Result<Vec<Node>> {
    let rows = admin
        .query(
            "select nodename::text, nodeport from pg_dist_node
             where noderole = 'primary' and isactive and groupid <> 0 order by nodeid",
            &[],
        )
        .await
        .context("could not read the workers from pg_dist_node")?;
    rows.iter()
        .map(|row| {
            let port: i32 = row.get(1);
            Ok(Node {
                host: row.get(0),
                port: u16::try_from(port)?,
            })
        })
        .collect()
}

impl Bench {
    /// Builds `spec` on the cluster and measures W1-W5 against it as
    /// [`Bench::dataset`] does on PostgreSQL (no ceiling, no plans, no W6).
    pub(super) async fn citus_dataset(
        &self,
        cluster: &Cluster,
        index: usize,
        spec: &data::Spec,
        results: &mut report::Results,
    ) -> anyhow::Result<()> {
        eprintln!("[{spec}] Citus: creating {} ...", spec.database());
        let loaded = cluster.create(spec, &self.password_hash).await?;
        eprintln!("[{spec}] Citus: loaded in {:.1} s", loaded.as_secs_f64());
        results.datasets.push(report::Dataset::of(spec, loaded));
        let mut settings = self.settings.clone();
        settings.push(Setting::fixed("DATABASE_CITUS", "on"));
        let log = self
            .out_dir
            .join(format!("server-citus-{}.log", spec.database()));
        let starts = if index == 0 { self.options.starts } else { 1 };
        let url = cluster.database_url(&spec.database());
        let mut server = self
            .serve(&url, &settings, &log, starts, spec, results)
            .await?;
        let target = Target {
            base: format!("http://127.0.0.1:{}", server.port),
            picker: Arc::new(Picker::new(spec)),
            tokens: Arc::new(load::mint_tokens(spec.tenants)?),
        };
        self.warm_up(&target).await?;
        for rep in 0..self.options.repeats {
            for workload in Workload::MEASURED {
                eprintln!(
                    "[{spec}] Citus: repetition {}/{}: {} ...",
                    rep + 1,
                    self.options.repeats,
                    workload.name()
                );
                self.measure_service(index, spec, &server, &target, workload, rep, results)
                    .await?;
            }
        }
        Server::stop(&mut server)?;
        if let Some(dataset) = results.datasets.last_mut() {
            dataset.log_problems = server.log_problems();
        }
        Ok(())
    }
}
