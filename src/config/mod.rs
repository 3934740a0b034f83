//! Settings, read once at start-up from the environment only.
//!
//! Cloud Run supplies environment variables and Secret Manager values as
//! environment variables, so there is no config file. Every variable is parsed
//! into a typed value here, and a bad or missing one stops the process at
//! start-up with a message that names it; nothing is parsed on first use.
//! The README's configuration table lists every variable read in this file.
//!
//! Over 400 lines: one struct per group of variables with its parsing beside
//! it, so that a variable's default, its check and its message are in one
//! place (the operator commands' settings are in `operator.rs`).

use std::{net::IpAddr, str::FromStr, time::Duration};

use anyhow::{Context, bail, ensure};
use secrecy::SecretString;

use crate::domain::host::BaseDomain;

mod operator;
mod release;

pub use self::operator::{
    CitusCheckSettings, CitusMode, CliOpsSettings, MigrateSettings, OpsSettings, RolePasswords,
    analytics_from_env, analytics_from_source,
};
pub use self::release::ReleaseSettings;

/// Everything `tenantry serve` needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Interface to listen on. `0.0.0.0` on Cloud Run.
    pub host: IpAddr,
    /// Cloud Run injects `PORT`; tests use 0 to get a free port.
    pub port: u16,
    /// Tenants live at `{slug}.{base_domain}`; the apex hosts onboarding.
    pub base_domain: BaseDomain,
    pub database: DatabaseSettings,
    pub jwt: JwtSettings,
    pub signup: SignupMode,
    pub password_hashing: HashingSettings,
    /// Whole-request deadline; a request past it gets a 503.
    pub request_timeout: Duration,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long a host -> tenant answer (including "no such tenant") is reused.
    pub tenant_cache_ttl: Duration,
    /// How long in-flight requests may drain after SIGTERM.
    pub shutdown_timeout: Duration,
    /// The `/admin` API, enabled by `ADMIN_DATABASE_URL`.
    pub admin_api: Option<AdminApiSettings>,
    /// Rate limits and quotas (see [`crate::limits`]).
    pub limits: LimitSettings,
    /// Whether the database is a Citus coordinator (`DATABASE_CITUS`): then
    /// start-up checks that it is set up by `sql/citus/`.
    pub citus: CitusMode,
    /// The ring this revision serves and the deprecated API versions.
    pub release: ReleaseSettings,
}

/// Per-tenant and per-client limits.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Overrides of the plans' defaults and per-tenant limits
    /// (`TENANT_LIMITS`, or the file named by `TENANT_LIMITS_FILE`).
    pub document: crate::domain::LimitsDocument,
    /// Instances the configured rates are shared among (`RATE_LIMIT_INSTANCES`):
    /// each instance enforces rate / instances and burst / instances.
    pub instances: u32,
    pub client: ClientLimitSettings,
    /// How often idle limiter state is dropped.
    pub sweep_interval: Duration,
}

/// Limits per client address on login, register and onboarding.
#[derive(Debug, Clone)]
pub struct ClientLimitSettings {
    /// Requests per minute per client and route (`CLIENT_RATE_LIMIT_PER_MINUTE`).
    pub per_minute: u32,
    /// Requests at once above that rate (`CLIENT_RATE_LIMIT_BURST`).
    pub burst: u32,
    /// Proxies in front of the service that append to `X-Forwarded-For`
    /// (`TRUSTED_PROXY_HOPS`): 0 locally, 1 behind Cloud Run's front end, 2
    /// behind a global external Application Load Balancer.
    pub trusted_proxy_hops: usize,
}

/// The `/admin` HTTP API: the operator surface over HTTP.
#[derive(Debug, Clone)]
pub struct AdminApiSettings {
    /// The bearer token `/admin` requires (`ADMIN_TOKEN`).
    pub token: SecretString,
    pub ops: OpsSettings,
}

