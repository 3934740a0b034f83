//! PostgreSQL's own ceiling: pgbench scripts built from the statements the
//! capture proxy recorded, and pgbench runs with their latencies.
//!
//! A recorded execution becomes a pgbench SQL command with each bound
//! parameter replaced by what the load generator would have sent for a
//! random request: ids become `md5(...)` of pgbench variables (see
//! `data.rs`), the note content becomes the variable `:content`, ids the
//! service generates itself (UUIDv7) become random `md5` ids, and every other
//! value stays a parameter, as a `-D` constant, so the statement keeps its
//! server-inferred types. BEGIN and COMMIT (simple-protocol messages) become
//! commands of their own; statements that the service sent before the
//! previous one was answered are wrapped in `\startpipeline`/`\endpipeline`.
//!
//! Three variants of each workload:
//! - **service**: every statement, as the runtime role (RLS applies);
//! - **explicit**: the same statements as the superuser, which bypasses RLS
//!   (the statements carry `where tenant_id = ...` themselves);
//! - **single**: the workload's main statement alone, as the superuser, with
//!   no transaction and no tenant setting.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail};

use super::{
    data::{self, Distribution, NOTE_KEY, Spec, USER_KEY, USERS_PER_TENANT},
    load::{CONTENT, Workload},
    proxy::{Event, Param, Value},
    server::{Backends, Cpu},
};

/// What the calibration request was about: the values its parameters are
/// recognised by.
#[derive(Debug, Clone)]
pub struct Request {
    pub tenant: u32,
    pub user: u32,
    pub note: i64,
}

/// One command of a script.
#[derive(Debug, Clone)]
pub struct Command {
    /// As pgbench reads it (variables as `:name`), without the `;`.
    pub text: String,
    /// The SQL as the service sent it, with its parameters described.
    pub original: String,
    pub pipelined: bool,
    /// BEGIN, COMMIT and the like.
    pub transaction_control: bool,
    /// Binds the transaction to the tenant: takes the tenant's id without
    /// naming `tenant_id` (a `set_config`, a `bind_tenant(...)`).
    pub binding: bool,
    /// The SQL as sent, and its parameters (none for simple queries).
    pub sql: String,
    pub params: Vec<Param>,
}

/// A workload's statements, translated.
#[derive(Debug, Clone)]
pub struct Translated {
    pub workload: Workload,
    pub commands: Vec<Command>,
    /// `-D name=value` constants.
    pub defines: Vec<(String, String)>,
    /// Index of the main statement (the one `single` runs).
    pub main: usize,
    /// Notes on anything the translation had to approximate.
    pub notes: Vec<String>,
}

/// Which statements and which role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Service,
    Explicit,
    Single,
}

impl Variant {
    pub const ALL: [Self; 3] = [Self::Service, Self::Explicit, Self::Single];

    pub fn name(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Explicit => "explicit",
            Self::Single => "single",
        }
    }
}

