# Every knob of the deployment. Cost-relevant ones are marked [cost]; the
# README's "Deploying" section explains them and the connection budget.

variable "project_id" {
  description = "The Google Cloud project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of Cloud Run, Cloud SQL, Artifact Registry and the subnet (e.g. europe-west1)."
  type        = string
}

variable "name" {
  description = "The Cloud Run service's name and the prefix of every resource's name."
  type        = string
  default     = "tenantry"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name is 2-21 lower-case letters, digits and hyphens, starting with a letter (it prefixes service account ids)."
  }
}

variable "base_domain" {
  description = "BASE_DOMAIN: tenants are served at SLUG.BASE_DOMAIN; the apex hosts onboarding. Its DNS zone gets the wildcard certificate's CNAME and the load balancer's A records."
  type        = string
}

variable "initial_image" {
  description = "The image the service and the migration job are created with, before Cloud Build has pushed one (a placeholder that answers every path, so the first revision passes its probes). Later images are deployed by Cloud Build; Terraform does not touch them."
  type        = string
  default     = "us-docker.pkg.dev/cloudrun/container/hello"
}

variable "collector_image" {
  description = "The OpenTelemetry Collector sidecar (Google-built otelcol-google), version pinned."
  type        = string
  default     = "us-docker.pkg.dev/cloud-ops-agents-artifacts/google-cloud-opentelemetry-collector/otelcol-google:0.121.0"
}

variable "signup_mode" {
  description = "SIGNUP_MODE: admin (POST /api/tenants needs the generated admin token) or open (anyone may onboard a tenant)."
  type        = string
  default     = "admin"

  validation {
    condition     = contains(["admin", "open"], var.signup_mode)
    error_message = "signup_mode is admin or open."
  }
}

variable "enable_admin_api" {
  description = "Turn on the /admin API and usage statistics on the service (ADMIN_DATABASE_URL, ANALYTICS_DATABASE_URL); each adds a pool of up to 2 connections per instance to the connection budget."
  type        = bool
  default     = true
}

variable "min_instances" {
  description = "[cost] Cloud Run instances kept warm; 0 scales to zero (no idle cost, cold starts after idle periods)."
  type        = number
  default     = 0
}

variable "max_instances" {
  description = "[cost] Most Cloud Run instances. Also RATE_LIMIT_INSTANCES (rates are split among this many) and a factor of the connection budget."
  type        = number
  default     = 8

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 100
    error_message = "max_instances is between 1 and 100."
  }
}

variable "concurrency" {
  description = "Requests one instance serves at once (Cloud Run's max_instance_request_concurrency)."
  type        = number
  default     = 80
}

variable "cpu" {
  description = "[cost] vCPUs of the app container; password hashing uses half of them."
  type        = string
  default     = "1"
}

variable "cpu_always_allocated" {
  description = "[cost] Instance-based billing (CPU allocated between requests): the collector sidecar then exports telemetry promptly instead of being throttled after each request. Off: pay per request, telemetry may lag."
  type        = bool
  default     = false
}

variable "memory" {
  description = "[cost] Memory of the app container."
  type        = string
  default     = "512Mi"
}

variable "trace_sample_ratio" {
  description = "Share of requests whose traces go to Cloud Trace (billed per span; a request is one server span plus one per statement), 0 to 1."
  type        = number
  default     = 0.1
  validation {
    condition     = var.trace_sample_ratio >= 0 && var.trace_sample_ratio <= 1
    error_message = "trace_sample_ratio is a share between 0 and 1."
  }
}

