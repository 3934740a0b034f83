//! The release this process is part of: the ring its revision serves
//! (`RELEASE_RING`) and the API versions on their way out
//! (`API_DEPRECATIONS`).

use anyhow::{Context, ensure};

use super::Source;
use crate::domain::{ApiDeprecation, ApiVersion, Ring};

/// What a revision knows of its release.
#[derive(Debug, Clone, Default)]
pub struct ReleaseSettings {
    /// The ring whose hosts the load balancer sends to this revision
    /// (`RELEASE_RING`, default `stable`). A request for a tenant of another
    /// ring is still served, and counted as misrouted.
    pub ring: Ring,
    /// Deprecated API versions (`API_DEPRECATIONS`): comma-separated
    /// `VERSION:DEPRECATED_ON:SUNSET_ON`.
    pub deprecations: Vec<ApiDeprecation>,
}

impl ReleaseSettings {
    pub(super) fn from_source(env: &impl Source) -> anyhow::Result<Self> {
        let ring = env
            .get("RELEASE_RING")
            .map(|raw| Ring::parse(&raw).map_err(anyhow::Error::msg))
            .transpose()
            .context("RELEASE_RING")?
            .unwrap_or_default();
        let mut deprecations: Vec<ApiDeprecation> = Vec::new();
        for entry in env
            .get("API_DEPRECATIONS")
            .iter()
            .flat_map(|raw| raw.split(','))
        {
            let deprecation = ApiDeprecation::parse(entry)
                .map_err(anyhow::Error::msg)
                .context("API_DEPRECATIONS")?;
            ensure!(
                deprecations
                    .iter()
                    .all(|seen| seen.version != deprecation.version),
                "API_DEPRECATIONS: {} appears twice",
                deprecation.version
            );
            deprecations.push(deprecation);
        }
        Ok(Self { ring, deprecations })
    }

    /// The deprecation of `version`, if it is deprecated.
    pub fn deprecation(&self, version: ApiVersion) -> Option<&ApiDeprecation> {
        self.deprecations
            .iter()
            .find(|deprecation| deprecation.version == version)
    }
}
