output "service_name" {
  description = "The Cloud Run service's name."
  value       = google_cloud_run_v2_service.main.name
}

output "service_uri" {
  description = "The service's *.run.app URL (ingress is restricted to the load balancer, so it answers 404 from outside)."
  value       = google_cloud_run_v2_service.main.uri
}

output "job_name" {
  description = "The migration job's name (gcloud run jobs execute NAME --wait)."
  value       = google_cloud_run_v2_job.migrate.name
}

output "service_account_email" {
  description = "The service's identity."
  value       = google_service_account.service.email
}

output "migrate_service_account_email" {
  description = "The migration job's identity."
  value       = google_service_account.migrate.email
}

output "app_secret_ids" {
  description = "Secret Manager secret ids of the service's own secrets (jwt-keys, admin-token, otel-collector-config)."
  value       = { for key, secret in google_secret_manager_secret.app : key => secret.secret_id }
}
