//! Who acts in a tenant transaction ([`Actor`]), and what that decides:
//! the requirement `bind_request` enforces in the database, the checks of
//! its answer, the plan limits, the isolation level.

use crate::{
    domain::{Role, TenantId, TenantLimits, UserId},
    error::{ApiError, Result},
};

/// Who acts in a tenant transaction, and in which tenant.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// Someone on the tenant's host without a token (sign-in, registration):
    /// the tenant must be active, and its plan's limits apply.
    Visitor {
        tenant: TenantId,
        limits: &'a TenantLimits,
    },
    /// A signed-in user: as a visitor, and the user must still exist in the
    /// tenant (401 otherwise, and whatever the work did is rolled back).
    User {
        tenant: TenantId,
        user: UserId,
        limits: &'a TenantLimits,
    },
    /// A signed-in user acting as the tenant's owner: as a user, and the
    /// user's current role must be owner (403 for a member), judged before
    /// the work starts.
    Owner {
        tenant: TenantId,
        user: UserId,
        limits: &'a TenantLimits,
    },
    /// Onboarding: the tenant must not exist yet; the work creates it, bound
    /// to it from the first statement.
    Founder {
        tenant: TenantId,
        limits: &'a TenantLimits,
    },
    /// An operator: any status, no plan limits. Only
    /// [`super::admin::AdminDb`] makes one, so the runtime role's pool never
    /// runs an operator's transaction.
    Operator(Operator),
}

/// An operator's transaction (see [`Actor::Operator`]).
#[derive(Debug, Clone, Copy)]
pub struct Operator {
    tenant: TenantId,
    consistency: Consistency,
}

impl Operator {
    /// Only the admin role's handle makes these.
    pub(super) fn new(tenant: TenantId, consistency: Consistency) -> Self {
        Self {
            tenant,
            consistency,
        }
    }
}

/// What an operator's statements see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Each statement its own snapshot (`READ COMMITTED`), as requests do.
    PerStatement,
    /// One snapshot for the whole transaction (`REPEATABLE READ`): an export
    /// is consistent even while the tenant keeps writing.
    Snapshot,
}

/// What a tenant transaction expects of its tenant's registry row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Active,
    New,
    Any,
}

impl Actor<'_> {
    pub(super) fn tenant(&self) -> TenantId {
        match *self {
            Self::Visitor { tenant, .. }
            | Self::User { tenant, .. }
            | Self::Owner { tenant, .. }
            | Self::Founder { tenant, .. } => tenant,
            Self::Operator(operator) => operator.tenant,
        }
    }

    pub(super) fn limits(&self) -> Option<&TenantLimits> {
        match *self {
            Self::Visitor { limits, .. }
            | Self::User { limits, .. }
            | Self::Owner { limits, .. }
            | Self::Founder { limits, .. } => Some(limits),
            Self::Operator(_) => None,
        }
    }

    pub(super) fn user(&self) -> Option<UserId> {
        match *self {
            Self::User { user, .. } | Self::Owner { user, .. } => Some(user),
            _ => None,
        }
    }

    fn expect(&self) -> Expect {
        match self {
            Self::Visitor { .. } | Self::User { .. } | Self::Owner { .. } => Expect::Active,
            Self::Founder { .. } => Expect::New,
            Self::Operator(_) => Expect::Any,
        }
    }

    /// Whether requests of this actor share the tenant's slice of the pool
    /// (operators and onboarding do not: neither is the tenant's traffic).
    pub(super) fn takes_a_share(&self) -> bool {
        matches!(
            self,
            Self::Visitor { .. } | Self::User { .. } | Self::Owner { .. }
        )
    }

    /// Whether the work may start before the verdict (and be rolled back if
    /// it is no): not for an owner's work, which a member must not even
    /// attempt.
    pub(super) fn work_may_start_first(&self) -> bool {
        !matches!(self, Self::Owner { .. })
    }

    pub(super) fn begin(&self) -> &'static str {
        match self {
            Self::Operator(Operator {
                consistency: Consistency::Snapshot,
                ..
            }) => "BEGIN ISOLATION LEVEL REPEATABLE READ",
            _ => "BEGIN ISOLATION LEVEL READ COMMITTED",
        }
    }

    /// What `bind_request` must find, or refuse the transaction.
    pub(super) fn requirement(&self) -> &'static str {
        match self {
            Self::Visitor { .. } => "active",
            Self::User { .. } => "user",
            Self::Owner { .. } => "owner",
            Self::Founder { .. } => "new",
            Self::Operator(_) => "any",
        }
    }

    /// Judges the bind statement's answer: its refusal (raised in the
    /// database, see `bind_request`), else the tenant's status, then the
    /// user's current role. The second half repeats, in Rust, what the
    /// database checked, so neither alone decides.
    pub(super) fn verdict(
        &self,
        bound: std::result::Result<tokio_postgres::Row, tokio_postgres::Error>,
    ) -> Result<()> {
        let bound = bound.map_err(|error| self.refusal(error))?;
        let tenant = self.tenant();
        let status: Option<String> = bound.try_get("tenant_status")?;
        match (self.expect(), status.as_deref()) {
            (Expect::Active, Some("active")) | (Expect::New, None) | (Expect::Any, _) => {}
            (Expect::Active, Some("suspended")) => return Err(ApiError::TenantSuspended),
            (Expect::Active, None) => return Err(ApiError::UnknownTenant),
            (Expect::New, Some(_)) => {
                return Err(anyhow::anyhow!("tenant {tenant} already exists").into());
            }
            (Expect::Active, Some(other)) => {
                return Err(anyhow::anyhow!("tenant {tenant} has unknown status {other:?}").into());
            }
        }
        let role = bound
            .try_get::<_, Option<&str>>("user_role")?
            .map(Role::from_db)
            .transpose()?;
        match (self, role) {
            (Self::User { .. } | Self::Owner { .. }, None) => Err(ApiError::Unauthorized),
            (Self::Owner { .. }, Some(Role::Owner)) => Ok(()),
            (Self::Owner { .. }, Some(_)) => Err(ApiError::Forbidden(NOT_THE_OWNER)),
            _ => Ok(()),
        }
    }

    /// The answer for `bind_request`'s refusals; other errors as usual.
    fn refusal(&self, error: tokio_postgres::Error) -> ApiError {
        let code = error.as_db_error().map(|db| db.code().code());
        match code {
            Some("TB404") => ApiError::UnknownTenant,
            Some("TB403") => ApiError::TenantSuspended,
            Some("TB401") => ApiError::Unauthorized,
            Some("TB402") => ApiError::Forbidden(NOT_THE_OWNER),
            _ => error.into(),
        }
    }
}

const NOT_THE_OWNER: &str = "only the tenant's owner may do this";
