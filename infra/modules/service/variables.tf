variable "project_id" {
  description = "The Google Cloud project of the service, the job and their service accounts."
  type        = string
}

variable "name" {
  description = "The Cloud Run service's name; the job is NAME-migrate."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run service and job."
  type        = string
}

variable "image" {
  description = "Container image the service and the job start with. Cloud Build deploys later images (by commit SHA); Terraform ignores the image after creation so that an apply never rolls a deployment back."
  type        = string
}

variable "collector_image" {
  description = "The OpenTelemetry Collector sidecar's image (Google's otelcol-google build, version pinned)."
  type        = string
}

variable "collector_config" {
  description = "The collector's YAML config (the monitoring module's collector_config output), stored in Secret Manager and mounted at /etc/otelcol-google/config.yaml."
  type        = string
}

variable "network_id" {
  description = "The VPC the service's Direct VPC egress attaches to."
  type        = string
}

variable "subnet_id" {
  description = "The subnet Cloud Run instances take their addresses from."
  type        = string
}

variable "database_secret_ids" {
  description = "Secret Manager secret ids from the database module, by purpose (database-url, admin-database-url, analytics-database-url, migration-database-url, runtime-role-password, admin-role-password, analytics-role-password)."
  type        = map(string)
}

variable "database_secret_versions" {
  description = "The database secrets' versions, so that the service and the job are created after the values exist."
  type        = map(string)
}

variable "base_domain" {
  description = "BASE_DOMAIN: tenants are served at SLUG.BASE_DOMAIN, the apex hosts onboarding."
  type        = string
}

variable "signup_mode" {
  description = "SIGNUP_MODE: admin (POST /api/tenants needs the admin token) or open."
  type        = string
}

variable "enable_admin_api" {
  description = "Set ADMIN_DATABASE_URL and ANALYTICS_DATABASE_URL on the service, which turns on the /admin API and usage statistics (each adds a pool of up to 2 connections per instance)."
  type        = bool
}

variable "min_instances" {
  description = "Instances kept warm (0 scales to zero: cheapest, with a cold start after idle periods)."
  type        = number
}

variable "max_instances" {
  description = "Most instances; also RATE_LIMIT_INSTANCES, and a factor of the database connection budget."
  type        = number
}

variable "concurrency" {
  description = "Requests one instance serves at once."
  type        = number
}

variable "cpu" {
  description = "vCPUs of the app container (e.g. \"1\", \"2\")."
  type        = string
}

variable "cpu_always_allocated" {
  description = "Instance-based billing: CPU stays allocated between requests, so the collector sidecar exports telemetry promptly (with request-based billing it is throttled after each request). Costs more at low traffic."
  type        = bool
}

variable "memory" {
  description = "Memory of the app container (e.g. \"512Mi\")."
  type        = string
}

variable "pool_size" {
  description = "DATABASE_POOL_SIZE: connections of each instance's runtime pool."
  type        = number
}

variable "tenant_limits_json" {
  description = "TENANT_LIMITS: the limits document rendered from the tenants variable (root module)."
  type        = string
}

variable "ring_traffic" {
  description = "The service's traffic targets, one per release ring: its tag (the ring), the revision it points at (\"\" for the latest ready revision) and its share of untagged traffic (100 for stable, 0 for the others). Computed by the root module (rings.tf) from ring_revisions."
  type = list(object({
    tag      = string
    revision = string
    percent  = number
  }))

  validation {
    condition     = sum([for target in var.ring_traffic : target.percent]) == 100
    error_message = "The ring targets' percentages add up to 100."
  }
}

variable "jwt_key_id" {
  description = "The kid of the generated JWT signing key (JWT_KEYS is KID:SECRET)."
  type        = string
}

variable "trace_sample_ratio" {
  description = "Share of requests whose traces are exported (OTEL_TRACES_SAMPLER_ARG with traceidratio), 0 to 1."
  type        = number
}

variable "api_deprecations" {
  description = "API_DEPRECATIONS: deprecated API versions (VERSION:DEPRECATED_ON:SUNSET_ON, comma-separated); empty for none."
  type        = string
}

variable "request_timeout_seconds" {
  description = "Cloud Run's request timeout; REQUEST_TIMEOUT_MS is set a second below it so that the service answers 503 before Cloud Run cuts the request."
  type        = number
}

variable "deletion_protection" {
  description = "Refuse to delete the service and the job in Terraform."
  type        = bool
}
