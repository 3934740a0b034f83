# Release rings (issue 19, docs/ROLLOUT.md): every tenant is in one ring
# (var.tenants' `ring`, written by `tenantry tenants export-tfvars` from the
# registry), and each ring is served by the Cloud Run revision its traffic
# tag points at (var.ring_revisions). The edge module sends each ring's hosts
# to a serverless NEG bound to that tag; the service module sets the tags.

locals {
  # src/domain/release.rs, Ring::ALL: from the first ring to see a revision
  # to the last (tests/infra.rs keeps them equal).
  rings = ["canary", "early", "stable"]
  # The ring of everything no host rule names: stable tenants, the apex,
  # tenants not in Terraform yet and unknown hosts.
  default_ring = "stable"

  # Each ring's hosts: its tenants' subdomains and verified custom domains
  # (the hosts of their Cloud Armor rules). A ring may have none.
  ring_hosts = {
    for ring in local.rings : ring => sort(flatten([
      for slug, tenant in var.tenants : local.tenant_edge_limits[slug].hosts if tenant.ring == ring
    ]))
  }

  # The revision each ring's tag points at, "" for the latest ready one. A
  # ring without a revision of its own follows the next wider ring, so its
  # tag (and its NEG) always leads somewhere.
  early_revision  = var.ring_revisions.early != "" ? var.ring_revisions.early : var.ring_revisions.stable
  canary_revision = var.ring_revisions.canary != "" ? var.ring_revisions.canary : local.early_revision
  ring_revision = {
    canary = local.canary_revision
    early  = local.early_revision
    stable = var.ring_revisions.stable
  }

  # The service's traffic: one tagged target per ring, the default ring's
  # with 100% of the untagged traffic (the service's own URL), the others
  # with none (only their tag, so only their NEG, reaches them).
  ring_traffic = [
    for ring in reverse(local.rings) : {
      tag      = ring
      revision = local.ring_revision[ring]
      percent  = ring == local.default_ring ? 100 : 0
    }
  ]

  # Revisions serving at once: each may run max_instances instances, each
  # with its whole pool (the connection budget in main.tf).
  serving_revisions = length(distinct([for target in local.ring_traffic : target.revision]))
}
