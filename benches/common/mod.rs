//! What the harness-less benches share: the machine they ran on, their
//! environment knobs, and the statistics they print.
//!
//! Each bench includes this file with `mod common;`, so an item one of them
//! does not use is dead code in that one.
#![allow(dead_code, reason = "each bench uses a different part of this module")]

use std::{fs, process::Command, str::FromStr, time::Duration};

use anyhow::Context;
use tokio_postgres::Config;

/// The value of the environment variable `name`, parsed, else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(raw) if !raw.trim().is_empty() => raw
            .trim()
            .parse()
            .ok()
            .with_context(|| format!("{name}={raw:?} is not a valid value")),
        _ => Ok(default),
    }
}

/// What a report says about the machine.
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory: String,
    pub load: String,
}

impl Machine {
    /// A 1-minute load average above 0.5: not a quiet machine.
    pub fn busy(&self) -> bool {
        self.load
            .split_whitespace()
            .next()
            .and_then(|load| load.parse::<f64>().ok())
            .is_some_and(|load| load > 0.5)
    }

    /// "2 cores (CPU), 24 GiB; load average at start 0.5 0.4 0.3".
    pub fn describe(&self) -> String {
        format!(
            "{} cores ({}), {}; load average at start {}",
            self.cores, self.cpu, self.memory, self.load
        )
    }

    pub fn read() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map_or("unknown CPU", |rest| {
                rest.trim_start_matches([' ', '\t', ':'])
            })
            .to_owned();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or_else(
                || "unknown memory".to_owned(),
                |kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0),
            );
        let load = fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|line| {
                line.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            cores,
            cpu,
            memory,
            load,
        }
    }
}

/// The short hash of the checked-out commit, for the report.
pub fn commit() -> String {
    Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |output| String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        )
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The median of the finite values, if any.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|value| value.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some(f64::midpoint(values[n / 2 - 1], values[n / 2])),
    }
}

/// Milliseconds with a precision that suits their size; `–` for none.
pub fn fmt_ms(value: Option<f64>) -> String {
    match value {
        None => "–".to_owned(),
        Some(ms) if ms < 10.0 => format!("{ms:.2}"),
        Some(ms) if ms < 1000.0 => format!("{ms:.1}"),
        Some(ms) => format!("{ms:.0}"),
    }
}

/// A whole number, or `–` for none.
pub fn fmt_count(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |n| format!("{n:.0}"))
}

/// `TEST_DATABASE_URL`, else 127.0.0.1:5432 as `postgres`.
pub fn superuser_config() -> anyhow::Result<Config> {
    if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
        return Config::from_str(&url).context("TEST_DATABASE_URL is not a PostgreSQL URL");
    }
    let mut config = Config::new();
    config
        .host("127.0.0.1")
        .port(5432)
        .user("postgres")
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5));
    Ok(config)
}

/// A superuser (or any) connection, its connection task spawned.
pub async fn connect(config: &Config) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .context("could not connect to PostgreSQL (set TEST_DATABASE_URL to a superuser URL)")?;
    tokio::spawn(connection);
    Ok(client)
}

/// One environment variable given to the server.
#[derive(Clone)]
pub struct Setting {
    pub name: &'static str,
    pub value: String,
    pub from_env: bool,
}

impl Setting {
    /// The bench's environment's value of `name`, else `default`.
    pub fn new(name: &'static str, default: String) -> Self {
        match std::env::var(name) {
            Ok(value) if !value.trim().is_empty() => Self {
                name,
                value,
                from_env: true,
            },
            _ => Self {
                name,
                value: default,
                from_env: false,
            },
        }
    }

    pub fn fixed(name: &'static str, value: &str) -> Self {
        Self {
            name,
            value: value.to_owned(),
            from_env: false,
        }
    }

    /// `` `value` ``, and where it came from when that was the environment.
    pub fn shown(&self) -> String {
        format!("`{}`{}", self.value, self.source())
    }

    /// " (from the environment)" when it came from there.
    pub fn source(&self) -> &'static str {
        if self.from_env {
            " (from the environment)"
        } else {
            ""
        }
    }
}
