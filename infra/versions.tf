terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6, < 4.0"
    }
  }

  # State lives in a GCS bucket made once per project (README, "Deploying"):
  #   terraform init -backend-config="bucket=PROJECT-tfstate"
  # The state holds the generated database passwords and keys: keep the bucket
  # private, versioned, and readable by the deployers only.
  backend "gcs" {
    prefix = "tenantry"
  }
}
