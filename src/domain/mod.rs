//! Validated value types: once a value is one of these, it is known to be
//! acceptable to the database, so bad input becomes a 422 here and never a
//! constraint error (or a 500) later.
//!
//! Each `parse` returns the value or a message for the client. Limits match the
//! CHECK constraints in `sql/migrations`; NUL is rejected everywhere because
//! PostgreSQL `text` cannot store it.
//!
//! The bottom layer: every other module may use these types, and this one
//! uses none of them.

pub mod host;
pub mod limits;
pub mod note;
pub mod tenant;
pub mod user;

pub use self::{
    host::{BaseDomain, DomainName, DomainRejection, MAX_CUSTOM_DOMAIN_LEN},
    limits::{LimitsDocument, RateLimitStatus, TenantLimits},
    note::{MAX_NOTE_CHARS, NoteContent},
    tenant::{Plan, Slug, TenantId, TenantName, TenantRecord, TenantStatus},
    user::{Email, Password, Role, UserId, Username},
};

/// Why a value was rejected, in words a client can act on.
pub type Invalid = &'static str;
