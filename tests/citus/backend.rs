//! Where the Citus target's databases live: the Citus cluster whose
//! coordinator `CITUS_URL` names (a superuser URL; this target fails, it
//! never skips, without it).
//!
//! Each test gets a database of its own on every node, set up exactly as
//! docs/CITUS.md tells an operator to: the database and the `citus`
//! extension on each node, the coordinator and the workers registered, the
//! owner able to reach the workers (pg_dist_authinfo), then `tenantry
//! migrate` as the owner and `sql/citus/01_functions.sql`,
//! `02_distribute.sql` and `03_roles.sql` through psql as the superuser.
//! The workers are the ones registered in `CITUS_URL`'s own database, and
//! they are reached as the same superuser. A test's database is dropped on
//! every node when its test is done with it (each Citus database holds a
//! maintenance worker on every node, of which a server has few).

use std::{path::Path, process::Command, str::FromStr};

use tenantry::db::{local, migrate};
use tokio_postgres::{Client, Config, config::Host};

use crate::helpers::{ROLE_PASSWORD, connect, unix_seconds};

/// How moving a row to another tenant (`update .. set tenant_id`) is
/// refused: by Citus, which never modifies the distribution column (RLS would refuse it next).
pub const MOVE_REFUSAL: tokio_postgres::error::SqlState =
    tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED;

/// Where the sessions of the test's database are seen, waits included: on
/// Citus a tenant statement waits for its lock on the worker, not on the
/// coordinator.
pub const ACTIVITY: &str = "citus_stat_activity";

/// Set-up of one database at a time within this process (the advisory lock
/// covers other processes).
static SETTING_UP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `CITUS_URL`, or a failed test run.
pub async fn superuser_config() -> Config {
    let url = std::env::var("CITUS_URL").unwrap_or_else(|_| {
        panic!(
            "CITUS_URL is not set: this target runs against a Citus cluster only. Set it to a superuser \
             URL of the coordinator, e.g. CITUS_URL=postgres://postgres@127.0.0.1:9700/postgres, in a \
             database where the workers are registered (docs/CITUS.md, \"Testing on a cluster\")."
        )
    });
    Config::from_str(&url).expect("CITUS_URL must be a valid PostgreSQL URL")
}

/// A node of the cluster, as the coordinator registered it.
#[derive(Debug, Clone)]
struct Node {
    host: String,
    port: u16,
}

/// The cluster's nodes: the coordinator first, then the workers; and a
/// spare worker (`CITUS_SPARE_WORKER`) the rebalancing test adds.
pub struct Backend {
    nodes: Vec<Node>,
    spare: Option<Node>,
}

impl Backend {
    /// Reads the nodes from `CITUS_URL`'s database and sweeps test
    /// databases an interrupted run left behind.
    pub async fn set_up(superuser: &Config, admin: &Client) -> Self {
        let citus: bool = admin
            .query_one(
                "select exists (select 1 from pg_extension where extname = 'citus')",
                &[],
            )
            .await
            .expect("look for citus")
            .get(0);
        assert!(
            citus,
            "CITUS_URL's database has no citus extension: point it at a Citus coordinator database \
             with the workers registered"
        );
        let (host, port) = address(superuser);
        let mut nodes = vec![Node { host, port }];
        for row in admin
            .query(
                "select nodename::text, nodeport from pg_dist_node
                 where noderole = 'primary' and isactive and groupid <> 0 order by nodeid",
                &[],
            )
            .await
            .expect("the workers")
        {
            let port: i32 = row.get(1);
            nodes.push(Node {
                host: row.get(0),
                port: u16::try_from(port).expect("port"),
            });
        }
        assert!(
            nodes.len() > 1,
            "no worker is registered in CITUS_URL's database (citus_add_node)"
        );
        let spare = std::env::var("CITUS_SPARE_WORKER").ok().map(|address| {
            let (host, port) = address
                .rsplit_once(':')
                .expect("CITUS_SPARE_WORKER is host:port");
            Node {
                host: host.to_owned(),
                port: port.parse().expect("CITUS_SPARE_WORKER's port"),
            }
        });
        let backend = Self { nodes, spare };
        backend.sweep(superuser).await;
        backend
    }

