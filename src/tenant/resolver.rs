//! Host -> tenant, through the registry's SECURITY DEFINER functions, with a
//! short-lived in-process cache.
//!
//! This is the only database access that happens before a tenant is known, and
//! it reads nothing but the registry: the runtime role has no privilege on the
//! registry tables, only EXECUTE on `tenant_by_slug` and `tenant_by_domain`.
//! Answers, including "no such tenant", are cached for `TENANT_CACHE_TTL_MS`
//! so a flood of requests for one host (or for random hosts) costs one query
//! per host per TTL; the cache is bounded so random hosts cannot grow it forever.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use deadpool_postgres::Pool;
use tokio_postgres::Row;

use crate::domain::{
    TenantId, TenantRecord, TenantStatus,
    host::{BaseDomain, CanonicalHost, HostTarget},
};
use crate::{domain::Slug, error::Result};

/// Most hosts remembered at once. Past this, expired entries go first, then
/// "no such tenant" answers (what a flood of random hosts leaves behind), and
/// only then the tenants themselves.
const MAX_CACHED_HOSTS: usize = 10_000;
/// "No such tenant" is remembered for at most this long, so a tenant just
/// onboarded on another instance is reachable within a second.
const MAX_UNKNOWN_TTL: Duration = Duration::from_secs(1);

/// What a request's host refers to, after the registry was consulted.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// The base domain itself.
    Apex,
    /// A registered tenant (active or suspended).
    Tenant(TenantRecord),
    /// No tenant lives here.
    Unknown,
}

/// Resolves hosts to tenants; shared by all requests of an instance.
pub struct TenantResolver {
    pool: Pool,
    base_domain: BaseDomain,
    ttl: Duration,
    cache: Mutex<HashMap<CanonicalHost, CachedAnswer>>,
}

struct CachedAnswer {
    expires_at: Instant,
    tenant: Option<TenantRecord>,
}

impl TenantResolver {
    /// A resolver that keeps answers for `ttl`.
    pub fn new(pool: Pool, base_domain: BaseDomain, ttl: Duration) -> Self {
        Self {
            pool,
            base_domain,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The base domain hosts are classified against.
    pub fn base_domain(&self) -> &BaseDomain {
        &self.base_domain
    }

    /// Classifies `host` and looks the tenant up if it may be one.
    pub async fn resolve(&self, host: &CanonicalHost) -> Result<Resolution> {
        let target = self.base_domain.classify(host);
        let lookup = match &target {
            HostTarget::Apex => return Ok(Resolution::Apex),
            HostTarget::NoTenant => return Ok(Resolution::Unknown),
            // A label that could never be a slug is never looked up.
            HostTarget::Subdomain(label) if Slug::parse(label).is_err() => {
                return Ok(Resolution::Unknown);
            }
            HostTarget::Subdomain(label) => Lookup::Slug(label),
            HostTarget::CustomDomain(domain) => Lookup::Domain(domain),
        };
        if let Some(tenant) = self.cached(host) {
            return Ok(tenant.map_or(Resolution::Unknown, Resolution::Tenant));
        }
        let tenant = self.fetch(lookup).await?;
        self.remember(host, tenant.clone());
        Ok(tenant.map_or(Resolution::Unknown, Resolution::Tenant))
    }

    /// Drops the cached answer for `host`, e.g. after onboarding a tenant there.
    pub fn forget(&self, host: &str) {
        if let Ok(host) = CanonicalHost::parse(host) {
            self.lock().remove(&host);
        }
    }

    async fn fetch(&self, lookup: Lookup<'_>) -> Result<Option<TenantRecord>> {
        let (sql, key) = match lookup {
            Lookup::Slug(slug) => (
                "select id, slug, name, plan, status, ring, api_version from tenant_by_slug($1)",
                slug,
            ),
            Lookup::Domain(domain) => (
                "select id, slug, name, plan, status, ring, api_version from tenant_by_domain($1)",
                domain,
            ),
        };
        let client = self.pool.get().await?;
        let lookup = async {
            let statement = client.prepare_cached(sql).await?;
            let row = client.query_opt(&statement, &[&key]).await?;
            row.map(|row| tenant_from_row(&row)).transpose()
        };
        let outcome = lookup
            .await
            .inspect_err(|error| crate::db::forget_stale_plans(&self.pool, error));
        crate::db::settle(client, outcome)
    }

    fn cached(&self, host: &CanonicalHost) -> Option<Option<TenantRecord>> {
        let cache = self.lock();
        let answer = cache.get(host)?;
        (answer.expires_at > Instant::now()).then(|| answer.tenant.clone())
    }

    fn remember(&self, host: &CanonicalHost, tenant: Option<TenantRecord>) {
        let now = Instant::now();
        let ttl = if tenant.is_some() {
            self.ttl
        } else {
            self.ttl.min(MAX_UNKNOWN_TTL)
        };
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED_HOSTS {
            cache.retain(|_, answer| answer.expires_at > now);
        }
        if cache.len() >= MAX_CACHED_HOSTS {
            cache.retain(|_, answer| answer.tenant.is_some());
        }
        if cache.len() >= MAX_CACHED_HOSTS {
            cache.clear();
        }
        cache.insert(
            host.clone(),
            CachedAnswer {
                expires_at: now + ttl,
                tenant,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CanonicalHost, CachedAnswer>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every operation is a single insert, lookup or clear), so keep going.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

enum Lookup<'a> {
    Slug(&'a str),
    Domain(&'a str),
}

fn tenant_from_row(row: &Row) -> Result<TenantRecord> {
    let status: String = row.try_get("status")?;
    Ok(TenantRecord {
        id: TenantId::from_uuid(row.try_get("id")?),
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
        plan: crate::domain::Plan::from_db(row.try_get("plan")?)?,
        status: TenantStatus::from_db(&status)?,
        ring: crate::domain::Ring::from_db(row.try_get("ring")?)?,
        api_version: crate::domain::ApiVersion::from_db(row.try_get("api_version")?),
    })
}
