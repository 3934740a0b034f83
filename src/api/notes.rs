//! Notes: the caller's own notes inside their tenant.
//!
//! Every query names the tenant and the user explicitly, and RLS checks the
//! tenant again underneath. A note of another user or another tenant is
//! answered exactly like a missing one: 404, nothing changed.

use axum::{
    Json,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header::LOCATION},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::extract::{ApiJson, ApiPath};
use crate::{
    auth::AuthUser,
    db::TenantTx,
    domain::NoteContent,
    error::{ApiError, ErrorResponse, Result},
    startup::AppState,
};

const DEFAULT_PAGE_SIZE: i64 = 20;
const MAX_PAGE_SIZE: i64 = 100;
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
    #[schema(
        min_length = 1,
        max_length = 10000,
        pattern = r"^[^\x00]*[^\x00\x09-\x0d\x85\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00]*$",
        example = "Remember the milk"
    )]
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
        .with_tenant(user.tenant.id(), async |tx| {
            insert_note(tx, &user, &content).await
        })
        .await?;
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/notes/{}", note.id)) {
        headers.insert(LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, Json(note)))
}

async fn insert_note(
    tx: &TenantTx<'_>,
    user: &AuthUser,
    content: &NoteContent,
) -> Result<NoteBody> {
    let row = tx
        .query_opt(
            // Insert only for a user who still exists, so a token that outlived
            // its user gets a 401 rather than a foreign-key error.
            "insert into notes (tenant_id, id, user_id, content)
             select $1, $2, u.id, $4 from users u where u.tenant_id = $1 and u.id = $3
             returning id, content, created_at, updated_at",
            &[
                tx.tenant_id().as_uuid(),
                &Uuid::now_v7(),
                user.id.as_uuid(),
                &content.as_str(),
            ],
        )
        .await?
        .ok_or(ApiError::Unauthorized)?;
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
        .with_tenant(user.tenant.id(), async |tx| {
            select_note(tx, &user, id).await
        })
        .await?;
    note.map(Json).ok_or(NOTE_NOT_FOUND)
}

async fn select_note(tx: &TenantTx<'_>, user: &AuthUser, id: Uuid) -> Result<Option<NoteBody>> {
    let row = tx
        .query_opt(
            "select id, content, created_at, updated_at from notes
             where tenant_id = $1 and user_id = $2 and id = $3",
            &[tx.tenant_id().as_uuid(), user.id.as_uuid(), &id],
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
        .with_tenant(user.tenant.id(), async |tx| {
            update_content(tx, &user, id, &content).await
        })
        .await?;
    note.map(Json).ok_or(NOTE_NOT_FOUND)
}

async fn update_content(
    tx: &TenantTx<'_>,
    user: &AuthUser,
    id: Uuid,
    content: &NoteContent,
) -> Result<Option<NoteBody>> {
    let row = tx
        .query_opt(
            "update notes set content = $4, updated_at = now()
             where tenant_id = $1 and user_id = $2 and id = $3
             returning id, content, created_at, updated_at",
            &[
                tx.tenant_id().as_uuid(),
                user.id.as_uuid(),
                &id,
                &content.as_str(),
            ],
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
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode> {
    let deleted = state
        .db
        .with_tenant(user.tenant.id(), async |tx| {
            Ok(tx
                .execute(
                    "delete from notes where tenant_id = $1 and user_id = $2 and id = $3",
                    &[tx.tenant_id().as_uuid(), user.id.as_uuid(), &id],
                )
                .await?)
        })
        .await?;
    if deleted == 0 {
        Err(NOTE_NOT_FOUND)
    } else {
        Ok(StatusCode::NO_CONTENT)
    }
}

/// Query string of `GET /api/notes`. Values are taken as text and checked
/// here, so a bad one gets our error shape.
#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// One page of notes, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct NotePage {
    notes: Vec<NoteBody>,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// The caller's notes, newest first, in pages (keyset pagination over
/// `created_at, id`, so inserts never shift a page).
#[utoipa::path(
    get, path = "/api/notes", tag = "notes",
    extensions(("x-tenantry-host" = json!("tenant"))),
    security(("bearer" = [])),
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size (default 20)"),
        ("cursor" = Option<String>, Query, pattern = r"^[0-9]{1,17}\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "`next_cursor` of the previous page (opaque)"),
    ),
    responses(
        (status = 200, description = "A page of notes", body = NotePage),
        (status = 400, description = "Malformed `limit`, `cursor` or query string (`bad_request`)", body = ErrorResponse),
        (status = 422, description = "`limit` out of range (`validation_failed`)", body = ErrorResponse),
    )
)]
async fn list_notes(
    user: AuthUser,
    State(state): State<AppState>,
    query: std::result::Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<NotePage>> {
    let Query(query) =
        query.map_err(|_| ApiError::BadRequest("malformed query string".to_owned()))?;
    let limit = page_size(query.limit.as_deref())?;
    let after = query.cursor.as_deref().map(Cursor::decode).transpose()?;
    let mut notes = state
        .db
        .with_tenant(user.tenant.id(), async |tx| {
            select_page(tx, &user, after, limit + 1).await
        })
        .await?;
    let has_more = notes.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    notes.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = has_more
        .then(|| {
            notes.last().map(|last| {
                Cursor {
                    created_at: last.created_at,
                    id: last.id,
                }
                .encode()
            })
        })
        .flatten();
    Ok(Json(NotePage { notes, next_cursor }))
}

fn page_size(raw: Option<&str>) -> Result<i64> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_PAGE_SIZE);
    };
    let limit: i64 = raw
        .parse()
        .map_err(|_| ApiError::BadRequest("limit must be an integer".to_owned()))?;
    if (1..=MAX_PAGE_SIZE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid(
            "limit",
            format!("limit must be between 1 and {MAX_PAGE_SIZE}"),
        ))
    }
}

