output "dashboard_id" {
  description = "The Cloud Monitoring dashboard's id (projects/P/dashboards/D)."
  value       = google_monitoring_dashboard.tenantry.id
}

output "collector_config" {
  description = "The OpenTelemetry Collector's YAML config for the Cloud Run sidecar (otelcol-google), to mount at /etc/otelcol-google/config.yaml."
  value       = local.collector_config
}
