# The edge: a global external Application Load Balancer in front of the Cloud
# Run service (a serverless NEG per release ring), with Certificate Manager certificates for the
# tenant subdomains (one DNS-authorised wildcard) and for each custom domain,
# and a Cloud Armor policy holding one throttle rule per tenant.
#
# Why not Cloud Run domain mappings: they take no wildcards, exist in some
# regions only and are not GA; the load balancer also carries Cloud Armor.
#
# Per-tenant throttles: a rule matches a tenant's hosts (its subdomain and its
# custom domains, any case, with or without a port or a trailing dot) and
# counts each client address separately (enforce_on_key IP). A client may
# send per minute what the service's two buckets of the tenant (signed-in
# requests, sign-in/registration) admit in a minute, 2 x (requests_per_second
# x 60 + burst): one source cannot flood a tenant past its own limits, and,
# because anonymous requests are never counted against signed-in users in the
# service, no client can lock a tenant's users out at the edge either (a
# tenant-wide edge bucket would let anyone do that with forged requests).
# The tenant's total stays the service's job, where the token bucket is exact.
# Cloud Armor stops at the first rule a request matches, so hosts no tenant
# rule covers fall to a per-client-IP ceiling instead.
#
# Release rings (docs/ROLLOUT.md): one serverless NEG per ring, bound to the
# Cloud Run traffic tag of that name, and one backend service per NEG, each
# with the same Cloud Armor policy and logging. The URL map sends the hosts
# of each ring other than the default one (canary, early) to that ring's
# backend, through a host rule and a path matcher; everything else (stable
# tenants, the apex, the wildcard for tenants not in Terraform yet, unknown
# hosts) goes to the default ring's backend. A ring with no hosts gets no
# host rule (the URL map refuses an empty one). The certificates do not
# depend on rings: moving a tenant changes routing only.

locals {
  # Host rules: the rings other than the default that have hosts.
  routed_rings = {
    for ring, hosts in var.ring_hosts : ring => hosts
    if ring != var.default_ring && length(hosts) > 0
  }

  tenant_slugs = sort(keys(var.tenant_edge_limits))
  # `[.]` rather than `\.`: no escaping through HCL, CEL and RE2.
  tenant_rules = [
    for index, slug in local.tenant_slugs : {
      slug     = slug
      priority = var.tenant_rule_base_priority + index
      count    = var.tenant_edge_limits[slug].requests_per_minute
      expression = format(
        "request.headers['host'].lower().matches('^(%s)[.]?(:[0-9]+)?$')",
        join("|", [for host in var.tenant_edge_limits[slug].hosts : replace(lower(host), ".", "[.]")]),
      )
    }
  ]
}

resource "google_compute_global_address" "lb" {
  project = var.project_id
  name    = "${var.name}-lb"
}

# One serverless NEG per ring: requests through it reach the revision the
# ring's tag points at (the service module's traffic).
resource "google_compute_region_network_endpoint_group" "ring" {
  for_each              = toset(var.rings)
  project               = var.project_id
  name                  = "${var.name}-${each.key}"
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = var.service_name
    tag     = each.key
  }

  # A NEG cannot change in place; its successor is in the backend before it
  # goes.
  lifecycle {
    create_before_destroy = true
  }
}

# Before rings there was one untagged NEG and one backend; they become the
# default ring's (replaced once: the NEG now carries the tag).
moved {
  from = google_compute_region_network_endpoint_group.run
  to   = google_compute_region_network_endpoint_group.ring["stable"]
}

moved {
  from = google_compute_backend_service.run
  to   = google_compute_backend_service.ring["stable"]
}

resource "google_compute_security_policy" "edge" {
  project = var.project_id
  name    = "${var.name}-edge"
  type    = "CLOUD_ARMOR"

  adaptive_protection_config {
    layer_7_ddos_defense_config {
      enable = true
    }
  }

  dynamic "rule" {
    for_each = local.tenant_rules
    content {
      priority    = rule.value.priority
      action      = "throttle"
      description = "tenant ${rule.value.slug}: ${rule.value.count} requests per minute"
      match {
        expr {
          expression = rule.value.expression
        }
      }
      rate_limit_options {
        conform_action = "allow"
        exceed_action  = "deny(429)"
        enforce_on_key = "IP"
        rate_limit_threshold {
          count        = rule.value.count
          interval_sec = 60
        }
      }
    }
  }

  # Known exploit patterns (log4j and the like) before anything else.
  rule {
    priority    = 100
    action      = "deny(403)"
    description = "CVE canaries (log4j JNDI lookups)"
    match {
      expr {
        expression = "evaluatePreconfiguredExpr('cve-canary')"
      }
    }
  }

  rule {
    priority    = 2147483646
    action      = "throttle"
    description = "hosts no tenant rule covers: a ceiling per client IP"
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
    rate_limit_options {
      conform_action = "allow"
      exceed_action  = "deny(429)"
      enforce_on_key = "IP"
      rate_limit_threshold {
        count        = var.unlisted_requests_per_minute
        interval_sec = 60
      }
    }
  }

  rule {
    priority    = 2147483647
    action      = "allow"
    description = "default rule (required); never reached past the rule above"
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
  }
}

