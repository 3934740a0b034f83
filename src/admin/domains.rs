//! Custom domains: add (pending), list, remove, and verify by DNS.
//!
//! A domain belongs to at most one tenant (its registry key is the domain
//! itself), and it routes only once verified: the tenant publishes
//! `_tenantry-challenge.{domain} TXT "tenantry-verification={token}"`, and
//! verification looks for it through the resolver in `DNS_RESOLVER` (or the
//! system's). Only that lookup marks a domain verified, with one exception:
//! restoring a tenant from its own export restores its domains as they were.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use chrono::{DateTime, Utc};
use hickory_resolver::{
    Resolver, TokioResolver,
    config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts},
    net::runtime::TokioRuntimeProvider,
    proto::rr::RData,
};
use serde::Serialize;
use tokio_postgres::Row;
use utoipa::ToSchema;

use super::Admin;
use crate::{
    audit::{self, Action, Actor, Event},
    db::Consistency,
    db::TenantTx,
    domain::{DomainName, DomainRejection, host::BaseDomain},
    error::{ApiError, Result, ResultExt},
};

/// The label under which the verification record is published.
pub const CHALLENGE_LABEL: &str = "_tenantry-challenge";
/// The prefix of the verification record's value.
const CHALLENGE_PREFIX: &str = "tenantry-verification=";

/// A custom domain as operators see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DomainBody {
    #[schema(example = "notes.acme.io")]
    pub domain: String,
    pub verified: bool,
    pub verified_at: Option<DateTime<Utc>>,
    /// The DNS record that proves control of the domain.
    pub verification: Challenge,
}

/// Publish this record, then ask for verification.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Challenge {
    #[schema(example = "_tenantry-challenge.notes.acme.io")]
    pub name: String,
    #[schema(example = "TXT")]
    pub record_type: &'static str,
    #[schema(example = "tenantry-verification=4f9c2a...")]
    pub value: String,
}

impl DomainBody {
    fn from_row(row: &Row) -> Result<Self> {
        let domain: String = row.try_get("domain")?;
        let token: String = row.try_get("verification_token")?;
        let verified_at: Option<DateTime<Utc>> = row.try_get("verified_at")?;
        Ok(Self::new(domain, &token, verified_at))
    }

    /// A domain just added, not verified yet.
    pub fn pending(domain: &DomainName, token: &str) -> Self {
        Self::new(domain.as_str().to_owned(), token, None)
    }

    fn new(domain: String, token: &str, verified_at: Option<DateTime<Utc>>) -> Self {
        Self {
            verification: Challenge {
                name: format!("{CHALLENGE_LABEL}.{domain}"),
                record_type: "TXT",
                value: format!("{CHALLENGE_PREFIX}{token}"),
            },
            domain,
            verified: verified_at.is_some(),
            verified_at,
        }
    }
}

const DOMAIN_COLUMNS: &str = "domain, verification_token, verified_at";

impl Admin {
    /// Adds a pending custom domain to a tenant.
    pub async fn add_domain(
        &self,
        slug: &str,
        raw: &str,
        request_id: Option<&str>,
    ) -> Result<DomainBody> {
        let domain = new_domain(raw, &self.base_domain)?;
        let tenant = self.tenant(slug).await?;
        self.db
            .transaction(tenant.id, Consistency::PerStatement, async |tx| {
                self.insert_domain(&tx, &domain, request_id).await
            })
            .await
    }

    /// Inserts a pending domain in `tx`'s tenant; a domain any tenant already
    /// has is a 409.
    async fn insert_domain(
        &self,
        tx: &TenantTx<'_>,
        domain: &DomainName,
        request_id: Option<&str>,
    ) -> Result<DomainBody> {
        let token = random_token()?;
        let row = tx
            .query_one(
                &format!("insert into tenant_domains (domain, tenant_id, verification_token) values ($1, $2, $3) returning {DOMAIN_COLUMNS}"),
                &[&domain.as_str(), tx.tenant_id().as_uuid(), &token],
            )
            .await
            .on_constraint("tenant_domains_pkey", || ApiError::Conflict("this domain is already registered"))?;
        audit::record(
            tx,
            request_id,
            &Event::new(
                Actor::Admin,
                Action::DomainAdded,
                Some(domain.as_str().to_owned()),
            ),
        )
        .await?;
        DomainBody::from_row(&row)
    }

    /// A tenant's custom domains.
    pub async fn list_domains(&self, slug: &str) -> Result<Vec<DomainBody>> {
        let tenant = self.tenant(slug).await?;
        self.db
            .transaction(tenant.id, Consistency::PerStatement, async |tx| {
                select_domains(&tx).await
            })
            .await
    }

    /// Removes a tenant's custom domain; it stops routing at once here, and
    /// within `TENANT_CACHE_TTL_MS` on other instances.
    pub async fn remove_domain(
        &self,
        slug: &str,
        raw: &str,
        request_id: Option<&str>,
    ) -> Result<()> {
        let domain = existing_domain(raw, &self.base_domain)?;
        let tenant = self.tenant(slug).await?;
        self.db
            .transaction(tenant.id, Consistency::PerStatement, async |tx| {
                let removed = tx
                    .execute(
                        "delete from tenant_domains where tenant_id = $1 and domain = $2",
                        &[tx.tenant_id().as_uuid(), &domain.as_str()],
                    )
                    .await?;
                if removed == 0 {
                    return Err(ApiError::NotFound("domain not found"));
                }
                audit::record(
                    &tx,
                    request_id,
                    &Event::new(
                        Actor::Admin,
                        Action::DomainRemoved,
                        Some(domain.as_str().to_owned()),
                    ),
                )
                .await
            })
            .await
    }

