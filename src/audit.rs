//! The tenant's audit trail: who did what, when, in which request.
//!
//! Events are written in the same tenant transaction as the change they
//! record, so a change and its record commit (or vanish) together. The table
//! is append-only for the service (the runtime role may insert and read, never
//! update or delete, under RLS); only purging a tenant removes its trail.
//! Events name users by id, never by username, email or token.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    db::TenantTx,
    domain::UserId,
    error::{ApiError, Result},
    paging::Page,
};

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user of the tenant.
    User(UserId),
    /// An operator, through the CLI or the /admin API.
    Admin,
    /// Someone not signed in (registering, failing to sign in).
    Anonymous,
    /// The service itself, on the authority of a credential it checked that
    /// no database role holds (a sign-up authorised by the admin token).
    System,
}

impl Actor {
    /// The actor as `audit_events.actor_kind` stores it.
    pub fn kind(self) -> &'static str {
        match self {
            Self::User(_) => "user",
            Self::Admin => "admin",
            Self::Anonymous => "anonymous",
            Self::System => "system",
        }
    }

    fn id(self) -> Option<Uuid> {
        match self {
            Self::User(id) => Some(*id.as_uuid()),
            Self::Admin | Self::Anonymous | Self::System => None,
        }
    }
}

/// What happened. The strings are stable: clients and exports depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    TenantCreated,
    TenantSuspended,
    TenantResumed,
    PlanChanged,
    RingChanged,
    ApiVersionChanged,
    TenantExported,
    TenantImported,
    DomainAdded,
    DomainVerified,
    DomainRemoved,
    UserRegistered,
    UserRemoved,
    LoginSucceeded,
    LoginFailed,
    NoteDeleted,
}

impl Action {
    /// The stored name, `noun.verb_past`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TenantCreated => "tenant.created",
            Self::TenantSuspended => "tenant.suspended",
            Self::TenantResumed => "tenant.resumed",
            Self::PlanChanged => "tenant.plan_changed",
            Self::RingChanged => "tenant.ring_changed",
            Self::ApiVersionChanged => "tenant.api_version_changed",
            Self::TenantExported => "tenant.exported",
            Self::TenantImported => "tenant.imported",
            Self::DomainAdded => "domain.added",
            Self::DomainVerified => "domain.verified",
            Self::DomainRemoved => "domain.removed",
            Self::UserRegistered => "user.registered",
            Self::UserRemoved => "user.removed",
            Self::LoginSucceeded => "login.succeeded",
            Self::LoginFailed => "login.failed",
            Self::NoteDeleted => "note.deleted",
        }
    }
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct Event {
    pub actor: Actor,
    pub action: Action,
    /// What was acted on: a user or note id, a domain.
    pub subject: Option<String>,
    /// Extra facts (never secrets or personal data).
    pub details: Value,
}

impl Event {
    /// An event without details.
    pub fn new(actor: Actor, action: Action, subject: Option<String>) -> Self {
        Self {
            actor,
            action,
            subject,
            details: Value::Object(serde_json::Map::new()),
        }
    }

    /// The same event with `details`.
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Appends `event` to the trail of `tx`'s tenant.
pub async fn record(tx: &TenantTx<'_>, request_id: Option<&str>, event: &Event) -> Result<()> {
    tx.execute(
        "insert into audit_events (tenant_id, id, actor_kind, actor_id, action, subject, request_id, details)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            tx.tenant_id().as_uuid(),
            &Uuid::now_v7(),
            &event.actor.kind(),
            &event.actor.id(),
            &event.action.as_str(),
            &event.subject,
            &request_id,
            &event.details,
        ],
    )
    .await?;
    Ok(())
}

/// An event as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventBody {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: ActorBody,
    /// E.g. `login.failed`, `note.deleted`, `tenant.suspended`.
    #[schema(example = "login.succeeded")]
    pub action: String,
    pub subject: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: Value,
}

/// Who acted: `user` (with `id`), `admin` or `anonymous`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorBody {
    #[schema(example = "user")]
    pub kind: String,
    pub id: Option<Uuid>,
}

impl EventBody {
    fn from_row(row: &Row) -> Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            at: row.try_get("at")?,
            actor: ActorBody {
                kind: row.try_get("actor_kind")?,
                id: row.try_get("actor_id")?,
            },
            action: row.try_get("action")?,
            subject: row.try_get("subject")?,
            request_id: row.try_get("request_id")?,
            details: row.try_get("details")?,
        })
    }
}

/// One page of the trail of `tx`'s tenant, newest first.
pub async fn select_page(tx: &TenantTx<'_>, page: Page) -> Result<Vec<EventBody>> {
    const COLUMNS: &str = "id, at, actor_kind, actor_id, action, subject, request_id, details";
    let tenant = tx.tenant_id();
    let rows = match page.after {
        None => {
            tx.query(
                &format!("select {COLUMNS} from audit_events where tenant_id = $1 order by at desc, id desc limit $2"),
                &[tenant.as_uuid(), &page.fetch()],
            )
            .await?
        }
        Some(cursor) => {
            tx.query(
                &format!(
                    "select {COLUMNS} from audit_events where tenant_id = $1 and (at, id) < ($2, $3)
                     order by at desc, id desc limit $4"
                ),
                &[tenant.as_uuid(), &cursor.at, &cursor.id, &page.fetch()],
            )
            .await?
        }
    };
    rows.iter()
        .map(EventBody::from_row)
        .collect::<Result<_, ApiError>>()
}
