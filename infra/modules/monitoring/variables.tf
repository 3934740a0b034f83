variable "project_id" {
  description = "The Google Cloud project the dashboard and alert policies live in."
  type        = string
}

variable "service_name" {
  description = "The Cloud Run service name. The collector sets it as the OpenTelemetry service.name when the app did not, and every query filters on it (the Prometheus `job` label)."
  type        = string
}

variable "notification_channel_ids" {
  description = "Monitoring notification channel ids (projects/P/notificationChannels/N) the alert policies notify."
  type        = list(string)
  default     = []
}

variable "error_rate_threshold" {
  description = "Fraction of requests answered 5xx over 5 minutes above which the error-rate alert fires."
  type        = number
  default     = 0.05

  validation {
    condition     = var.error_rate_threshold > 0 && var.error_rate_threshold <= 1
    error_message = "error_rate_threshold is a fraction in (0, 1]."
  }
}

variable "latency_p99_threshold_ms" {
  description = "p99 request latency over 5 minutes, in milliseconds, above which the latency alert fires."
  type        = number
  default     = 1000

  validation {
    condition     = var.latency_p99_threshold_ms > 0
    error_message = "latency_p99_threshold_ms must be positive."
  }
}
