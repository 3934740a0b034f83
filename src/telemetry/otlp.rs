//! The OpenTelemetry SDK providers and their OTLP/HTTP exporters.
//!
//! Everything else is configured by the SDK from the standard variables:
//! endpoints (`OTEL_EXPORTER_OTLP_ENDPOINT`, or the per-signal
//! `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT`), headers, timeout and
//! protocol (`http/protobuf`, the only one built in: `telemetry::init`
//! refuses the others),
//! the resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), the sampler
//! (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), the batch span processor
//! (`OTEL_BSP_*`) and the metric interval (`OTEL_METRIC_EXPORT_INTERVAL`).

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{MetricExporter, SpanExporter};
use opentelemetry_sdk::{Resource, metrics::SdkMeterProvider, trace::SdkTracerProvider};

/// Which signals to export, decided from the environment.
pub(super) struct ExportSettings {
    pub traces: bool,
    pub metrics: bool,
    /// The service name when `OTEL_SERVICE_NAME` does not give one.
    pub service_name: Option<&'static str>,
}

/// The installed providers; each also set as the global one.
pub(super) struct Providers {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Providers {
    /// Builds and installs the providers `settings` asks for; `None` when
    /// export is off, leaving the API's no-op globals in place.
    pub(super) fn install(settings: &ExportSettings) -> anyhow::Result<Option<Self>> {
        if !settings.traces && !settings.metrics {
            return Ok(None);
        }
        let mut resource = Resource::builder();
        if let Some(name) = settings.service_name {
            resource = resource.with_service_name(name);
        }
        let resource = resource.build();
        let tracer = if settings.traces {
            let exporter = SpanExporter::builder()
                .with_http()
                .build()
                .context("could not build the OTLP span exporter")?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.clone())
                .build();
            opentelemetry::global::set_tracer_provider(provider.clone());
            Some(provider)
        } else {
            None
        };
        let meter = if settings.metrics {
            let exporter = MetricExporter::builder()
                .with_http()
                .build()
                .context("could not build the OTLP metric exporter")?;
            let provider = SdkMeterProvider::builder()
                .with_periodic_exporter(exporter)
                .with_resource(resource)
                .build();
            opentelemetry::global::set_meter_provider(provider.clone());
            Some(provider)
        } else {
            None
        };
        Ok(Some(Self { tracer, meter }))
    }

    /// The tracer the `tracing` bridge records into, when traces are on.
    pub(super) fn tracer(&self) -> Option<opentelemetry_sdk::trace::Tracer> {
        self.tracer
            .as_ref()
            .map(|provider| provider.tracer("tenantry"))
    }

    /// Whether metrics are exported.
    pub(super) fn meters(&self) -> bool {
        self.meter.is_some()
    }

    /// Sends what is buffered and stops the export threads. Blocks.
    pub(super) fn shutdown(self) {
        if let Some(tracer) = self.tracer
            && let Err(error) = tracer.shutdown()
        {
            eprintln!("error: could not flush spans: {error}");
        }
        if let Some(meter) = self.meter
            && let Err(error) = meter.shutdown()
        {
            eprintln!("error: could not flush metrics: {error}");
        }
    }
}
