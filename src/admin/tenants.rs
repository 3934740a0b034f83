//! Creating, listing, showing and changing tenants.
//!
//! Over 400 lines: the registry's operations (create, list, show, change)
//! share their row types and the idempotency replay; splitting them would
//! spread one table's access over several files.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::{
    Admin, TENANT_COLUMNS, TenantSummary,
    domains::{DomainBody, random_token},
};
use crate::{
    accounts::{NewUserRequest, UserBody},
    audit::{self, Action, Actor, Event},
    auth::password::PasswordHasher,
    db::{Consistency, TenantTx},
    domain::{ApiVersion, DomainName, Plan, Ring, TenantStatus, host::BaseDomain},
    error::{ApiError, Result},
    onboarding::{self, KEY_IN_USE, OperatorExtras, Registrar, SLUG_TAKEN},
    paging::Page,
};

/// A validated request to create a tenant.
pub struct NewTenant {
    /// Slug, name and owner, as sign-up takes them.
    pub tenant: onboarding::NewTenant,
    pub plan: Plan,
    pub domain: Option<DomainName>,
    /// A client-supplied key: the same key with the same request returns the
    /// tenant it created, instead of failing on the taken slug.
    pub idempotency_key: Option<String>,
    /// A digest of the whole request, to tell a replay from a different request.
    pub request_sha256: String,
}

/// A tenant just created (or found again by its idempotency key).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedTenant {
    pub tenant: TenantSummary,
    pub owner: UserBody,
    /// The custom domain, pending verification, if one was given.
    pub domain: Option<DomainBody>,
    /// True when an earlier request with the same idempotency key created it.
    pub replayed: bool,
}

/// A tenant with how much it holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantDetail {
    #[serde(flatten)]
    pub tenant: TenantSummary,
    pub counts: TenantCounts,
    pub domains: Vec<DomainBody>,
}

/// Rows a tenant has in each tenant table.
#[derive(Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct TenantCounts {
    pub users: i64,
    pub notes: i64,
    pub audit_events: i64,
}

impl Admin {
    /// Creates a tenant, its owner and (optionally) a pending custom domain in
    /// one transaction; all of it exists afterwards, or none of it.
    pub async fn create_tenant(
        &self,
        new: NewTenant,
        request_id: Option<&str>,
    ) -> Result<CreatedTenant> {
        if let Some(key) = &new.idempotency_key
            && let Some(found) = self.replay(key, &new.request_sha256).await?
        {
            return Ok(found);
        }
        let token = new.domain.as_ref().map(|_| random_token()).transpose()?;
        let registrar = Registrar::Operator {
            db: &self.db,
            extras: OperatorExtras {
                plan: Some(new.plan),
                idempotency_key: new.idempotency_key.as_deref(),
                request_sha256: Some(&new.request_sha256),
                domain: new.domain.as_ref().zip(token.as_deref()),
            },
        };
        let tenant = &new.tenant;
        let created = onboarding::onboard(tenant, registrar, request_id)
            .await
            .map(|onboarded| CreatedTenant {
                tenant: TenantSummary {
                    id: onboarded.id,
                    slug: tenant.slug.to_string(),
                    name: tenant.name.as_str().to_owned(),
                    plan: new.plan,
                    status: TenantStatus::Active,
                    // The registry's defaults for a new tenant (V8).
                    ring: Ring::default(),
                    api_version: ApiVersion::NEWEST,
                    created_at: onboarded.written.tenant_created_at,
                },
                owner: onboarded.owner,
                domain: new
                    .domain
                    .as_ref()
                    .zip(token.as_deref())
                    .map(|(domain, token)| DomainBody::pending(domain, token)),
                replayed: false,
            });
        match (created, &new.idempotency_key) {
            // A concurrent request with the same key may have won the race:
            // answer as it did, or with this request's own conflict.
            (Err(error @ ApiError::Conflict(SLUG_TAKEN | KEY_IN_USE)), Some(key)) => {
                match self.replay(key, &new.request_sha256).await? {
                    Some(found) => Ok(found),
                    None => Err(error),
                }
            }
            (outcome, _) => outcome,
        }
    }

