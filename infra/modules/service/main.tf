# The Cloud Run v2 service (`tenantry serve` plus the OpenTelemetry Collector
# sidecar) and the Cloud Run v2 job that runs `tenantry migrate`, each with its
# own service account that can read only its own secrets.
#
# Configuration: every variable `serve` and `migrate` require is set here
# (README, "Configuration"); secrets come from Secret Manager by reference,
# never inline. tests/infra.rs checks both against src/config.rs.

locals {
  # Secrets the service reads, by environment variable.
  service_secrets = merge(
    {
      DATABASE_URL = var.database_secret_ids["database-url"]
      JWT_KEYS     = google_secret_manager_secret.app["jwt-keys"].secret_id
      ADMIN_TOKEN  = google_secret_manager_secret.app["admin-token"].secret_id
    },
    var.enable_admin_api ? {
      ADMIN_DATABASE_URL     = var.database_secret_ids["admin-database-url"]
      ANALYTICS_DATABASE_URL = var.database_secret_ids["analytics-database-url"]
    } : {},
  )
  # Secrets the migration job reads: the owner's connection and the
  # passwords it gives the login roles it creates.
  job_secrets = {
    MIGRATION_DATABASE_URL  = var.database_secret_ids["migration-database-url"]
    RUNTIME_ROLE_PASSWORD   = var.database_secret_ids["runtime-role-password"]
    ADMIN_ROLE_PASSWORD     = var.database_secret_ids["admin-role-password"]
    ANALYTICS_ROLE_PASSWORD = var.database_secret_ids["analytics-role-password"]
  }
  # Plain settings of the service.
  service_env = {
    BASE_DOMAIN        = var.base_domain
    SIGNUP_MODE        = var.signup_mode
    DATABASE_POOL_SIZE = tostring(var.pool_size)
    # Each instance enforces rate / n, so the configured rates are a global
    # ceiling with up to max_instances instances.
    RATE_LIMIT_INSTANCES = tostring(var.max_instances)
    # Global external Application Load Balancer -> serverless NEG -> Cloud
    # Run: the client is the second-to-last X-Forwarded-For entry.
    TRUSTED_PROXY_HOPS = "2"
    TENANT_LIMITS      = var.tenant_limits_json
    # The template Terraform keeps is the stable ring's: a revision an apply
    # makes (a changed setting) is a stable one. Cloud Build deploys each
    # ring's revision with its own RELEASE_RING (cloudbuild.yaml, _RING); the
    # apply after a canary or early deploy sets the template back to stable,
    # which makes a revision that no ring's tag points at.
    RELEASE_RING = "stable"
    # Empty is the same as unset for the binary: no deprecated version.
    API_DEPRECATIONS   = var.api_deprecations
    REQUEST_TIMEOUT_MS = tostring(var.request_timeout_seconds * 1000 - 1000)
    LOG_FORMAT         = "json"
    # The observability contract: OTLP/HTTP to the sidecar.
    OTEL_EXPORTER_OTLP_ENDPOINT = "http://localhost:4318"
    OTEL_SERVICE_NAME           = "tenantry"
    GOOGLE_CLOUD_PROJECT        = var.project_id
    # Internet clients reach the service through the load balancer, which
    # forwards their traceparent: trusting it would let any client pick
    # trace ids and force sampling (every span is billed). Each request
    # starts its own trace (linked to the caller's), sampled here.
    TRACE_CONTEXT           = "new"
    OTEL_TRACES_SAMPLER     = "traceidratio"
    OTEL_TRACES_SAMPLER_ARG = tostring(var.trace_sample_ratio)
  }
}

resource "google_service_account" "service" {
  project      = var.project_id
  account_id   = "${var.name}-run"
  display_name = "tenantry Cloud Run service"
}

resource "google_service_account" "migrate" {
  project      = var.project_id
  account_id   = "${var.name}-migrate"
  display_name = "tenantry migration job"
}

# What the service's identity may do in the project: write logs, traces and
# metrics (the collector uses the same identity). Nothing else.
resource "google_project_iam_member" "service" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/cloudtrace.agent",
    "roles/monitoring.metricWriter",
  ])
  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.service.email}"
}

resource "google_project_iam_member" "migrate" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.migrate.email}"
}

# The service's own secrets, generated once: the JWT signing key and the admin
# token. Rotate the JWT key by adding a secret version "new:SECRET,KID:OLD"
# (the first signs, all verify) and deploying; see README, "Deploying".
resource "random_password" "app" {
  for_each = toset(["jwt-keys", "admin-token"])
  length   = 48
  special  = false
}

resource "google_secret_manager_secret" "app" {
  for_each  = toset(["jwt-keys", "admin-token", "otel-collector-config"])
  project   = var.project_id
  secret_id = "${var.name}-${each.value}"

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "app" {
  for_each = {
    "jwt-keys"              = "${var.jwt_key_id}:${random_password.app["jwt-keys"].result}"
    "admin-token"           = random_password.app["admin-token"].result
    "otel-collector-config" = var.collector_config
  }
  secret      = google_secret_manager_secret.app[each.key].id
  secret_data = each.value
}

resource "google_secret_manager_secret_iam_member" "service" {
  for_each  = toset(concat(values(local.service_secrets), [google_secret_manager_secret.app["otel-collector-config"].secret_id]))
  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.service.email}"
}

