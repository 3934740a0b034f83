//! A private PostgreSQL cluster started from the system's server binaries, for
//! `tenantry dev` and the test suite when no database is configured.
//!
//! It runs `initdb` once into a directory of ours, then `pg_ctl start` on
//! 127.0.0.1 with a port of ours, so it never touches a system cluster. As
//! root, PostgreSQL refuses to run, so the commands run as the `postgres` OS
//! user (created by Debian's `postgresql` package) through `runuser`. A file
//! lock serialises processes that start it at the same moment, and a running
//! cluster is reused.

use std::{
    fs::{self, File},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context, bail};
use tokio_postgres::Client;

/// The superuser that `initdb` creates in a private cluster.
pub const SUPERUSER: &str = "postgres";
/// The role that owns the schema and runs migrations in local clusters.
pub const OWNER_ROLE: &str = "tenantry_owner";

const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found. \
     Install them (Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql`), \
     or set PG_BIN_DIR to the directory holding them, or set DATABASE_URL to use an existing server.";

/// A running private cluster.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    root: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    started_here: bool,
}

impl LocalCluster {
    /// Starts (or reuses) the cluster kept in `root` on 127.0.0.1:`port`.
    /// `server_options` are extra `-c name=value` settings.
    pub fn ensure_running(root: &Path, port: u16, server_options: &[&str]) -> anyhow::Result<Self> {
        let bin_dir = find_bin_dir()?;
        fs::create_dir_all(root).with_context(|| format!("could not create {}", root.display()))?;
        let runner = Runner::for_current_user(root)?;
        let lock =
            File::create(root.join(".lock")).context("could not create the cluster lock file")?;
        lock.lock()
            .context("could not lock the cluster directory")?;
        let data_dir = root.join("data");
        if !data_dir.join("PG_VERSION").exists() {
            runner.run(
                &bin_dir.join("initdb"),
                &[
                    "-D",
                    path_str(&data_dir)?,
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
            )?;
        }
        let pg_ctl = bin_dir.join("pg_ctl");
        let running = runner.status(&pg_ctl, &["status", "-D", path_str(&data_dir)?])?;
        let mut cluster = Self {
            root: root.to_owned(),
            bin_dir,
            port,
            started_here: false,
        };
        if !running {
            // pg_ctl hands these to a shell, hence the quotes around the path.
            let mut options = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k '{}'",
                path_str(root)?
            );
            for option in server_options {
                options.push_str(" -c ");
                options.push_str(option);
            }
            let log = root.join("postgres.log");
            let started = runner.run(
                &pg_ctl,
                &[
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    path_str(&data_dir)?,
                    "-l",
                    path_str(&log)?,
                    "-o",
                    &options,
                ],
            );
            if let Err(error) = started {
                let tail = fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(8).collect();
                bail!(
                    "{error:#}\nlast lines of {}:\n{}",
                    log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            cluster.started_here = true;
        }
        Ok(cluster)
    }

    /// The port the cluster listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory the cluster lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this call started the server (rather than finding it running).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// A connection config for `user` on `dbname`.
    pub fn config(&self, user: &str, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .dbname(dbname);
        config
    }

    /// Stops the server (fast shutdown: open sessions are rolled back).
    pub fn stop(&self) -> anyhow::Result<()> {
        self.stop_in_mode("fast")
    }

    /// Stops the server as a crash would: no checkpoint, sessions cut, and
    /// the next start replays the write-ahead log. For fault drills (the
    /// test suite restarts its own cluster under load this way).
    pub fn crash(&self) -> anyhow::Result<()> {
        self.stop_in_mode("immediate")
    }

    fn stop_in_mode(&self, mode: &str) -> anyhow::Result<()> {
        let runner = Runner::for_current_user(&self.root)?;
        let data_dir = self.root.join("data");
        runner.run(
            &self.bin_dir.join("pg_ctl"),
            &["stop", "-m", mode, "-D", path_str(&data_dir)?],
        )?;
        Ok(())
    }
}

/// Creates the owner role if it is missing. It gets CREATEROLE so that
/// `tenantry migrate` can create the runtime and registry roles, as on Cloud SQL.
pub async fn ensure_owner_role(superuser: &Client) -> anyhow::Result<()> {
    superuser
        .batch_execute(&format!(
            "do $$ begin
                 if not exists (select from pg_roles where rolname = '{OWNER_ROLE}') then
                     create role {OWNER_ROLE} login createrole nosuperuser nobypassrls;
                 end if;
             exception when duplicate_object or unique_violation then null;
             end $$"
        ))
        .await
        .context("could not create the owner role")
}

/// Creates database `name` owned by the owner role, optionally as a copy of
/// `template`, unless it exists.
pub async fn ensure_database(
    superuser: &Client,
    name: &str,
    template: Option<&str>,
) -> anyhow::Result<()> {
    let exists = superuser
        .query_opt("select 1 from pg_database where datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let template = template
            .map(|t| format!(" template \"{t}\""))
            .unwrap_or_default();
        superuser
            .batch_execute(&format!(
                "create database \"{name}\" owner {OWNER_ROLE}{template}"
            ))
            .await
            .with_context(|| format!("could not create database {name}"))?;
    }
    Ok(())
}

/// Finds initdb/pg_ctl: `PG_BIN_DIR`, then `pg_config --bindir`, then the
/// newest `/usr/lib/postgresql/*/bin` (Debian keeps them off PATH).
pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let has_server = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|bin| dir.join(bin).is_file())
    };
    if let Some(dir) = std::env::var_os("PG_BIN_DIR").map(PathBuf::from) {
        return if has_server(&dir) {
            Ok(dir)
        } else {
            bail!(
                "PG_BIN_DIR={} holds no initdb/pg_ctl/postgres",
                dir.display()
            )
        };
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|dir| has_server(dir)) {
        return Ok(dir);
    }
    let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    debian.sort();
    debian.pop().map(|(_, dir)| dir).context(INSTALL_HINT)
}

/// Runs server commands as the right OS user.
enum Runner {
    /// Not root: run directly.
    Direct,
    /// Root: PostgreSQL refuses to run as root, so run as `postgres`.
    AsPostgres,
}

impl Runner {
    fn for_current_user(root: &Path) -> anyhow::Result<Self> {
        let is_root = fs::metadata("/proc/self")
            .map(|meta| meta.uid() == 0)
            .unwrap_or(false);
        if !is_root {
            return Ok(Self::Direct);
        }
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(root)
            .output();
        if !chown.as_ref().is_ok_and(|output| output.status.success()) {
            bail!(
                "running as root, the cluster must belong to the `postgres` OS user, \
                 but `chown -R postgres {}` failed (does that user exist? `apt-get install postgresql` creates it)",
                root.display()
            );
        }
        let runner = Self::AsPostgres;
        if !runner.status(Path::new("test"), &["-w", path_str(root)?])? {
            bail!(
                "the `postgres` OS user cannot write to {} (a parent directory is private to root); \
                 set DEV_DATA_DIR to a directory it can reach, such as /var/tmp/tenantry-dev",
                root.display()
            );
        }
        Ok(runner)
    }

    fn command(&self, program: &Path, args: &[&str]) -> Command {
        match self {
            Self::Direct => {
                let mut command = Command::new(program);
                command.args(args);
                command
            }
            Self::AsPostgres => {
                let mut command = Command::new("runuser");
                command
                    .args(["-u", "postgres", "--"])
                    .arg(program)
                    .args(args);
                command
            }
        }
    }

    fn run(&self, program: &Path, args: &[&str]) -> anyhow::Result<Output> {
        let output = self
            .command(program, args)
            .current_dir("/")
            .output()
            .with_context(|| format!("could not run {}", program.display()))?;
        if !output.status.success() {
            bail!(
                "{} failed ({}): {}",
                program.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(output)
    }

    fn status(&self, program: &Path, args: &[&str]) -> anyhow::Result<bool> {
        let output = self
            .command(program, args)
            .current_dir("/")
            .output()
            .with_context(|| format!("could not run {}", program.display()))?;
        Ok(output.status.success())
    }
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("path {} is not UTF-8", path.display()))
}
