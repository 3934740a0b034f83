//! The settings of the operator commands (`migrate`, `tenants`, `domains`,
//! `stats`, `citus check`) and of the admin role's pools, read from the
//! environment like the server's.

use std::{net::SocketAddr, str::FromStr, time::Duration};

use anyhow::ensure;
use secrecy::SecretString;

use super::{
    DatabaseSettings, HashingSettings, ProcessEnv, Source, millis_or, parse_or, required_secret,
};
use crate::domain::host::BaseDomain;

/// `DATABASE_CITUS`: whether the database is a Citus coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CitusMode {
    /// Citus if the `citus` extension is installed in the database.
    #[default]
    Auto,
    /// Citus, required: start-up fails without the extension.
    On,
    /// Plain PostgreSQL: nothing is looked up.
    Off,
}

impl FromStr for CitusMode {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            _ => Err("expected auto, on or off".to_owned()),
        }
    }
}

/// Passwords for the login roles. Each one given makes its role LOGIN with it.
#[derive(Debug, Default, Clone)]
pub struct RolePasswords {
    /// `tenantry_app`, the service's runtime role.
    pub runtime: Option<SecretString>,
    /// `tenantry_admin`, for the CLI and the /admin API.
    pub admin: Option<SecretString>,
    /// `tenantry_analytics`, for usage statistics.
    pub analytics: Option<SecretString>,
}

impl RolePasswords {
    /// The same password for every login role (local clusters and tests).
    pub fn all(password: &str) -> Self {
        let one = || Some(SecretString::from(password.to_owned()));
        Self {
            runtime: one(),
            admin: one(),
            analytics: one(),
        }
    }
}

/// What the operator surface (the `/admin` API and the CLI's `tenants`,
/// `domains` and `stats` commands) needs besides the service's settings.
#[derive(Debug, Clone)]
pub struct OpsSettings {
    /// The admin role's connection (`ADMIN_DATABASE_URL`), never the runtime role's.
    pub admin_database: DatabaseSettings,
    /// The analytics role's connection (`ANALYTICS_DATABASE_URL`); usage
    /// statistics are unavailable without it.
    pub analytics_database: Option<DatabaseSettings>,
    /// The DNS server custom domains are verified against (`DNS_RESOLVER`,
    /// `ip:port`); the system's resolver when unset.
    pub dns_resolver: Option<SocketAddr>,
}

/// What the CLI's operator commands need.
#[derive(Debug, Clone)]
pub struct CliOpsSettings {
    pub base_domain: BaseDomain,
    pub password_hashing: HashingSettings,
    pub ops: OpsSettings,
}

/// What `tenantry migrate` needs.
#[derive(Debug, Clone)]
pub struct MigrateSettings {
    /// Connection for the owner role that runs migrations.
    pub url: SecretString,
    /// Login roles to give LOGIN and these passwords.
    pub passwords: RolePasswords,
}

impl OpsSettings {
    pub(super) fn from_source(
        env: &impl Source,
        statement_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let admin_url = required_secret(
            env,
            "ADMIN_DATABASE_URL",
            "the admin role's (tenantry_admin) connection string",
        )?;
        let analytics_database = env
            .get("ANALYTICS_DATABASE_URL")
            .map(|url| DatabaseSettings::operator(env, SecretString::from(url), statement_timeout))
            .transpose()?;
        ensure!(
            !statement_timeout.is_zero(),
            "statement timeouts must be positive (0 would disable the timeout)"
        );
        Ok(Self {
            admin_database: DatabaseSettings::operator(env, admin_url, statement_timeout)?,
            analytics_database,
            dns_resolver: env
                .get("DNS_RESOLVER")
                .map(|raw| {
                    raw.trim().parse().map_err(|_| {
                        anyhow::anyhow!(
                            "DNS_RESOLVER={raw:?} is invalid: expected ip:port, e.g. 8.8.8.8:53"
                        )
                    })
                })
                .transpose()?,
        })
    }
}

