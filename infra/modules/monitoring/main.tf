# Dashboards and alerts as code for tenantry, plus the configuration of the
# OpenTelemetry Collector sidecar that carries the service's OTLP export to
# Cloud Trace and to Cloud Monitoring (Google Managed Prometheus).
#
# Metric names in the queries are the Prometheus forms of the service's OTLP
# metrics: dots become underscores, the unit becomes a suffix (`s` →
# `_seconds`), monotonic counters gain `_total`, and attributes become labels
# (`tenant.id` → `tenant_id`). The service name is the `job` label. The README's
# "Observability" section lists every signal.

locals {
  job = var.service_name

  collector_config = templatefile("${path.module}/collector.yaml.tftpl", {
    service_name = var.service_name
  })

  # Decoded and re-encoded so that a template mistake fails at plan time.
  dashboard_json = jsonencode(jsondecode(templatefile("${path.module}/dashboard.json.tftpl", {
    job = local.job
  })))

  requests = "http_server_request_duration_seconds_count{job=\"${local.job}\"}"
  errors   = "http_server_request_duration_seconds_count{job=\"${local.job}\",http_response_status_class=\"5xx\"}"
  buckets  = "http_server_request_duration_seconds_bucket{job=\"${local.job}\"}"
}

resource "google_monitoring_dashboard" "tenantry" {
  project        = var.project_id
  dashboard_json = local.dashboard_json
}

resource "google_monitoring_alert_policy" "error_rate" {
  project               = var.project_id
  display_name          = "${var.service_name}: 5xx error rate above ${var.error_rate_threshold * 100}%"
  combiner              = "OR"
  notification_channels = var.notification_channel_ids
  severity              = "ERROR"

  conditions {
    display_name = "5xx fraction over 5 minutes"

    condition_prometheus_query_language {
      # Only when there is traffic: a quiet service has no error rate.
      query               = "sum(rate(${local.errors}[5m])) / sum(rate(${local.requests}[5m])) > ${var.error_rate_threshold} and sum(rate(${local.requests}[5m])) > 0"
      duration            = "300s"
      evaluation_interval = "60s"
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.service_name}: error rate above ${var.error_rate_threshold * 100}%"
    content   = <<-EOT
      More than ${var.error_rate_threshold * 100}% of requests to `${var.service_name}` were answered with a 5xx over the last 5 minutes.
      Open the "tenantry" dashboard: the "5xx error rate by tenant" chart shows whether one tenant or all of them fail,
      and Cloud Trace (filter `tenant.slug`) shows the failing requests' spans. Logs carry the same trace ids.
    EOT
  }
}

resource "google_monitoring_alert_policy" "latency_p99" {
  project               = var.project_id
  display_name          = "${var.service_name}: p99 latency above ${var.latency_p99_threshold_ms} ms"
  combiner              = "OR"
  notification_channels = var.notification_channel_ids
  severity              = "WARNING"

  conditions {
    display_name = "p99 request latency over 5 minutes"

    condition_prometheus_query_language {
      query               = "histogram_quantile(0.99, sum by (le) (rate(${local.buckets}[5m]))) * 1000 > ${var.latency_p99_threshold_ms}"
      duration            = "300s"
      evaluation_interval = "60s"
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.service_name}: p99 latency above ${var.latency_p99_threshold_ms} ms"
    content   = <<-EOT
      The 99th percentile of request latency of `${var.service_name}` stayed above ${var.latency_p99_threshold_ms} ms for 5 minutes.
      On the "tenantry" dashboard compare "p99 latency by tenant" (one noisy tenant?) with "Database pool saturation"
      (waiting requests mean the pool, or PostgreSQL, is the bottleneck).
    EOT
  }
}
