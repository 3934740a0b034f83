//! Does pgbench's form of a statement plan like the service's?
//!
//! pgbench cannot hold a uuid in a variable, so its scripts compute ids with
//! `md5(...)::uuid` expressions where the service binds plain `$n`
//! parameters. The planner costs those expressions, so a prepared
//! statement's *generic* plan (the one it settles on after five executions
//! when its estimate is no worse than the custom plans') can pick another
//! index for one form than for the other. This check prepares both forms of
//! each workload's main statement as the runtime role, with the session
//! settings the service's connections start with (recorded by the proxy;
//! a `plan_cache_mode` among them would apply), in a transaction bound as
//! the service binds it, for the calibration request (tenant 1: under
//! Zipf, the largest tenant); executes each six times (each undone with a
//! savepoint), so that the plan cache has settled as it does in the
//! service, then reports `EXPLAIN (ANALYZE, BUFFERS)` of a seventh, and
//! rolls back.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde_json::Value as Json;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::{
    data::{self, NOTE_KEY, USER_KEY},
    load::Workload,
    pgbench::{self, Request, Translated},
    proxy::{Param, Value},
};

/// One statement's plan, as EXPLAIN ANALYZE saw it.
#[derive(Debug, Clone)]
pub struct Explained {
    /// The first scan node, e.g. `Index Scan using notes_pkey`.
    pub scan: String,
    /// Shared buffers hit or read.
    pub buffers: i64,
    pub ms: f64,
}

/// Both forms of one workload's main statement.
#[derive(Debug)]
pub struct Check {
    pub workload: Workload,
    pub service: Result<Explained, String>,
    pub pgbench: Result<Explained, String>,
}

/// Checks W1-W4 on `client` (connected as the runtime role).
pub async fn check(
    client: &Client,
    translated: &BTreeMap<Workload, Translated>,
    request: &Request,
    options: Option<&str>,
) -> Vec<Check> {
    let settings = settings(options.unwrap_or(""));
    let mut checks = Vec::new();
    for workload in [Workload::W1, Workload::W2, Workload::W3, Workload::W4] {
        let Some(translated) = translated.get(&workload) else {
            continue;
        };
        let service = explain_in_transaction(client, translated, &settings, |main| {
            service_form(main, request)
        })
        .await;
        let pgbench = explain_in_transaction(client, translated, &settings, |main| {
            pgbench_form(main, translated, request)
        })
        .await;
        checks.push(Check {
            workload,
            service: service.map_err(|error| format!("{error:#}")),
            pgbench: pgbench.map_err(|error| format!("{error:#}")),
        });
    }
    checks
}

/// (PREPARE, EXECUTE) of one form of a statement.
type Form = (String, String);