/// What `tenantry citus check` connects through: each of the service's role
/// connection strings that is set, and the owner's.
pub struct CitusCheckSettings {
    /// `(variable, url)` for `DATABASE_URL`, `ADMIN_DATABASE_URL`,
    /// `ANALYTICS_DATABASE_URL`, in that order, where set.
    pub login: Vec<(&'static str, SecretString)>,
    /// `MIGRATION_DATABASE_URL`: the owner, who may act as the definer roles.
    pub owner: Option<SecretString>,
}

impl CitusCheckSettings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_source(&ProcessEnv)
    }

    /// Reads the settings from `env`; at least one connection string is needed.
    pub fn from_source(env: &impl Source) -> anyhow::Result<Self> {
        let login: Vec<(&'static str, SecretString)> = [
            "DATABASE_URL",
            "ADMIN_DATABASE_URL",
            "ANALYTICS_DATABASE_URL",
        ]
        .into_iter()
        .filter_map(|variable| {
            env.get(variable)
                .map(|url| (variable, SecretString::from(url)))
        })
        .collect();
        let owner = env.get("MIGRATION_DATABASE_URL").map(SecretString::from);
        ensure!(
            !login.is_empty() || owner.is_some(),
            "tenantry citus check needs at least one of DATABASE_URL, ADMIN_DATABASE_URL, \
             ANALYTICS_DATABASE_URL, MIGRATION_DATABASE_URL (each role it is given is checked)"
        );
        Ok(Self { login, owner })
    }
}

/// What `tenantry stats` needs: the analytics role's connection only.
pub fn analytics_from_env() -> anyhow::Result<DatabaseSettings> {
    analytics_from_source(&ProcessEnv)
}

/// [`analytics_from_env`] from `env`.
pub fn analytics_from_source(env: &impl Source) -> anyhow::Result<DatabaseSettings> {
    let url = required_secret(
        env,
        "ANALYTICS_DATABASE_URL",
        "the analytics role's (tenantry_analytics) connection string",
    )?;
    let statement_timeout = millis_or(env, "ADMIN_STATEMENT_TIMEOUT_MS", 600_000)?;
    ensure!(
        !statement_timeout.is_zero(),
        "ADMIN_STATEMENT_TIMEOUT_MS must be positive (0 would disable the timeout)"
    );
    DatabaseSettings::operator(env, url, statement_timeout)
}

impl CliOpsSettings {
    /// Reads the operator commands' settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_source(&ProcessEnv)
    }

    /// Reads the operator commands' settings from `env`. Exports, imports and
    /// purges of large tenants run long statements, so the CLI's statement
    /// timeout is its own (`ADMIN_STATEMENT_TIMEOUT_MS`).
    pub fn from_source(env: &impl Source) -> anyhow::Result<Self> {
        let statement_timeout = millis_or(env, "ADMIN_STATEMENT_TIMEOUT_MS", 600_000)?;
        Ok(Self {
            base_domain: parse_or(env, "BASE_DOMAIN", BaseDomain::localhost())?,
            password_hashing: HashingSettings::from_source(env)?,
            ops: OpsSettings::from_source(env, statement_timeout)?,
        })
    }
}

impl MigrateSettings {
    /// Reads the migration settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_source(&ProcessEnv)
    }

    /// Reads the migration settings from `env`.
    pub fn from_source(env: &impl Source) -> anyhow::Result<Self> {
        Ok(Self {
            url: required_secret(
                env,
                "MIGRATION_DATABASE_URL",
                "the owner role's connection string",
            )?,
            passwords: RolePasswords {
                runtime: env.get("RUNTIME_ROLE_PASSWORD").map(SecretString::from),
                admin: env.get("ADMIN_ROLE_PASSWORD").map(SecretString::from),
                analytics: env.get("ANALYTICS_ROLE_PASSWORD").map(SecretString::from),
            },
        })
    }
}
