//! Host header canonicalisation and classification: pure functions, no I/O.
//!
//! One normaliser for the whole service (a second one is how suffix-matching
//! and trailing-dot bugs happen): ASCII lower-case, the port split off and
//! checked, one trailing dot removed, every label checked against DNS rules.
//! Non-ASCII is rejected (browsers send punycode A-labels). Then the canonical
//! host is classified as the apex, a tenant subdomain, a candidate custom
//! domain, or something that can never be a tenant (an IP literal, a deeper
//! subdomain of the base domain).

use std::{fmt, net::IpAddr, str::FromStr};

use super::{Invalid, TextRule};

/// Longest host name DNS allows.
const MAX_HOST_LEN: usize = 253;
/// Longest DNS label.
const MAX_LABEL_LEN: usize = 63;

/// A host name that failed canonicalisation: answered with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed host")]
pub struct MalformedHost;

/// A canonical host: lower-case, no port, no trailing dot, valid labels, or an IP literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanonicalHost(String);

impl CanonicalHost {
    /// Canonicalises the value of a Host header or an `:authority`.
    pub fn parse(raw: &str) -> Result<Self, MalformedHost> {
        if raw.is_empty()
            || !raw.is_ascii()
            || raw.bytes().any(|b| b.is_ascii_control() || b == b' ')
        {
            return Err(MalformedHost);
        }
        let lower = raw.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix('[') {
            return parse_ipv6_literal(rest);
        }
        let name = strip_port(&lower)?;
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.parse::<IpAddr>().is_ok() {
            return Ok(Self(name.to_owned()));
        }
        validate_dns_name(name)?;
        Ok(Self(name.to_owned()))
    }

    /// The canonical text, e.g. `acme.example.com`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn parse_ipv6_literal(rest: &str) -> Result<CanonicalHost, MalformedHost> {
    let (address, after) = rest.split_once(']').ok_or(MalformedHost)?;
    let address: std::net::Ipv6Addr = address.parse().map_err(|_| MalformedHost)?;
    if !after.is_empty() {
        let port = after.strip_prefix(':').ok_or(MalformedHost)?;
        check_port(port)?;
    }
    Ok(CanonicalHost(format!("[{address}]")))
}

fn strip_port(host: &str) -> Result<&str, MalformedHost> {
    match host.rsplit_once(':') {
        None => Ok(host),
        Some((name, port)) => {
            check_port(port)?;
            Ok(name)
        }
    }
}

fn check_port(port: &str) -> Result<(), MalformedHost> {
    let all_digits =
        !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    match port.parse::<u16>() {
        Ok(_) if all_digits => Ok(()),
        _ => Err(MalformedHost),
    }
}

fn validate_dns_name(name: &str) -> Result<(), MalformedHost> {
    if name.is_empty() || name.len() > MAX_HOST_LEN {
        return Err(MalformedHost);
    }
    if name.split('.').all(is_dns_label) {
        Ok(())
    } else {
        Err(MalformedHost)
    }
}

fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The configured base domain (`BASE_DOMAIN`): tenants are its direct subdomains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseDomain(CanonicalHost);

