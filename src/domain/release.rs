//! How a tenant meets a release: the ring whose revision serves it, and the
//! dated API version its responses are shaped in.
//!
//! A ring decides *which code* runs for a tenant (the load balancer sends a
//! ring's hosts to the revision tagged for it); an API version decides *what
//! the responses look like*, whichever revision answers. They move
//! separately: a tenant goes to the canary ring to try a revision, and moves
//! to a newer API version when its clients are ready.

use std::fmt;

use chrono::NaiveDate;
use serde::Serialize;

use super::Invalid;

/// A release ring. The set is fixed by a CHECK constraint on `tenants.ring`
/// (V8) and by the revision tags in `infra/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(rename_all = "lowercase")]
pub enum Ring {
    /// A handful of tenants that see a revision first.
    Canary,
    /// A wider group, once the canary ring looked healthy.
    Early,
    /// Everyone else; where new tenants start.
    #[default]
    Stable,
}

impl Ring {
    /// Every ring, from the first to see a revision to the last.
    pub const ALL: [Self; 3] = [Self::Canary, Self::Early, Self::Stable];

    /// Parses a ring name.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw {
            "canary" => Ok(Self::Canary),
            "early" => Ok(Self::Early),
            "stable" => Ok(Self::Stable),
            _ => Err("ring must be one of: canary, early, stable"),
        }
    }

    /// Reads `tenants.ring`, whose CHECK constraint admits only the known
    /// names: anything else is a database we do not understand, not input.
    pub fn from_db(value: &str) -> anyhow::Result<Self> {
        Self::parse(value).map_err(|_| anyhow::anyhow!("unknown ring {value:?} in the registry"))
    }

    /// The ring's name as stored, in metrics and in Terraform.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Canary => "canary",
            Self::Early => "early",
            Self::Stable => "stable",
        }
    }
}

impl fmt::Display for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dated version of the API's shapes. A version is named by the day it
/// shipped; every version this binary knows is served by it, so tenants
/// move to a newer one at their own pace.
///
/// | version      | what changed                                             |
/// |--------------|----------------------------------------------------------|
/// | `2026-11-22` | the first version                                        |
/// | `2026-12-07` | a page of notes is `{"data", "has_more", "next_cursor"}` instead of `{"notes", "next_cursor"}` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
pub enum ApiVersion {
    #[serde(rename = "2026-11-22")]
    #[schema(rename = "2026-11-22")]
    V2026_11_22,
    #[serde(rename = "2026-12-07")]
    #[schema(rename = "2026-12-07")]
    V2026_12_07,
}

impl ApiVersion {
    /// Every version, oldest first.
    pub const ALL: [Self; 2] = [Self::V2026_11_22, Self::V2026_12_07];
    /// The version new tenants are pinned to, and what answers a request
    /// that is for no tenant and names no version. The default of
    /// `tenants.api_version` names it too (a test checks they agree).
    pub const NEWEST: Self = Self::V2026_12_07;

    /// Parses a version's date as written (`2026-12-07`).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Self::ALL
            .into_iter()
            .find(|version| version.as_str() == raw)
            .ok_or("API version must be one of: 2026-11-22, 2026-12-07")
    }

    /// Reads `tenants.api_version`. A date this binary does not know is a
    /// tenant pinned by a newer binary: it is served the newest version this
    /// one has (the closest there is) rather than refused.
    pub fn from_db(value: &str) -> Self {
        Self::parse(value).unwrap_or(Self::NEWEST)
    }

    /// The version's date, as headers, the registry and documents carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2026_11_22 => "2026-11-22",
            Self::V2026_12_07 => "2026-12-07",
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API version on its way out: from `deprecated_on` its responses carry
/// `Deprecation` (RFC 9745) and `Sunset` (RFC 8594) headers, so clients
/// see the date it goes before it goes. It is still served until a release
/// removes it; operators move the tenants still pinned to it first
/// (`tenantry tenants api-version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiDeprecation {
    pub version: ApiVersion,
    /// The day (UTC midnight) it is, or was, deprecated.
    pub deprecated_on: NaiveDate,
    /// The day (UTC midnight) it is expected to stop answering.
    pub sunset_on: NaiveDate,
}

