//! A note's text.

use super::{Invalid, TextRule};

/// The text of a note: 1-10000 characters, not blank, no NUL.
#[derive(Debug, Clone)]
pub struct NoteContent(String);

/// Longest note, in characters; matches `notes_content_length`.
pub const MAX_NOTE_CHARS: usize = 10_000;

impl NoteContent {
    /// What [`NoteContent::parse`] accepts, as the OpenAPI document states it.
    pub const RULE: TextRule = TextRule {
        pattern: r"^[^\x00]*[^\x00\x09-\x0d\x85\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00]*$",
        min_length: Some(1),
        max_length: Some(MAX_NOTE_CHARS),
    };

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
}
