//! Telemetry end to end. The real binary runs as a child process (its global
//! subscriber and OpenTelemetry providers are its own, as in production) with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an OTLP/HTTP receiver in this
//! test, which decodes what arrives with the protocol's own protobuf
//! messages. Its stdout (the JSON logs) is captured. The child is stopped
//! with SIGTERM, so the last spans and metrics arrive through the flush on
//! shutdown.

use std::{
    collections::HashMap,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use opentelemetry_proto::tonic::{
    collector::{metrics::v1::ExportMetricsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{Metric, metric},
    trace::v1::Span,
};
use prost::Message;
use reqwest::{StatusCode, header::HOST};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

use crate::helpers::{BASE_DOMAIN, JWT_CURRENT, cluster, connect};

const PASSWORD: &str = "correct-horse-battery-staple-42";
const EMAIL: &str = "alice.liddell@wonderland.test";
const NOTE: &str = "the tarts are in the second drawer";
const PROJECT: &str = "tenantry-telemetry-test";
/// A caller's trace and span, as a `traceparent` carries them.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// What the receiver was sent, decoded, and every body as it arrived.
#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    metrics: Vec<Metric>,
    raw: Vec<u8>,
}

/// An OTLP/HTTP (protobuf) receiver on a loopback port.
struct Receiver {
    endpoint: String,
    received: Arc<Mutex<Received>>,
}

/// Decodes an export request and files it with `file`; 400 if it is not
/// the protobuf message the path names.
fn receive<R: Message + Default>(
    received: &Mutex<Received>,
    body: &Bytes,
    file: impl FnOnce(R, &mut Received),
) -> StatusCode {
    let Ok(request) = R::decode(body.as_ref()) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut received = received.lock().unwrap();
    received.raw.extend_from_slice(body);
    file(request, &mut received);
    StatusCode::OK
}

async fn traces(State(received): State<Arc<Mutex<Received>>>, body: Bytes) -> StatusCode {
    receive(
        &received,
        &body,
        |request: ExportTraceServiceRequest, received| {
            for resource in request.resource_spans {
                for scope in resource.scope_spans {
                    received.spans.extend(scope.spans);
                }
            }
        },
    )
}

async fn metrics(State(received): State<Arc<Mutex<Received>>>, body: Bytes) -> StatusCode {
    receive(
        &received,
        &body,
        |request: ExportMetricsServiceRequest, received| {
            for resource in request.resource_metrics {
                for scope in resource.scope_metrics {
                    received.metrics.extend(scope.metrics);
                }
            }
        },
    )
}

async fn start_receiver() -> Receiver {
    let received = Arc::new(Mutex::new(Received::default()));
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { endpoint, received }
}

/// `tenantry serve` in its own process, on its own migrated database.
struct Service {
    child: tokio::process::Child,
    port: u16,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    dbname: crate::helpers::TestDatabase,
    client: reqwest::Client,
}

async fn spawn_service(env: &[(&str, &str)]) -> Service {
    let cluster = cluster().await;
    let dbname = cluster.migrated_database().await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"));
    command
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", cluster.url_for("tenantry_app", &dbname))
        .env("JWT_KEYS", format!("{}:{}", JWT_CURRENT.0, JWT_CURRENT.1))
        .env("SIGNUP_MODE", "open")
        .env("BASE_DOMAIN", BASE_DOMAIN)
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .env("TENANT_CACHE_TTL_MS", "0")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("start tenantry serve");
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (port_tx, port_rx) = tokio::sync::oneshot::channel();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let captured = Arc::clone(&stdout);
    tokio::spawn(async move {
        let mut port_tx = Some(port_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(entry) = serde_json::from_str::<Value>(&line)
                && entry["message"] == "listening"
                && let Some(tx) = port_tx.take()
            {
                let _ = tx.send(entry["port"].as_u64().unwrap());
            }
            captured.lock().unwrap().push(line);
        }
    });
    let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
    let captured = Arc::clone(&stderr);
    tokio::spawn(async move {
        while let Ok(Some(line)) = errors.next_line().await {
            captured.lock().unwrap().push(line);
        }
    });
    let port = match tokio::time::timeout(Duration::from_secs(30), port_rx).await {
        Ok(Ok(port)) => u16::try_from(port).unwrap(),
        _ => panic!(
            "the service did not start; stderr: {:?}",
            stderr.lock().unwrap()
        ),
    };
    Service {
        child,
        port,
        stdout,
        stderr,
        dbname,
        client: reqwest::Client::new(),
    }
}

impl Service {
    fn request(&self, method: reqwest::Method, host: &str, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("http://127.0.0.1:{}{path}", self.port))
            .header(HOST, host)
    }

    /// Onboards `slug` with the owner `alice` and signs her in: (tenant id,
    /// owner id, token).
    async fn onboard(&self, slug: &str) -> (String, String, String) {
        let response = self
            .request(reqwest::Method::POST, BASE_DOMAIN, "/api/tenants")
            .json(&json!({
                "slug": slug, "name": "Wonderland",
                "owner": {"username": "alice", "email": EMAIL, "password": PASSWORD},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        let host = format!("{slug}.{BASE_DOMAIN}");
        let response = self
            .request(reqwest::Method::POST, &host, "/api/login")
            .json(&json!({"username": "alice", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let token: Value = response.json().await.unwrap();
        (
            body["tenant"]["id"].as_str().unwrap().to_owned(),
            body["owner"]["id"].as_str().unwrap().to_owned(),
            token["token"].as_str().unwrap().to_owned(),
        )
    }

    /// SIGTERM, as Cloud Run stops an instance, then waits for the exit.
    async fn stop(mut self) -> (Vec<String>, Vec<String>, crate::helpers::TestDatabase) {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the service stops within 30 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "exit status {status:?}");
        // The pipes close with the process; give the readers a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stdout = self.stdout.lock().unwrap().clone();
        let stderr = self.stderr.lock().unwrap().clone();
        (stdout, stderr, self.dbname)
    }
}

fn text(value: &AnyValue) -> Option<String> {
    match value.value.as_ref()? {
        any_value::Value::StringValue(text) => Some(text.clone()),
        any_value::Value::IntValue(number) => Some(number.to_string()),
        any_value::Value::BoolValue(flag) => Some(flag.to_string()),
        any_value::Value::DoubleValue(number) => Some(number.to_string()),
        _ => None,
    }
}

fn attributes(attributes: &[KeyValue]) -> HashMap<String, String> {
    attributes
        .iter()
        .filter_map(|pair| Some((pair.key.clone(), text(pair.value.as_ref()?)?)))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `traceresponse: 00-{trace}-{span}-{flags}` → (trace, span).
fn trace_response(response: &reqwest::Response) -> (String, String) {
    let value = response
        .headers()
        .get("traceresponse")
        .expect("a traceresponse header")
        .to_str()
        .unwrap();
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "traceresponse {value}");
    assert_eq!(parts[0], "00");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// The attribute sets of every data point of the metric `name`.
fn data_points(metrics: &[Metric], name: &str) -> Vec<HashMap<String, String>> {
    let mut found = Vec::new();
    for metric in metrics.iter().filter(|metric| metric.name == name) {
        match &metric.data {
            Some(metric::Data::Histogram(histogram)) => found.extend(
                histogram
                    .data_points
                    .iter()
                    .map(|point| attributes(&point.attributes)),
            ),
            Some(metric::Data::Sum(sum)) => {
                found.extend(
                    sum.data_points
                        .iter()
                        .map(|point| attributes(&point.attributes)),
                );
            }
            Some(metric::Data::Gauge(gauge)) => {
                found.extend(
                    gauge
                        .data_points
                        .iter()
                        .map(|point| attributes(&point.attributes)),
                );
            }
            _ => {}
        }
    }
    found
}

fn has(point: &HashMap<String, String>, pairs: &[(&str, &str)]) -> bool {
    pairs
        .iter()
        .all(|(key, value)| point.get(*key).map(String::as_str) == Some(*value))
}

#[tokio::test]
async fn requests_are_traced_measured_and_logged_with_their_tenant_and_no_secret() {
    // Arrange: a service exporting to our receiver; a tight signed-in rate
    // for the free plan so that one request is refused with a 429.
    let receiver = start_receiver().await;
    let service = spawn_service(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
        ("GOOGLE_CLOUD_PROJECT", PROJECT),
        (
            "TENANT_LIMITS",
            r#"{"plans": {"free": {"requests_per_second": 1, "burst": 4}}}"#,
        ),
    ])
    .await;
    let (tenant_id, user_id, token) = service.onboard("wonderland").await;
    let host = format!("wonderland.{BASE_DOMAIN}");

    // Act: create a note as part of a caller's trace, read it back, then
    // spend the tenant's rate until a request is refused.
    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let created = service
        .request(reqwest::Method::POST, &host, "/api/notes")
        .bearer_auth(&token)
        .header("traceparent", &traceparent)
        .json(&json!({"content": NOTE}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let (create_trace, create_span) = trace_response(&created);
    let note: Value = created.json().await.unwrap();
    let note_id = note["id"].as_str().unwrap().to_owned();
    let read = service
        .request(
            reqwest::Method::GET,
            &host,
            &format!("/api/notes/{note_id}"),
        )
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let (read_trace, read_span) = trace_response(&read);
    let read_request_id = read.headers()["x-request-id"].to_str().unwrap().to_owned();
    let mut refused = false;
    for _ in 0..20 {
        let response = service
            .request(reqwest::Method::GET, &host, "/api/notes")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = true;
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert!(refused, "the tenant's rate was never exhausted");
    let (stdout, stderr, dbname) = service.stop().await;
    let received = std::mem::take(&mut *receiver.received.lock().unwrap());

    // Assert: the server span of the read, named by its route template, with
    // the tenant and the user, matching the traceresponse header.
    let server = received
        .spans
        .iter()
        .find(|span| hex(&span.span_id) == read_span)
        .expect("the read's server span was exported");
    assert_eq!(server.name, "GET /api/notes/{id}");
    assert_eq!(hex(&server.trace_id), read_trace);
    assert_eq!(server.kind, 2, "SPAN_KIND_SERVER");
    let server_attributes = attributes(&server.attributes);
    assert!(
        has(
            &server_attributes,
            &[
                ("http.route", "/api/notes/{id}"),
                ("http.request.method", "GET"),
                ("http.response.status_code", "200"),
                ("tenant.id", &tenant_id),
                ("tenant.slug", "wonderland"),
                ("enduser.id", &user_id),
            ]
        ),
        "server span attributes: {server_attributes:?}"
    );
    // ...with a database span below it (statements are children of the
    // tenant transaction, itself a child of the server span).
    let by_id: HashMap<String, &Span> = received
        .spans
        .iter()
        .map(|span| (hex(&span.span_id), span))
        .collect();
    let descends_from_server = |span: &Span| {
        let mut parent = hex(&span.parent_span_id);
        while let Some(next) = by_id.get(&parent) {
            if parent == read_span {
                return true;
            }
            parent = hex(&next.parent_span_id);
        }
        false
    };
    let statement = received
        .spans
        .iter()
        .filter(|span| descends_from_server(span))
        .find(|span| {
            has(
                &attributes(&span.attributes),
                &[
                    ("db.system.name", "postgresql"),
                    ("db.operation.name", "SELECT"),
                ],
            )
        })
        .expect("a SELECT span under the read's server span");
    assert_eq!(statement.kind, 3, "SPAN_KIND_CLIENT");
    let transaction = by_id[&hex(&statement.parent_span_id)];
    assert_eq!(transaction.name, "tenant transaction");
    assert!(has(
        &attributes(&transaction.attributes),
        &[("tenant.id", &tenant_id)]
    ));
    // The note's id (a raw path segment) names no span.
    assert!(
        received
            .spans
            .iter()
            .all(|span| !span.name.contains(&note_id))
    );
    // Password hashing has its span.
    assert!(
        received
            .spans
            .iter()
            .any(|span| span.name == "argon2id verify"),
        "no password verification span"
    );
    // The create continued the caller's trace (TRACE_CONTEXT=trust).
    let create = by_id.get(&create_span).expect("the create's server span");
    assert_eq!(create.name, "POST /api/notes");
    assert_eq!(create_trace, CALLER_TRACE);
    assert_eq!(hex(&create.parent_span_id), CALLER_SPAN);

    // Metrics: request duration by route, method, status class and tenant;
    // the 429 by tenant; logins; tenant transactions; the pool gauges.
    let tenant = [
        ("tenant.id", tenant_id.as_str()),
        ("tenant.slug", "wonderland"),
    ];
    let durations = data_points(&received.metrics, "http.server.request.duration");
    assert!(
        durations.iter().any(|point| has(
            point,
            &[
                ("http.route", "/api/notes/{id}"),
                ("http.request.method", "GET"),
                ("http.response.status_class", "2xx"),
                tenant[0],
                tenant[1],
            ]
        )),
        "request durations: {durations:?}"
    );
    assert!(
        durations
            .iter()
            .all(|point| !point.contains_key("enduser.id")
                && !point.contains_key("url.path")
                && point
                    .get("http.route")
                    .is_some_and(|route| !route.contains(&note_id))),
        "no user ids or raw paths as metric attributes: {durations:?}"
    );
    let rejections = data_points(&received.metrics, "tenantry.rate_limit.rejections");
    assert!(
        rejections.iter().any(|point| has(
            point,
            &[
                ("reason", "rate_limited"),
                ("http.route", "/api/notes"),
                tenant[0],
                tenant[1]
            ]
        )),
        "rejections: {rejections:?}"
    );
    let logins = data_points(&received.metrics, "tenantry.auth.logins");
    assert!(
        logins
            .iter()
            .any(|point| has(point, &[("outcome", "success"), tenant[0], tenant[1]])),
        "logins: {logins:?}"
    );
    let transactions = data_points(&received.metrics, "tenantry.db.tenant_transaction.duration");
    assert!(
        transactions
            .iter()
            .any(|point| has(point, &[("outcome", "commit"), tenant[0]])),
        "transactions: {transactions:?}"
    );
    for gauge in [
        "db.client.connection.count",
        "db.client.connection.max",
        "db.client.connection.pending_requests",
    ] {
        assert!(
            !data_points(&received.metrics, gauge).is_empty(),
            "no {gauge} data"
        );
    }

    // Logs: the read's access log line carries its trace in Cloud Logging's
    // fields, the tenant, the request id and `httpRequest`.
    let entries: Vec<Value> = stdout
        .iter()
        .map(|line| serde_json::from_str(line).expect("every stdout line is JSON"))
        .collect();
    let access = entries
        .iter()
        .find(|entry| entry["httpRequest"]["requestUrl"] == format!("/api/notes/{note_id}"))
        .expect("the read's access log line");
    assert_eq!(
        access["logging.googleapis.com/trace"],
        format!("projects/{PROJECT}/traces/{read_trace}")
    );
    assert_eq!(access["logging.googleapis.com/spanId"], read_span);
    assert_eq!(access["severity"], "INFO");
    assert_eq!(access["tenant.id"], tenant_id);
    assert_eq!(access["tenant.slug"], "wonderland");
    assert_eq!(access["request_id"], read_request_id);
    assert_eq!(access["httpRequest"]["status"], 200);
    assert_eq!(access["httpRequest"]["requestMethod"], "GET");
    assert!(
        access["time"]
            .as_str()
            .is_some_and(|time| time.ends_with('Z'))
    );
    assert!(entries.iter().all(|entry| entry.get("level").is_none()
        && entry["severity"].is_string()
        && entry["message"].is_string()));

    // Nothing secret anywhere: not the password, the token, the stored
    // hash, the note, or the email, in any span, metric or log line.
    let owner = connect(&cluster().await.superuser_on(&dbname)).await;
    let hash: String = owner
        .query_one(
            "select password_hash from users where username = 'alice'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let exported = String::from_utf8_lossy(&received.raw).into_owned();
    let logs = [stdout.join("\n"), stderr.join("\n")].join("\n");
    for (what, secret) in [
        ("password", PASSWORD),
        ("token", token.as_str()),
        ("password hash", hash.as_str()),
        ("note content", NOTE),
        ("email", EMAIL),
    ] {
        assert!(!exported.contains(secret), "the {what} was exported");
        assert!(!logs.contains(secret), "the {what} was logged");
    }
    // The token's signature alone either (a JWT's parts are base64).
    let signature = token.rsplit('.').next().unwrap();
    assert!(!exported.contains(signature) && !logs.contains(signature));
}

/// Also shows the flush on shutdown: with export intervals of a minute,
/// the span and the metric can only have left at SIGTERM.
#[tokio::test]
async fn an_untrusted_traceparent_starts_a_new_trace_linked_to_the_callers() {
    let receiver = start_receiver().await;
    let service = spawn_service(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "60000"),
        ("TRACE_CONTEXT", "new"),
    ])
    .await;

    let response = service
        .request(reqwest::Method::GET, BASE_DOMAIN, "/healthz")
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (trace, span_id) = trace_response(&response);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.received.lock().unwrap().raw.is_empty(),
        "nothing is sent before an export interval ends"
    );
    service.stop().await;

    assert_ne!(trace, CALLER_TRACE);
    let received = receiver.received.lock().unwrap();
    let durations = data_points(&received.metrics, "http.server.request.duration");
    assert!(
        durations
            .iter()
            .any(|point| has(point, &[("http.route", "/healthz")])),
        "the request's metric was flushed at shutdown: {durations:?}"
    );
    let server = received
        .spans
        .iter()
        .find(|span| hex(&span.span_id) == span_id)
        .expect("the server span");
    assert_eq!(server.name, "GET /healthz");
    assert!(server.parent_span_id.is_empty(), "a root span");
    assert!(
        server
            .links
            .iter()
            .any(|link| hex(&link.trace_id) == CALLER_TRACE && hex(&link.span_id) == CALLER_SPAN),
        "linked to the caller's span: {:?}",
        server.links
    );
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_and_logs_have_no_trace_ids() {
    let service = spawn_service(&[("GOOGLE_CLOUD_PROJECT", PROJECT)]).await;

    let response = service
        .request(reqwest::Method::GET, BASE_DOMAIN, "/healthz")
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("traceresponse").is_none());
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let unknown_route = service
        .request(
            reqwest::Method::GET,
            BASE_DOMAIN,
            &format!("/nope/{}", Uuid::new_v4()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_route.status(), StatusCode::NOT_FOUND);
    let (stdout, _, _) = service.stop().await;

    let entries: Vec<Value> = stdout
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let access = entries
        .iter()
        .find(|entry| entry["request_id"] == request_id && entry.get("httpRequest").is_some())
        .expect("the access log line");
    assert_eq!(access["http.route"], "/healthz");
    assert!(
        entries
            .iter()
            .all(|entry| entry.get("logging.googleapis.com/trace").is_none())
    );
}

#[tokio::test]
async fn telemetry_settings_this_build_cannot_honour_stop_the_start() {
    for (variable, value, complaint) in [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://collector.example.test:4318",
            "OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// URL",
        ),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "grpc",
            "OTEL_EXPORTER_OTLP_PROTOCOL must be `http/protobuf`",
        ),
        (
            "TRACE_CONTEXT",
            "sometimes",
            "TRACE_CONTEXT must be `trust` or `new`",
        ),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .arg("serve")
            .env_clear()
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
            .env(variable, value)
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(complaint), "{variable}={value}: {stderr}");
    }
}

#[tokio::test]
async fn an_unreachable_collector_costs_requests_nothing_and_is_logged() {
    let service = spawn_service(&[
        // Nothing listens on the discard port.
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
    ])
    .await;

    for _ in 0..3 {
        let response = service
            .request(reqwest::Method::GET, BASE_DOMAIN, "/healthz")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("traceresponse").is_some());
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (stdout, _, _) = service.stop().await;

    let complaints: Vec<Value> = stdout
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|entry| {
            entry["target"]
                .as_str()
                .is_some_and(|target| target.starts_with("opentelemetry"))
                && matches!(entry["severity"].as_str(), Some("WARNING" | "ERROR"))
        })
        .collect();
    assert!(
        !complaints.is_empty(),
        "export failures are logged: {stdout:#?}"
    );
    assert!(complaints.iter().all(|entry| entry["message"].is_string()));
}

/// A revision of the canary ring serving a tenant of the stable ring (moved,
/// and the load balancer not yet applied): the request is answered as any
/// other, and the mismatch is counted with both rings and logged.
#[tokio::test]
async fn a_tenant_of_another_ring_is_served_counted_and_logged_with_both_rings() {
    let receiver = start_receiver().await;
    let service = spawn_service(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "60000"),
        ("GOOGLE_CLOUD_PROJECT", PROJECT),
        ("RELEASE_RING", "canary"),
    ])
    .await;
    let (_, _, token) = service.onboard("wonderland").await;
    let host = format!("wonderland.{BASE_DOMAIN}");
    for _ in 0..3 {
        let response = service
            .request(reqwest::Method::GET, &host, "/v1/notes")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        assert_eq!(page["data"], json!([]));
    }
    // The apex is no tenant's: nothing to mismatch.
    let health = service
        .request(reqwest::Method::GET, BASE_DOMAIN, "/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let (stdout, _, _) = service.stop().await;
    let received = std::mem::take(&mut *receiver.received.lock().unwrap());

    let mismatches = data_points(&received.metrics, "tenantry.ring.mismatches");
    let rings = [
        ("release.ring", "canary"),
        ("tenant.ring", "stable"),
        ("tenant.slug", "wonderland"),
    ];
    assert!(
        mismatches.iter().any(|point| has(point, &rings)),
        "mismatches: {mismatches:?}"
    );
    assert!(
        mismatches
            .iter()
            .all(|point| point.get("tenant.slug").map(String::as_str) == Some("wonderland")),
        "only the tenant's requests are mismatches: {mismatches:?}"
    );
    let durations = data_points(&received.metrics, "http.server.request.duration");
    assert!(
        !durations.is_empty()
            && durations
                .iter()
                .all(|point| point.get("release.ring").map(String::as_str) == Some("canary")),
        "every request is measured under the revision's ring: {durations:?}"
    );

    let entries: Vec<Value> = stdout
        .iter()
        .map(|line| serde_json::from_str(line).expect("every stdout line is JSON"))
        .collect();
    let warnings: Vec<&Value> = entries
        .iter()
        .filter(|entry| entry["tenant.ring"] == "stable")
        .collect();
    assert_eq!(
        warnings.len(),
        4,
        "the sign-in and three reads: {warnings:?}"
    );
    for warning in warnings {
        assert_eq!(warning["severity"], "WARNING");
        assert_eq!(warning["release.ring"], "canary");
        assert_eq!(warning["tenant.slug"], "wonderland");
    }
    // The access log has the path as the client sent it.
    assert!(
        entries
            .iter()
            .any(|entry| entry["httpRequest"]["requestUrl"] == "/v1/notes"),
        "no access line for /v1/notes"
    );
}
