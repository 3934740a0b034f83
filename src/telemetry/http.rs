//! Telemetry of HTTP requests: the server span, W3C trace-context
//! propagation, the `traceresponse` header, the request metrics and the
//! access log line.
//!
//! [`request_span`] makes the span `TraceLayer` runs each request in, named
//! `{method} {route template}` (`GET /api/notes/{id}`, never the raw path),
//! with HTTP semantic-convention attributes and empty `tenant.id`,
//! `tenant.slug` and `enduser.id` slots the extractors fill in. [`observe`]
//! runs inside it and, once the response is known, records the status, adds
//! `traceresponse`, records the metrics and writes the access log line.

use std::{
    sync::{Arc, OnceLock},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, OriginalUri, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::Response,
};
use opentelemetry::{
    propagation::TextMapPropagator,
    trace::{Status, TraceContextExt},
};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{TraceContext, metrics, trace_context};
use crate::{
    domain::{Ring, TenantId},
    error::ErrorCode,
};

/// The header that carries our request id, on every response.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The target of the access log line: one per request, at the end.
pub const ACCESS_LOG: &str = "tenantry::access";

/// The W3C Trace Context Level 2 response header: the trace and the server
/// span this request was recorded as, so a client can quote it.
pub static TRACE_RESPONSE: HeaderName = HeaderName::from_static("traceresponse");

/// The tenant a request turned out to be for, as metric attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantLabels {
    pub id: String,
    pub slug: String,
    /// The tenant's release ring, to tell a misrouted request.
    pub ring: Ring,
}

/// Where the tenant extractor leaves the request's tenant for [`observe`],
/// which labels the request's metrics with it. One per request.
#[derive(Debug, Clone, Default)]
pub struct RequestTenant(Arc<OnceLock<TenantLabels>>);

impl RequestTenant {
    /// Records the request's tenant (the first one set wins).
    pub fn set(&self, id: TenantId, slug: &str, ring: Ring) {
        let _ = self.0.set(TenantLabels {
            id: id.to_string(),
            slug: slug.to_owned(),
            ring,
        });
    }

    /// The request's tenant, once resolved.
    pub fn get(&self) -> Option<&TenantLabels> {
        self.0.get()
    }
}

/// The server span of `request`. Attributes that only traces need go to
/// OpenTelemetry directly, so that they are not repeated on every log line.
pub fn request_span(request: &Request) -> Span {
    let route = route(request);
    let method = method(request.method());
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        request_id,
        tenant.id = tracing::field::Empty,
        tenant.slug = tracing::field::Empty,
        enduser.id = tracing::field::Empty,
    );
    if !super::traces_exported() {
        return span;
    }
    adopt_incoming_trace(&span, request.headers());
    span.set_attribute("url.path", bounded(request.uri().path()));
    span.set_attribute("url.scheme", "http");
    span.set_attribute("network.protocol.version", protocol(request));
    if let Some(agent) = header_text(request.headers(), &header::USER_AGENT) {
        span.set_attribute("user_agent.original", bounded(agent));
    }
    if let Some(host) = header_text(request.headers(), &header::HOST) {
        let host = host.rsplit_once(':').map_or(host, |(name, _)| name);
        span.set_attribute("server.address", bounded(host));
    }
    span
}

/// The longest client-chosen text a span carries: exported spans are billed
/// by size, and a path, a user agent or a host is whatever the client sent.
const MAX_CLIENT_TEXT: usize = 256;

/// `text` cut to [`MAX_CLIENT_TEXT`] bytes, at a character boundary.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_CLIENT_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_CLIENT_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Continues the incoming `traceparent`'s trace, or, under
/// [`TraceContext::New`], starts a new one linked to it.
fn adopt_incoming_trace(span: &Span, headers: &HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let incoming = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let remote = incoming.span().span_context().clone();
    if !remote.is_valid() {
        return;
    }
    match trace_context() {
        TraceContext::Trust => {
            // Fails only without the OpenTelemetry layer: nothing to join then.
            let _ = span.set_parent(incoming);
        }
        TraceContext::New => span.add_link(remote),
    }
}

/// Records the response on the request's span, adds `traceresponse`, counts
/// the request (under `ring`, the ring this revision serves), counts and
/// logs a request for a tenant of another ring, and writes the access log
/// line. Runs inside the span.
pub async fn observe(State(ring): State<Ring>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let tenant = RequestTenant::default();
    request.extensions_mut().insert(tenant.clone());
    let route = route(&request).to_owned();
    let method = method(request.method());
    let access = tracing::enabled!(target: ACCESS_LOG, tracing::Level::INFO)
        .then(|| AccessLine::of(&request));
    let mut response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status();
    let error_code = response.extensions().get::<ErrorCode>().map(|code| code.0);
    if super::traces_exported() {
        let span = Span::current();
        span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            let error_type = error_code.unwrap_or_else(|| status.as_str());
            span.set_attribute("error.type", error_type.to_owned());
            span.set_status(Status::error(error_type.to_owned()));
        }
        if let Some(value) = trace_response(&span) {
            response.headers_mut().insert(TRACE_RESPONSE.clone(), value);
        }
    }
    metrics::request_served(&route, method, status.as_u16(), ring, tenant.get(), elapsed);
    if let Some(tenant) = tenant.get()
        && tenant.ring != ring
    {
        misrouted(ring, tenant);
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        metrics::request_rejected(&route, error_code.unwrap_or("rate_limited"), tenant.get());
    }
    if let Some(access) = access {
        access.write(method, &response, elapsed);
    }
    response
}

