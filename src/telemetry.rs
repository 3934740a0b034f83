//! Telemetry: logs on stdout, and OpenTelemetry traces and metrics over OTLP.
//!
//! - **Logs.** JSON lines that Cloud Logging reads as structured entries
//!   (`severity`, `message`, `time`, the trace and span ids as
//!   `logging.googleapis.com/trace` and `logging.googleapis.com/spanId`,
//!   `httpRequest` on the access log line, the request span's fields such as
//!   `request_id`, `tenant.id` and `tenant.slug`), or a human-readable format
//!   for local development (`LOG_FORMAT`). `RUST_LOG` filters (default
//!   `info`). Handlers never log tokens, passwords, hashes, note content or
//!   email addresses; `Authorization` and `Cookie` are marked sensitive.
//! - **Traces.** `tracing` spans bridged to OpenTelemetry: one server span per
//!   request (`{method} {route template}`, see [`http`]), child spans for
//!   tenant transactions and their statements, and for password hashing.
//! - **Metrics.** See [`metrics`].
//!
//! Export is configured by the standard `OTEL_*` variables and is off unless
//! an OTLP endpoint is set: then no OpenTelemetry layer or provider is
//! installed at all, and the instruments are the API's no-ops. When on, spans
//! and metrics are batched and sent by the SDK's own threads, off the request
//! path, and [`Telemetry::shutdown`] flushes both.

pub mod http;
mod json_log;
pub mod metrics;
mod otlp;

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, Ordering},
};

use anyhow::{Context, bail};
use tracing_subscriber::{EnvFilter, fmt, fmt::writer::BoxMakeWriter, prelude::*};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, in Cloud Logging's structured format.
    Json,
    /// Coloured, multi-field lines for a terminal.
    Pretty,
}

impl LogFormat {
    /// `LOG_FORMAT` (`json` or `pretty`), or `default` when unset.
    pub fn from_env(default: Self) -> anyhow::Result<Self> {
        match non_empty_var("LOG_FORMAT").as_deref() {
            None => Ok(default),
            Some("json") => Ok(Self::Json),
            Some("pretty") => Ok(Self::Pretty),
            Some(other) => bail!("LOG_FORMAT must be `json` or `pretty`, got {other:?}"),
        }
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// The service's logs.
    Stdout,
    /// Commands whose stdout is their result (the operator commands print JSON).
    Stderr,
}

/// What to do with an incoming W3C `traceparent` header (`TRACE_CONTEXT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceContext {
    /// Continue the caller's trace: the request's server span is a child of
    /// the incoming span, and the caller's sampling decision applies (with
    /// the default `parentbased_always_on` sampler). Right behind a proxy or
    /// load balancer that starts traces, such as Cloud Run's front end.
    Trust,
    /// Start a new trace for every request, linked to the incoming one: a
    /// client cannot choose our trace ids or sampling. Right for a service
    /// exposed to untrusted callers without a tracing front end.
    New,
}

impl TraceContext {
    fn from_env() -> anyhow::Result<Self> {
        match non_empty_var("TRACE_CONTEXT").as_deref() {
            None | Some("trust") => Ok(Self::Trust),
            Some("new") => Ok(Self::New),
            Some(other) => bail!("TRACE_CONTEXT must be `trust` or `new`, got {other:?}"),
        }
    }
}

static TRACE_CONTEXT: OnceLock<TraceContext> = OnceLock::new();
static TRACES_EXPORTED: AtomicBool = AtomicBool::new(false);
static METRICS_EXPORTED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported: code that would make spans only for traces
/// (not for logs) skips them otherwise.
pub fn traces_exported() -> bool {
    TRACES_EXPORTED.load(Ordering::Relaxed)
}

/// Whether metrics are exported: recording skips building attributes otherwise.
fn metrics_exported() -> bool {
    METRICS_EXPORTED.load(Ordering::Relaxed)
}

/// The process's [`TraceContext`] policy: what [`init`] read, else `Trust`.
pub fn trace_context() -> TraceContext {
    TRACE_CONTEXT.get().copied().unwrap_or(TraceContext::Trust)
}

/// The installed telemetry. Keep it alive for the life of the process and
/// call [`Telemetry::shutdown`] before exiting, or buffered spans and the last
/// metric interval are lost.
#[must_use = "dropping it without shutdown() loses the last spans and metrics"]
pub struct Telemetry {
    exporters: Option<otlp::Providers>,
}

