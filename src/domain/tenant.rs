//! The tenant as a value: its id, slug, display name, plan and status, and
//! the registry row that carries them.

use std::fmt;

use serde::Serialize;
use uuid::Uuid;

use super::{ApiVersion, Invalid, Ring, TextRule};

/// Slugs that would shadow infrastructure names if handed to a tenant.
const RESERVED_SLUGS: &[&str] = &[
    "admin",
    "api",
    "app",
    "apps",
    "assets",
    "auth",
    "billing",
    "blog",
    "cdn",
    "console",
    "dashboard",
    "dev",
    "docs",
    "ftp",
    "help",
    "imap",
    "internal",
    "login",
    "mail",
    "ns1",
    "ns2",
    "pop",
    "root",
    "signup",
    "smtp",
    "staging",
    "static",
    "status",
    "support",
    "system",
    "tenantry",
    "test",
    "webmail",
    "www",
];

/// A tenant's subdomain label: 3-63 of `a-z 0-9 -`, starting with a letter,
/// not ending with `-`, no `--`. Whether it is reserved is a separate question
/// ([`Slug::is_reserved`]): a reserved slug is well-formed but unavailable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);

impl Slug {
    /// What [`Slug::parse`] accepts, as the OpenAPI document states it.
    pub const RULE: TextRule = TextRule {
        pattern: r"^[a-z](-?[a-z0-9])*$",
        min_length: Some(3),
        max_length: Some(63),
    };

    /// Validates a slug exactly as given (no case folding: `Acme` is rejected).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        const RULE: Invalid = "slug must be 3-63 characters of a-z, 0-9 and '-', start with a letter and not end with '-'";
        let bytes = raw.as_bytes();
        let well_formed = (3..=63).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && bytes.last() != Some(&b'-');
        if !well_formed {
            return Err(RULE);
        }
        if raw.contains("--") {
            return Err("slug must not contain '--'");
        }
        Ok(Self(raw.to_owned()))
    }

    /// The slugs the platform keeps for itself. The database has the same
    /// list (`reserved_slugs()`, V5), where it is enforced.
    pub const RESERVED: &'static [&'static str] = RESERVED_SLUGS;

    /// Whether the platform keeps this slug for itself (`www`, `api`, ...).
    pub fn is_reserved(&self) -> bool {
        RESERVED_SLUGS.contains(&self.0.as_str())
    }

    /// The slug text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant's display name: 1-100 characters, trimmed, no control characters.
#[derive(Debug, Clone)]
pub struct TenantName(String);

impl TenantName {
    /// What [`TenantName::parse`] accepts, as the OpenAPI document states it.
    pub const RULE: TextRule = TextRule {
        pattern: r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$",
        min_length: Some(1),
        max_length: Some(100),
    };

    /// Trims and validates a display name (at most 100 characters as sent).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() || raw.chars().count() > 100 {
            return Err("name must be 1-100 characters, not only whitespace");
        }
        // Anywhere in what was sent, as the document says: a tab or line
        // break around the name is a mistake to report, not to trim away.
        if raw.chars().any(char::is_control) {
            return Err("name must not contain control characters");
        }
        Ok(Self(name.to_owned()))
    }

    /// The name text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A subscription plan: what limits and quotas a tenant gets (see
/// [`crate::limits`]). The set of names is fixed by a CHECK constraint on
/// `tenants.plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(rename_all = "lowercase")]
pub enum Plan {
    #[default]
    Free,
    Pro,
    Enterprise,
}

impl Plan {
    /// Every plan.
    pub const ALL: [Self; 3] = [Self::Free, Self::Pro, Self::Enterprise];

    /// Parses a plan name.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw {
            "free" => Ok(Self::Free),
            "pro" => Ok(Self::Pro),
            "enterprise" => Ok(Self::Enterprise),
            _ => Err("plan must be one of: free, pro, enterprise"),
        }
    }

    /// Reads `tenants.plan`, whose CHECK constraint admits only the known
    /// names: anything else is a database we do not understand, not input.
    pub fn from_db(value: &str) -> anyhow::Result<Self> {
        Self::parse(value).map_err(|_| anyhow::anyhow!("unknown plan {value:?} in the registry"))
    }

    /// The plan's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
            Self::Enterprise => "enterprise",
        }
    }
}

/// A tenant's id. Constructed from the registry, the database or a verified token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct TenantId(Uuid);

impl TenantId {
    /// Wraps a uuid known to name a tenant (or one about to be created).
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The uuid, for query parameters.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether a tenant may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Suspended,
}

impl TenantStatus {
    /// Parses the `tenants.status` column.
    pub fn from_db(value: &str) -> anyhow::Result<Self> {
        match value {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            other => Err(anyhow::anyhow!(
                "unknown tenant status {other:?} in the registry"
            )),
        }
    }
}

/// A tenant as the registry describes it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TenantRecord {
    pub id: TenantId,
    #[schema(example = "acme")]
    pub slug: String,
    #[schema(example = "Acme Corporation")]
    pub name: String,
    pub plan: Plan,
    pub status: TenantStatus,
    /// The release ring whose revision serves the tenant.
    pub ring: Ring,
    /// The API version its requests are answered in unless they name one.
    pub api_version: ApiVersion,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_dns_label_rules_and_reserved_ones_are_flagged() {
        for good in ["acme", "globex-2", "a1b", &"a".repeat(63)] {
            assert!(Slug::parse(good).is_ok(), "{good:?} should be accepted");
        }
        for bad in [
            "ab",
            "Acme",
            "1acme",
            "acme-",
            "ac--me",
            "xn--acme",
            "ac_me",
            "ac.me",
            "",
            &"a".repeat(64),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        for reserved in ["www", "admin", "api"] {
            assert!(
                Slug::parse(reserved).is_ok_and(|slug| slug.is_reserved()),
                "{reserved}"
            );
        }
        assert!(!Slug::parse("acme").expect("valid").is_reserved());
    }

    #[test]
    fn tenant_names_are_trimmed_and_bounded() {
        assert_eq!(
            TenantName::parse("  Acme Corp ").expect("valid").as_str(),
            "Acme Corp"
        );
        assert!(TenantName::parse("   ").is_err());
        assert!(TenantName::parse("Acme\u{7}").is_err());
        assert!(TenantName::parse(&"n".repeat(101)).is_err());
    }

    #[test]
    fn plans_are_a_closed_set() {
        assert_eq!(Plan::parse("pro"), Ok(Plan::Pro));
        assert!(Plan::parse("Pro").is_err());
        assert_eq!(Plan::default().as_str(), "free");
    }
}