    /// The tenant an earlier request with `key` created, if any; a conflict
    /// if that request was a different one.
    async fn replay(&self, key: &str, request_sha256: &str) -> Result<Option<CreatedTenant>> {
        let rows = self
            .db
            .query(&format!("select {TENANT_COLUMNS}, request_sha256 from tenants where idempotency_key = $1"), &[&key])
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let stored: Option<String> = row.try_get("request_sha256")?;
        if stored.as_deref() != Some(request_sha256) {
            return Err(ApiError::Conflict(
                "this idempotency key was used for a different request",
            ));
        }
        let tenant = TenantSummary::from_row(row)?;
        let (owner, domains) = self
            .db
            .transaction(tenant.id, Consistency::PerStatement, async |tx| {
                Ok((
                    select_owner(&tx).await?,
                    super::domains::select_domains(&tx).await?,
                ))
            })
            .await?;
        Ok(Some(CreatedTenant {
            tenant,
            owner,
            domain: domains.into_iter().next(),
            replayed: true,
        }))
    }

    /// A page of tenants, newest first. Listing spans tenants, so it is
    /// recorded in the platform audit log.
    pub async fn list_tenants(
        &self,
        page: Page,
        request_id: Option<&str>,
    ) -> Result<Vec<TenantSummary>> {
        let rows = match page.after {
            None => {
                self.db
                    .query(
                        &format!("select {TENANT_COLUMNS} from tenants order by created_at desc, id desc limit $1"),
                        &[&page.fetch()],
                    )
                    .await?
            }
            Some(cursor) => {
                self.db
                    .query(
                        &format!(
                            "select {TENANT_COLUMNS} from tenants where (created_at, id) < ($1, $2)
                             order by created_at desc, id desc limit $3"
                        ),
                        &[&cursor.at, &cursor.id, &page.fetch()],
                    )
                    .await?
            }
        };
        self.record_platform_event("tenants.listed", request_id, json!({}))
            .await?;
        rows.iter().map(TenantSummary::from_row).collect()
    }

    /// A tenant with its row counts and domains.
    pub async fn show_tenant(&self, slug: &str) -> Result<TenantDetail> {
        let tenant = self.tenant(slug).await?;
        let (counts, domains) = self
            .db
            .transaction(tenant.id, Consistency::PerStatement, async |tx| {
                Ok((
                    count_rows(&tx).await?,
                    super::domains::select_domains(&tx).await?,
                ))
            })
            .await?;
        Ok(TenantDetail {
            tenant,
            counts,
            domains,
        })
    }

    /// Changes a tenant's plan, ring, API version and/or status in one
    /// transaction, recording each actual change in its trail. A suspension takes effect on the
    /// tenant's next request on every instance, even for tokens already
    /// issued: every tenant transaction reads the status as it binds.
    pub async fn update_tenant(
        &self,
        slug: &str,
        change: TenantChange,
        request_id: Option<&str>,
    ) -> Result<TenantSummary> {
        let tenant = self.tenant(slug).await?;
        let resuming =
            change.status == Some(TenantStatus::Active) && tenant.status == TenantStatus::Suspended;
        if resuming && self.purge_unfinished(&tenant).await? {
            return Err(ApiError::Conflict(
                "a purge of this tenant started and did not finish; run the purge again to finish it",
            ));
        }
        self.db
            .transaction(tenant.id, Consistency::PerStatement, async |tx| {
                let mut current = tenant.clone();
                // Each field: (column, value before, value after, the action
                // recording a change).
                let settings = [
                    change.plan.map(|plan| {
                        (
                            "plan",
                            tenant.plan.as_str(),
                            plan.as_str(),
                            Action::PlanChanged,
                        )
                    }),
                    change.ring.map(|ring| {
                        (
                            "ring",
                            tenant.ring.as_str(),
                            ring.as_str(),
                            Action::RingChanged,
                        )
                    }),
                    change.api_version.map(|version| {
                        let before = tenant.api_version.as_str();
                        (
                            "api_version",
                            before,
                            version.as_str(),
                            Action::ApiVersionChanged,
                        )
                    }),
                ];
                for (column, from, to, action) in settings.into_iter().flatten() {
                    current = update_tenant(&tx, column, to).await?;
                    if from != to {
                        let event = Event::new(Actor::Admin, action, Some(current.slug.clone()))
                            .with_details(json!({"from": from, "to": to}));
                        audit::record(&tx, request_id, &event).await?;
                    }
                }
                if let Some(status) = change.status {
                    let (text, action) = match status {
                        TenantStatus::Active => ("active", Action::TenantResumed),
                        TenantStatus::Suspended => ("suspended", Action::TenantSuspended),
                    };
                    current = update_tenant(&tx, "status", text).await?;
                    if tenant.status != current.status {
                        audit::record(
                            &tx,
                            request_id,
                            &Event::new(Actor::Admin, action, Some(current.slug.clone())),
                        )
                        .await?;
                    }
                }
                Ok(current)
            })
            .await
    }
}

