//! Validated value types: once a value is one of these, it is known to be
//! acceptable to the database, so bad input becomes a 422 here and never a
//! constraint error (or a 500) later.
//!
//! Each `parse` returns the value or a message for the client. Limits match the
//! CHECK constraints in `sql/migrations`; NUL is rejected everywhere because
//! PostgreSQL `text` cannot store it.

use std::fmt;

use crate::tenant::host::{BaseDomain, CanonicalHost, HostTarget};

/// Why a value was rejected, in words a client can act on.
pub type Invalid = &'static str;

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
    /// Trims and validates a display name (at most 100 characters as sent).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() || raw.chars().count() > 100 {
            return Err("name must be 1-100 characters, not only whitespace");
        }
        if name.chars().any(char::is_control) {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, utoipa::ToSchema)]
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

    /// The plan's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
            Self::Enterprise => "enterprise",
        }
    }
}

/// A tenant's custom domain: a DNS name of two or more labels whose last
/// label starts with a letter (so never an IP address), stored in the
/// service's one canonical form (lower case, no trailing dot), and never the
/// base domain or a name under it (those are ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainName(String);

/// The longest custom domain: DNS names are at most 253 characters, and the
/// verification record's name adds `_tenantry-challenge.` (20).
pub const MAX_CUSTOM_DOMAIN_LEN: usize = 253 - 20;

/// Why a custom domain was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainRejection {
    /// Not a DNS name.
    Malformed(Invalid),
    /// The base domain or a name under it: the service's own.
    Ours,
}

impl DomainName {
    /// Canonicalises and validates `raw` against the service's base domain.
    pub fn parse(raw: &str, base: &BaseDomain) -> Result<Self, DomainRejection> {
        const RULE: DomainRejection = DomainRejection::Malformed(
            "domain must be a DNS name such as notes.example.com (ASCII; use punycode for IDNs)",
        );
        if raw.contains(':') || raw.contains('/') || raw.starts_with('[') {
            return Err(RULE);
        }
        let host = CanonicalHost::parse(raw).map_err(|_| RULE)?;
        let name = host.as_str();
        let top_label_is_a_name = name
            .rsplit('.')
            .next()
            .is_some_and(|label| label.starts_with(|c: char| c.is_ascii_alphabetic()));
        if !name.contains('.') || !top_label_is_a_name {
            return Err(RULE);
        }
        if name.len() > MAX_CUSTOM_DOMAIN_LEN {
            return Err(DomainRejection::Malformed(
                "domain must be at most 233 characters, so that its verification record (_tenantry-challenge.<domain>) fits in DNS",
            ));
        }
        match base.classify(&host) {
            HostTarget::CustomDomain(_) => Ok(Self(name.to_owned())),
            _ => Err(DomainRejection::Ours),
        }
    }

    /// The canonical name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A login name: 3-32 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
/// Unique per tenant, case-insensitively.
#[derive(Debug, Clone)]
pub struct Username(String);

impl Username {
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

/// The text of a note: 1-10000 characters, not blank, no NUL.
#[derive(Debug, Clone)]
pub struct NoteContent(String);

/// Longest note, in characters; matches `notes_content_length`.
pub const MAX_NOTE_CHARS: usize = 10_000;

impl NoteContent {
    /// Validates note text (kept exactly as given, whitespace included).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.contains('\0') {
            return Err("content must not contain NUL characters");
        }
        if raw.trim().is_empty() {
            return Err("content must not be empty");
        }
        if raw.chars().count() > MAX_NOTE_CHARS {
            return Err("content must be at most 10000 characters");
        }
        Ok(Self(raw.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
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

    #[test]
    fn note_content_rejects_blank_nul_and_overlong_text() {
        assert!(NoteContent::parse("  hello\nworld ").is_ok());
        assert!(NoteContent::parse(&"é".repeat(MAX_NOTE_CHARS)).is_ok());
        for bad in ["", "   \n\t", "a\0b", &"x".repeat(MAX_NOTE_CHARS + 1)] {
            assert!(
                NoteContent::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
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
    fn custom_domains_are_canonical_dns_names_outside_the_base_domain() {
        let base: BaseDomain = "example.com".parse().expect("base");
        assert_eq!(
            DomainName::parse("Notes.Acme.IO.", &base)
                .expect("valid")
                .as_str(),
            "notes.acme.io"
        );
        for bad in [
            "acme",
            "10.0.0.1",
            "acme.123",
            "[::1]",
            "acme.io:443",
            "https://acme.io",
            "ac me.io",
            "acmé.io",
        ] {
            assert!(
                matches!(
                    DomainName::parse(bad, &base),
                    Err(DomainRejection::Malformed(_))
                ),
                "{bad:?} should be rejected"
            );
        }
        let label = "a".repeat(63);
        let longest = format!("{label}.{label}.{label}.{}.io", "b".repeat(38));
        assert_eq!(longest.len(), MAX_CUSTOM_DOMAIN_LEN);
        assert!(DomainName::parse(&longest, &base).is_ok());
        assert!(
            DomainName::parse(&format!("a{longest}"), &base).is_err(),
            "one character too long for its verification record"
        );
        for ours in ["example.com", "acme.example.com", "Example.COM."] {
            assert_eq!(
                DomainName::parse(ours, &base),
                Err(DomainRejection::Ours),
                "{ours:?}"
            );
        }
    }

    #[test]
    fn plans_are_a_closed_set() {
        assert_eq!(Plan::parse("pro"), Ok(Plan::Pro));
        assert!(Plan::parse("Pro").is_err());
        assert_eq!(Plan::default().as_str(), "free");
    }
}