/// How the service reaches PostgreSQL as the runtime role.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// A `postgres://` URL or `key=value` string for the runtime role.
    pub url: SecretString,
    /// Connections per instance. Keep `pool_size × max instances` below the
    /// server's `max_connections`.
    pub pool_size: usize,
    /// How long a request waits for a free connection before a 503.
    pub pool_timeout: Duration,
    /// How long opening a new connection may take.
    pub connect_timeout: Duration,
    /// `statement_timeout` outside tenant transactions (the registry lookup,
    /// operator tools); tenant transactions take their plan's.
    pub statement_timeout: Duration,
    /// How long a tenant transaction waits for one of its tenant's share of
    /// the pool's connections before a 429 `tenant_busy`.
    pub tenant_queue_timeout: Duration,
}

/// Access-token settings.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// Signing keys by `kid`. The first signs new tokens; all verify.
    pub keys: Vec<(String, SecretString)>,
    pub issuer: String,
    pub ttl: Duration,
}

/// Who may call `POST /api/tenants`.
#[derive(Debug, Clone)]
pub enum SignupMode {
    /// Anyone may onboard a tenant.
    Open,
    /// Only callers presenting this bearer token.
    AdminOnly { admin_token: SecretString },
}

/// Bounds on the CPU and memory that password hashing may take.
#[derive(Debug, Clone, Copy)]
pub struct HashingSettings {
    /// Hashes computed at once (each takes ~19 MiB and one core for ~50 ms).
    pub concurrency: usize,
    /// How long a login waits for a hashing slot before a 503.
    pub queue_timeout: Duration,
    /// How many logins may wait for a slot; more are refused at once.
    pub max_queue: usize,
}

/// A source of configuration values: the process environment, or a map in tests.
pub trait Source {
    /// The value of `name`; unset and empty are the same.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Source for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name).filter(|value| !value.is_empty())
    }
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_source(&ProcessEnv)
    }

    /// Reads the settings from `env`.
    pub fn from_source(env: &impl Source) -> anyhow::Result<Self> {
        let settings = Self {
            host: parse_or(env, "HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: parse_or(env, "PORT", 8080)?,
            base_domain: parse_or(env, "BASE_DOMAIN", BaseDomain::localhost())?,
            database: DatabaseSettings::from_source(env)?,
            jwt: JwtSettings::from_source(env)?,
            signup: SignupMode::from_source(env)?,
            password_hashing: HashingSettings::from_source(env)?,
            request_timeout: millis_or(env, "REQUEST_TIMEOUT_MS", 10_000)?,
            header_read_timeout: millis_or(env, "HEADER_READ_TIMEOUT_MS", 10_000)?,
            max_body_bytes: parse_or(env, "MAX_BODY_BYTES", 128 * 1024)?,
            tenant_cache_ttl: millis_or(env, "TENANT_CACHE_TTL_MS", 5_000)?,
            shutdown_timeout: millis_or(env, "SHUTDOWN_TIMEOUT_MS", 9_000)?,
            admin_api: AdminApiSettings::from_source(env)?,
            limits: LimitSettings::from_source(env)?,
            citus: parse_or(env, "DATABASE_CITUS", CitusMode::Auto)?,
            release: ReleaseSettings::from_source(env)?,
        };
        ensure!(
            settings.max_body_bytes >= MIN_BODY_BYTES,
            "MAX_BODY_BYTES must be at least {MIN_BODY_BYTES}, or some valid notes would be refused"
        );
        Ok(settings)
    }
}

/// The largest valid request: a note of `MAX_NOTE_CHARS` characters, each an
/// astral character that JSON may escape as a surrogate pair (12 bytes).
pub const MIN_BODY_BYTES: usize = crate::domain::MAX_NOTE_CHARS * 12 + 64;

impl DatabaseSettings {
    fn from_source(env: &impl Source) -> anyhow::Result<Self> {
        let settings = Self {
            url: required_secret(env, "DATABASE_URL", "the runtime role's connection string")?,
            pool_size: parse_or(env, "DATABASE_POOL_SIZE", 10)?,
            pool_timeout: millis_or(env, "DATABASE_POOL_TIMEOUT_MS", 2_000)?,
            connect_timeout: millis_or(env, "DATABASE_CONNECT_TIMEOUT_MS", 5_000)?,
            statement_timeout: millis_or(env, "DATABASE_STATEMENT_TIMEOUT_MS", 5_000)?,
            tenant_queue_timeout: millis_or(env, "TENANT_DB_QUEUE_TIMEOUT_MS", 1_000)?,
        };
        ensure!(
            settings.pool_size >= 1,
            "DATABASE_POOL_SIZE must be at least 1"
        );
        ensure!(
            !settings.statement_timeout.is_zero(),
            "DATABASE_STATEMENT_TIMEOUT_MS must be positive (0 would disable the timeout)"
        );
        Ok(settings)
    }

