//! The release binary as `tenantry serve` in a child process, and the CPU
//! time of each party (server, PostgreSQL, this process, pgbench).

use std::{
    collections::HashMap,
    fs::{self, File},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use super::load;
use crate::common::{Machine, Setting};

/// The server's environment for a bench run, besides `DATABASE_URL` and
/// `PORT`: limits out of the way (huge rates, the whole pool for any one
/// tenant, no quotas; every bench tenant is on the enterprise plan), the
/// bench's signing key and base domain, and `pool` as `DATABASE_POOL_SIZE`.
pub fn bench_settings(pool: Setting) -> Vec<Setting> {
    let limits = serde_json::json!({
        "plans": {
            "enterprise": {
                "requests_per_second": 1_000_000, "burst": 1_000_000,
                "max_db_connections": pool.value.parse::<usize>().unwrap_or(10),
                "max_users": null, "max_notes": null,
            }
        }
    });
    vec![
        Setting::fixed(
            "JWT_KEYS",
            &format!("{}:{}", load::JWT_KID, load::JWT_SECRET),
        ),
        Setting::fixed("SIGNUP_MODE", "open"),
        Setting::fixed("BASE_DOMAIN", load::BASE_DOMAIN),
        Setting::fixed("HOST", "127.0.0.1"),
        Setting::fixed("LOG_FORMAT", "json"),
        Setting::fixed("RUST_LOG", "warn"),
        Setting::new("TENANT_LIMITS", limits.to_string()),
        pool,
        Setting::new("TENANT_CACHE_TTL_MS", "5000".to_owned()),
        Setting::new(
            "PASSWORD_HASH_CONCURRENCY",
            (Machine::read().cores / 2).max(1).to_string(),
        ),
        Setting::fixed("CLIENT_RATE_LIMIT_PER_MINUTE", "1000000"),
        Setting::fixed("CLIENT_RATE_LIMIT_BURST", "1000000"),
    ]
}

/// `tenantry serve` in a child process. Dropping it stops it (SIGTERM), so an
/// error or a panic leaves nothing running.
pub struct Server {
    child: Child,
    pub port: u16,
    log: PathBuf,
    stopped: bool,
    /// Spawn to the first 200 on `/readyz`.
    pub startup: Duration,
}

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

impl Server {
    /// Starts `binary` with `settings` plus `DATABASE_URL` and `PORT`, and
    /// waits for `/readyz` to answer 200 (polled every millisecond).
    pub async fn start(
        binary: &Path,
        database_url: &str,
        settings: &[Setting],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let output =
            File::create(log).with_context(|| format!("could not create {}", log.display()))?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .env_remove("ADMIN_DATABASE_URL")
            .env_remove("ANALYTICS_DATABASE_URL")
            .env_remove("ADMIN_TOKEN")
            .env_remove("TENANT_LIMITS_FILE")
            .env("DATABASE_URL", database_url)
            .env("PORT", port.to_string());
        for setting in settings {
            command.env(setting.name, &setting.value);
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        let readyz = format!("http://127.0.0.1:{port}/readyz");
        let spawned = Instant::now();
        let child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .context("could not start the tenantry binary")?;
        let mut server = Self {
            child,
            port,
            log: log.to_owned(),
            stopped: false,
            startup: Duration::ZERO,
        };
        loop {
            let ready = client.get(&readyz).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                server.startup = spawned.elapsed();
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "tenantry serve exited ({status}) before it was ready; its log:\n{}",
                    log_tail(&server.log)
                );
            }
            if spawned.elapsed() > STARTUP_TIMEOUT {
                bail!(
                    "tenantry serve was not ready after {} s; its log:\n{}",
                    STARTUP_TIMEOUT.as_secs(),
                    log_tail(&server.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait; SIGKILL after 15 s.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        if self.child.try_wait()?.is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while self.child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    eprintln!("tenantry serve did not stop after SIGTERM; killing it");
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Lines of the server's log that are warnings or errors (it logs at `warn`).
    pub fn log_problems(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("\"WARN\"") || line.contains("\"ERROR\""))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("could not stop tenantry serve: {error:#}");
        }
    }
}

pub fn log_tail(path: &Path) -> String {
    let log = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Linux reports CPU times in clock ticks of 1/100 s (USER_HZ).
const TICK: f64 = 0.01;

/// `utime + stime` and `cutime + cstime` of a process, in seconds.
fn process_cpu(pid: &str) -> Option<(f64, f64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after its ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|field| field.parse().ok())
        .collect();
    match fields.as_slice() {
        [utime, stime, cutime, cstime] => Some(((utime + stime) * TICK, (cutime + cstime) * TICK)),
        _ => None,
    }
}

/// CPU seconds used so far by each party.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// This process: the load generator.
    pub client: f64,
    /// This process's reaped children: pgbench runs.
    pub children: f64,
    pub server: f64,
    /// The backends serving the bench database (set by the caller, from
    /// [`Backends`] snapshots).
    pub postgres: Option<f64>,
    /// Busy and total time of the whole machine.
    pub machine_busy: f64,
    pub machine_total: f64,
}

impl Cpu {
    pub fn read(server: Option<u32>) -> Self {
        let (client, children) = process_cpu("self").unwrap_or_default();
        let server = server
            .and_then(|pid| process_cpu(&pid.to_string()))
            .map_or(0.0, |(own, _)| own);
        let (machine_busy, machine_total) = machine_cpu().unwrap_or_default();
        Self {
            client,
            children,
            server,
            postgres: None,
            machine_busy,
            machine_total,
        }
    }

    pub fn since(&self, before: &Self) -> Self {
        Self {
            client: self.client - before.client,
            children: self.children - before.children,
            server: self.server - before.server,
            postgres: self.postgres.zip(before.postgres).map(|(a, b)| a - b),
            machine_busy: self.machine_busy - before.machine_busy,
            machine_total: self.machine_total - before.machine_total,
        }
    }

    /// Share of the machine's CPU time that was busy.
    pub fn utilisation(&self) -> f64 {
        if self.machine_total > 0.0 {
            self.machine_busy / self.machine_total
        } else {
            f64::NAN
        }
    }
}

/// The PostgreSQL backends serving one database, found by their process
/// title (`postgres: ... <user> <database> <client> <state>`), so that other
/// databases' work on a shared server is not counted. Only when PostgreSQL
/// runs on this machine; otherwise every snapshot is empty.
#[derive(Debug, Clone)]
pub struct Backends {
    needle: String,
}

/// CPU seconds of each backend, by pid.
pub type Snapshot = HashMap<u32, f64>;

impl Backends {
    pub fn of(database: &str) -> Self {
        Self {
            needle: format!(" {database} "),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut found = Snapshot::new();
        let Ok(entries) = fs::read_dir("/proc") else {
            return found;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|pid| pid.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let title = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if title.starts_with("postgres:")
                && title.contains(&self.needle)
                && let Some((own, _)) = process_cpu(&pid.to_string())
            {
                found.insert(pid, own);
            }
        }
        found
    }

    /// CPU used between two snapshots (a backend absent from `before` started after it).
    pub fn used(before: &Snapshot, after: &Snapshot) -> f64 {
        after
            .iter()
            .map(|(pid, cpu)| cpu - before.get(pid).copied().unwrap_or(0.0))
            .sum()
    }

    /// Samples every 50 ms until `stop` is set, keeping each backend's last
    /// reading, so that backends that exit meanwhile (pgbench's) still count
    /// (up to their last 50 ms).
    pub async fn track(self, stop: Arc<AtomicBool>) -> Snapshot {
        let mut seen = Snapshot::new();
        loop {
            let done = stop.load(Ordering::Relaxed);
            for (pid, cpu) in self.snapshot() {
                seen.insert(pid, cpu);
            }
            if done {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn machine_cpu() -> Option<(f64, f64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<f64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0.0);
    let total: f64 = fields.iter().take(8).sum();
    Some(((total - idle) * TICK, total * TICK))
}