    /// Creates database `name` on every node, a Citus database with this
    /// cluster's workers, migrated and distributed when `migrated`. One at a
    /// time in the whole cluster: registering workers and migrating both
    /// change the cluster-wide roles on every node, and two at once collide
    /// there ("tuple concurrently updated").
    pub async fn new_database(&self, superuser: &Config, name: &str, migrated: bool) {
        let _in_process = SETTING_UP.lock().await;
        let lock = connect(superuser).await;
        lock.execute("select pg_advisory_lock(7358)", &[])
            .await
            .expect("the set-up lock");
        self.set_up_database(superuser, name, migrated).await;
        lock.execute("select pg_advisory_unlock(7358)", &[])
            .await
            .expect("release the set-up lock");
    }

    async fn set_up_database(&self, superuser: &Config, name: &str, migrated: bool) {
        for node in &self.nodes {
            let admin = connect(&node_config(superuser, node, "postgres")).await;
            admin
                .batch_execute(&format!(
                    "create database \"{name}\" owner {}",
                    local::OWNER_ROLE
                ))
                .await
                .expect("create the database on a node");
            connect(&node_config(superuser, node, name))
                .await
                .batch_execute("create extension citus")
                .await
                .expect("create the citus extension");
        }
        let coordinator = &self.nodes[0];
        let client = connect(&node_config(superuser, coordinator, name)).await;
        client
            .execute(
                "select citus_set_coordinator_host($1, $2)",
                &[&coordinator.host, &i32::from(coordinator.port)],
            )
            .await
            .expect("register the coordinator");
        for worker in &self.nodes[1..] {
            client
                .execute(
                    "select citus_add_node($1, $2)",
                    &[&worker.host, &i32::from(worker.port)],
                )
                .await
                .expect("register a worker");
        }
        // The owner's DDL reaches the workers over its own connections.
        client
            .execute(
                "insert into pg_dist_authinfo (nodeid, rolename, authinfo) values (0, $1, $2)",
                &[&local::OWNER_ROLE, &format!("password={ROLE_PASSWORD}")],
            )
            .await
            .expect("the owner's node authentication");
        if migrated {
            let mut owner = connect(&role_config(
                superuser,
                coordinator,
                local::OWNER_ROLE,
                name,
            ))
            .await;
            migrate::run(
                &mut owner,
                &tenantry::config::RolePasswords::all(ROLE_PASSWORD),
            )
            .await
            .expect("tenantry migrate on the cluster");
            let _ = self.run_scripts(
                superuser,
                name,
                &[
                    "sql/citus/01_functions.sql",
                    "sql/citus/02_distribute.sql",
                    "sql/citus/03_roles.sql",
                ],
            );
        }
    }

    /// Runs SQL files on database `name` of the coordinator with psql, as
    /// docs/CITUS.md does, with the role passwords of `tenantry migrate`,
    /// and returns what psql printed. A path is from the project's root;
    /// `-` reads the script from `stdin`.
    pub fn run_scripts(&self, superuser: &Config, name: &str, files: &[&str]) -> String {
        self.run_scripts_with(superuser, name, files, "")
    }

