//! Notes: the caller's own notes inside their tenant.
//!
//! Every query names the tenant and the user explicitly, and RLS checks the
//! tenant again underneath. A note of another user or another tenant is
//! answered exactly like a missing one: 404, nothing changed.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header::LOCATION},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    extract::{ApiJson, ApiPath},
    middleware::RequestId,
    versions::Served,
};

use crate::paging::{Page, PageQuery};
use crate::{
    audit::{self, Action, Actor, Event},
    auth::AuthUser,
    db::TenantTx,
    domain::{ApiVersion, NoteContent},
    error::{ApiError, ErrorResponse, Result},
    state::AppState,
};

// NOTE_BY_ID: a note by its id is found through the primary key
// `(tenant_id, id)`, then checked to be the caller's. The caller's check is
// written `(user_id = $2) is true` (the same truth for a NOT NULL column) so
// that it cannot be an index condition: as `user_id = $2`, a table without
// statistics (just restored or loaded) made the planner pick
// `notes_owner_newest_idx` (tenant_id, user_id, ...) with the id as a
// non-leading condition, walking every note of the user (W1 at a third of
// its speed on a large tenant; `BENCH_STATISTICS=absent`).

const NOTE_NOT_FOUND: ApiError = ApiError::NotFound("note not found");

/// `/api/notes` and `/api/notes/{id}`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_notes, create_note))
        .routes(routes!(get_note, update_note, delete_note))
}

/// A note as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoteBody {
    pub id: Uuid,
    pub content: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl NoteBody {
    fn from_row(row: &Row) -> Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            content: row.try_get("content")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// The body of `POST` and `PATCH`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NoteRequest {
    /// 1-10000 characters, not only whitespace, no NUL; stored verbatim.
    #[schema(example = "Remember the milk")]
    content: String,
}

impl NoteRequest {
    fn validate(self) -> Result<NoteContent> {
        NoteContent::parse(&self.content).map_err(|message| ApiError::invalid("content", message))
    }
}

/// Creates a note of the caller's.
#[utoipa::path(
    post, path = "/api/notes", tag = "notes",
    extensions(("x-tenantry-host" = json!("tenant"))),
    security(("bearer" = [])),
    request_body(content = NoteRequest, example = json!({"content": "Remember the milk"})),
    responses(
        (status = 201, description = "The new note", body = NoteBody,
            headers(("Location" = String, description = "The note's URL")),
            links(
                ("GetNote" = (operation_id = "get_note", parameters(("id" = "$response.body#/id")))),
                ("UpdateNote" = (operation_id = "update_note", parameters(("id" = "$response.body#/id")))),
                ("DeleteNote" = (operation_id = "delete_note", parameters(("id" = "$response.body#/id")))),
            )
        ),
        (status = 403, description = "The tenant is suspended (`tenant_suspended`), or its plan allows no more notes (`quota_exceeded`)", body = ErrorResponse),
    )
)]
async fn create_note(
    user: AuthUser,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NoteRequest>,
) -> Result<(StatusCode, HeaderMap, Json<NoteBody>)> {
    let content = body.validate()?;
    let note = state
        .db
        .transaction(user.acting(), async |tx| {
            insert_note(tx, &user, &content).await
        })
        .await?;
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/notes/{}", note.id)) {
        headers.insert(LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, Json(note)))
}

async fn insert_note(tx: TenantTx<'_>, user: &AuthUser, content: &NoteContent) -> Result<NoteBody> {
    let tenant = tx.tenant_id();
    let row = tx
        .last_query_one(
            // The user exists: the user actor's transaction checked it.
            "insert into notes (tenant_id, id, user_id, content) values ($1, $2, $3, $4)
             returning id, content, created_at, updated_at",
            &[
                tenant.as_uuid(),
                &Uuid::now_v7(),
                user.id.as_uuid(),
                &content.as_str(),
            ],
        )
        .await?;
    NoteBody::from_row(&row)
}

/// One of the caller's notes. Another user's or another tenant's note is a
/// 404, exactly like a missing one.
#[utoipa::path(
    get, path = "/api/notes/{id}", tag = "notes",
    extensions(("x-tenantry-host" = json!("tenant"))),
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The note's id")),
    responses((status = 200, description = "The note", body = NoteBody))
)]
async fn get_note(
    user: AuthUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<NoteBody>> {
    let note = state
        .db
        .transaction(user.acting(), async |tx| select_note(tx, &user, id).await)
        .await?;
    note.map(Json).ok_or(NOTE_NOT_FOUND)
}

async fn select_note(tx: TenantTx<'_>, user: &AuthUser, id: Uuid) -> Result<Option<NoteBody>> {
    let tenant = tx.tenant_id();
    let row = tx
        .last_query_opt(
            // `(user_id = $2) is true`: see NOTE_BY_ID.
            "select id, content, created_at, updated_at from notes
             where tenant_id = $1 and id = $3 and (user_id = $2) is true",
            &[tenant.as_uuid(), user.id.as_uuid(), &id],
        )
        .await?;
    row.as_ref().map(NoteBody::from_row).transpose()
}

/// Replaces the content of one of the caller's notes.
#[utoipa::path(
    patch, path = "/api/notes/{id}", tag = "notes",
    extensions(("x-tenantry-host" = json!("tenant"))),
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The note's id")),
    request_body(content = NoteRequest, example = json!({"content": "Remember the oat milk"})),
    responses((status = 200, description = "The updated note", body = NoteBody))
)]
async fn update_note(
    user: AuthUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<NoteRequest>,
) -> Result<Json<NoteBody>> {
    let content = body.validate()?;
    let note = state
        .db
        .transaction(user.acting(), async |tx| {
            update_content(tx, &user, id, &content).await
        })
        .await?;
    note.map(Json).ok_or(NOTE_NOT_FOUND)
}