async fn explain_in_transaction(
    client: &Client,
    translated: &Translated,
    settings: &[(String, String)],
    form: impl Fn(&pgbench::Command) -> anyhow::Result<Form>,
) -> anyhow::Result<Explained> {
    let main = translated
        .commands
        .get(translated.main)
        .context("no main statement")?;
    let (prepare, execute) = form(main)?;
    client.batch_execute("begin").await?;
    let outcome = async {
        for (name, value) in settings {
            client
                .batch_execute(&format!("set local {name} = {}", quote(value)))
                .await?;
        }
        if let Some(binding) = translated.commands.iter().find(|command| command.binding) {
            let literals = literals(&binding.params)?;
            client
                .batch_execute(&pgbench::substitute(&binding.sql, &literals))
                .await?;
        }
        client.batch_execute(&prepare).await?;
        let explain = format!("explain (analyze, buffers, format json) {execute}");
        // Six unmeasured runs, each undone: the plan cache considers a
        // generic plan after five, and first-call costs (the quota trigger's
        // plpgsql compiling, cold caches) do not count.
        for _ in 0..6 {
            client.batch_execute("savepoint warm").await?;
            client.batch_execute(&execute).await?;
            client.batch_execute("rollback to savepoint warm").await?;
        }
        let messages = client.simple_query(&explain).await?;
        let text = messages
            .iter()
            .find_map(|message| match message {
                SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .context("EXPLAIN returned nothing")?;
        explained(&serde_json::from_str(&text)?)
    }
    .await;
    client.batch_execute("rollback; deallocate all").await?;
    outcome
}

/// The service's statement, with its parameters' types, executed with the
/// values the calibration request bound (ids the service generated itself
/// replaced by new ones, so that an insert does not collide).
fn service_form(main: &pgbench::Command, request: &Request) -> anyhow::Result<Form> {
    let known = [
        data::tenant_id(request.tenant),
        data::user_id(request.tenant, request.user),
        data::note_id(request.tenant, request.note),
    ];
    let params: Vec<Param> = main
        .params
        .iter()
        .map(|param| match &param.value {
            Value::Uuid(id) if !known.contains(id) => Param {
                type_oid: param.type_oid,
                value: Value::Uuid(uuid::Uuid::new_v4()),
            },
            _ => param.clone(),
        })
        .collect();
    let types = params
        .iter()
        .map(|param| pgbench::type_name(param.type_oid).context("a parameter of an unknown type"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let prepare = if types.is_empty() {
        format!("prepare bench_service as {}", main.sql)
    } else {
        format!(
            "prepare bench_service ({}) as {}",
            types.join(", "),
            main.sql
        )
    };
    let literals = literals(&params)?;
    let execute = if literals.is_empty() {
        "execute bench_service".to_owned()
    } else {
        format!("execute bench_service ({})", literals.join(", "))
    };
    Ok((prepare, execute))
}

/// pgbench's form: its variables become untyped parameters, as pgbench's
/// `-M prepared` sends them, with the calibration request's values.
fn pgbench_form(
    main: &pgbench::Command,
    translated: &Translated,
    request: &Request,
) -> anyhow::Result<Form> {
    let (sql, names) = variables_to_parameters(&main.text);
    let values = names
        .iter()
        .map(|name| {
            let value = match name.as_str() {
                "t" => request.tenant.to_string(),
                "u" => request.user.to_string(),
                "k" => request.note.to_string(),
                "uk" => {
                    (i64::from(request.tenant) * USER_KEY + i64::from(request.user)).to_string()
                }
                "nk" => (i64::from(request.tenant) * NOTE_KEY + request.note).to_string(),
                "fresh" => "1".to_owned(),
                other => translated
                    .defines
                    .iter()
                    .find(|(define, _)| define == other)
                    .map(|(_, value)| value.clone())
                    .with_context(|| format!("no value for :{other}"))?,
            };
            Ok(quote(&value))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let execute = if values.is_empty() {
        "execute bench_pgbench".to_owned()
    } else {
        format!("execute bench_pgbench ({})", values.join(", "))
    };
    Ok((format!("prepare bench_pgbench as {sql}"), execute))
}

/// `:name` → `$n` (the same name, the same n), `::` left alone.
fn variables_to_parameters(text: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut names: Vec<String> = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push_str("::");
            i += 2;
            continue;
        }
        if c == ':'
            && chars
                .get(i + 1)
                .is_some_and(|next| next.is_ascii_alphabetic() || *next == '_')
        {
            let start = i + 1;
            let mut end = start;
            while chars
                .get(end)
                .is_some_and(|next| next.is_ascii_alphanumeric() || *next == '_')
            {
                end += 1;
            }
            let name: String = chars[start..end].iter().collect();
            let number = match names.iter().position(|known| *known == name) {
                Some(position) => position + 1,
                None => {
                    names.push(name);
                    names.len()
                }
            };
            out.push_str(&format!("${number}"));
            i = end;
            continue;
        }
        out.push(c);
        i += 1;
    }
    (out, names)
}

/// `-c name=value` (and `--name=value`) pairs of a libpq `options` string.
fn settings(options: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        let setting = match word {
            "-c" => words.next(),
            other => other
                .strip_prefix("--")
                .or_else(|| other.strip_prefix("-c")),
        };
        if let Some((name, value)) = setting.and_then(|s| s.split_once('='))
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            pairs.push((name.replace('-', "_"), value.to_owned()));
        }
    }
    pairs
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// SQL literals of bound parameters, typed as they were bound.
fn literals(params: &[Param]) -> anyhow::Result<Vec<String>> {
    params
        .iter()
        .map(|param| {
            let cast = pgbench::type_name(param.type_oid)
                .map(|name| format!("::{name}"))
                .unwrap_or_default();
            Ok(match &param.value {
                Value::Null => format!("null{cast}"),
                Value::Uuid(id) => format!("'{id}'::uuid"),
                Value::Int(n) => format!("{n}{cast}"),
                Value::Bool(b) => format!("{b}{cast}"),
                Value::Text(text) | Value::Timestamp(text) | Value::Json(text) => {
                    format!("{}{cast}", quote(text))
                }
                Value::Bytes(_) => bail!("a parameter that was not decoded"),
            })
        })
        .collect()
}

fn explained(json: &Json) -> anyhow::Result<Explained> {
    let top = json.get(0).context("EXPLAIN JSON is not a list")?;
    let plan = top.get("Plan").context("no Plan in EXPLAIN JSON")?;
    let blocks = |name: &str| plan.get(name).and_then(Json::as_i64).unwrap_or(0);
    Ok(Explained {
        scan: first_scan(plan).unwrap_or_else(|| {
            plan.get("Node Type")
                .and_then(Json::as_str)
                .unwrap_or("?")
                .to_owned()
        }),
        buffers: blocks("Shared Hit Blocks") + blocks("Shared Read Blocks"),
        ms: top
            .get("Execution Time")
            .and_then(Json::as_f64)
            .unwrap_or(f64::NAN),
    })
}

/// The first node, depth first, that scans a relation.
fn first_scan(plan: &Json) -> Option<String> {
    let node = plan.get("Node Type").and_then(Json::as_str).unwrap_or("?");
    if let Some(index) = plan.get("Index Name").and_then(Json::as_str) {
        return Some(format!("{node} using {index}"));
    }
    if let Some(relation) = plan.get("Relation Name").and_then(Json::as_str)
        && node.contains("Scan")
    {
        return Some(format!("{node} on {relation}"));
    }
    plan.get("Plans")
        .and_then(Json::as_array)
        .and_then(|children| children.iter().find_map(first_scan))
}
