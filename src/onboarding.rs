//! Writing a new tenant's first rows: its registry row, its owner, its first
//! audit events and, for operators, a pending custom domain.
//!
//! One statement does all of it, in a transaction already bound to the new
//! tenant: `signup_tenant` for the runtime role (sign-up over the API) and
//! `onboard_tenant` for the admin role (operators), both SECURITY DEFINER
//! functions of the registry (V5 migration). One statement, because on Citus
//! every write of the onboarding must travel over the same connection per
//! worker for the owner's foreign key to see the new registry row; and the
//! checks (bound tenant, reserved slugs, uniqueness) live in the function,
//! which is the boundary a database role meets.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    accounts::NewUser,
    audit::Actor,
    db::TenantTx,
    domain::{DomainName, Plan, Slug, TenantName},
    error::{ApiError, Result, ResultExt},
};

/// 409 for a slug another tenant has.
pub const SLUG_TAKEN: &str = "this slug is already taken";
/// 409 for a reserved slug (`www`, `api`, ...).
pub const SLUG_RESERVED: &str = "this slug is not available";
/// 409 for an idempotency key another tenant was created with.
pub const KEY_IN_USE: &str = "this idempotency key is in use";
/// 409 for a custom domain any tenant has.
pub const DOMAIN_TAKEN: &str = "this domain is already registered";

/// What operators may add to a tenant at creation.
#[derive(Debug, Default)]
pub struct OperatorExtras<'a> {
    /// `None`: the registry's default plan.
    pub plan: Option<Plan>,
    pub idempotency_key: Option<&'a str>,
    pub request_sha256: Option<&'a str>,
    /// A pending custom domain and its verification token.
    pub domain: Option<(&'a DomainName, &'a str)>,
}

/// Who onboards, and with what.
#[derive(Debug)]
pub enum Onboarder<'a> {
    /// Sign-up over the API: the default plan, nothing else; recorded as
    /// `anonymous` (open sign-up) or `system` (authorised by the admin token).
    SignUp(Actor),
    /// An operator (CLI or `/admin`), as the admin role.
    Operator(OperatorExtras<'a>),
}

/// A tenant's first rows to write (not `Debug`: it holds a password hash).
pub struct FirstRows<'a> {
    pub slug: &'a Slug,
    pub name: &'a TenantName,
    pub owner_id: Uuid,
    pub owner: &'a NewUser,
    pub by: Onboarder<'a>,
}

/// When each row was created.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub tenant_created_at: DateTime<Utc>,
    pub owner_created_at: DateTime<Utc>,
    pub domain_created_at: Option<DateTime<Utc>>,
}

/// Writes `rows` for `tx`'s tenant, all in one statement. A taken or
/// reserved slug, a taken idempotency key or domain are 409s.
pub async fn write_first_rows(
    tx: &TenantTx<'_>,
    rows: &FirstRows<'_>,
    request_id: Option<&str>,
) -> Result<Written> {
    let events = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    let events = events.as_slice();
    let owner = rows.owner;
    let row = match &rows.by {
        Onboarder::SignUp(actor) => {
            tx.query_one(
                "select tenant_created_at, owner_created_at, domain_created_at
                 from signup_tenant($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    tx.tenant_id().as_uuid(),
                    &rows.slug.as_str(),
                    &rows.name.as_str(),
                    &rows.owner_id,
                    &owner.username.as_str(),
                    &owner.email.as_str(),
                    &owner.password_hash,
                    &actor.kind(),
                    &request_id,
                    &events,
                ],
            )
            .await
        }
        Onboarder::Operator(extras) => {
            let (domain, token) = extras
                .domain
                .map(|(domain, token)| (domain.as_str(), token))
                .unzip();
            tx.query_one(
                "select tenant_created_at, owner_created_at, domain_created_at
                 from onboard_tenant($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                &[
                    tx.tenant_id().as_uuid(),
                    &rows.slug.as_str(),
                    &rows.name.as_str(),
                    &extras.plan.map(Plan::as_str),
                    &extras.idempotency_key,
                    &extras.request_sha256,
                    &rows.owner_id,
                    &owner.username.as_str(),
                    &owner.email.as_str(),
                    &owner.password_hash,
                    &domain,
                    &token,
                    &Actor::Admin.kind(),
                    &request_id,
                    &events,
                ],
            )
            .await
        }
    };
    let row = row
        .on_constraint("tenants_slug_key", || ApiError::Conflict(SLUG_TAKEN))
        .on_constraint("tenants_slug_reserved", || {
            ApiError::Conflict(SLUG_RESERVED)
        })
        .on_constraint("tenants_idempotency_key_key", || {
            ApiError::Conflict(KEY_IN_USE)
        })
        .on_constraint("tenant_domains_pkey", || ApiError::Conflict(DOMAIN_TAKEN))?;
    Ok(Written {
        tenant_created_at: row.try_get("tenant_created_at")?,
        owner_created_at: row.try_get("owner_created_at")?,
        domain_created_at: row.try_get("domain_created_at")?,
    })
}