/// Translates the recorded `events` of one request of `workload`.
pub fn translate(
    workload: Workload,
    events: &[Event],
    context: &Request,
) -> anyhow::Result<Translated> {
    let mut translated = Translated {
        workload,
        commands: Vec::new(),
        defines: vec![("content".to_owned(), CONTENT.to_owned())],
        main: 0,
        notes: Vec::new(),
    };
    let mut fresh = 0;
    for event in events {
        // tokio-postgres looks up unknown types in pg_type on first use; a
        // warm connection does not.
        if event.sql().contains("pg_catalog.pg_type") {
            continue;
        }
        match event {
            Event::Simple { sql, pipelined } => {
                let statements: Vec<&str> = sql
                    .split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                if statements.len() > 1 {
                    translated.notes.push(format!(
                        "the simple query {sql:?} was split into {} commands",
                        statements.len()
                    ));
                }
                for statement in statements {
                    let text = replace_literals(statement, context);
                    let control = is_transaction_control(statement);
                    translated.commands.push(Command {
                        text,
                        original: format!("{statement}  -- simple query"),
                        pipelined: *pipelined,
                        transaction_control: control,
                        binding: false,
                        sql: statement.to_owned(),
                        params: Vec::new(),
                    });
                }
            }
            Event::Execute {
                sql,
                params,
                pipelined,
            } => {
                let index = translated.commands.len();
                let prefix = format!("{}_{index}", workload.name().to_lowercase());
                let mut exprs = Vec::new();
                let mut described = Vec::new();
                let tenant = data::tenant_id(context.tenant);
                let takes_tenant = params.iter().any(|param| match &param.value {
                    Value::Uuid(id) => *id == tenant,
                    Value::Text(text) => uuid::Uuid::parse_str(text).is_ok_and(|id| id == tenant),
                    _ => false,
                });
                for (n, param) in params.iter().enumerate() {
                    let (expr, label) = param_expr(
                        param,
                        context,
                        &mut fresh,
                        &format!("{prefix}_{}", n + 1),
                        &mut translated.defines,
                    );
                    exprs.push(expr);
                    described.push(format!("${} = {label}", n + 1));
                }
                translated.commands.push(Command {
                    text: substitute(sql, &exprs),
                    original: if described.is_empty() {
                        one_line(sql)
                    } else {
                        format!("{}  -- {}", one_line(sql), described.join(", "))
                    },
                    pipelined: *pipelined,
                    transaction_control: is_transaction_control(sql),
                    binding: takes_tenant && !sql.contains("tenant_id"),
                    sql: sql.clone(),
                    params: params.clone(),
                });
            }
        }
    }
    if translated.commands.is_empty() {
        bail!("nothing was recorded for {}", workload.name());
    }
    translated.main = translated
        .commands
        .iter()
        .rposition(|command| !command.transaction_control && !command.binding)
        .unwrap_or(translated.commands.len() - 1);
    for command in &translated.commands {
        if !command.transaction_control && !command.binding && !command.text.contains("tenant_id") {
            translated.notes.push(format!(
                "{}: `{}` names no tenant_id, so the explicit variant runs it without a tenant predicate",
                workload.name(),
                one_line(&command.text)
            ));
        }
    }
    if fresh > 0 {
        translated.notes.push(format!(
            "{}: {fresh} id(s) the service generates (UUIDv7, time-ordered) are random md5 ids in pgbench",
            workload.name()
        ));
    }
    Ok(translated)
}

fn is_transaction_control(sql: &str) -> bool {
    let first = sql.split_whitespace().next().unwrap_or("").to_lowercase();
    matches!(
        first.as_str(),
        "begin" | "start" | "commit" | "end" | "rollback"
    )
}

fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The pgbench expression for one bound parameter, and a label for the report.
fn param_expr(
    param: &Param,
    context: &Request,
    fresh: &mut usize,
    constant_name: &str,
    defines: &mut Vec<(String, String)>,
) -> (String, String) {
    let tenant = data::tenant_id(context.tenant);
    let user = data::user_id(context.tenant, context.user);
    let note = data::note_id(context.tenant, context.note);
    let uuid_cast = if param.type_oid == 2950 { "::uuid" } else { "" };
    let known_uuid = |id: uuid::Uuid| -> Option<(String, &'static str)> {
        if id == tenant {
            Some((format!("md5('t' || :t){uuid_cast}"), "the tenant's id"))
        } else if id == user {
            Some((format!("md5('u' || :uk){uuid_cast}"), "the user's id"))
        } else if id == note {
            Some((format!("md5('n' || :nk){uuid_cast}"), "the note's id"))
        } else {
            None
        }
    };
    let value = &param.value;
    match value {
        Value::Uuid(id) => {
            if let Some((expr, label)) = known_uuid(*id) {
                return (format!("({expr})"), label.to_owned());
            }
            *fresh += 1;
            (
                format!("(md5('f{fresh}.' || :fresh)::uuid)"),
                "a new id".to_owned(),
            )
        }
        Value::Text(text) => {
            if let Some((expr, label)) = uuid::Uuid::parse_str(text).ok().and_then(known_uuid) {
                return (format!("({expr})"), format!("{label}, as text"));
            }
            if *text == data::slug(context.tenant) {
                return (
                    "('tenant-' || :t)".to_owned(),
                    "the tenant's slug".to_owned(),
                );
            }
            if *text == data::username(context.user) {
                return ("('user' || :u)".to_owned(), "the username".to_owned());
            }
            if text == CONTENT {
                return (":content".to_owned(), "the note content".to_owned());
            }
            constant(constant_name, text.clone(), defines)
        }
        Value::Null => {
            let cast = type_name(param.type_oid)
                .map(|name| format!("::{name}"))
                .unwrap_or_default();
            (format!("null{cast}"), "NULL".to_owned())
        }
        Value::Int(n) => constant(constant_name, n.to_string(), defines),
        Value::Bool(b) => constant(constant_name, b.to_string(), defines),
        Value::Timestamp(at) => constant(constant_name, at.clone(), defines),
        Value::Json(json) => constant(constant_name, json.clone(), defines),
        Value::Bytes(bytes) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            constant(constant_name, format!("\\x{hex}"), defines)
        }
    }
}

