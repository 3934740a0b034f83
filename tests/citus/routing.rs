//! What the service really sends to the workers, request by request: the
//! real binary serves a cluster database whose runtime role has Citus log
//! every remote command to the client (`citus.log_remote_commands`), which
//! the service's driver writes into its log. From those lines each request
//! must show: one remote transaction on one worker (the tenant's), opened
//! with the tenant's `SET LOCAL`, committed once (no two-phase commit).

use std::{
    collections::{BTreeSet, HashMap},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

use crate::helpers::{BASE_DOMAIN, JWT_CURRENT, cluster, connect};

/// The service as a child process, with its log lines collected.
struct Service {
    port: u16,
    log: Arc<Mutex<Vec<Value>>>,
    http: reqwest::Client,
    _child: tokio::process::Child,
}

impl Service {
    async fn start(dbname: &str) -> Self {
        let cluster = cluster().await;
        let limits = json!({"plans": {"free": {"requests_per_second": 100_000, "burst": 100_000,
                                                 "max_users": null, "max_notes": null}}});
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .arg("serve")
            .env_clear()
            .env("DATABASE_URL", cluster.url_for("tenantry_app", dbname))
            .env("DATABASE_CITUS", "on")
            .env("JWT_KEYS", format!("{}:{}", JWT_CURRENT.0, JWT_CURRENT.1))
            .env("SIGNUP_MODE", "open")
            .env("BASE_DOMAIN", BASE_DOMAIN)
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env("TENANT_CACHE_TTL_MS", "0")
            .env("TENANT_LIMITS", limits.to_string())
            .env("CLIENT_RATE_LIMIT_PER_MINUTE", "100000")
            .env("CLIENT_RATE_LIMIT_BURST", "100000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start tenantry serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let captured = Arc::clone(&log);
        tokio::spawn(async move {
            let mut port_tx = Some(port_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if entry["message"] == "listening"
                    && let Some(tx) = port_tx.take()
                {
                    let _ = tx.send(entry["port"].as_u64().unwrap());
                }
                captured.lock().unwrap().push(entry);
            }
        });
        let port = tokio::time::timeout(Duration::from_secs(30), port_rx)
            .await
            .expect("the service starts on the cluster with DATABASE_CITUS=on")
            .unwrap();
        Self {
            port: u16::try_from(port).unwrap(),
            log,
            http: reqwest::Client::new(),
            _child: child,
        }
    }

    /// Sends a request and returns its status, its body and the remote
    /// commands its transactions issued, in order.
    async fn send(
        &self,
        method: Method,
        host: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, Vec<String>) {
        let mut request = self
            .http
            .request(method, format!("http://127.0.0.1:{}{path}", self.port))
            .header("host", host);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let start = self.log.lock().unwrap().len();
        let response = request.send().await.unwrap();
        let status = response.status();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // The access line comes after the response; the driver logged the
        // remote commands before it handed the rows (and COMMIT) over.
        for _ in 0..200 {
            if let Some(commands) = self.commands_of(start, &id) {
                return (status, body, commands);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no access line for {path}");
    }
}

impl Service {
    /// The remote commands logged from line `start` up to the access line
    /// of request `id`; `None` before that line is there.
    fn commands_of(&self, start: usize, id: &str) -> Option<Vec<String>> {
        let log = self.log.lock().unwrap();
        let end = log[start..]
            .iter()
            .position(|entry| entry["target"] == "tenantry::access" && entry["request_id"] == id)?;
        Some(
            log[start..start + end]
                .iter()
                .filter_map(|entry| entry["message"].as_str())
                .filter_map(|message| message.strip_prefix("NOTICE: issuing "))
                .map(str::to_owned)
                .collect(),
        )
    }
}

/// Which worker holds each shard (`host:port`).
async fn shard_nodes(dbname: &str) -> HashMap<String, String> {
    let admin = connect(&cluster().await.superuser_on(dbname)).await;
    admin
        .query(
            "select shardid::text, nodename || ':' || nodeport from pg_dist_shard_placement",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// The workers the commands name shards of.
fn workers_named(commands: &[String], shards: &HashMap<String, String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for command in commands {
        for word in command.split(|c: char| !c.is_ascii_alphanumeric() && c != '_') {
            if let Some((_, id)) = word.rsplit_once('_')
                && id.len() >= 6
                && let Some(node) = shards.get(id)
            {
                found.insert(node.clone());
            }
        }
    }
    found
}

/// What is wrong with the remote commands of one tenant request of
/// `tenant`, whose shards are on `worker`.
fn routing_problems(
    commands: &[String],
    tenant: Uuid,
    worker: &str,
    shards: &HashMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if commands
        .iter()
        .any(|c| c.contains("PREPARE TRANSACTION") || c.contains("COMMIT PREPARED"))
    {
        problems.push("two-phase commit".to_owned());
    }
    let begins: Vec<&String> = commands.iter().filter(|c| c.starts_with("BEGIN")).collect();
    if begins.is_empty() {
        problems.push("no remote transaction".to_owned());
    }
    for begin in &begins {
        if !begin.contains(&format!("set local app.tenant_id = '{tenant}'")) {
            problems.push(format!("a remote transaction without the tenant: {begin}"));
        }
    }
    let workers = workers_named(commands, shards);
    if workers != BTreeSet::from([worker.to_owned()]) {
        problems.push(format!("ran on {workers:?}, not on {worker} alone"));
    }
    let commits = commands.iter().filter(|c| *c == "COMMIT").count();
    if commits != begins.len() {
        problems.push(format!(
            "{} remote transactions, {commits} commits",
            begins.len()
        ));
    }
    problems
}

/// The remote commands Citus logs for `statements`, run as `user` on
/// `dbname` over a connection that collects its notices.
async fn remote_commands_of(user: &str, dbname: &str, statements: &str) -> Vec<String> {
    let config = cluster().await.config_for(user, dbname);
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    let notices = Arc::new(Mutex::new(Vec::new()));
    let collected = Arc::clone(&notices);
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut messages).await {
            if let tokio_postgres::AsyncMessage::Notice(notice) = message
                && let Some(command) = notice.message().strip_prefix("issuing ")
            {
                collected.lock().unwrap().push(command.to_owned());
            }
        }
    });
    client
        .batch_execute(&format!(
            "set citus.log_remote_commands = on; set client_min_messages = 'log'; {statements}"
        ))
        .await
        .unwrap();
    drop(client);
    driver.await.unwrap();
    notices.lock().unwrap().clone()
}

#[tokio::test]
async fn every_tenant_request_runs_on_its_tenants_worker_alone_and_commits_once() {
    let cluster = cluster().await;
    let dbname = cluster.migrated_database().await;
    let admin = connect(&cluster.superuser_on(&dbname)).await;
    // Generic plans only: the service leaves plan_cache_mode at its
    // default, which plans a statement's first five runs on a connection
    // with their parameters and then settles on the generic plan, pruned
    // to a shard only when it runs (Citus's deferred pruning): the state
    // every connection reaches, and the one that must still route.
    admin
        .batch_execute(&format!(
            "alter role tenantry_app in database \"{dbname}\" set citus.log_remote_commands = on;
             alter role tenantry_app in database \"{dbname}\" set client_min_messages = 'log';
             alter role tenantry_app in database \"{dbname}\" set plan_cache_mode = force_generic_plan"
        ))
        .await
        .unwrap();
    let service = Service::start(&dbname).await;
    let shards = shard_nodes(&dbname).await;

    // Sign-up writes the registry, a reference table with a copy on every
    // node: the one request that must commit on every node (two-phase).
    let mut tenants = Vec::new();
    for slug in ["acme", "globex", "initech"] {
        let (status, body, commands) = service
            .send(
                Method::POST,
                BASE_DOMAIN,
                "/api/tenants",
                None,
                Some(json!({"slug": slug, "name": slug,
                            "owner": {"username": "owner", "email": format!("o@{slug}.test"), "password": "owner-password"}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert!(
            commands
                .iter()
                .any(|c| c.starts_with("PREPARE TRANSACTION")),
            "sign-up commits the registry on every node: {commands:#?}"
        );
        let id: Uuid = body["tenant"]["id"].as_str().unwrap().parse().unwrap();
        tenants.push((slug, id));
    }

    let mut checked = 0;
    for (slug, tenant) in &tenants {
        let host = format!("{slug}.{BASE_DOMAIN}");
        let expected: String = admin
            .query_one(
                "select nodename || ':' || nodeport from pg_dist_shard_placement
                 where shardid = get_shard_id_for_distribution_column('users', $1::text)",
                &[&tenant.to_string()],
            )
            .await
            .unwrap()
            .get(0);
        let mut requests: Vec<(Method, String, Option<Value>, bool)> = vec![
            (
                Method::POST,
                "/api/register".to_owned(),
                Some(
                    json!({"username": "member", "email": format!("m@{slug}.test"), "password": "member-password"}),
                ),
                false,
            ),
            (
                Method::POST,
                "/api/login".to_owned(),
                Some(json!({"username": "owner", "password": "owner-password"})),
                false,
            ),
        ];
        let mut token = None;
        let mut note = None;
        let mut member = None;
        while !requests.is_empty() {
            let (method, path, body, authenticated) = requests.remove(0);
            let bearer = if authenticated {
                token.as_deref()
            } else {
                None
            };
            let (status, answer, commands) = service
                .send(method.clone(), &host, &path, bearer, body)
                .await;
            assert!(status.is_success(), "{method} {path}: {status} {answer}");
            let what = format!("{slug}: {method} {path}");
            let problems = routing_problems(&commands, *tenant, &expected, &shards);
            assert!(problems.is_empty(), "{what}: {problems:#?}\n{commands:#?}");
            checked += 1;
            match path.as_str() {
                "/api/register" => member = answer["id"].as_str().map(str::to_owned),
                "/api/login" => {
                    token = answer["token"].as_str().map(str::to_owned);
                    requests.extend([
                        (
                            Method::POST,
                            "/api/notes".to_owned(),
                            Some(json!({"content": "routed"})),
                            true,
                        ),
                        (Method::GET, "/api/notes".to_owned(), None, true),
                        (Method::GET, "/api/me".to_owned(), None, true),
                        (Method::GET, "/api/users".to_owned(), None, true),
                        (Method::GET, "/api/audit".to_owned(), None, true),
                    ]);
                }
                "/api/notes" if method == Method::POST => {
                    note = answer["id"].as_str().map(str::to_owned);
                    let id = note.clone().unwrap();
                    requests.extend([
                        (Method::GET, format!("/api/notes/{id}"), None, true),
                        (
                            Method::PATCH,
                            format!("/api/notes/{id}"),
                            Some(json!({"content": "edited"})),
                            true,
                        ),
                        (Method::DELETE, format!("/api/notes/{id}"), None, true),
                        (
                            Method::DELETE,
                            format!("/api/users/{}", member.clone().unwrap()),
                            None,
                            true,
                        ),
                    ]);
                }
                _ => {}
            }
        }
        assert!(note.is_some());
    }
    assert_eq!(
        checked,
        3 * 11,
        "every request of every tenant was looked at"
    );

    // The check catches what it is there for: a query bound to acme but
    // without its tenant predicate goes to every shard; a write to the
    // registry commits on every node.
    let (_, acme) = tenants[0];
    let acme_worker: String = admin
        .query_one(
            "select nodename || ':' || nodeport from pg_dist_shard_placement
             where shardid = get_shard_id_for_distribution_column('users', $1::text)",
            &[&acme.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    let unpredicated = remote_commands_of(
        "tenantry_app",
        &dbname,
        &format!(
            "begin; select * from bind_tenant('{acme}', 5000, null, null, null);
             select count(*) from notes; commit"
        ),
    )
    .await;
    let problems = routing_problems(&unpredicated, acme, &acme_worker, &shards);
    assert!(
        problems.iter().any(|p| p.starts_with("ran on")),
        "{problems:?} {unpredicated:#?}"
    );
    let registry_write = remote_commands_of(
        "tenantry_admin",
        &dbname,
        &format!(
            "begin; select * from bind_tenant('{acme}', 5000, null, null, null);
             update tenants set name = 'Acme' where id = '{acme}';
             update notes set content = content where tenant_id = '{acme}'; commit"
        ),
    )
    .await;
    let problems = routing_problems(&registry_write, acme, &acme_worker, &shards);
    assert!(
        problems.contains(&"two-phase commit".to_owned()),
        "{problems:?} {registry_write:#?}"
    );
}
