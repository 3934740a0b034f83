variable "project_id" {
  description = "The Google Cloud project of the Cloud SQL instance and its secrets."
  type        = string
}

variable "name" {
  description = "Prefix of every resource's name (the service's name)."
  type        = string
}

variable "region" {
  description = "Region of the Cloud SQL instance (the Cloud Run service's region)."
  type        = string
}

variable "network_id" {
  description = "The VPC whose private services access gives the instance its private IP."
  type        = string
}

variable "database_version" {
  description = "Cloud SQL PostgreSQL version. The service's boot audit refuses servers without the fixes for CVE-2023-2455 and CVE-2024-10976, which current Cloud SQL minor versions have."
  type        = string
  default     = "POSTGRES_17"
}

variable "tier" {
  description = "Machine type (db-custom-CPUS-MEMORY_MB, or a shared-core db-g1-small for trials). Memory bounds max_connections: about 1 connection per 10 MiB is comfortable."
  type        = string
  default     = "db-custom-1-3840"
}

variable "availability_type" {
  description = "ZONAL (one zone, cheaper) or REGIONAL (a standby in a second zone with automatic failover, about twice the price)."
  type        = string
  default     = "ZONAL"

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.availability_type)
    error_message = "availability_type is ZONAL or REGIONAL."
  }
}

variable "disk_size_gb" {
  description = "Initial SSD size in GB; it grows automatically."
  type        = number
  default     = 10
}

variable "max_connections" {
  description = "The max_connections flag: the connection budget, computed by the root module from pool size, instances and reserve."
  type        = number
}

variable "backup_retained_count" {
  description = "Automated daily backups to keep."
  type        = number
  default     = 14
}

variable "pitr_days" {
  description = "Days of write-ahead log kept for point-in-time recovery (1-7 on the Enterprise edition)."
  type        = number
  default     = 7
}

variable "deletion_protection" {
  description = "Refuse to delete the instance (both in Terraform and in the Cloud SQL API). Turn off only to tear an environment down."
  type        = bool
  default     = true
}

variable "database_name" {
  description = "The database the service's schema lives in."
  type        = string
  default     = "tenantry"
}

variable "owner_user" {
  description = "The owner role, created as a Cloud SQL user (so a member of cloudsqlsuperuser, with CREATEROLE): it runs the migrations, owns the schema and creates the runtime, admin and analytics roles itself."
  type        = string
  default     = "tenantry_owner"
}
