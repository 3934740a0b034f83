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

variable "rings" {
  description = "Every release ring (root rings.tf): each gets a serverless NEG bound to the Cloud Run traffic tag of its name, and a backend service."
  type        = list(string)
}

variable "default_ring" {
  description = "The ring whose backend serves every host no host rule names: its tenants, the apex, the wildcard (tenants not in Terraform yet) and unknown hosts."
  type        = string

  validation {
    condition     = var.default_ring != ""
    error_message = "default_ring names a ring."
  }
}

variable "ring_hosts" {
  description = "Each ring's hosts (its tenants' SLUG.BASE_DOMAIN and verified custom domains). The hosts of a ring other than the default one are routed to its backend by a host rule; a ring without hosts gets no rule."
  type        = map(list(string))
}