/// Changes to a tenant; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct TenantChange {
    pub plan: Option<Plan>,
    pub status: Option<TenantStatus>,
    /// Which revision serves the tenant: the load balancer follows after
    /// `tenantry tenants export-tfvars` and a `terraform apply`.
    pub ring: Option<Ring>,
    /// The API version its requests are answered in unless they name one.
    pub api_version: Option<ApiVersion>,
}

/// A request to create a tenant, as the `/admin` API and the CLI take it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenantRequest {
    /// The tenant's subdomain label (the rules of `POST /api/tenants`).
    #[schema(example = "initech")]
    pub slug: String,
    /// Display name (the rules of `POST /api/tenants`).
    #[schema(example = "Initech")]
    pub name: String,
    /// Defaults to `free`.
    #[schema(value_type = Option<Plan>)]
    pub plan: Option<String>,
    /// The tenant's first user, with the `owner` role.
    pub owner: NewUserRequest,
    /// A custom domain to add, pending verification: a DNS name outside the
    /// base domain (which is the service's own: 409).
    #[schema(example = "notes.initech.io")]
    pub domain: Option<String>,
}

impl NewTenantRequest {
    /// Validates every field (422 naming the first bad one) and hashes the
    /// owner's password. `idempotency_key`, if given, is 1-200 printable ASCII.
    pub async fn validate(
        self,
        hasher: &PasswordHasher,
        base_domain: &BaseDomain,
        idempotency_key: Option<String>,
    ) -> Result<NewTenant> {
        let malformed = |key: &String| {
            key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic())
        };
        if idempotency_key.as_ref().is_some_and(malformed) {
            return Err(ApiError::invalid(
                "Idempotency-Key",
                "an idempotency key is 1-200 printable ASCII characters",
            ));
        }
        let plan = self
            .plan
            .as_deref()
            .map(Plan::parse)
            .transpose()
            .map_err(|m| ApiError::invalid("plan", m))?
            .unwrap_or_default();
        let domain = self
            .domain
            .as_deref()
            .map(|raw| super::domains::new_domain(raw, base_domain))
            .transpose()?;
        // Slug, name and owner last: the owner's password is hashed.
        let tenant =
            onboarding::NewTenant::parse(&self.slug, &self.name, self.owner, hasher).await?;
        let (slug, name, owner) = (&tenant.slug, &tenant.name, &tenant.owner);
        // Of the validated, canonical values, so that `"plan": "free"` and no
        // plan are the same request. The password is left out: the digest is
        // stored, and a digest of a password is a way to guess it; a replay
        // differing only in the password gets the tenant the first created.
        let digest = Sha256::digest(
            json!([
                slug.as_str(),
                name.as_str(),
                plan.as_str(),
                owner.username.as_str(),
                owner.email.as_str(),
                domain.as_ref().map(DomainName::as_str)
            ])
            .to_string(),
        );
        Ok(NewTenant {
            tenant,
            plan,
            domain,
            idempotency_key,
            request_sha256: digest.iter().map(|byte| format!("{byte:02x}")).collect(),
        })
    }
}

/// Sets one registry column of the transaction's tenant (`column` is ours,
/// never input).
async fn update_tenant(
    tx: &TenantTx<'_>,
    column: &'static str,
    value: &str,
) -> Result<TenantSummary> {
    let row = tx
        .query_one(
            &format!("update tenants set {column} = $2 where id = $1 returning {TENANT_COLUMNS}"),
            &[tx.tenant_id().as_uuid(), &value],
        )
        .await?;
    TenantSummary::from_row(&row)
}

async fn select_owner(tx: &TenantTx<'_>) -> Result<UserBody> {
    let row = tx
        .query_one(
            "select id, username, email, role, created_at from users
             where tenant_id = $1 and role = 'owner' order by created_at limit 1",
            &[tx.tenant_id().as_uuid()],
        )
        .await?;
    UserBody::from_row(&row)
}

/// The tenant's rows in each tenant table.
pub async fn count_rows(tx: &TenantTx<'_>) -> Result<TenantCounts> {
    let row = tx
        .query_one(
            "select (select count(*) from users where tenant_id = $1),
                    (select count(*) from notes where tenant_id = $1),
                    (select count(*) from audit_events where tenant_id = $1)",
            &[tx.tenant_id().as_uuid()],
        )
        .await?;
    Ok(TenantCounts {
        users: row.try_get(0)?,
        notes: row.try_get(1)?,
        audit_events: row.try_get(2)?,
    })
}