    /// A small pool for an operator role: the connection string in `url`,
    /// the shared pool and connect timeouts, and `statement_timeout`.
    fn operator(
        env: &impl Source,
        url: SecretString,
        statement_timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            url,
            pool_size: OPERATOR_POOL_SIZE,
            pool_timeout: millis_or(env, "DATABASE_POOL_TIMEOUT_MS", 2_000)?,
            connect_timeout: millis_or(env, "DATABASE_CONNECT_TIMEOUT_MS", 5_000)?,
            statement_timeout,
            tenant_queue_timeout: millis_or(env, "TENANT_DB_QUEUE_TIMEOUT_MS", 1_000)?,
        })
    }
}

/// Connections of each operator pool (admin, analytics): operators are few,
/// and these pools must not crowd out the request path's.
const OPERATOR_POOL_SIZE: usize = 2;

impl AdminApiSettings {
    /// Present when `ADMIN_DATABASE_URL` is set; then `ADMIN_TOKEN` is required.
    fn from_source(env: &impl Source) -> anyhow::Result<Option<Self>> {
        if env.get("ADMIN_DATABASE_URL").is_none() {
            return Ok(None);
        }
        let token = required_secret(
            env,
            "ADMIN_TOKEN",
            "the bearer token of the /admin API (enabled by ADMIN_DATABASE_URL)",
        )?;
        ensure!(
            secrecy::ExposeSecret::expose_secret(&token).len() >= 32,
            "ADMIN_TOKEN must be at least 32 characters"
        );
        // Requests are bounded by the request timeout; so are their statements.
        let statement_timeout = millis_or(env, "DATABASE_STATEMENT_TIMEOUT_MS", 5_000)?;
        Ok(Some(Self {
            token,
            ops: OpsSettings::from_source(env, statement_timeout)?,
        }))
    }
}

impl JwtSettings {
    fn from_source(env: &impl Source) -> anyhow::Result<Self> {
        let keys = required_secret(env, "JWT_KEYS", "comma-separated kid:secret pairs")?;
        let ttl_seconds: u64 = parse_or(env, "JWT_TTL_SECONDS", 3600)?;
        ensure!(
            (60..=86_400).contains(&ttl_seconds),
            "JWT_TTL_SECONDS must be between 60 and 86400, got {ttl_seconds}"
        );
        Ok(Self {
            keys: parse_jwt_keys(secrecy::ExposeSecret::expose_secret(&keys))?,
            issuer: env
                .get("JWT_ISSUER")
                .unwrap_or_else(|| "tenantry".to_owned()),
            ttl: Duration::from_secs(ttl_seconds),
        })
    }
}

/// Parses `kid:secret[,kid:secret...]`. Secrets are never echoed in errors.
fn parse_jwt_keys(raw: &str) -> anyhow::Result<Vec<(String, SecretString)>> {
    let mut keys: Vec<(String, SecretString)> = Vec::new();
    for (index, entry) in raw.split(',').map(str::trim).enumerate() {
        let position = index + 1;
        let Some((kid, secret)) = entry.split_once(':') else {
            bail!("JWT_KEYS entry {position} is not of the form kid:secret");
        };
        ensure!(
            !kid.is_empty()
                && kid.len() <= 64
                && kid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "JWT_KEYS entry {position}: a kid is 1-64 characters of A-Z a-z 0-9 . _ -"
        );
        ensure!(
            secret.len() >= 32,
            "JWT_KEYS entry {position} (kid {kid}): the secret must be at least 32 bytes"
        );
        ensure!(
            keys.iter().all(|(existing, _)| existing != kid),
            "JWT_KEYS: kid {kid} appears twice"
        );
        keys.push((kid.to_owned(), SecretString::from(secret.to_owned())));
    }
    Ok(keys)
}

