variable "project_id" {
  description = "The Google Cloud project to create the network in."
  type        = string
}

variable "name" {
  description = "Prefix of every resource's name (the service's name)."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run service's subnet (Direct VPC egress)."
  type        = string
}

variable "subnet_cidr" {
  description = "IPv4 range of the subnet Cloud Run instances take their addresses from (Direct VPC egress); a /24 serves about 100 instances, a /26 is the minimum."
  type        = string
  default     = "10.8.0.0/24"
}

variable "private_services_prefix_length" {
  description = "Prefix length of the range reserved for private services access (Cloud SQL's private IP lives in it)."
  type        = number
  default     = 20
}