impl BaseDomain {
    /// `localhost`, the default, so `acme.localhost:8080` works on a laptop.
    pub fn localhost() -> Self {
        Self(CanonicalHost("localhost".to_owned()))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl FromStr for BaseDomain {
    type Err = &'static str;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "expected a DNS name such as example.com, without scheme or port";
        if raw.contains(':') || raw.contains('/') {
            return Err(EXPECTED);
        }
        let host = CanonicalHost::parse(raw).map_err(|_| EXPECTED)?;
        if host.as_str().parse::<IpAddr>().is_ok() || host.as_str().starts_with('[') {
            return Err(EXPECTED);
        }
        Ok(Self(host))
    }
}

impl fmt::Display for BaseDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a canonical host refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTarget {
    /// The base domain itself: onboarding and other tenant-less routes.
    Apex,
    /// `{slug}.{base}`: a tenant by slug.
    Subdomain(String),
    /// Any other DNS name: possibly a tenant's custom domain.
    CustomDomain(String),
    /// Cannot be a tenant: an IP literal or a deeper subdomain of the base.
    NoTenant,
}

impl BaseDomain {
    /// Classifies `host` relative to this base domain. Label boundaries are
    /// exact: `evilexample.com` is not under `example.com`.
    pub fn classify(&self, host: &CanonicalHost) -> HostTarget {
        let host = host.as_str();
        let base = self.as_str();
        if host == base {
            return HostTarget::Apex;
        }
        if host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
            return HostTarget::NoTenant;
        }
        match host
            .strip_suffix(base)
            .and_then(|prefix| prefix.strip_suffix('.'))
        {
            Some(label) if !label.contains('.') => HostTarget::Subdomain(label.to_owned()),
            // a.b.example.com: we never hand out nested names, and custom
            // domains under our own base domain are refused at registration.
            Some(_) => HostTarget::NoTenant,
            None => HostTarget::CustomDomain(host.to_owned()),
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
    /// What [`DomainName::parse`] accepts in form, as the OpenAPI document
    /// states it (whether the name is the service's own needs the base
    /// domain, so the document cannot say).
    pub const RULE: TextRule = TextRule {
        pattern: r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$",
        min_length: None,
        max_length: Some(MAX_CUSTOM_DOMAIN_LEN),
    };

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

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(raw: &str) -> Result<String, MalformedHost> {
        CanonicalHost::parse(raw).map(|host| host.as_str().to_owned())
    }

    #[test]
    fn case_port_and_one_trailing_dot_are_normalised() {
        assert_eq!(
            canonical("ACME.Example.COM").as_deref(),
            Ok("acme.example.com")
        );
        assert_eq!(
            canonical("acme.example.com:8080").as_deref(),
            Ok("acme.example.com")
        );
        assert_eq!(
            canonical("acme.example.com.").as_deref(),
            Ok("acme.example.com")
        );
        assert_eq!(
            canonical("acme.example.com.:443").as_deref(),
            Ok("acme.example.com")
        );
        assert_eq!(canonical("[::1]:8080").as_deref(), Ok("[::1]"));
        assert_eq!(canonical("127.0.0.1:8080").as_deref(), Ok("127.0.0.1"));
    }

    #[test]
    fn malformed_hosts_are_rejected() {
        for raw in [
            "",
            "acme..example.com",
            "acme.example.com..",
            ".acme.example.com",
            "-acme.example.com",
            "acme-.example.com",
            "user@acme.example.com",
            "acme.example.com:",
            "acme.example.com:99999",
            "acme.example.com:80:80",
            "acme.example.com:+80",
            "acme example.com",
            "acme.example.com\t",
            "acme_corp.example.com",
            "acmé.example.com",
            "[::1",
            "[nonsense]",
            "[::1]x",
            &"a".repeat(64),
            &format!("{}.com", ["abc"; 70].join(".")),
        ] {
            assert_eq!(
                canonical(raw),
                Err(MalformedHost),
                "{raw:?} should be rejected"
            );
        }
    }

    #[test]
    fn hosts_are_classified_on_exact_label_boundaries() {
        let base: BaseDomain = "example.com".parse().expect("valid base");
        let classify = |raw: &str| base.classify(&CanonicalHost::parse(raw).expect("canonical"));
        assert_eq!(classify("example.com"), HostTarget::Apex);
        assert_eq!(classify("EXAMPLE.com.:443"), HostTarget::Apex);
        assert_eq!(
            classify("acme.example.com"),
            HostTarget::Subdomain("acme".into())
        );
        assert_eq!(classify("a.b.example.com"), HostTarget::NoTenant);
        assert_eq!(
            classify("evilexample.com"),
            HostTarget::CustomDomain("evilexample.com".into())
        );
        assert_eq!(
            classify("acme.example.com.evil.com"),
            HostTarget::CustomDomain("acme.example.com.evil.com".into())
        );
        assert_eq!(
            classify("notes.acme.io"),
            HostTarget::CustomDomain("notes.acme.io".into())
        );
        assert_eq!(classify("10.0.0.1"), HostTarget::NoTenant);
        assert_eq!(classify("[::1]"), HostTarget::NoTenant);
    }

    #[test]
    fn base_domain_must_be_a_bare_dns_name() {
        assert!("example.com".parse::<BaseDomain>().is_ok());
        assert!("LocalHost.".parse::<BaseDomain>().is_ok());
        for raw in [
            "https://example.com",
            "example.com:8080",
            "10.0.0.1",
            "",
            "exa mple.com",
        ] {
            assert!(
                raw.parse::<BaseDomain>().is_err(),
                "{raw:?} should be rejected"
            );
        }
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
}
