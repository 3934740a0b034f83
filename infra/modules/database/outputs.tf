output "connection_name" {
  description = "The instance's connection name (PROJECT:REGION:INSTANCE), for the Cloud SQL Auth Proxy and gcloud."
  value       = google_sql_database_instance.main.connection_name
}

output "instance_name" {
  description = "The Cloud SQL instance's name."
  value       = google_sql_database_instance.main.name
}

output "private_ip" {
  description = "The instance's private IP address on the VPC."
  value       = google_sql_database_instance.main.private_ip_address
}

output "database_name" {
  description = "The service's database."
  value       = google_sql_database.main.name
}

output "secret_ids" {
  description = "Secret Manager secret ids by purpose (database-url, migration-database-url, admin-database-url, analytics-database-url, runtime-role-password, admin-role-password, analytics-role-password)."
  value       = { for key, secret in google_secret_manager_secret.db : key => secret.secret_id }
}

output "secret_versions" {
  description = "The secret versions Terraform wrote, by purpose; the service and the job depend on them so that a secret has a value before anything reads it."
  value       = { for key, version in google_secret_manager_secret_version.db : key => version.id }
}
