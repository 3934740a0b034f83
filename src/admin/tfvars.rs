//! `tenantry tenants export-tfvars`: Terraform's `tenants` variable, written
//! from the registry, so that the edge (certificates, Cloud Armor rules, which
//! ring's revision serves which hosts) and `TENANT_LIMITS` follow the tenants
//! that exist.
//!
//! The file is `infra/tenants.auto.tfvars.json` by default:
//!
//! ```json
//! {"tenants": {"acme": {"plan": "pro", "ring": "canary",
//!                       "custom_domains": ["notes.acme.com"],
//!                       "limits": {"requests_per_second": 100}}}}
//! ```
//!
//! The registry decides which tenants exist, their plan, their release ring
//! (`tenantry tenants ring`: the load balancer sends the tenant's hosts to
//! the revision tagged for that ring once the file is applied; see
//! docs/ROLLOUT.md) and their custom domains (verified ones only: a pending
//! domain does not route, and asking for a certificate for a name nobody
//! proved to own would be wasted). The
//! `limits` are Terraform's: operators edit them in the file, and a new
//! export keeps each remaining tenant's `limits` (and any other top-level key)
//! as they were. The file is replaced atomically.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Admin, TenantSummary};
use crate::error::Result;

/// One tenant as the registry has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryTenant {
    pub slug: String,
    pub plan: crate::domain::Plan,
    /// The release ring whose revision serves the tenant's hosts.
    pub ring: crate::domain::Ring,
    /// Verified custom domains, sorted.
    pub custom_domains: Vec<String>,
}

/// What an export wrote.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct TfvarsSummary {
    pub path: PathBuf,
    pub tenants: usize,
    pub custom_domains: usize,
    /// Tenants new to the file.
    pub added: Vec<String>,
    /// Tenants the file had and the registry no longer has (their limits go too).
    pub removed: Vec<String>,
}

impl Admin {
    /// Every tenant with its plan, ring and verified custom domains.
    pub async fn registry_for_terraform(
        &self,
        tenants: &[TenantSummary],
    ) -> Result<Vec<RegistryTenant>> {
        let mut registry = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            let mut custom_domains: Vec<String> = self
                .list_domains(&tenant.slug)
                .await?
                .into_iter()
                .filter(|domain| domain.verified)
                .map(|domain| domain.domain)
                .collect();
            custom_domains.sort();
            registry.push(RegistryTenant {
                slug: tenant.slug.clone(),
                plan: tenant.plan,
                ring: tenant.ring,
                custom_domains,
            });
        }
        Ok(registry)
    }
}

/// The file's new content: `previous` (the file as it was, or `{}`) with its
/// `tenants` replaced by `registry`, each keeping its previous `limits`.
pub fn merge(
    previous: &Value,
    registry: &[RegistryTenant],
) -> anyhow::Result<(Value, Vec<String>, Vec<String>)> {
    let Value::Object(previous) = previous else {
        bail!("the existing file is not a JSON object");
    };
    let old_tenants = match previous.get("tenants") {
        None => Map::new(),
        Some(Value::Object(tenants)) => tenants.clone(),
        Some(_) => bail!("`tenants` in the existing file is not an object"),
    };
    let mut tenants = BTreeMap::new();
    let mut added = Vec::new();
    for tenant in registry {
        let limits = match old_tenants
            .get(&tenant.slug)
            .and_then(|old| old.get("limits"))
        {
            None | Some(Value::Null) => json!({}),
            Some(limits @ Value::Object(_)) => limits.clone(),
            Some(_) => bail!(
                "tenants.{}.limits in the existing file is not an object",
                tenant.slug
            ),
        };
        if !old_tenants.contains_key(&tenant.slug) {
            added.push(tenant.slug.clone());
        }
        tenants.insert(
            tenant.slug.clone(),
            json!({
                "plan": tenant.plan,
                "ring": tenant.ring,
                "custom_domains": tenant.custom_domains,
                "limits": limits,
            }),
        );
    }
    let removed = old_tenants
        .keys()
        .filter(|slug| !tenants.contains_key(*slug))
        .cloned()
        .collect();
    let mut file = previous.clone();
    file.insert("tenants".to_owned(), json!(tenants));
    Ok((Value::Object(file), added, removed))
}

/// Writes Terraform's tenants file at `path` from `registry`, keeping the
/// limits already in it.
pub fn write(path: &Path, registry: &[RegistryTenant]) -> anyhow::Result<TfvarsSummary> {
    let previous = match fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON; fix or remove it", path.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(error) => {
            return Err(error).with_context(|| format!("could not read {}", path.display()));
        }
    };
    let (content, added, removed) =
        merge(&previous, registry).with_context(|| format!("{}", path.display()))?;
    let partial = path.with_file_name(format!(
        ".{}.partial",
        path.file_name()
            .map(|name| name.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut file = fs::File::create(&partial)
        .with_context(|| format!("could not create {}", partial.display()))?;
    serde_json::to_writer_pretty(&mut file, &content)?;
    writeln!(file)?;
    file.sync_all()?;
    fs::rename(&partial, path)
        .with_context(|| format!("could not move the file to {}", path.display()))?;
    Ok(TfvarsSummary {
        path: path.to_owned(),
        tenants: registry.len(),
        custom_domains: registry.iter().map(|t| t.custom_domains.len()).sum(),
        added,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(slug: &str, plan: &str, domains: &[&str]) -> RegistryTenant {
        RegistryTenant {
            slug: slug.to_owned(),
            plan: crate::domain::Plan::parse(plan).unwrap(),
            ring: crate::domain::Ring::Stable,
            custom_domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    #[test]
    fn limits_and_other_keys_survive_and_the_registry_decides_the_rest() {
        let previous = json!({
            "tenants": {
                "acme": {"plan": "free", "custom_domains": [], "limits": {"requests_per_second": 100}},
                "gone": {"plan": "pro", "limits": {"burst": 5}}
            },
            "plan_limits": {"free": {"burst": 30}}
        });
        let registry = [
            RegistryTenant {
                ring: crate::domain::Ring::Canary,
                ..tenant("acme", "pro", &["notes.acme.com"])
            },
            tenant("globex", "free", &[]),
        ];
        let (file, added, removed) = merge(&previous, &registry).expect("merges");
        assert_eq!(
            file,
            json!({
                "tenants": {
                    "acme": {"plan": "pro", "ring": "canary", "custom_domains": ["notes.acme.com"], "limits": {"requests_per_second": 100}},
                    "globex": {"plan": "free", "ring": "stable", "custom_domains": [], "limits": {}}
                },
                "plan_limits": {"free": {"burst": 30}}
            })
        );
        assert_eq!(added, ["globex"]);
        assert_eq!(removed, ["gone"]);
    }

    #[test]
    fn a_file_of_another_shape_is_refused_not_overwritten() {
        for previous in [
            json!([]),
            json!({"tenants": []}),
            json!({"tenants": {"acme": {"limits": 5}}}),
        ] {
            let error = merge(&previous, &[tenant("acme", "free", &[])]).expect_err("refused");
            assert!(format!("{error:#}").contains("not"), "{error:#}");
        }
    }
}
