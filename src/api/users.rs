//! A tenant's owner manages its people and reads its trail:
//! `GET /api/users`, `DELETE /api/users/{id}`, `GET /api/audit`. Members get
//! 403. The role is read from the database in the request's transaction, not
//! from the token, so it is always current.

use axum::{Json, extract::State, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{extract::ApiPath, middleware::RequestId};

use crate::{
    accounts::UserBody,
    paging::{Page, PageQuery},
};
use crate::{
    audit::{self, Action, Actor, Event, EventBody},
    auth::AuthUser,
    db::TenantTx,
    error::{ApiError, ErrorResponse, Result},
    state::AppState,
};

/// `/api/users`, `/api/users/{id}` and `/api/audit`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(remove_user))
        .routes(routes!(list_audit_events))
}

/// One page of a tenant's users, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct UserPage {
    users: Vec<UserBody>,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// The tenant's users (owner only).
#[utoipa::path(
    get, path = "/api/users", tag = "accounts",
    extensions(("x-tenantry-host" = json!("tenant")), ("x-tenantry-role" = json!("owner"))),
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        (status = 403, description = "The caller is not the tenant's owner (`forbidden`), or the tenant is suspended", body = ErrorResponse),
        (status = 422, description = "`limit` out of range (`validation_failed`)", body = ErrorResponse),
    )
)]
async fn list_users(
    user: AuthUser,
    State(state): State<AppState>,
    page: Page,
) -> Result<Json<UserPage>> {
    let mut users = state
        .db
        .transaction(user.acting_as_owner(), async |tx| {
            select_users(&tx, page).await
        })
        .await?;
    let next_cursor = page.finish(&mut users, |user| (user.created_at, *user.id.as_uuid()));
    Ok(Json(UserPage { users, next_cursor }))
}

async fn select_users(tx: &TenantTx<'_>, page: Page) -> Result<Vec<UserBody>> {
    let tenant = tx.tenant_id();
    let rows = match page.after {
        None => {
            tx.query(
                "select id, username, email, role, created_at from users
                 where tenant_id = $1 order by created_at desc, id desc limit $2",
                &[tenant.as_uuid(), &page.fetch()],
            )
            .await?
        }
        Some(cursor) => {
            tx.query(
                "select id, username, email, role, created_at from users
                 where tenant_id = $1 and (created_at, id) < ($2, $3) order by created_at desc, id desc limit $4",
                &[tenant.as_uuid(), &cursor.at, &cursor.id, &page.fetch()],
            )
            .await?
        }
    };
    rows.iter().map(UserBody::from_row).collect()
}

/// Removes a user and their notes (owner only). Their tokens stop working at
/// once. An owner cannot remove themselves.
#[utoipa::path(
    delete, path = "/api/users/{id}", tag = "accounts",
    extensions(("x-tenantry-host" = json!("tenant")), ("x-tenantry-role" = json!("owner"))),
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "The caller is not the tenant's owner (`forbidden`), or the tenant is suspended", body = ErrorResponse),
        (status = 409, description = "An owner cannot remove themselves (`conflict`)", body = ErrorResponse),
    )
)]
async fn remove_user(
    user: AuthUser,
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode> {
    state
        .db
        .transaction(user.acting_as_owner(), async |tx| {
            if id == *user.id.as_uuid() {
                return Err(ApiError::Conflict("an owner cannot remove themselves"));
            }
            let removed = tx
                .execute(
                    "delete from users where tenant_id = $1 and id = $2",
                    &[tx.tenant_id().as_uuid(), &id],
                )
                .await?;
            if removed == 0 {
                return Err(ApiError::NotFound("user not found"));
            }
            let event = Event::new(
                Actor::User(user.id),
                Action::UserRemoved,
                Some(id.to_string()),
            );
            audit::record(&tx, Some(&request_id), &event).await
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One page of the audit trail, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct EventPage {
    events: Vec<EventBody>,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// The tenant's audit trail: sign-ups, sign-ins (successful and failed), user
/// removals, note deletions and operator actions (owner only).
#[utoipa::path(
    get, path = "/api/audit", tag = "accounts",
    extensions(("x-tenantry-host" = json!("tenant")), ("x-tenantry-role" = json!("owner"))),
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of events", body = EventPage),
        (status = 403, description = "The caller is not the tenant's owner (`forbidden`), or the tenant is suspended", body = ErrorResponse),
        (status = 422, description = "`limit` out of range (`validation_failed`)", body = ErrorResponse),
    )
)]
async fn list_audit_events(
    user: AuthUser,
    State(state): State<AppState>,
    page: Page,
) -> Result<Json<EventPage>> {
    let mut events = state
        .db
        .transaction(user.acting_as_owner(), async |tx| {
            audit::select_page(&tx, page).await
        })
        .await?;
    let next_cursor = page.finish(&mut events, |event| (event.at, event.id));
    Ok(Json(EventPage {
        events,
        next_cursor,
    }))
}
