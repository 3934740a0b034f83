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
pub mod release;
pub mod tenant;
pub mod user;

pub use self::{
    host::{BaseDomain, DomainName, DomainRejection, MAX_CUSTOM_DOMAIN_LEN},
    limits::{LimitsDocument, RateLimitStatus, TenantLimits},
    note::{MAX_NOTE_CHARS, NoteContent},
    release::{ApiDeprecation, ApiVersion, Ring},
    tenant::{Plan, Slug, TenantId, TenantName, TenantRecord, TenantStatus},
    user::{Email, Password, Role, UserId, Username},
};

/// Why a value was rejected, in words a client can act on.
pub type Invalid = &'static str;

/// A text field's rule as the OpenAPI document states it (`pattern`,
/// `minLength`, `maxLength`, lengths in characters). Each value type keeps
/// its rule beside its parser, and a unit test holds the two to the same
/// answers on a corpus of inputs; the document takes it from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRule {
    pub pattern: &'static str,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `value` satisfies `rule` as a JSON Schema validator reads it
    /// (lengths in characters).
    fn satisfies(rule: &TextRule, value: &str) -> bool {
        let length = value.chars().count();
        rule.min_length.is_none_or(|min| length >= min)
            && rule.max_length.is_none_or(|max| length <= max)
            && regex::Regex::new(rule.pattern).unwrap().is_match(value)
    }

    /// Inputs near every edge the rules have: lengths, NUL and other control
    /// characters, Unicode spaces, case, separators.
    fn corpus() -> Vec<String> {
        let mut corpus: Vec<String> = [
            "",
            " ",
            "a",
            "ab",
            "abc",
            "Acme",
            "acme",
            "acme-2",
            "acme--2",
            "-acme",
            "acme-",
            "2acme",
            "a_b",
            "a.b",
            "alice",
            "al",
            "a\0b",
            "a\tb",
            "\t",
            "\n",
            " a ",
            "\u{a0}",
            "\u{2003}",
            "a\u{2003}",
            "\u{85}",
            "x\u{85}",
            "é",
            "éé",
            "ééé",
            "\u{7f}x",
            "a@b",
            "a@b.c",
            "a.b@c.de",
            "@b.c",
            "a@.c",
            "a@b.",
            "a b@c.d",
            "a@@b.c",
            "user@example.com",
            "correct horse",
            "1234567",
            "12345678",
            "notes.acme.io",
            "acme.io",
            "localhost",
            "a..b",
            "xn--bcher-kva.example",
            "\tAcme",
            "Acme\n",
            "Acme\r\n",
            "1.2.3.4",
            "acme.io.",
            "-a.io",
            "a-.io",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for length in [
            31, 32, 33, 62, 63, 64, 99, 100, 101, 127, 128, 129, 233, 234, 254, 255,
        ] {
            corpus.push("a".repeat(length));
            corpus.push(format!("{}@example.com", "a".repeat(length)));
            corpus.push(format!("{}.io", "a".repeat(length)));
        }
        corpus.push("a".repeat(MAX_NOTE_CHARS));
        corpus.push("a".repeat(MAX_NOTE_CHARS + 1));
        corpus
    }

    fn agree(what: &str, rule: &TextRule, parses: impl Fn(&str) -> bool) {
        let disagreements: Vec<String> = corpus()
            .into_iter()
            .filter(|value| satisfies(rule, value) != parses(value))
            .map(|value| format!("{value:?} (parser: {})", parses(&value)))
            .collect();
        assert!(disagreements.is_empty(), "{what}: {disagreements:#?}");
    }

    #[test]
    fn every_documented_text_rule_accepts_exactly_what_its_parser_accepts() {
        agree("slug", &Slug::RULE, |v| Slug::parse(v).is_ok());
        agree("tenant name", &TenantName::RULE, |v| {
            TenantName::parse(v).is_ok()
        });
        agree("username", &Username::RULE, |v| Username::parse(v).is_ok());
        agree("email", &Email::RULE, |v| Email::parse(v).is_ok());
        agree("password", &Password::RULE, |v| Password::parse(v).is_ok());
        agree("note", &NoteContent::RULE, |v| {
            NoteContent::parse(v).is_ok()
        });
        let base: BaseDomain = "example.test".parse().unwrap();
        agree("custom domain", &DomainName::RULE, |v| {
            !matches!(
                DomainName::parse(v, &base),
                Err(DomainRejection::Malformed(_))
            )
        });
    }

    #[test]
    fn the_rule_check_catches_a_rule_that_drifted_from_its_parser() {
        let drifted = TextRule {
            max_length: Some(64),
            ..Slug::RULE
        };
        let caught =
            std::panic::catch_unwind(|| agree("slug", &drifted, |v| Slug::parse(v).is_ok()));
        assert!(caught.is_err());
    }
}
