output "ip_address" {
  description = "The load balancer's IPv4 address: the A record of BASE_DOMAIN, *.BASE_DOMAIN and every custom domain."
  value       = google_compute_global_address.lb.address
}

output "dns_authorization_record" {
  description = "The CNAME record that authorises the wildcard certificate (publish it once in the base domain's zone)."
  value = {
    name = google_certificate_manager_dns_authorization.base.dns_resource_record[0].name
    type = google_certificate_manager_dns_authorization.base.dns_resource_record[0].type
    data = google_certificate_manager_dns_authorization.base.dns_resource_record[0].data
  }
}

output "security_policy" {
  description = "The Cloud Armor policy's name."
  value       = google_compute_security_policy.edge.name
}

output "tenant_rules" {
  description = "Each tenant's Cloud Armor rule: priority, requests per minute and match expression."
  value       = { for rule in local.tenant_rules : rule.slug => { priority = rule.priority, requests_per_minute = rule.count, expression = rule.expression } }
}

output "ring_backends" {
  description = "Each release ring's backend service, and the hosts the URL map routes to it (none listed for the default ring, which serves every other host)."
  value = {
    for ring in var.rings : ring => {
      backend_service = google_compute_backend_service.ring[ring].name
      hosts           = lookup(local.routed_rings, ring, [])
    }
  }
}
