# Tenants and their limits: one variable (var.tenants, written by `tenantry
# tenants export-tfvars`) drives both the service's TENANT_LIMITS and the
# Cloud Armor rule of each tenant, so one edit changes both.

locals {
  # The plans' built-in limits: src/limits/plans.rs, TenantLimits::plan_default
  # (tests/infra.rs fails if the two differ). null quotas are unlimited.
  plan_defaults = {
    free       = { requests_per_second = 10, burst = 20, max_db_connections = 2, statement_timeout_ms = 2000, max_users = 10, max_notes = 1000 }
    pro        = { requests_per_second = 50, burst = 100, max_db_connections = 4, statement_timeout_ms = 5000, max_users = 250, max_notes = 100000 }
    enterprise = { requests_per_second = 200, burst = 400, max_db_connections = 8, statement_timeout_ms = 8000, max_users = null, max_notes = null }
  }

  # An override as TENANT_LIMITS wants it: unset fields left out (inherited),
  # a quota of 0 written as null (unlimited).
  plan_overrides = {
    for plan, limits in var.plan_limits : plan => {
      for field, value in limits : field => (value == 0 ? null : value) if value != null
    }
  }
  tenant_overrides = {
    for slug, tenant in var.tenants : slug => {
      for field, value in tenant.limits : field => (value == 0 ? null : value) if value != null
    }
  }

  tenant_limits_json = jsonencode({
    plans   = { for plan, changes in local.plan_overrides : plan => changes if length(changes) > 0 }
    tenants = { for slug, changes in local.tenant_overrides : slug => changes if length(changes) > 0 }
  })

  # The rate each tenant ends up with (tenant entry, then plan entry, then
  # the built-in default), as the service computes it.
  effective_rates = {
    for slug, tenant in var.tenants : slug => {
      requests_per_second = coalesce(tenant.limits.requests_per_second, try(var.plan_limits[tenant.plan].requests_per_second, null), local.plan_defaults[tenant.plan].requests_per_second)
      burst               = coalesce(tenant.limits.burst, try(var.plan_limits[tenant.plan].burst, null), local.plan_defaults[tenant.plan].burst)
      max_db_connections  = coalesce(tenant.limits.max_db_connections, try(var.plan_limits[tenant.plan].max_db_connections, null), local.plan_defaults[tenant.plan].max_db_connections)
    }
  }

  # At the edge, per client address: what the service's two buckets of the
  # tenant (signed-in requests, and sign-in/registration) admit in a minute
  # at most, so no one client can get past the edge more than the service
  # would accept from the whole tenant.
  tenant_edge_limits = {
    for slug, tenant in var.tenants : slug => {
      hosts               = concat(["${slug}.${var.base_domain}"], tenant.custom_domains)
      requests_per_minute = 2 * (local.effective_rates[slug].requests_per_second * 60 + local.effective_rates[slug].burst)
    }
  }

  custom_domains = sort(distinct(flatten([for tenant in var.tenants : tenant.custom_domains])))
}