impl Telemetry {
    /// Flushes and stops the exporters. Flushing blocks (it sends the last
    /// batches), so it runs on the blocking pool.
    pub async fn shutdown(self) {
        if let Some(providers) = self.exporters {
            let flushed = tokio::task::spawn_blocking(move || providers.shutdown()).await;
            if let Err(error) = flushed {
                eprintln!("error: flushing telemetry failed: {error}");
            }
        }
    }
}

/// Installs the global subscriber, and the OpenTelemetry providers when an
/// OTLP endpoint is configured. Call once, first thing in `main`.
pub fn init(format: LogFormat, output: LogOutput) -> anyhow::Result<Telemetry> {
    if TRACE_CONTEXT.set(TraceContext::from_env()?).is_err() {
        bail!("telemetry was already initialised");
    }
    for protocol in [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    ] {
        // The SDK would quietly fall back to HTTP for a protocol not built in.
        if let Some(value) = non_empty_var(protocol).filter(|value| value != "http/protobuf") {
            bail!(
                "{protocol} must be `http/protobuf`, the one OTLP protocol built in, got {value:?}"
            );
        }
    }
    let export = otlp::ExportSettings {
        traces: signal_enabled("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")?,
        metrics: signal_enabled("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")?,
        service_name: non_empty_var("OTEL_SERVICE_NAME")
            .is_none()
            .then_some("tenantry"),
    };
    let providers = otlp::Providers::install(&export)?;
    let tracer = providers.as_ref().and_then(otlp::Providers::tracer);
    TRACES_EXPORTED.store(tracer.is_some(), Ordering::Relaxed);
    METRICS_EXPORTED.store(
        providers.as_ref().is_some_and(otlp::Providers::meters),
        Ordering::Relaxed,
    );
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(tracer.map(|tracer| {
            // Spans carry what the semantic conventions ask for, not the
            // bridge's extras (source location, thread, busy/idle times).
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                .with_filter(not_the_exporters_own())
        }));
    let writer = match output {
        LogOutput::Stdout => BoxMakeWriter::new(std::io::stdout),
        LogOutput::Stderr => BoxMakeWriter::new(std::io::stderr),
    };
    let installed = match format {
        LogFormat::Json => registry
            .with(json_log::CloudLoggingLayer::new(
                writer,
                non_empty_var("GOOGLE_CLOUD_PROJECT"),
            ))
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .with_ansi(output_is_terminal(output))
                    .with_writer(writer)
                    .compact(),
            )
            .try_init(),
    };
    if installed.is_err() {
        bail!("a global tracing subscriber was already installed");
    }
    Ok(Telemetry {
        exporters: providers,
    })
}

/// Whether a signal is exported: when its own endpoint variable or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, unless `OTEL_SDK_DISABLED=true`.
/// The exporter reads the endpoints itself; this only decides, and refuses
/// `https` endpoints, which this build cannot reach (no TLS: export goes to a
/// collector on localhost, e.g. the Cloud Run sidecar).
fn signal_enabled(signal_endpoint: &str) -> anyhow::Result<bool> {
    if non_empty_var("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    let variable = [signal_endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .into_iter()
        .find_map(|name| non_empty_var(name).map(|value| (name, value)));
    let Some((name, endpoint)) = variable else {
        return Ok(false);
    };
    let scheme = endpoint
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase())
        .with_context(|| format!("{name} must be an http:// URL, got {endpoint:?}"))?;
    if scheme != "http" {
        bail!(
            "{name} must be an http:// URL (export goes to a collector, e.g. on localhost:4318; this build has no TLS), got {endpoint:?}"
        );
    }
    Ok(true)
}

/// Spans of the crates that carry the export itself (the HTTP client and the
/// SDK) never go to the exporter: with `RUST_LOG=debug` each exported batch
/// would otherwise make spans of its own, exported in the next batch, and so
/// on. They still reach the log output when `RUST_LOG` asks for them.
fn not_the_exporters_own() -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::LevelFilter;
    tracing_subscriber::filter::Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(
            [
                "hyper",
                "hyper_util",
                "h2",
                "reqwest",
                "tower",
                "opentelemetry",
                "opentelemetry_sdk",
                "opentelemetry_otlp",
                "opentelemetry_http",
            ]
            .map(|target| (target, LevelFilter::OFF)),
        )
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// Colours only for a person at a terminal, never into a pipe or a file.
fn output_is_terminal(output: LogOutput) -> bool {
    use std::io::IsTerminal;
    match output {
        LogOutput::Stdout => std::io::stdout().is_terminal(),
        LogOutput::Stderr => std::io::stderr().is_terminal(),
    }
}