async fn select_page(
    tx: &TenantTx<'_>,
    user: &AuthUser,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Vec<NoteBody>> {
    let tenant = tx.tenant_id();
    let rows = match after {
        None => {
            tx.query(
                "select id, content, created_at, updated_at from notes
                 where tenant_id = $1 and user_id = $2
                 order by created_at desc, id desc limit $3",
                &[tenant.as_uuid(), user.id.as_uuid(), &limit],
            )
            .await?
        }
        Some(cursor) => {
            tx.query(
                "select id, content, created_at, updated_at from notes
                 where tenant_id = $1 and user_id = $2 and (created_at, id) < ($3, $4)
                 order by created_at desc, id desc limit $5",
                &[
                    tenant.as_uuid(),
                    user.id.as_uuid(),
                    &cursor.created_at,
                    &cursor.id,
                    &limit,
                ],
            )
            .await?
        }
    };
    rows.iter().map(NoteBody::from_row).collect()
}

/// Where a page ended: the last note's (created_at, id), written
/// `{microseconds since 1970}.{uuid}`. Clients should treat it as opaque; its
/// exact form is in the OpenAPI document (at most 17 digits, so every instant
/// lies between 1970 and 5138) so that every cursor the schema allows is one
/// we accept. A forged one only narrows a query that RLS and the
/// tenant and user filters already bound, so it reveals nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    created_at: DateTime<Utc>,
    id: Uuid,
}

impl Cursor {
    fn encode(self) -> String {
        format!(
            "{}.{}",
            self.created_at.timestamp_micros(),
            self.id.hyphenated()
        )
    }

    fn decode(raw: &str) -> Result<Self> {
        let invalid = || ApiError::BadRequest("invalid cursor".to_owned());
        let (micros, id) = raw.split_once('.').ok_or_else(invalid)?;
        if micros.is_empty() || micros.len() > 17 || !micros.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let created_at = micros
            .parse()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(invalid)?;
        let id = Uuid::try_parse(id).map_err(|_| invalid())?;
        // Only the canonical lower-case form, as the pattern says.
        if id.hyphenated().to_string() != id_text(raw) {
            return Err(invalid());
        }
        Ok(Self { created_at, id })
    }
}

fn id_text(raw: &str) -> &str {
    raw.split_once('.').map_or("", |(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let cursor = Cursor {
            created_at: Utc::now(),
            id: Uuid::now_v7(),
        };
        let decoded = Cursor::decode(&cursor.encode()).expect("round trip");
        assert_eq!(decoded.id, cursor.id);
        assert_eq!(
            decoded.created_at.timestamp_micros(),
            cursor.created_at.timestamp_micros()
        );
        let id = Uuid::now_v7();
        for bad in [
            String::new(),
            "!!!".to_owned(),
            format!("{id}"),
            format!(".{id}"),
            format!("-1.{id}"),
            format!("123456789012345678.{id}"),
            format!("12.{}", id.hyphenated().to_string().to_uppercase()),
            format!("12.{}", id.simple()),
            "12.not-a-uuid".to_owned(),
        ] {
            assert!(Cursor::decode(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_cursor_the_documented_pattern_allows_decodes() {
        // The largest and smallest instants the pattern allows.
        for micros in ["0", "99999999999999999"] {
            let raw = format!("{micros}.{}", Uuid::now_v7());
            assert!(Cursor::decode(&raw).is_ok(), "{raw}");
        }
    }

    #[test]
    fn page_size_defaults_and_bounds() {
        assert_eq!(page_size(None).ok(), Some(20));
        assert_eq!(page_size(Some("100")).ok(), Some(100));
        assert!(matches!(
            page_size(Some("0")),
            Err(ApiError::Validation { .. })
        ));
        assert!(matches!(
            page_size(Some("101")),
            Err(ApiError::Validation { .. })
        ));
        assert!(matches!(
            page_size(Some("ten")),
            Err(ApiError::BadRequest(_))
        ));
    }
}
