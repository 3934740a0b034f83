//! JSON log lines in Cloud Logging's structured format.
//!
//! One object per event: `severity` (Cloud Logging's names, not `level`),
//! `message`, `time`, `target`, the fields of the event's spans from the root
//! down (so a request's `request_id`, `tenant.id`, `tenant.slug`,
//! `enduser.id`, `http.route` are on every line it logs), then the event's
//! own fields. When the OpenTelemetry bridge is installed, the event's span
//! gives `logging.googleapis.com/trace` (`projects/PROJECT/traces/TRACE_ID`
//! with `GOOGLE_CLOUD_PROJECT`, else the bare trace id),
//! `logging.googleapis.com/spanId` and `logging.googleapis.com/trace_sampled`,
//! which is how Cloud Logging shows a request's logs under its trace. The
//! access log line (target [`super::http::ACCESS_LOG`]) carries Cloud
//! Logging's `httpRequest` object.

use std::{fmt, io::Write};

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::{
    Event, Level, Subscriber,
    dispatcher::WeakDispatch,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{Layer, fmt::MakeWriter, layer::Context, registry::LookupSpan};

use super::http::{ACCESS_LOG, access};

/// A span's fields as recorded so far.
struct SpanFields(Map<String, Value>);

/// The layer that writes Cloud Logging JSON lines to `writer`.
pub(super) struct CloudLoggingLayer<W> {
    writer: W,
    project: Option<String>,
    /// The subscriber this layer is part of, to ask the OpenTelemetry bridge
    /// for a span's ids (a layer cannot reach the current dispatcher while it
    /// handles an event).
    dispatch: std::sync::OnceLock<WeakDispatch>,
}

impl<W> CloudLoggingLayer<W> {
    pub(super) fn new(writer: W, project: Option<String>) -> Self {
        Self {
            writer,
            project,
            dispatch: std::sync::OnceLock::new(),
        }
    }

    /// The trace fields for the span `id`, if the bridge gives it a valid
    /// OpenTelemetry context.
    fn trace_fields(&self, id: &span::Id, entry: &mut Map<String, Value>) {
        let Some(dispatch) = self.dispatch.get().and_then(WeakDispatch::upgrade) else {
            return;
        };
        let Some(context) = tracing_opentelemetry::get_otel_context(id, &dispatch) else {
            return;
        };
        let span = context.span();
        let span_context = span.span_context();
        if !span_context.is_valid() {
            return;
        }
        let trace_id = span_context.trace_id().to_string();
        let trace = match &self.project {
            Some(project) => format!("projects/{project}/traces/{trace_id}"),
            None => trace_id,
        };
        entry.insert("logging.googleapis.com/trace".into(), trace.into());
        entry.insert(
            "logging.googleapis.com/spanId".into(),
            span_context.span_id().to_string().into(),
        );
        entry.insert(
            "logging.googleapis.com/trace_sampled".into(),
            span_context.is_sampled().into(),
        );
    }
}

impl<S, W> Layer<S> for CloudLoggingLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            values.record(&mut JsonVisitor(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let mut entry = Map::new();
        entry.insert("severity".into(), severity(*metadata.level()).into());
        entry.insert(
            "time".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        entry.insert("target".into(), metadata.target().into());
        let mut innermost = None;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    let ours = fields.iter().filter(|(name, _)| !name.starts_with("otel."));
                    entry.extend(ours.map(|(name, value)| (name.clone(), value.clone())));
                }
                innermost = Some(span.id());
            }
        }
        event.record(&mut JsonVisitor(&mut entry));
        if !entry.contains_key("message") {
            // The OpenTelemetry SDK's own events name themselves instead.
            let name = entry.get("name").cloned().unwrap_or_else(|| "".into());
            entry.insert("message".into(), name);
        }
        if metadata.target() == ACCESS_LOG {
            let request = access::http_request(&mut entry);
            entry.insert("httpRequest".into(), Value::Object(request));
        }
        // Outside any span extension lock: the bridge takes its own.
        if let Some(id) = innermost {
            self.trace_fields(&id, &mut entry);
        }
        let mut line = serde_json::to_vec(&entry).unwrap_or_default();
        line.push(b'\n');
        let _ = self.writer.make_writer_for(metadata).write_all(&line);
    }
}

/// Cloud Logging's `LogSeverity` for a `tracing` level.
fn severity(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// Records fields into a JSON object, keeping numbers and booleans typed.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_cloud_logging_severities() {
        assert_eq!(severity(Level::ERROR), "ERROR");
        assert_eq!(severity(Level::WARN), "WARNING");
        assert_eq!(severity(Level::INFO), "INFO");
        assert_eq!(severity(Level::DEBUG), "DEBUG");
        assert_eq!(severity(Level::TRACE), "DEBUG");
    }
}
