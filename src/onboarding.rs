//! Creating a tenant, the one use case behind sign-up (`POST /api/tenants`)
//! and the operators' commands (`tenantry tenants create`,
//! `POST /admin/tenants`): [`NewTenant::parse`] validates what both take,
//! and [`onboard`] writes the tenant's registry row, its owner, its first
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
    accounts::{NewUser, NewUserRequest, UserBody},
    audit::Actor,
    auth::password::PasswordHasher,
    db::{self, Consistency, Db, TenantTx, admin::AdminDb},
    domain::{DomainName, Plan, Role, Slug, TenantId, TenantLimits, TenantName, UserId},
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

/// A tenant to create, validated: what sign-up and operators both give.
pub struct NewTenant {
    /// Made here, so that callers know it before the tenant exists.
    pub id: TenantId,
    pub slug: Slug,
    pub name: TenantName,
    /// The first user, an owner (not `Debug`: it holds a password hash).
    pub owner: NewUser,
}

impl NewTenant {
    /// Validates the slug, the name and the owner (a 422 naming the first
    /// bad field), and hashes the owner's password.
    pub async fn parse(
        slug: &str,
        name: &str,
        owner: NewUserRequest,
        hasher: &PasswordHasher,
    ) -> Result<Self> {
        let slug = Slug::parse(slug).map_err(|m| ApiError::invalid("slug", m))?;
        // Before the password is hashed: a reserved slug costs nothing.
        if slug.is_reserved() {
            return Err(ApiError::Conflict(SLUG_RESERVED));
        }
        let name = TenantName::parse(name).map_err(|m| ApiError::invalid("name", m))?;
        let owner = owner.validate(hasher, "owner.", Role::Owner).await?;
        Ok(Self {
            id: TenantId::from_uuid(Uuid::now_v7()),
            slug,
            name,
            owner,
        })
    }
}

/// Where a tenant is created, and by whom.
pub enum Registrar<'a> {
    /// Sign-up over the API, as the runtime role, within the default plan's
    /// limits (`limits`); recorded as `by` (`anonymous`, or `system` when the
    /// admin token authorised it).
    SignUp {
        db: &'a Db,
        limits: &'a TenantLimits,
        by: Actor,
    },
    /// An operator, as the admin role, with what only operators may add.
    Operator {
        db: &'a AdminDb,
        extras: OperatorExtras<'a>,
    },
}

/// A tenant just created.
#[derive(Debug)]
pub struct Onboarded {
    pub id: TenantId,
    pub owner: UserBody,
    pub written: Written,
}

/// Creates `tenant` with its owner (and an operator's extras) in one
/// transaction bound to the new tenant from its first statement: all of it
/// exists afterwards, or none of it. A reserved or taken slug is a 409.
pub async fn onboard(
    tenant: &NewTenant,
    registrar: Registrar<'_>,
    request_id: Option<&str>,
) -> Result<Onboarded> {
    let id = tenant.id;
    let (transaction, by) = match registrar {
        Registrar::SignUp { db, limits, by } => {
            (Transaction::SignUp(db, limits), Onboarder::SignUp(by))
        }
        Registrar::Operator { db, extras } => {
            (Transaction::Operator(db), Onboarder::Operator(extras))
        }
    };
    let first = FirstRows {
        slug: &tenant.slug,
        name: &tenant.name,
        owner_id: Uuid::now_v7(),
        owner: &tenant.owner,
        by,
    };
    let write = async |tx: TenantTx<'_>| write_first_rows(&tx, &first, request_id).await;
    let written = match transaction {
        Transaction::SignUp(db, limits) => {
            let founder = db::Actor::Founder { tenant: id, limits };
            db.transaction(founder, write).await?
        }
        Transaction::Operator(db) => db.transaction(id, Consistency::PerStatement, write).await?,
    };
    let owner = UserBody {
        id: UserId::from_uuid(first.owner_id),
        username: tenant.owner.username.as_str().to_owned(),
        email: tenant.owner.email.as_str().to_owned(),
        role: Role::Owner,
        created_at: written.owner_created_at,
    };
    tracing::info!(tenant.id = %id, tenant.slug = %tenant.slug, "tenant onboarded");
    Ok(Onboarded { id, owner, written })
}

/// The transaction a registrar writes in.
enum Transaction<'a> {
    SignUp(&'a Db, &'a TenantLimits),
    Operator(&'a AdminDb),
}

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
enum Onboarder<'a> {
    /// Sign-up over the API: the default plan, nothing else; recorded as
    /// `anonymous` (open sign-up) or `system` (authorised by the admin token).
    SignUp(Actor),
    /// An operator (CLI or `/admin`), as the admin role.
    Operator(OperatorExtras<'a>),
}

/// A tenant's first rows to write (not `Debug`: it holds a password hash).
struct FirstRows<'a> {
    slug: &'a Slug,
    name: &'a TenantName,
    owner_id: Uuid,
    owner: &'a NewUser,
    by: Onboarder<'a>,
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
async fn write_first_rows(
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
