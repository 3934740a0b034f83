output "load_balancer_ip" {
  description = "The load balancer's IPv4 address: A records for BASE_DOMAIN, *.BASE_DOMAIN and every custom domain point here."
  value       = module.edge.ip_address
}

output "wildcard_certificate_dns_record" {
  description = "The CNAME record that authorises the wildcard certificate; publish it once in BASE_DOMAIN's zone."
  value       = module.edge.dns_authorization_record
}

output "tenant_urls" {
  description = "Each tenant's URLs: its subdomain and its custom domains."
  value       = { for slug, limits in local.tenant_edge_limits : slug => [for host in limits.hosts : "https://${host}"] }
}

output "onboarding_url" {
  description = "The apex URL, where POST /api/tenants onboards tenants."
  value       = "https://${var.base_domain}"
}

output "service_name" {
  description = "The Cloud Run service (cloudbuild.yaml's _SERVICE)."
  value       = module.service.service_name
}

output "service_uri" {
  description = "The service's own *.run.app URL (closed to the internet: ingress is the load balancer only)."
  value       = module.service.service_uri
}

output "migration_job" {
  description = "The migration job (cloudbuild.yaml's _MIGRATION_JOB)."
  value       = module.service.job_name
}

output "image_repository" {
  description = "Artifact Registry path images are pushed to (cloudbuild.yaml's _REPOSITORY is the last part)."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "deployer_service_account" {
  description = "The service account Cloud Build runs as (gcloud builds submit --service-account, or the trigger's)."
  value       = google_service_account.deployer.id
}

output "database_connection_name" {
  description = "Cloud SQL connection name (PROJECT:REGION:INSTANCE), for cloud-sql-proxy."
  value       = module.database.connection_name
}

output "database_private_ip" {
  description = "Cloud SQL's private IP on the VPC."
  value       = module.database.private_ip
}

output "database_max_connections" {
  description = "The max_connections flag set on Cloud SQL: max_instances x (pool + operator pools) + reserve."
  value       = local.max_connections
}

output "secret_ids" {
  description = "Every Secret Manager secret the deployment made, by purpose."
  value       = merge(module.database.secret_ids, module.service.app_secret_ids)
}

output "tenant_limits" {
  description = "TENANT_LIMITS as set on the service."
  value       = local.tenant_limits_json
}

output "edge_tenant_rules" {
  description = "Each tenant's Cloud Armor throttle rule."
  value       = module.edge.tenant_rules
}

output "dashboard_id" {
  description = "The Cloud Monitoring dashboard."
  value       = module.monitoring.dashboard_id
}

output "rings" {
  description = "Each release ring: the revision its tag points at (\"\" = the latest ready revision), its backend service and the hosts routed to it (the default ring serves every host not routed elsewhere)."
  value = {
    for ring in local.rings : ring => {
      revision        = local.ring_revision[ring]
      backend_service = module.edge.ring_backends[ring].backend_service
      hosts           = local.ring_hosts[ring]
    }
  }
}
