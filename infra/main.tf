# tenantry on Google Cloud: the root module. It enables the APIs, makes the
# Artifact Registry repository and the Cloud Build deployer identity, and
# wires the modules together:
#
#   network     VPC, Direct VPC egress subnet, private services access
#   database    Cloud SQL for PostgreSQL (private IP), owner user, secrets
#   service     Cloud Run service (+ collector sidecar) and migration job
#   edge        global external Application Load Balancer, certificates,
#               Cloud Armor per-tenant throttles, a backend per release ring
#   monitoring  dashboard, alert policies, collector config (issue 7)
#
# README.md ("Deploying") walks from an empty project to a running service.

provider "google" {
  project = var.project_id
  region  = var.region
}

locals {
  # The connection budget (README, "Deploying"): every instance may open its
  # whole runtime pool, plus 2 connections for each operator pool the
  # /admin API brings (admin, analytics); the reserve covers the migration
  # job, operators' CLI sessions and Cloud SQL's own connections.
  connections_per_instance = var.database_pool_size + (var.enable_admin_api ? 4 : 0)
  max_connections          = var.max_instances * local.connections_per_instance + var.connection_reserve

  apis = toset([
    "artifactregistry.googleapis.com",
    "certificatemanager.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudtrace.googleapis.com",
    "compute.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
  ])
}

resource "google_project_service" "apis" {
  for_each           = local.apis
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84:The images hold the binary only (configuration and secrets come from the environment and Secret Manager at run time); Google-managed encryption at rest is enough, and a customer key would add a KMS key ring to run.
  project       = var.project_id
  location      = var.region
  repository_id = var.name
  format        = "DOCKER"
  description   = "tenantry images, tagged with the commit SHA by cloudbuild.yaml"

  # Images older than 90 days go, except the 20 most recent (rollback
  # targets); the `latest` cache tag moves with every build.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "7776000s"
    }
  }
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 20
    }
  }

  depends_on = [google_project_service.apis]
}

module "network" {
  source     = "./modules/network"
  project_id = var.project_id
  name       = var.name
  region     = var.region

  depends_on = [google_project_service.apis]
}

module "database" {
  source                = "./modules/database"
  project_id            = var.project_id
  name                  = var.name
  region                = var.region
  network_id            = module.network.network_id
  tier                  = var.db_tier
  availability_type     = var.db_availability_type
  max_connections       = local.max_connections
  backup_retained_count = var.db_backup_retained_count
  pitr_days             = var.db_pitr_days
  deletion_protection   = var.deletion_protection

  # Cloud SQL's private IP needs the private services peering first.
  depends_on = [module.network]
}

module "monitoring" {
  source                   = "./modules/monitoring"
  project_id               = var.project_id
  service_name             = var.name
  notification_channel_ids = var.notification_channel_ids
  error_rate_threshold     = var.error_rate_threshold
  latency_p99_threshold_ms = var.latency_p99_threshold_ms

  depends_on = [google_project_service.apis]
}

module "service" {
  source                   = "./modules/service"
  project_id               = var.project_id
  name                     = var.name
  region                   = var.region
  image                    = var.initial_image
  collector_image          = var.collector_image
  collector_config         = module.monitoring.collector_config
  network_id               = module.network.network_id
  subnet_id                = module.network.subnet_id
  database_secret_ids      = module.database.secret_ids
  database_secret_versions = module.database.secret_versions
  base_domain              = var.base_domain
  signup_mode              = var.signup_mode
  enable_admin_api         = var.enable_admin_api
  min_instances            = var.min_instances
  max_instances            = var.max_instances
  concurrency              = var.concurrency
  cpu                      = var.cpu
  memory                   = var.memory
  cpu_always_allocated     = var.cpu_always_allocated
  pool_size                = var.database_pool_size
  tenant_limits_json       = local.tenant_limits_json
  ring_traffic             = local.ring_traffic
  jwt_key_id               = var.jwt_key_id
  request_timeout_seconds  = var.request_timeout_seconds
  api_deprecations         = var.api_deprecations
  trace_sample_ratio       = var.trace_sample_ratio
  deletion_protection      = var.deletion_protection
}

module "edge" {
  source                       = "./modules/edge"
  project_id                   = var.project_id
  name                         = var.name
  region                       = var.region
  service_name                 = module.service.service_name
  base_domain                  = var.base_domain
  tenant_edge_limits           = local.tenant_edge_limits
  custom_domains               = local.custom_domains
  rings                        = local.rings
  default_ring                 = local.default_ring
  ring_hosts                   = local.ring_hosts
  unlisted_requests_per_minute = var.edge_unlisted_requests_per_minute

  depends_on = [google_project_service.apis]
}

# The identity Cloud Build deploys with (cloudbuild.yaml): push images, update
# the service and the job, run the job, act as their service accounts.
resource "google_service_account" "deployer" {
  project      = var.project_id
  account_id   = "${var.name}-deployer"
  display_name = "tenantry Cloud Build deployer"
}

resource "google_project_iam_member" "deployer" {
  for_each = toset([
    "roles/run.developer",
    "roles/logging.logWriter",
    # `gcloud builds submit` uploads the source to gs://PROJECT_cloudbuild.
    "roles/storage.objectViewer",
  ])
  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.deployer.email}"
}

resource "google_artifact_registry_repository_iam_member" "deployer" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.deployer.email}"
}

resource "google_service_account_iam_member" "deployer_acts_as" {
  for_each = {
    service = module.service.service_account_email
    migrate = module.service.migrate_service_account_email
  }
  service_account_id = "projects/${var.project_id}/serviceAccounts/${each.value}"
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.deployer.email}"
}

# Every plan's share of the pool must fit in it (the server warns otherwise).
check "pool_fits_every_plan" {
  assert {
    condition     = alltrue([for rates in local.effective_rates : rates.max_db_connections <= var.database_pool_size]) && var.database_pool_size >= local.plan_defaults.enterprise.max_db_connections
    error_message = "database_pool_size is below a plan's or tenant's max_db_connections; raise it or lower the share."
  }
}

# Every ring with a revision of its own is another revision serving at once,
# each with up to max_instances instances and their pools: the reserve must
# hold the extra ones on top of its own 15 (the migration job, operators,
# Cloud SQL), or Cloud SQL refuses connections under load (docs/DEPLOYING.md,
# "Cost knobs and the connection budget"). A check warns; it does not stop
# the apply.
check "rings_fit_the_connection_budget" {
  assert {
    condition     = var.connection_reserve >= (local.serving_revisions - 1) * var.max_instances * local.connections_per_instance + 15
    error_message = "${local.serving_revisions} revisions serve the rings: set connection_reserve to at least ${(local.serving_revisions - 1) * var.max_instances * local.connections_per_instance + 15} (their pools plus 15), or lower max_instances."
  }
}