async fn update_content(
    tx: TenantTx<'_>,
    user: &AuthUser,
    id: Uuid,
    content: &NoteContent,
) -> Result<Option<NoteBody>> {
    let tenant = tx.tenant_id();
    let row = tx
        .last_query_opt(
            // `(user_id = $2) is true`: see NOTE_BY_ID.
            "update notes set content = $4, updated_at = now()
             where tenant_id = $1 and id = $3 and (user_id = $2) is true
             returning id, content, created_at, updated_at",
            &[tenant.as_uuid(), user.id.as_uuid(), &id, &content.as_str()],
        )
        .await?;
    row.as_ref().map(NoteBody::from_row).transpose()
}

/// Deletes one of the caller's notes.
#[utoipa::path(
    delete, path = "/api/notes/{id}", tag = "notes",
    extensions(("x-tenantry-host" = json!("tenant"))),
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The note's id")),
    responses((status = 204, description = "Deleted"))
)]
async fn delete_note(
    user: AuthUser,
    State(state): State<AppState>,
    RequestId(request_id): RequestId,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode> {
    state
        .db
        .transaction(user.acting(), async |tx| {
            let deleted = tx
                .execute(
                    // `(user_id = $2) is true`: see NOTE_BY_ID.
                    "delete from notes where tenant_id = $1 and id = $3 and (user_id = $2) is true",
                    &[tx.tenant_id().as_uuid(), user.id.as_uuid(), &id],
                )
                .await?;
            if deleted == 0 {
                return Err(NOTE_NOT_FOUND);
            }
            let event = Event::new(
                Actor::User(user.id),
                Action::NoteDeleted,
                Some(id.to_string()),
            );
            audit::record(&tx, Some(&request_id), &event).await
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One page of notes, newest first, as API version 2026-11-22 shapes it
/// (its OpenAPI document has this schema for `GET /v1/notes`).
#[derive(Debug, Serialize, ToSchema)]
pub struct NotePage {
    notes: Vec<NoteBody>,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// One page of notes, newest first (API version 2026-12-07 on): the items
/// under `data`, like every list a later version adds, and whether there is
/// a next page without comparing the cursor to `null`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoteList {
    data: Vec<NoteBody>,
    /// Whether a next page exists (`next_cursor` is then set).
    has_more: bool,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// The caller's notes, newest first, in pages (keyset pagination over
/// `created_at, id`, so inserts never shift a page).
#[utoipa::path(
    get, path = "/api/notes", tag = "notes",
    extensions(("x-tenantry-host" = json!("tenant"))),
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of notes", body = NoteList),
        (status = 400, description = "Malformed `limit`, `cursor` or query string (`bad_request`)", body = ErrorResponse),
        (status = 422, description = "`limit` out of range (`validation_failed`)", body = ErrorResponse),
    )
)]
async fn list_notes(
    user: AuthUser,
    Served(version): Served,
    State(state): State<AppState>,
    page: Page,
) -> Result<Response> {
    let mut notes = state
        .db
        .transaction(user.acting(), async |tx| select_page(tx, &user, page).await)
        .await?;
    let next_cursor = page.finish(&mut notes, |note| (note.created_at, note.id));
    Ok(match version {
        ApiVersion::V2026_11_22 => Json(NotePage { notes, next_cursor }).into_response(),
        ApiVersion::V2026_12_07 => Json(NoteList {
            data: notes,
            has_more: next_cursor.is_some(),
            next_cursor,
        })
        .into_response(),
    })
}

async fn select_page(tx: TenantTx<'_>, user: &AuthUser, page: Page) -> Result<Vec<NoteBody>> {
    let tenant = tx.tenant_id();
    let rows = match page.after {
        None => {
            tx.last_query(
                "select id, content, created_at, updated_at from notes
                 where tenant_id = $1 and user_id = $2
                 order by created_at desc, id desc limit $3",
                &[tenant.as_uuid(), user.id.as_uuid(), &page.fetch()],
            )
            .await?
        }
        Some(cursor) => {
            tx.last_query(
                "select id, content, created_at, updated_at from notes
                 where tenant_id = $1 and user_id = $2 and (created_at, id) < ($3, $4)
                 order by created_at desc, id desc limit $5",
                &[
                    tenant.as_uuid(),
                    user.id.as_uuid(),
                    &cursor.at,
                    &cursor.id,
                    &page.fetch(),
                ],
            )
            .await?
        }
    };
    rows.iter().map(NoteBody::from_row).collect()
}
