//! Keyset pagination, shared by every list: newest first over (time, id), so
//! inserts never shift a page, with a cursor clients treat as opaque.
//!
//! A handler takes a [`Page`] (parsed from `?limit=&cursor=`, with our error
//! shape), fetches `page.fetch()` rows with `(at, id) < (cursor)`, and lets
//! [`Page::finish`] cut them to the page and produce the next cursor.

use axum::{
    extract::{FromRequestParts, Query},
    http::request::Parts,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::{ApiError, Result};

const DEFAULT_PAGE_SIZE: i64 = 20;
const MAX_PAGE_SIZE: i64 = 100;

/// The query string of a list. Values are taken as text and checked by
/// [`Page`], so a bad one gets our error shape.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1-100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page (opaque).
    #[param(
        pattern = r"^[0-9]{1,17}\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )]
    cursor: Option<String>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    /// Where the previous page ended.
    pub after: Option<Cursor>,
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let Query(query) = Query::<PageQuery>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::BadRequest("malformed query string".to_owned()))?;
        Ok(Self {
            limit: page_size(query.limit.as_deref())?,
            after: query.cursor.as_deref().map(Cursor::decode).transpose()?,
        })
    }
}

impl Page {
    /// How many rows to fetch: one more than the page, to know if another follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Cuts `items` (fetched with [`Page::fetch`]) to the page; returns the
    /// cursor of the next page, if there is one.
    pub fn finish<T>(
        &self,
        items: &mut Vec<T>,
        key: impl Fn(&T) -> (DateTime<Utc>, Uuid),
    ) -> Option<String> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let has_more = items.len() > limit;
        items.truncate(limit);
        has_more
            .then(|| items.last().map(|last| Cursor::at(key(last)).encode()))
            .flatten()
    }
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

/// Where a page ended: the last row's (time, id), written
/// `{microseconds since 1970}.{uuid}`. Its exact form is in the OpenAPI
/// document (at most 17 digits, so every instant lies between 1970 and 5138)
/// so that every cursor the schema allows is one we accept. A forged one only
/// narrows a query that RLS and the caller's filters already bound, so it
/// reveals nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    fn at((at, id): (DateTime<Utc>, Uuid)) -> Self {
        Self { at, id }
    }

    fn encode(self) -> String {
        format!("{}.{}", self.at.timestamp_micros(), self.id.hyphenated())
    }

    fn decode(raw: &str) -> Result<Self> {
        let invalid = || ApiError::BadRequest("invalid cursor".to_owned());
        let (micros, id_text) = raw.split_once('.').ok_or_else(invalid)?;
        if micros.is_empty() || micros.len() > 17 || !micros.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let at = micros
            .parse()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(invalid)?;
        let id = Uuid::try_parse(id_text).map_err(|_| invalid())?;
        // Only the canonical lower-case form, as the pattern says.
        if id.hyphenated().to_string() != id_text {
            return Err(invalid());
        }
        Ok(Self { at, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let cursor = Cursor {
            at: Utc::now(),
            id: Uuid::now_v7(),
        };
        let decoded = Cursor::decode(&cursor.encode()).expect("round trip");
        assert_eq!(decoded.id, cursor.id);
        assert_eq!(decoded.at.timestamp_micros(), cursor.at.timestamp_micros());
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