variable "api_deprecations" {
  description = "API_DEPRECATIONS: deprecated API versions, comma-separated VERSION:DEPRECATED_ON:SUNSET_ON (e.g. 2026-11-22:2026-12-07:2027-06-30); their responses carry Deprecation and Sunset headers. Empty: none. Reaches a ring with its next revision (docs/ROLLOUT.md)."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^([0-9]{4}-[0-9]{2}-[0-9]{2}:[0-9]{4}-[0-9]{2}-[0-9]{2}:[0-9]{4}-[0-9]{2}-[0-9]{2}(,[0-9]{4}-[0-9]{2}-[0-9]{2}:[0-9]{4}-[0-9]{2}-[0-9]{2}:[0-9]{4}-[0-9]{2}-[0-9]{2})*)?$", var.api_deprecations))
    error_message = "api_deprecations is empty or comma-separated VERSION:DEPRECATED_ON:SUNSET_ON dates (YYYY-MM-DD)."
  }
}

variable "request_timeout_seconds" {
  description = "Cloud Run's request timeout; the service's own REQUEST_TIMEOUT_MS is one second less."
  type        = number
  default     = 15
}

variable "database_pool_size" {
  description = "DATABASE_POOL_SIZE: runtime connections per instance. Must be above every plan's max_db_connections (8 for enterprise)."
  type        = number
  default     = 10

  validation {
    condition     = var.database_pool_size >= 1
    error_message = "database_pool_size is at least 1."
  }
}

variable "connection_reserve" {
  description = "Connections max_connections keeps beyond the instances' pools: the migration job (1), operators' CLI sessions (2 per pool), Cloud SQL's own maintenance connections and superuser_reserved_connections."
  type        = number
  default     = 15
}

variable "db_tier" {
  description = "[cost] Cloud SQL machine type (db-custom-CPUS-MEMORY_MB). The largest cost at low traffic."
  type        = string
  default     = "db-custom-1-3840"
}

variable "db_availability_type" {
  description = "[cost] ZONAL, or REGIONAL for a standby with automatic failover (about twice the instance price)."
  type        = string
  default     = "ZONAL"
}

variable "db_backup_retained_count" {
  description = "[cost] Daily Cloud SQL backups kept."
  type        = number
  default     = 14
}

variable "db_pitr_days" {
  description = "[cost] Days of write-ahead log kept for point-in-time recovery."
  type        = number
  default     = 7
}

variable "deletion_protection" {
  description = "Protect the Cloud SQL instance, the service and the job from deletion. Turn off only to tear an environment down."
  type        = bool
  default     = true
}

variable "jwt_key_id" {
  description = "The kid of the JWT signing key Terraform generates (JWT_KEYS = KID:SECRET)."
  type        = string
  default     = "k1"
}

variable "tenants" {
  description = <<-EOT
    The tenants Terraform knows, by slug: their plan, their release ring,
    their custom domains and their limit overrides. `tenantry tenants
    export-tfvars` writes this variable from the database
    (tenants.auto.tfvars.json), keeping the limits already in the file. The
    ring (canary, early or stable; default stable) picks the Cloud Run
    revision the load balancer sends the tenant's hosts to (ring_revisions).
    The limits are the ONE place per-tenant rate limits are set: they become
    the tenant's Cloud Armor throttle rule at the edge and its entry in the
    service's TENANT_LIMITS. Absent fields inherit the plan's; a quota
    (max_users, max_notes) of 0 means unlimited.
  EOT
  type = map(object({
    plan           = optional(string, "free")
    ring           = optional(string, "stable")
    custom_domains = optional(list(string), [])
    limits = optional(object({
      requests_per_second  = optional(number)
      burst                = optional(number)
      max_db_connections   = optional(number)
      statement_timeout_ms = optional(number)
      max_users            = optional(number)
      max_notes            = optional(number)
    }), {})
  }))
  default = {}

  validation {
    # The service's slug rule (src/domain.rs, Slug::parse): a slug it would
    # refuse here would fail the new revision's start-up instead.
    condition     = alltrue([for slug, tenant in var.tenants : can(regex("^[a-z][a-z0-9-]{1,61}[a-z0-9]$", slug)) && !strcontains(slug, "--") && contains(["free", "pro", "enterprise"], tenant.plan)])
    error_message = "Each tenant key is a slug (3-63 lower-case letters, digits and hyphens, starting with a letter, not ending with a hyphen, no '--') and each plan is free, pro or enterprise."
  }

  validation {
    # The rings of src/domain/release.rs (Ring::ALL) and of the revision
    # tags (rings.tf); tests/infra.rs keeps the three lists equal.
    condition     = alltrue([for tenant in var.tenants : contains(["canary", "early", "stable"], tenant.ring)])
    error_message = "Each tenant's ring is canary, early or stable."
  }

  validation {
    condition = alltrue(flatten([for tenant in var.tenants : [
      for field in ["requests_per_second", "burst", "max_db_connections", "statement_timeout_ms"] :
      tenant.limits[field] == null ? true : tenant.limits[field] >= 1
    ]]))
    error_message = "requests_per_second, burst, max_db_connections and statement_timeout_ms are at least 1 when set."
  }
}