impl SignupMode {
    fn from_source(env: &impl Source) -> anyhow::Result<Self> {
        match env.get("SIGNUP_MODE").as_deref() {
            None | Some("admin") => {
                let admin_token = required_secret(
                    env,
                    "ADMIN_TOKEN",
                    "the bearer token for POST /api/tenants (or set SIGNUP_MODE=open)",
                )?;
                ensure!(
                    secrecy::ExposeSecret::expose_secret(&admin_token).len() >= 32,
                    "ADMIN_TOKEN must be at least 32 characters"
                );
                Ok(Self::AdminOnly { admin_token })
            }
            Some("open") => Ok(Self::Open),
            Some(other) => bail!("SIGNUP_MODE must be `open` or `admin`, got {other:?}"),
        }
    }
}

impl LimitSettings {
    fn from_source(env: &impl Source) -> anyhow::Result<Self> {
        let document = match (env.get("TENANT_LIMITS"), env.get("TENANT_LIMITS_FILE")) {
            (Some(_), Some(_)) => {
                bail!("set TENANT_LIMITS or TENANT_LIMITS_FILE, not both")
            }
            (Some(json), None) => crate::domain::LimitsDocument::parse(&json)
                .context("TENANT_LIMITS is not a valid limits document")?,
            (None, Some(path)) => {
                let json = std::fs::read_to_string(&path)
                    .with_context(|| format!("could not read TENANT_LIMITS_FILE {path}"))?;
                crate::domain::LimitsDocument::parse(&json).with_context(|| {
                    format!("TENANT_LIMITS_FILE {path} is not a valid limits document")
                })?
            }
            (None, None) => crate::domain::LimitsDocument::default(),
        };
        let settings = Self {
            document,
            instances: parse_or(env, "RATE_LIMIT_INSTANCES", 1)?,
            client: ClientLimitSettings {
                per_minute: parse_or(env, "CLIENT_RATE_LIMIT_PER_MINUTE", 30)?,
                burst: parse_or(env, "CLIENT_RATE_LIMIT_BURST", 10)?,
                trusted_proxy_hops: parse_or(env, "TRUSTED_PROXY_HOPS", 0)?,
            },
            sweep_interval: millis_or(env, "RATE_LIMIT_SWEEP_INTERVAL_MS", 60_000)?,
        };
        ensure!(
            settings.instances >= 1,
            "RATE_LIMIT_INSTANCES must be at least 1"
        );
        ensure!(
            settings.client.per_minute >= 1 && settings.client.burst >= 1,
            "CLIENT_RATE_LIMIT_PER_MINUTE and CLIENT_RATE_LIMIT_BURST must be at least 1"
        );
        ensure!(
            settings.client.trusted_proxy_hops <= 10,
            "TRUSTED_PROXY_HOPS must be at most 10"
        );
        ensure!(
            !settings.sweep_interval.is_zero(),
            "RATE_LIMIT_SWEEP_INTERVAL_MS must be positive"
        );
        Ok(settings)
    }
}

impl HashingSettings {
    fn from_source(env: &impl Source) -> anyhow::Result<Self> {
        // Half the cores: a flood of sign-ins must leave CPU for everything else.
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let concurrency = parse_or(env, "PASSWORD_HASH_CONCURRENCY", (cores / 2).max(1))?;
        let settings = Self {
            concurrency,
            queue_timeout: millis_or(env, "PASSWORD_HASH_QUEUE_TIMEOUT_MS", 1_000)?,
            max_queue: parse_or(
                env,
                "PASSWORD_HASH_MAX_QUEUE",
                concurrency.saturating_mul(8),
            )?,
        };
        ensure!(
            settings.concurrency >= 1,
            "PASSWORD_HASH_CONCURRENCY must be at least 1"
        );
        Ok(settings)
    }
}

fn required_secret(env: &impl Source, name: &str, what: &str) -> anyhow::Result<SecretString> {
    env.get(name)
        .map(SecretString::from)
        .with_context(|| format!("{name} is required: {what}"))
}

fn parse_or<T>(env: &impl Source, name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match env.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|error| anyhow::anyhow!("{name}={raw:?} is invalid: {error}")),
    }
}

fn millis_or(env: &impl Source, name: &str, default_ms: u64) -> anyhow::Result<Duration> {
    parse_or(env, name, default_ms).map(Duration::from_millis)
}

#[cfg(test)]
mod tests;
