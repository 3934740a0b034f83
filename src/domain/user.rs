//! A tenant's users as values: id, role, and the fields they sign up with.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Invalid, TextRule};

/// A user's id (unique within a tenant; random, so in practice globally).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct UserId(Uuid);

impl UserId {
    /// Wraps a uuid read from the database or a verified token.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The uuid, for query parameters.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A user's role inside their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Created the tenant at onboarding.
    Owner,
    /// Registered through `POST /api/register`.
    Member,
}

impl Role {
    /// The role as stored in `users.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Member => "member",
        }
    }

    /// Parses `users.role`.
    pub fn from_db(value: &str) -> anyhow::Result<Self> {
        match value {
            "owner" => Ok(Self::Owner),
            "member" => Ok(Self::Member),
            other => Err(anyhow::anyhow!(
                "unknown user role {other:?} in the database"
            )),
        }
    }
}

/// A login name: 3-32 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
/// Unique per tenant, case-insensitively.
#[derive(Debug, Clone)]
pub struct Username(String);

impl Username {
    /// What [`Username::parse`] accepts, as the OpenAPI document states it.
    pub const RULE: TextRule = TextRule {
        pattern: "^[A-Za-z0-9][A-Za-z0-9._-]*$",
        min_length: Some(3),
        max_length: Some(32),
    };

    /// Validates a username (case is kept; comparisons ignore it).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let bytes = raw.as_bytes();
        let valid = (3..=32).contains(&bytes.len())
            && bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(
                "username must be 3-32 characters of A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
            )
        }
    }

    /// The username as registered.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, checked for shape only (a confirmation mail is the real test).
#[derive(Debug, Clone)]
pub struct Email(String);

impl Email {
    /// What [`Email::parse`] accepts, as the OpenAPI document states it.
    pub const RULE: TextRule = TextRule {
        pattern: r"^[^@\x00-\x1f\x7f-\x9f\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]{1,64}@[^@.\x00-\x1f\x7f-\x9f\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+(\.[^@.\x00-\x1f\x7f-\x9f\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+)+$",
        min_length: None,
        max_length: Some(254),
    };

    /// Validates the shape `local@domain.tld`, at most 254 characters.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        const RULE: Invalid = "email must look like name@example.com (at most 254 characters)";
        if raw.chars().count() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(RULE);
        }
        let Some((local, domain)) = raw.split_once('@') else {
            return Err(RULE);
        };
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && domain.split('.').all(|label| !label.is_empty());
        if local.is_empty() || local.chars().count() > 64 || !domain_ok {
            return Err(RULE);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The address as registered.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password: 8-128 characters, any of them except NUL. Capped so nobody
/// can make us hash megabytes.
pub struct Password(String);

impl Password {
    /// What [`Password::parse`] accepts, as the OpenAPI document states it.
    pub const RULE: TextRule = TextRule {
        pattern: r"^[^\x00]*$",
        min_length: Some(8),
        max_length: Some(128),
    };

    /// Validates a new password's length.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.contains('\0') {
            return Err("password must not contain NUL characters");
        }
        match raw.chars().count() {
            0..8 => Err("password must be at least 8 characters"),
            8..=128 => Ok(Self(raw.to_owned())),
            _ => Err("password must be at most 128 characters"),
        }
    }

    /// A password presented at login. Over-long input cannot match any stored
    /// password, but is still cut before hashing to bound the work.
    pub fn for_login(raw: &str) -> Self {
        Self(raw.chars().take(129).collect())
    }

    /// The secret bytes, for the hasher only.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_short_ascii_handles() {
        assert!(Username::parse("alice.smith_1").is_ok());
        for bad in [
            "al",
            ".alice",
            "alice smith",
            "alice\0",
            "älice",
            &"a".repeat(33),
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(Email::parse("alice@example.com").is_ok());
        for bad in [
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a b@example.com",
            "a@b@example.com",
            "a@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn passwords_are_bounded_in_length() {
        assert!(Password::parse("correct horse").is_ok());
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert!(Password::parse("nul\0inside-it").is_err());
        assert_eq!(Password::for_login(&"x".repeat(10_000)).expose().len(), 129);
        assert_eq!(
            format!("{:?}", Password::for_login("secret")),
            "Password(<redacted>)"
        );
    }
}