variable "ring_revisions" {
  description = <<-EOT
    The Cloud Run revision each release ring's traffic tag points at, by
    ring: the load balancer sends a ring's tenants to its tag, and the
    stable revision also gets 100% of untagged traffic. Cloud Build deploys
    a ring's revision with no traffic and prints its name (cloudbuild.yaml,
    _RING); setting it here and applying moves the ring to it, and setting
    the previous name back rolls the ring back (docs/ROLLOUT.md). Empty:
    canary follows early's revision, early follows stable's, and stable is
    the latest ready revision (the first deployment, before rings are
    used; a canary or early revision needs a pinned stable one).
  EOT
  type = object({
    canary = optional(string, "")
    early  = optional(string, "")
    stable = optional(string, "")
  })
  default = {}

  validation {
    condition     = alltrue([for revision in values(var.ring_revisions) : revision == "" || can(regex("^[a-z][a-z0-9-]{0,61}[a-z0-9]$", revision))])
    error_message = "A ring revision is a Cloud Run revision name (lower-case letters, digits and hyphens), or empty."
  }

  validation {
    # With stable on the latest revision, every new revision (a canary one
    # included) would take all traffic as soon as it is ready.
    condition     = var.ring_revisions.stable != "" || (var.ring_revisions.canary == "" && var.ring_revisions.early == "")
    error_message = "Pin ring_revisions.stable to a revision before giving canary or early one of their own."
  }
}

variable "plan_limits" {
  description = "Overrides of the plans' built-in limits (the README's plan table), by plan name; the same fields as a tenant's limits. Rendered into TENANT_LIMITS' `plans` and used for the edge rules of tenants on that plan."
  type = map(object({
    requests_per_second  = optional(number)
    burst                = optional(number)
    max_db_connections   = optional(number)
    statement_timeout_ms = optional(number)
    max_users            = optional(number)
    max_notes            = optional(number)
  }))
  default = {}

  validation {
    condition     = alltrue([for plan in keys(var.plan_limits) : contains(["free", "pro", "enterprise"], plan)])
    error_message = "plan_limits keys are free, pro or enterprise."
  }

  validation {
    condition = alltrue(flatten([for plan in var.plan_limits : [
      for field in ["requests_per_second", "burst", "max_db_connections", "statement_timeout_ms"] :
      plan[field] == null ? true : plan[field] >= 1
    ]]))
    error_message = "requests_per_second, burst, max_db_connections and statement_timeout_ms are at least 1 when set."
  }
}

variable "edge_unlisted_requests_per_minute" {
  description = "Cloud Armor's ceiling per client IP on hosts no tenant rule covers (the apex with onboarding, tenants not in the tenants variable yet, unknown hosts)."
  type        = number
  default     = 600
}

variable "notification_channel_ids" {
  description = "Cloud Monitoring notification channels (projects/P/notificationChannels/N) the alert policies notify."
  type        = list(string)
  default     = []
}

variable "error_rate_threshold" {
  description = "The error-rate alert fires above this fraction of 5xx responses over 5 minutes."
  type        = number
  default     = 0.05
}

variable "latency_p99_threshold_ms" {
  description = "The latency alert fires above this p99, in milliseconds, over 5 minutes."
  type        = number
  default     = 1000
}
