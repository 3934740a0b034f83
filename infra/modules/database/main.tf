# Cloud SQL for PostgreSQL on a private IP, its database, the owner user, and
# the passwords and connection strings of every role in Secret Manager.
#
# Roles. Only the owner is a Cloud SQL user (google_sql_user). Cloud SQL makes
# every user it creates a member of cloudsqlsuperuser with CREATEROLE and
# CREATEDB, which the service's boot audit refuses for the runtime role (it
# must be NOSUPERUSER NOBYPASSRLS NOCREATEROLE, own nothing and belong to no
# role). So the runtime, admin and analytics roles (tenantry_app,
# tenantry_admin, tenantry_analytics) are NOT Cloud SQL users: `tenantry
# migrate`, running as the owner in the migration job, creates them with
# sql/roles.sql (NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE
# NOINHERIT, members of nothing), refuses to go on if any of them has one of
# those attributes, and gives them LOGIN with the passwords generated here
# (RUNTIME_ROLE_PASSWORD, ADMIN_ROLE_PASSWORD, ANALYTICS_ROLE_PASSWORD). The
# service re-checks its own role at every boot.
#
# Passwords are alphanumeric (no URL escaping in the connection strings) and
# live in the Terraform state as well as in Secret Manager: keep the state
# bucket private.

locals {
  host = google_sql_database_instance.main.private_ip_address
  # Every role's password, generated once. `owner` is the Cloud SQL user.
  roles = {
    owner     = var.owner_user
    runtime   = "tenantry_app"
    admin     = "tenantry_admin"
    analytics = "tenantry_analytics"
  }
  urls = {
    for key, role in local.roles :
    key => "postgres://${role}:${random_password.role[key].result}@${local.host}:5432/${var.database_name}"
  }
  # Secret name suffix => value. The service and the job read these only.
  secrets = {
    "migration-database-url"  = local.urls.owner
    "database-url"            = local.urls.runtime
    "admin-database-url"      = local.urls.admin
    "analytics-database-url"  = local.urls.analytics
    "runtime-role-password"   = random_password.role["runtime"].result
    "admin-role-password"     = random_password.role["admin"].result
    "analytics-role-password" = random_password.role["analytics"].result
  }
}

resource "google_sql_database_instance" "main" {
  # checkov:skip=CKV_GCP_6:The binary's PostgreSQL client has no TLS (README, "Configuration"). The instance has no public IP; connections stay on the VPC's private services peering, which Google encrypts between its facilities. Require SSL once the client speaks TLS.
  # checkov:skip=CKV_GCP_79:The major version is var.database_version (POSTGRES_17 by default), upgraded deliberately (Cloud SQL in-place major upgrade) after the test suite passes against the new major, never by a default changing under a running service.
  # checkov:skip=CKV_GCP_111:log_statement=ddl would write every ALTER ROLE ... PASSWORD that each migration runs (the runtime, admin and analytics roles' SCRAM verifiers) into Cloud Logging; schema changes are recorded by the migrations table (schema_migrations, with checksums) instead; pgaudit (enabled below) can log DDL with its own scoped settings (pgaudit.log = ddl, never role).
  # checkov:skip=CKV2_GCP_13:log_duration on logs a line for every statement the service runs (thousands a second under load): the log bill would dwarf the database's. Query Insights (insights_config) records statement latencies instead.
  project             = var.project_id
  name                = "${var.name}-db"
  region              = var.region
  database_version    = var.database_version
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.tier
    edition                     = "ENTERPRISE"
    availability_type           = var.availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection

    ip_configuration {
      ipv4_enabled    = false
      private_network = var.network_id
      # The binary speaks to PostgreSQL without TLS (README, "Configuration"):
      # the connection stays on the VPC's private services peering, never
      # on the internet; see the checkov skip in the root module's README.
      ssl_mode = "ALLOW_UNENCRYPTED_AND_ENCRYPTED"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = "02:00"
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = var.pitr_days

      backup_retention_settings {
        retained_backups = var.backup_retained_count
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = 7
      hour         = 3
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = false
      record_client_address   = false
    }

    # Sized for the pools: pool size x max instances + the reserve (root
    # module, local.max_connections).
    database_flags {
      name  = "max_connections"
      value = tostring(var.max_connections)
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
  }
}

resource "google_sql_database" "main" {
  project  = var.project_id
  instance = google_sql_database_instance.main.name
  name     = var.database_name
}

resource "random_password" "role" {
  for_each = local.roles
  length   = 40
  special  = false
}

resource "google_sql_user" "owner" {
  project  = var.project_id
  instance = google_sql_database_instance.main.name
  name     = var.owner_user
  password = random_password.role["owner"].result
}

resource "google_secret_manager_secret" "db" {
  for_each  = local.secrets
  project   = var.project_id
  secret_id = "${var.name}-${each.key}"

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "db" {
  for_each    = local.secrets
  secret      = google_secret_manager_secret.db[each.key].id
  secret_data = each.value
}
