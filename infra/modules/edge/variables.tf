variable "project_id" {
  description = "The Google Cloud project of the load balancer, its certificates and its Cloud Armor policy."
  type        = string
}

variable "name" {
  description = "Prefix of every resource's name (the service's name)."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run service the serverless NEG points at."
  type        = string
}

variable "service_name" {
  description = "The Cloud Run service behind the load balancer."
  type        = string
}

variable "base_domain" {
  description = "Tenants are SLUG.BASE_DOMAIN; the wildcard certificate covers *.BASE_DOMAIN and BASE_DOMAIN."
  type        = string
}

variable "tenant_edge_limits" {
  description = "Per tenant (by slug): the hosts it is served at (SLUG.BASE_DOMAIN and its custom domains) and the requests per minute Cloud Armor lets through to it from each client address (computed by the root module from the tenants variable)."
  type = map(object({
    hosts               = list(string)
    requests_per_minute = number
  }))
}

variable "custom_domains" {
  description = "Every tenant's custom domains; each gets a Google-managed certificate authorised by the load balancer (it is issued once the domain's DNS points at the load balancer's address)."
  type        = list(string)
}

variable "unlisted_requests_per_minute" {
  description = "Cloud Armor's ceiling per client IP for hosts that no tenant rule covers (the apex with onboarding, tenants not yet in Terraform, unknown hosts)."
  type        = number
}

variable "tenant_rule_base_priority" {
  description = "Priority of the first tenant rule; tenants follow in slug order. Cloud Armor evaluates lower numbers first."
  type        = number
  default     = 1000
}
