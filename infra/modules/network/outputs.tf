output "network_id" {
  description = "The VPC's id (projects/P/global/networks/N)."
  value       = google_compute_network.vpc.id
}

output "subnet_id" {
  description = "The Direct VPC egress subnet's id."
  value       = google_compute_subnetwork.run.id
}

output "private_services_connection" {
  description = "The private services access peering; Cloud SQL's private IP needs it first."
  value       = google_service_networking_connection.private_services.id
}