impl ApiDeprecation {
    /// Parses `VERSION:DEPRECATED_ON:SUNSET_ON`, e.g.
    /// `2026-11-22:2026-12-07:2027-06-30`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut fields = raw.trim().split(':');
        let (Some(version), Some(deprecated_on), Some(sunset_on), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(format!(
                "{raw:?} is not VERSION:DEPRECATED_ON:SUNSET_ON (e.g. 2026-11-22:2026-12-07:2027-06-30)"
            ));
        };
        let version = ApiVersion::parse(version).map_err(str::to_owned)?;
        if version == ApiVersion::NEWEST {
            return Err(format!(
                "{version} is the newest API version; it cannot be deprecated"
            ));
        }
        let date = |text: &str| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| format!("{text:?} is not a date (YYYY-MM-DD)"))
        };
        let (deprecated_on, sunset_on) = (date(deprecated_on)?, date(sunset_on)?);
        if sunset_on <= deprecated_on {
            return Err(format!(
                "the sunset of {version} ({sunset_on}) must come after its deprecation ({deprecated_on})"
            ));
        }
        Ok(Self {
            version,
            deprecated_on,
            sunset_on,
        })
    }

    /// The `Deprecation` header's value: an RFC 9651 Date, `@` and the
    /// seconds since the epoch.
    pub fn deprecation_header(&self) -> String {
        format!("@{}", midnight(self.deprecated_on).and_utc().timestamp())
    }

    /// The `Sunset` header's value: an HTTP-date (RFC 9110 IMF-fixdate).
    pub fn sunset_header(&self) -> String {
        midnight(self.sunset_on)
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string()
    }
}

fn midnight(day: NaiveDate) -> chrono::NaiveDateTime {
    day.and_time(chrono::NaiveTime::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_and_versions_parse_only_their_names() {
        for ring in Ring::ALL {
            assert_eq!(Ring::parse(ring.as_str()), Ok(ring));
        }
        assert!(Ring::parse("Canary").is_err());
        assert_eq!(Ring::default(), Ring::Stable);
        for version in ApiVersion::ALL {
            assert_eq!(ApiVersion::parse(version.as_str()), Ok(version));
        }
        assert!(ApiVersion::parse("2026-12-7").is_err());
        assert!(ApiVersion::parse("").is_err());
        assert_eq!(ApiVersion::ALL.last(), Some(&ApiVersion::NEWEST));
        assert!(ApiVersion::ALL.is_sorted());
    }

    #[test]
    fn deprecations_name_a_known_older_version_and_a_later_sunset() {
        let deprecation = ApiDeprecation::parse("2026-11-22:2026-12-07:2027-06-30").unwrap();
        assert_eq!(deprecation.version, ApiVersion::V2026_11_22);
        // 2026-12-07T00:00:00Z and 2027-06-30T00:00:00Z.
        assert_eq!(deprecation.deprecation_header(), "@1796601600");
        assert_eq!(deprecation.sunset_header(), "Wed, 30 Jun 2027 00:00:00 GMT");
        for (bad, says) in [
            ("2026-11-22:2026-12-07", "is not VERSION"),
            ("2026-11-22:2026-12-07:2027-06-30:x", "is not VERSION"),
            ("2025-01-01:2026-12-07:2027-06-30", "must be one of"),
            ("2026-12-07:2026-12-08:2027-06-30", "cannot be deprecated"),
            ("2026-11-22:2026-13-07:2027-06-30", "is not a date"),
            ("2026-11-22:2027-06-30:2027-06-30", "must come after"),
        ] {
            let error = ApiDeprecation::parse(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn the_documented_values_are_the_ones_sent() {
        use utoipa::PartialSchema;
        let documented = serde_json::to_value(ApiVersion::schema()).unwrap();
        let sent = serde_json::to_value(ApiVersion::ALL).unwrap();
        assert_eq!(documented["enum"], sent, "{documented}");
        let documented = serde_json::to_value(Ring::schema()).unwrap();
        assert_eq!(documented["enum"], serde_json::to_value(Ring::ALL).unwrap());
    }

    #[test]
    fn a_version_from_a_newer_binary_is_served_as_the_newest_known() {
        assert_eq!(ApiVersion::from_db("2031-01-01"), ApiVersion::NEWEST);
        assert_eq!(ApiVersion::from_db("2026-11-22"), ApiVersion::V2026_11_22);
    }
}