/// A constant stays a parameter (a `-D` variable), except the empty string,
/// which pgbench cannot define: it becomes the literal `''`.
fn constant(name: &str, value: String, defines: &mut Vec<(String, String)>) -> (String, String) {
    if value.is_empty() {
        return ("''".to_owned(), "''".to_owned());
    }
    let label = format!("{value:?}");
    defines.push((name.to_owned(), value));
    (format!(":{name}"), label)
}

pub fn type_name(oid: u32) -> Option<&'static str> {
    Some(match oid {
        2950 => "uuid",
        25 => "text",
        1043 => "varchar",
        20 => "int8",
        23 => "int4",
        21 => "int2",
        16 => "bool",
        1184 => "timestamptz",
        1114 => "timestamp",
        3802 => "jsonb",
        114 => "json",
        _ => return None,
    })
}

/// Replaces `$n` in `sql` by `exprs[n - 1]`.
pub fn substitute(sql: &str, exprs: &[String]) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|(_, next)| next.is_ascii_digit()) {
            let mut number = 0usize;
            while let Some((_, digit)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
                number = number * 10 + digit.to_digit(10).map_or(0, |d| d as usize);
                chars.next();
            }
            match exprs.get(number.wrapping_sub(1)) {
                Some(expr) => out.push_str(expr),
                None => {
                    let _ = write!(out, "${number}");
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Literal ids of the calibration request inside simple-protocol SQL.
fn replace_literals(sql: &str, context: &Request) -> String {
    let mut text = sql.to_owned();
    for (id, expr) in [
        (data::tenant_id(context.tenant), "md5('t' || :t)"),
        (
            data::user_id(context.tenant, context.user),
            "md5('u' || :uk)",
        ),
    ] {
        text = text.replace(&format!("'{id}'"), expr);
    }
    text
}

/// The `\set` lines that pick a request as the load generator does: a
/// tenant (uniform or Zipf), one of its notes, and the note's owner.
pub fn preamble(spec: &Spec) -> String {
    let tenants = spec.tenants;
    let users = USERS_PER_TENANT;
    let mut out = String::new();
    match spec.distribution {
        Distribution::Uniform => {
            let count = spec.count(1, spec.harmonic());
            let _ = writeln!(out, "\\set t random(1, {tenants})");
            let _ = writeln!(out, "\\set cnt {count}");
        }
        Distribution::Zipf(s) => {
            let harmonic = spec.harmonic();
            let notes = spec.notes;
            let _ = writeln!(out, "\\set t random_zipfian(1, {tenants}, {s:?})");
            let _ = writeln!(
                out,
                "\\set cnt greatest({users}, int({notes} * pow(:t, {neg:?}) / {harmonic:?} + 0.5))",
                neg = -s
            );
        }
    }
    let _ = writeln!(out, "\\set k random(1, :cnt)");
    let _ = writeln!(out, "\\set u mod(:k - 1, {users}) + 1");
    let _ = writeln!(out, "\\set uk :t * {USER_KEY} + :u");
    let _ = writeln!(out, "\\set nk :t * {NOTE_KEY} + :k");
    let _ = writeln!(out, "\\set fresh random(1, 9223372036854775806)");
    out
}

/// The script text of `variant` for `spec`.
pub fn script(translated: &Translated, variant: Variant, spec: &Spec) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- {} ({}), variant {:?}, dataset {spec}; generated by benches/throughput.rs from the\n-- statements the service sent for one request (recorded by its capture proxy).",
        translated.workload.name(),
        translated.workload.describe(),
        variant.name()
    );
    for command in &translated.commands {
        let _ = writeln!(out, "-- sent: {}", command.original);
    }
    if !translated.defines.is_empty() {
        let defines: Vec<String> = translated
            .defines
            .iter()
            .map(|(name, value)| format!("-D {name}={value:?}"))
            .collect();
        let _ = writeln!(out, "-- run with {}", defines.join(" "));
    }
    out.push_str(&preamble(spec));
    let commands: Vec<&Command> = match variant {
        Variant::Service | Variant::Explicit => translated.commands.iter().collect(),
        Variant::Single => translated
            .commands
            .get(translated.main)
            .into_iter()
            .collect(),
    };
    let mut in_pipeline = false;
    for (index, command) in commands.iter().enumerate() {
        let next_pipelined = commands.get(index + 1).is_some_and(|next| next.pipelined)
            && variant != Variant::Single;
        if !in_pipeline && next_pipelined {
            out.push_str("\\startpipeline\n");
            in_pipeline = true;
        }
        let _ = writeln!(out, "{};", command.text.trim_end_matches(';'));
        if in_pipeline && !next_pipelined {
            out.push_str("\\endpipeline\n");
            in_pipeline = false;
        }
    }
    out
}

/// How to reach the database as one role.
#[derive(Debug, Clone)]
pub struct Login {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
}

/// One pgbench run.
#[derive(Debug, Clone)]
pub struct Run {
    pub tps: f64,
    /// Sorted transaction latencies, ms.
    pub latencies: Vec<f64>,
    pub failure: Option<String>,
    pub cpu: Cpu,
}

pub const PGBENCH_THREADS: usize = 2;

/// Runs pgbench with `scripts` (path, weight) for `seconds`.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, all of it is the run's description"
)]
pub async fn run(
    pgbench: &Path,
    login: &Login,
    scripts: &[(PathBuf, u32)],
    defines: &[(String, String)],
    clients: usize,
    seconds: u64,
    log_dir: &Path,
    backends: &Backends,
    options: Option<&str>,
) -> anyhow::Result<Run> {
    if log_dir.exists() {
        fs::remove_dir_all(log_dir)?;
    }
    fs::create_dir_all(log_dir)?;
    let mut command = tokio::process::Command::new(pgbench);
    command
        .args(["-n", "-M", "prepared", "-c", &clients.to_string()])
        .args(["-j", &PGBENCH_THREADS.min(clients).to_string()])
        .args(["-T", &seconds.to_string()])
        .args([
            "-h",
            &login.host,
            "-p",
            &login.port.to_string(),
            "-U",
            &login.user,
        ])
        .arg("--log")
        .arg(format!("--log-prefix={}", log_dir.join("tx").display()));
    for (name, value) in defines {
        command.arg("-D").arg(format!("{name}={value}"));
    }
    for (path, weight) in scripts {
        command
            .arg("-f")
            .arg(format!("{}@{weight}", path.display()));
    }
    command.arg(&login.dbname);
    match &login.password {
        Some(password) => command.env("PGPASSWORD", password),
        None => command.env_remove("PGPASSWORD"),
    };
    // The session settings the service's connections start with.
    match options {
        Some(options) => command.env("PGOPTIONS", options),
        None => command.env_remove("PGOPTIONS"),
    };
    command.current_dir(log_dir).kill_on_drop(true);
    let before = Cpu::read(None);
    let backends_before = backends.snapshot();
    let stop = Arc::new(AtomicBool::new(false));
    let tracker = tokio::spawn(backends.clone().track(Arc::clone(&stop)));
    let output = command.output().await;
    stop.store(true, Ordering::Relaxed);
    let backends_after = tracker.await.context("the backend CPU tracker failed")?;
    let output = output.with_context(|| format!("could not run {}", pgbench.display()))?;
    let mut cpu = Cpu::read(None).since(&before);
    cpu.postgres = Some(Backends::used(&backends_before, &backends_after));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tps = stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let failure = (!output.status.success() || !tps.is_finite()).then(|| {
        let problems: Vec<&str> = stderr
            .lines()
            .chain(stdout.lines())
            .filter(|line| {
                line.contains("error")
                    || line.contains("ERROR")
                    || line.contains("aborted")
                    || line.contains("FATAL")
            })
            .take(3)
            .collect();
        format!("pgbench exited {}: {}", output.status, problems.join(" | "))
    });
    let mut latencies = Vec::new();
    for entry in fs::read_dir(log_dir)?.flatten() {
        let text = fs::read_to_string(entry.path()).unwrap_or_default();
        latencies.extend(
            text.lines()
                .filter_map(|line| line.split_whitespace().nth(2))
                .filter_map(|micros| micros.parse::<f64>().ok())
                .map(|micros| micros / 1000.0),
        );
    }
    latencies.sort_by(f64::total_cmp);
    fs::remove_dir_all(log_dir).ok();
    Ok(Run {
        tps,
        latencies,
        failure,
        cpu,
    })
}

/// Seconds, rounded up to what pgbench's `-T` takes.
pub fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}