# A backend per ring, each behind the same Cloud Armor policy and logged.
resource "google_compute_backend_service" "ring" {
  for_each              = toset(var.rings)
  project               = var.project_id
  name                  = "${var.name}-${each.key}"
  description           = "release ring ${each.key}: the Cloud Run revision tagged ${each.key}"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"
  security_policy       = google_compute_security_policy.edge.id

  backend {
    group = google_compute_region_network_endpoint_group.ring[each.key].id
  }

  log_config {
    enable      = true
    sample_rate = 1.0
  }

  lifecycle {
    create_before_destroy = true
  }
}

# Certificates: one DNS authorisation for the base domain covers the apex and
# the wildcard; each custom domain is authorised by the load balancer itself.
resource "google_certificate_manager_dns_authorization" "base" {
  project = var.project_id
  name    = "${var.name}-base-domain"
  domain  = var.base_domain
}

resource "google_certificate_manager_certificate" "wildcard" {
  project = var.project_id
  name    = "${var.name}-wildcard"

  managed {
    domains            = [var.base_domain, "*.${var.base_domain}"]
    dns_authorizations = [google_certificate_manager_dns_authorization.base.id]
  }
}

resource "google_certificate_manager_certificate" "custom" {
  for_each = toset(var.custom_domains)
  project  = var.project_id
  name     = "${var.name}-${substr(sha256(each.value), 0, 16)}"

  managed {
    domains = [each.value]
  }
}

resource "google_certificate_manager_certificate_map" "edge" {
  project = var.project_id
  name    = "${var.name}-edge"
}

resource "google_certificate_manager_certificate_map_entry" "wildcard" {
  project      = var.project_id
  name         = "${var.name}-wildcard"
  map          = google_certificate_manager_certificate_map.edge.name
  certificates = [google_certificate_manager_certificate.wildcard.id]
  hostname     = "*.${var.base_domain}"
}

resource "google_certificate_manager_certificate_map_entry" "apex" {
  project      = var.project_id
  name         = "${var.name}-apex"
  map          = google_certificate_manager_certificate_map.edge.name
  certificates = [google_certificate_manager_certificate.wildcard.id]
  hostname     = var.base_domain
}

# Clients that send no SNI get the wildcard certificate.
resource "google_certificate_manager_certificate_map_entry" "primary" {
  project      = var.project_id
  name         = "${var.name}-primary"
  map          = google_certificate_manager_certificate_map.edge.name
  certificates = [google_certificate_manager_certificate.wildcard.id]
  matcher      = "PRIMARY"
}

resource "google_certificate_manager_certificate_map_entry" "custom" {
  for_each     = toset(var.custom_domains)
  project      = var.project_id
  name         = "${var.name}-${substr(sha256(each.value), 0, 16)}"
  map          = google_certificate_manager_certificate_map.edge.name
  certificates = [google_certificate_manager_certificate.custom[each.value].id]
  hostname     = each.value
}

resource "google_compute_ssl_policy" "edge" {
  project         = var.project_id
  name            = "${var.name}-tls12"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

# Host matching is on the Host header's name, case-insensitively; a host
# no rule names (a trailing dot, an unexpected port) goes to the default
# ring, whose revision still serves it (and counts the ring mismatch).
resource "google_compute_url_map" "https" {
  project         = var.project_id
  name            = "${var.name}-https"
  default_service = google_compute_backend_service.ring[var.default_ring].id

  dynamic "host_rule" {
    for_each = local.routed_rings
    content {
      description  = "release ring ${host_rule.key}"
      hosts        = host_rule.value
      path_matcher = host_rule.key
    }
  }

  dynamic "path_matcher" {
    for_each = local.routed_rings
    content {
      name            = path_matcher.key
      default_service = google_compute_backend_service.ring[path_matcher.key].id
    }
  }
}

resource "google_compute_target_https_proxy" "edge" {
  project         = var.project_id
  name            = "${var.name}-https"
  url_map         = google_compute_url_map.https.id
  certificate_map = "//certificatemanager.googleapis.com/${google_certificate_manager_certificate_map.edge.id}"
  ssl_policy      = google_compute_ssl_policy.edge.id
}

resource "google_compute_global_forwarding_rule" "https" {
  project               = var.project_id
  name                  = "${var.name}-https"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.lb.id
  port_range            = "443"
  target                = google_compute_target_https_proxy.edge.id
}

# Plain HTTP only redirects to HTTPS.
resource "google_compute_url_map" "redirect" {
  project = var.project_id
  name    = "${var.name}-redirect"

  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "redirect" {
  project = var.project_id
  name    = "${var.name}-redirect"
  url_map = google_compute_url_map.redirect.id
}

resource "google_compute_global_forwarding_rule" "http" {
  project               = var.project_id
  name                  = "${var.name}-http"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.lb.id
  port_range            = "80"
  target                = google_compute_target_http_proxy.redirect.id
}