    /// Looks up the domain's challenge record and, if it carries the token,
    /// marks the domain verified (from then on it routes). No transaction is
    /// held open during the lookup.
    pub async fn verify_domain(
        &self,
        slug: &str,
        raw: &str,
        request_id: Option<&str>,
    ) -> Result<DomainBody> {
        let domain = existing_domain(raw, &self.base_domain)?;
        let tenant = self.tenant(slug).await?;
        let current = self
            .db
            .transaction(tenant.id, Consistency::PerStatement, async |tx| {
                select_domain(&tx, &domain).await
            })
            .await?
            .ok_or(ApiError::NotFound("domain not found"))?;
        if current.verified {
            return Ok(current);
        }
        let published = self.dns.txt_records(&current.verification.name).await?;
        if !published.contains(&current.verification.value) {
            return Err(ApiError::Conflict(
                "the verification TXT record was not found; publish it and try again",
            ));
        }
        let token = &current.verification.value[CHALLENGE_PREFIX.len()..];
        self.db
            .transaction(tenant.id, Consistency::PerStatement, async |tx| {
                let row = tx
                    .query_opt(
                        &format!(
                            "update tenant_domains set verified_at = now()
                             where tenant_id = $1 and domain = $2 and verification_token = $3 returning {DOMAIN_COLUMNS}"
                        ),
                        &[tx.tenant_id().as_uuid(), &domain.as_str(), &token],
                    )
                    .await?
                    .ok_or(ApiError::NotFound("domain not found"))?;
                audit::record(&tx, request_id, &Event::new(Actor::Admin, Action::DomainVerified, Some(domain.as_str().to_owned()))).await?;
                DomainBody::from_row(&row)
            })
            .await
    }
}

/// A domain to add: 422 if it is not a DNS name, 409 if it is the
/// service's own (like a reserved slug).
pub fn new_domain(raw: &str, base: &BaseDomain) -> Result<DomainName> {
    DomainName::parse(raw, base).map_err(|rejection| match rejection {
        DomainRejection::Malformed(message) => ApiError::invalid("domain", message),
        DomainRejection::Ours => ApiError::Conflict(
            "this domain is the service's own (the base domain or a name under it)",
        ),
    })
}

/// A domain to look up: one of the service's own is never registered (404).
fn existing_domain(raw: &str, base: &BaseDomain) -> Result<DomainName> {
    DomainName::parse(raw, base).map_err(|rejection| match rejection {
        DomainRejection::Malformed(message) => ApiError::invalid("domain", message),
        DomainRejection::Ours => ApiError::NotFound("domain not found"),
    })
}

/// `tx`'s tenant's domains.
pub async fn select_domains(tx: &TenantTx<'_>) -> Result<Vec<DomainBody>> {
    let rows = tx
        .query(
            &format!(
                "select {DOMAIN_COLUMNS} from tenant_domains where tenant_id = $1 order by domain"
            ),
            &[tx.tenant_id().as_uuid()],
        )
        .await?;
    rows.iter().map(DomainBody::from_row).collect()
}

async fn select_domain(tx: &TenantTx<'_>, domain: &DomainName) -> Result<Option<DomainBody>> {
    let row = tx
        .query_opt(
            &format!(
                "select {DOMAIN_COLUMNS} from tenant_domains where tenant_id = $1 and domain = $2"
            ),
            &[tx.tenant_id().as_uuid(), &domain.as_str()],
        )
        .await?;
    row.as_ref().map(DomainBody::from_row).transpose()
}

pub(super) fn random_token() -> Result<String> {
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("no randomness available: {error}"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Looks up TXT records through one configured resolver, without caching (a
/// record just published must be seen).
#[derive(Clone)]
pub struct DnsVerifier {
    resolver: Arc<TokioResolver>,
}

impl DnsVerifier {
    /// Uses the resolver at `address` (`DNS_RESOLVER`), or the system's.
    pub fn new(address: Option<SocketAddr>) -> anyhow::Result<Self> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match address {
            Some(address) => {
                let mut connection = ConnectionConfig::udp();
                connection.port = address.port();
                let server = NameServerConfig::new(address.ip(), true, vec![connection]);
                Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![server]),
                    provider,
                )
            }
            None => Resolver::builder(provider)
                .context("could not read the system's DNS configuration")?,
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.cache_size = 0;
        options.timeout = Duration::from_secs(3);
        options.attempts = 2;
        Ok(Self {
            resolver: Arc::new(
                builder
                    .build()
                    .context("could not build the DNS resolver")?,
            ),
        })
    }

    /// The TXT strings published at `name`: none when the name or the record
    /// does not exist; 503 when the lookup itself failed (timeout, SERVFAIL,
    /// no resolver), which says nothing about the record.
    pub async fn txt_records(&self, name: &str) -> Result<Vec<String>> {
        // A trailing dot: a fully qualified name, no search domains appended.
        match self.resolver.txt_lookup(format!("{name}.")).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::TXT(txt) => Some(txt.to_string()),
                    _ => None,
                })
                .collect()),
            Err(error) if error.is_no_records_found() => Ok(Vec::new()),
            Err(error) => {
                tracing::warn!(%name, %error, "TXT lookup failed");
                Err(ApiError::Unavailable(
                    anyhow::Error::from(error).context(format!("the DNS lookup of {name} failed")),
                ))
            }
        }
    }
}