/// A request the load balancer sent to the revision of another ring than its
/// tenant's: served all the same (every revision of a rollout runs on the
/// same schema), but a tenant moved and not yet applied, or a routing
/// mistake, shows up on the dashboard and in the log.
fn misrouted(ring: Ring, tenant: &TenantLabels) {
    metrics::ring_mismatch(ring, tenant);
    tracing::warn!(
        release.ring = ring.as_str(),
        tenant.ring = tenant.ring.as_str(),
        "served a tenant of the {} ring on a revision of the {ring} ring",
        tenant.ring
    );
}

/// What the access log line needs of the request, taken before the request
/// is handed on (only when the line will be written).
struct AccessLine {
    path: String,
    protocol: &'static str,
    user_agent: Option<String>,
}

impl AccessLine {
    fn of(request: &Request) -> Self {
        Self {
            // As the client sent it (`/v1/...` is routed by a rewrite).
            path: request
                .extensions()
                .get::<OriginalUri>()
                .map_or(request.uri(), |original| &original.0)
                .path()
                .to_owned(),
            protocol: protocol(request),
            user_agent: header_text(request.headers(), &header::USER_AGENT).map(str::to_owned),
        }
    }

    /// The one access log line of the request; its fields become Cloud
    /// Logging's `httpRequest` in the JSON format.
    fn write(self, method: &'static str, response: &Response, elapsed: std::time::Duration) {
        let status = response.status().as_u16();
        let size = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let path = self.path;
        tracing::info!(
            target: ACCESS_LOG,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            // The method is the request span's field already (and in the
            // message); the JSON line's httpRequest takes it from there.
            url.path = path.as_str(),
            http.response.status_code = status,
            http.response.body.size = size,
            network.protocol.version = self.protocol,
            user_agent.original = self.user_agent.as_deref(),
            "{method} {path} {status}",
        );
    }
}

/// `traceresponse: 00-{trace id}-{span id}-{flags}` for `span`, when it has
/// an OpenTelemetry context (export on).
fn trace_response(span: &Span) -> Option<HeaderValue> {
    let context = span.context();
    let otel_span = context.span();
    let ids = otel_span.span_context();
    if !ids.is_valid() {
        return None;
    }
    let value = format!(
        "00-{}-{}-{:02x}",
        ids.trace_id(),
        ids.span_id(),
        ids.trace_flags().to_u8()
    );
    HeaderValue::from_str(&value).ok()
}

/// The matched route template; `unmatched` for requests no route took (a
/// raw path would let any client create new metric series).
fn route(request: &Request) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
}

/// The method as semantic conventions name it: the known methods, else
/// `_OTHER` (a client may send any token as a method).
fn method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

fn protocol(request: &Request) -> &'static str {
    match request.version() {
        axum::http::Version::HTTP_09 => "0.9",
        axum::http::Version::HTTP_10 => "1.0",
        axum::http::Version::HTTP_2 => "2",
        axum::http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Cloud Logging's `httpRequest` object, from the access log line's fields.
pub(super) mod access {
    use serde_json::{Map, Value};

    /// Moves the access log line's HTTP fields out of `entry` into an
    /// `httpRequest` object.
    pub(in crate::telemetry) fn http_request(entry: &mut Map<String, Value>) -> Map<String, Value> {
        let mut request = Map::new();
        let mut take = |field: &str, key: &str, convert: fn(Value) -> Value| {
            if let Some(value) = entry.remove(field) {
                request.insert(key.to_owned(), convert(value));
            }
        };
        take("http.request.method", "requestMethod", |value| value);
        take("url.path", "requestUrl", |value| value);
        take("http.response.status_code", "status", |value| value);
        take("http.response.body.size", "responseSize", |value| {
            Value::String(value.to_string())
        });
        take("latency_ms", "latency", |value| {
            let seconds = value.as_f64().unwrap_or_default() / 1000.0;
            Value::String(format!("{seconds:.6}s"))
        });
        take("network.protocol.version", "protocol", |value| {
            Value::String(format!("HTTP/{}", value.as_str().unwrap_or("1.1")))
        });
        take("user_agent.original", "userAgent", |value| value);
        request
    }

    #[cfg(test)]
    mod tests {
        use serde_json::json;

        use super::*;

        #[test]
        fn the_access_fields_become_cloud_loggings_http_request() {
            let Value::Object(mut entry) = json!({
                "message": "GET /api/notes 200",
                "http.request.method": "GET",
                "url.path": "/api/notes",
                "http.response.status_code": 200,
                "http.response.body.size": 42,
                "latency_ms": 12.5,
                "network.protocol.version": "1.1",
                "request_id": "r-1",
            }) else {
                unreachable!("an object literal")
            };
            let request = http_request(&mut entry);
            assert_eq!(
                Value::Object(request),
                json!({
                    "requestMethod": "GET",
                    "requestUrl": "/api/notes",
                    "status": 200,
                    "responseSize": "42",
                    "latency": "0.012500s",
                    "protocol": "HTTP/1.1",
                })
            );
            assert_eq!(
                Value::Object(entry),
                json!({"message": "GET /api/notes 200", "request_id": "r-1"})
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_is_cut_to_the_bound_at_a_character_boundary() {
        assert_eq!(bounded("/api/notes"), "/api/notes");
        let long = "a".repeat(MAX_CLIENT_TEXT + 10);
        assert_eq!(bounded(&long).len(), MAX_CLIENT_TEXT);
        // A two-byte character straddling the bound is dropped whole.
        let straddling = format!("{}é", "a".repeat(MAX_CLIENT_TEXT - 1));
        assert_eq!(bounded(&straddling), "a".repeat(MAX_CLIENT_TEXT - 1));
    }
}