resource "google_secret_manager_secret_iam_member" "migrate" {
  for_each  = toset(values(local.job_secrets))
  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.migrate.email}"
}

resource "google_cloud_run_v2_service" "main" {
  project             = var.project_id
  name                = var.name
  location            = var.region
  deletion_protection = var.deletion_protection
  # Only the load balancer (and so Cloud Armor) reaches the service: a client
  # calling *.run.app directly could otherwise choose its rate-limit key.
  ingress = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"

  template {
    service_account                  = google_service_account.service.email
    max_instance_request_concurrency = var.concurrency
    timeout                          = "${var.request_timeout_seconds}s"
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    # Direct VPC egress: private ranges (Cloud SQL's private IP) through the
    # VPC, everything else (Google APIs) directly.
    vpc_access {
      egress = "PRIVATE_RANGES_ONLY"
      network_interfaces {
        network    = var.network_id
        subnetwork = var.subnet_id
      }
    }

    containers {
      name       = "tenantry"
      image      = var.image
      args       = ["serve"]
      depends_on = ["otel-collector"]

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        cpu_idle          = !var.cpu_always_allocated
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.service_env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.service_secrets
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }

      # Ready once the database answers (and the boot audit passed).
      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 2
        timeout_seconds       = 2
        failure_threshold     = 30
        http_get {
          path = "/readyz"
          port = 8080
        }
      }

      # The process answers at all; no database, so an outage of Cloud SQL
      # does not restart every instance.
      liveness_probe {
        period_seconds    = 10
        timeout_seconds   = 2
        failure_threshold = 3
        http_get {
          path = "/healthz"
          port = 8080
        }
      }
    }

    containers {
      name  = "otel-collector"
      image = var.collector_image
      args  = ["--config=/etc/otelcol-google/config.yaml"]

      resources {
        limits = {
          cpu    = "1"
          memory = "256Mi"
        }
        cpu_idle = !var.cpu_always_allocated
      }

      volume_mounts {
        name       = "otel-collector-config"
        mount_path = "/etc/otelcol-google"
      }

      startup_probe {
        period_seconds    = 2
        timeout_seconds   = 2
        failure_threshold = 15
        http_get {
          path = "/"
          port = 13133
        }
      }

      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 2
        failure_threshold = 3
        http_get {
          path = "/"
          port = 13133
        }
      }
    }

    volumes {
      name = "otel-collector-config"
      secret {
        secret = google_secret_manager_secret.app["otel-collector-config"].secret_id
        items {
          version = "latest"
          path    = "config.yaml"
        }
      }
    }
  }

  # The release rings' tags (root rings.tf): one target per ring, on the
  # revision var.ring_traffic names, or on the latest ready revision where
  # it names none. Terraform owns the traffic; Cloud Build only adds
  # revisions with no traffic (cloudbuild.yaml), so the two never fight, and
  # moving or rolling back a ring is one variable and an apply.
  dynamic "traffic" {
    for_each = var.ring_traffic
    content {
      type     = traffic.value.revision == "" ? "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST" : "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
      revision = traffic.value.revision == "" ? null : traffic.value.revision
      percent  = traffic.value.percent
      tag      = traffic.value.tag
    }
  }

  lifecycle {
    # Cloud Build deploys each commit's image, as a revision of a ring
    # (with that ring's RELEASE_RING); Terraform keeps whichever image the
    # template last had, so an apply never rolls code back. Which revision
    # serves which ring is Terraform's (the traffic above).
    ignore_changes = [
      template[0].containers[0].image,
      client,
      client_version,
    ]
  }

  depends_on = [
    google_secret_manager_secret_iam_member.service,
    google_secret_manager_secret_version.app,
    var.database_secret_versions,
  ]
}

# Anyone may call the service: ingress admits only the load balancer (and so
# Cloud Armor), and the API authenticates its callers itself (JWT per tenant,
# the admin token). Without this the load balancer's requests would get 403.
resource "google_cloud_run_v2_service_iam_member" "public" {
  # checkov:skip=CKV_GCP_102:A public API by design: ingress is restricted to the load balancer (INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER) behind Cloud Armor, and every tenant route authenticates in the service.
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.main.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_job" "migrate" {
  project             = var.project_id
  name                = "${var.name}-migrate"
  location            = var.region
  deletion_protection = var.deletion_protection

  template {
    # One run at a time is enough; `migrate` takes an advisory lock anyway.
    parallelism = 1
    task_count  = 1

    template {
      service_account = google_service_account.migrate.email
      timeout         = "1800s"
      # A failed run left whole migrations only; a retry resumes.
      max_retries = 1

      vpc_access {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = var.network_id
          subnetwork = var.subnet_id
        }
      }

      containers {
        name  = "migrate"
        image = var.image
        args  = ["migrate"]

        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
        }

        env {
          name  = "LOG_FORMAT"
          value = "json"
        }

        dynamic "env" {
          for_each = local.job_secrets
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value
                version = "latest"
              }
            }
          }
        }
      }
    }
  }

  lifecycle {
    ignore_changes = [
      template[0].template[0].containers[0].image,
      client,
      client_version,
    ]
  }

  depends_on = [
    google_secret_manager_secret_iam_member.migrate,
    var.database_secret_versions,
  ]
}