    /// [`Backend::run_scripts`], with `stdin` for a `-` among `files`.
    pub fn run_scripts_with(
        &self,
        superuser: &Config,
        name: &str,
        files: &[&str],
        stdin: &str,
    ) -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut command = self.psql(superuser, &self.nodes[0], name);
        command
            .env("RUNTIME_ROLE_PASSWORD", ROLE_PASSWORD)
            .env("ADMIN_ROLE_PASSWORD", ROLE_PASSWORD)
            .env("ANALYTICS_ROLE_PASSWORD", ROLE_PASSWORD)
            // Every test database of the cluster presents the same one.
            .env("DEFINER_ROLE_PASSWORD", ROLE_PASSWORD);
        for file in files {
            if *file == "-" {
                command.args(["-f", "-"]);
            } else {
                command.arg("-f").arg(root.join(file));
            }
        }
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run psql");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes())
            .expect("psql's stdin");
        let output = child.wait_with_output().expect("psql's output");
        assert!(
            output.status.success(),
            "psql {files:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Adds the spare worker to database `name` (which gets its database
    /// and extension there) and returns it as `host:port`. Needs
    /// `CITUS_SPARE_WORKER`: a running Citus node of the same cluster setup
    /// that is not yet a worker of `CITUS_URL`'s database.
    pub async fn add_spare_worker(&self, superuser: &Config, name: &str) -> String {
        let spare = self.spare.as_ref().unwrap_or_else(|| {
            panic!(
                "CITUS_SPARE_WORKER is not set: the rebalancing test adds a node, host:port of a \
                 Citus server the coordinator can reach (docs/CITUS.md, \"Testing on a cluster\")"
            )
        });
        let _in_process = SETTING_UP.lock().await;
        // Owned by the superuser: the service's roles reach the node when
        // it is added (Citus copies them), not before.
        connect(&node_config(superuser, spare, "postgres"))
            .await
            .batch_execute(&format!("create database \"{name}\""))
            .await
            .expect("create the database on the spare node");
        connect(&node_config(superuser, spare, name))
            .await
            .batch_execute("create extension citus")
            .await
            .expect("the citus extension on the spare node");
        connect(&node_config(superuser, &self.nodes[0], name))
            .await
            .execute(
                "select citus_add_node($1, $2)",
                &[&spare.host, &i32::from(spare.port)],
            )
            .await
            .expect("add the spare node");
        format!("{}:{}", spare.host, spare.port)
    }

    /// Drops database `name` on every node.
    pub fn release_database(&self, superuser: &Config, name: &str) {
        for node in self.nodes.iter().chain(&self.spare) {
            let _ = self
                .psql(superuser, node, "postgres")
                .arg("-c")
                .arg(format!("drop database if exists \"{name}\" with (force)"))
                .output();
        }
    }

    /// psql as the superuser on `node`'s database `dbname`, stopping at the
    /// first error.
    fn psql(&self, superuser: &Config, node: &Node, dbname: &str) -> Command {
        let mut command = Command::new("psql");
        command
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&node.host)
            .arg("-p")
            .arg(node.port.to_string())
            .arg("-U")
            .arg(superuser.get_user().unwrap_or("postgres"))
            .arg("-d")
            .arg(dbname);
        if let Some(password) = superuser.get_password() {
            command.env("PGPASSWORD", String::from_utf8_lossy(password).into_owned());
        }
        command
    }

    /// Drops this target's test databases older than an hour, on every node.
    async fn sweep(&self, superuser: &Config) {
        let now = unix_seconds();
        for node in self.nodes.iter().chain(&self.spare) {
            let admin = connect(&node_config(superuser, node, "postgres")).await;
            let rows = admin
                .query(
                    "select datname::text from pg_database where datname like 'test\\_%'",
                    &[],
                )
                .await
                .expect("list databases");
            for row in rows {
                let name: String = row.get(0);
                let created = name
                    .strip_prefix("test_")
                    .and_then(|rest| rest.split('_').next())
                    .and_then(|at| at.parse::<u64>().ok());
                if created.is_some_and(|at| at + 3600 < now) {
                    let _ = admin
                        .batch_execute(&format!("drop database if exists \"{name}\" with (force)"))
                        .await;
                }
            }
        }
    }

    /// The workers, as `host:port`.
    pub fn workers(&self) -> Vec<String> {
        self.nodes[1..]
            .iter()
            .map(|node| format!("{}:{}", node.host, node.port))
            .collect()
    }
}

/// The superuser on `node`'s database `dbname`. (A fresh config: `host`
/// and `port` on a copy would add a second address, not replace the first.)
fn node_config(superuser: &Config, node: &Node, dbname: &str) -> Config {
    role_config(
        superuser,
        node,
        superuser.get_user().unwrap_or("postgres"),
        dbname,
    )
}

/// `user` on `node`'s database `dbname`, with the superuser's password if
/// `user` is the superuser, else the test roles' password.
fn role_config(superuser: &Config, node: &Node, user: &str, dbname: &str) -> Config {
    let mut config = Config::new();
    config
        .host(&node.host)
        .port(node.port)
        .user(user)
        .dbname(dbname);
    if Some(user) == superuser.get_user() {
        if let Some(password) = superuser.get_password() {
            config.password(password);
        }
    } else {
        config.password(ROLE_PASSWORD);
    }
    config
}

/// The host and port `config` connects to.
fn address(config: &Config) -> (String, u16) {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}
