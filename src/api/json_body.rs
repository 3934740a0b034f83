//! Reading a JSON request body into a request type, with every rejection
//! classified by what went wrong rather than by the wording of a library's
//! error message:
//!
//! 1. UTF-8 and the grammar, over the whole document (400 "not valid JSON");
//! 2. the top level must be an object, nested at most [`MAX_DEPTH`] deep (422);
//! 3. the document into a [`Tree`]: this fails only on values the grammar
//!    allows but no program can hold, a number beyond `f64` (`1e999999`) or a
//!    string with an unpaired surrogate escape (422 naming the field);
//! 4. the tree into the request type, through a deserializer whose error
//!    type records which of serde's checks failed ([`ShapeError`]): a missing,
//!    unknown or repeated field, or a value of the wrong type (422).
//!
//! A body is parsed once, into the tree; only when that fails is it looked
//! at again, to tell which of 1-3 it was.
//!
//! Messages name the path of the offending field and never carry serde's
//! internals (Rust type names, `expected struct X`) or an echo of the input.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
    value::{MapDeserializer, SeqDeserializer},
};

use crate::error::{ApiError, Result};

/// Deeper documents are refused, well below serde_json's own recursion
/// limit (128), whose error looks like a syntax error. No request type of
/// ours is more than three levels deep.
pub const MAX_DEPTH: usize = 32;

/// Parses a whole body as `T`; see the module documentation for the order.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let read = serde_path_to_error::deserialize::<_, Tree>(&mut deserializer);
    let tree = match read {
        Ok(tree) if deserializer.end().is_ok() => tree,
        // Something after the document.
        Ok(_) => return Err(not_json()),
        Err(error) => {
            // Grammar first: "not JSON" (400) wins over anything else.
            let grammatical = std::str::from_utf8(bytes)
                .is_ok_and(|text| serde_json::from_str::<IgnoredAny>(text).is_ok());
            if !grammatical {
                return Err(not_json());
            }
            check_outline(bytes)?;
            let field = field_name(&error.path().to_string());
            return Err(ApiError::invalid(
                &field,
                format!(
                    "{field} must be a number in the range of a 64-bit float, or text without unpaired surrogates"
                ),
            ));
        }
    };
    check_outline(bytes)?;
    serde_path_to_error::deserialize(tree).map_err(|error| {
        let path = error.path().to_string();
        describe(&path, error.into_inner())
    })
}

/// An object at the top, nested at most [`MAX_DEPTH`] deep. Run only on
/// documents that passed the grammar.
fn check_outline(bytes: &[u8]) -> Result<()> {
    // serde's derived structs also accept arrays (`["text"]`); our API does not.
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid("body", "body must be an object"));
    }
    if nesting_depth(bytes) > MAX_DEPTH {
        return Err(ApiError::invalid(
            "body",
            format!("body must not be nested more than {MAX_DEPTH} levels deep"),
        ));
    }
    Ok(())
}

fn not_json() -> ApiError {
    ApiError::BadRequest("request body is not valid JSON".to_owned())
}

/// The deepest nesting of arrays and objects, brackets inside strings not
/// counted. Run only on documents that passed the grammar check.
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// `serde_path_to_error` writes the document itself as `.`.
fn field_name(path: &str) -> String {
    if path == "." {
        "body".to_owned()
    } else {
        truncate(path, 128)
    }
}

/// Turns the check that failed into a field and a message of our own wording.
fn describe(path: &str, error: ShapeError) -> ApiError {
    let parent = if path == "." { "" } else { path };
    let join = |name: &str| {
        if parent.is_empty() {
            name.to_owned()
        } else {
            format!("{parent}.{name}")
        }
    };
    let (field, message) = match error {
        ShapeError::Missing(name) => {
            let field = join(name);
            let message = format!("{field} is required");
            (field, message)
        }
        ShapeError::Unknown(name) => {
            // Here the path already ends with the unknown field itself.
            let field = if path.ends_with(name.as_str()) {
                truncate(path, 128)
            } else {
                join(&truncate(&name, 64))
            };
            let message = format!("{field} is not an accepted field");
            (field, message)
        }
        ShapeError::Duplicate(name) => {
            let field = join(name);
            let message = format!("{field} appears more than once");
            (field, message)
        }
        ShapeError::Expected(expected) => {
            let field = field_name(path);
            let message = format!("{field} must be {}", plain_expectation(&expected));
            (field, message)
        }
        ShapeError::Other => {
            let field = field_name(path);
            let message = format!("{field} has an invalid value");
            (field, message)
        }
    };
    ApiError::invalid(field, message)
}

/// Rewrites serde's description of what a visitor expects into words without
/// Rust type names.
fn plain_expectation(expected: &str) -> &'static str {
    match expected {
        e if e.starts_with("struct ") || e.starts_with("a map") => "an object",
        e if e.contains("string") => "a string",
        e if e.contains("integer") || e.starts_with('u') || e.starts_with('i') => "an integer",
        e if e.contains("boolean") || e == "bool" => "a boolean",
        e if e.contains("sequence") => "an array",
        _ => "of a different type",
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// Which of serde's checks rejected a value: serde calls one constructor of
/// [`de::Error`] per kind, and this type keeps the kind instead of formatting
/// it into a sentence.
#[derive(Debug, PartialEq)]
pub enum ShapeError {
    Missing(&'static str),
    Unknown(String),
    Duplicate(&'static str),
    /// A value of the wrong type, length or range; holds what was expected.
    Expected(String),
    /// A check of the type's own (`custom`): its text is not for clients.
    Other,
}

impl fmt::Display for ShapeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{self:?}")
    }
}

impl std::error::Error for ShapeError {}

impl de::Error for ShapeError {
    fn custom<T: fmt::Display>(_message: T) -> Self {
        Self::Other
    }

    fn invalid_type(_found: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::Expected(expected.to_string())
    }

    fn invalid_value(_found: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::Expected(expected.to_string())
    }

    fn invalid_length(_length: usize, expected: &dyn de::Expected) -> Self {
        Self::Expected(expected.to_string())
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Self::Expected(format!("one of {expected:?}"))
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        Self::Unknown(field.to_owned())
    }

    fn missing_field(field: &'static str) -> Self {
        Self::Missing(field)
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::Duplicate(field)
    }
}

/// A JSON document as read, objects kept as ordered lists of members so that
/// a repeated member still reaches the request type (and is refused there).
#[derive(Debug, Clone, PartialEq)]
pub enum Tree {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(String),
    Array(Vec<Tree>),
    Object(Vec<(String, Tree)>),
}

impl<'de> de::Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }

    fn visit_none<E>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Tree, D::Error> {
        de::Deserialize::deserialize(deserializer)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Tree, E> {
        Ok(Tree::Bool(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Tree, E> {
        Ok(Tree::Unsigned(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Tree, E> {
        Ok(Tree::Signed(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Tree, E> {
        Ok(Tree::Float(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Tree, E> {
        Ok(Tree::Text(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Tree, E> {
        Ok(Tree::Text(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Tree, A::Error> {
        let mut array = Vec::new();
        while let Some(item) = items.next_element()? {
            array.push(item);
        }
        Ok(Tree::Array(array))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Tree, A::Error> {
        let mut object = Vec::new();
        while let Some(member) = members.next_entry()? {
            object.push(member);
        }
        Ok(Tree::Object(object))
    }
}

impl<'de> IntoDeserializer<'de, ShapeError> for Tree {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for Tree {
    type Error = ShapeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        match self {
            Self::Null => visitor.visit_unit(),
            Self::Bool(value) => visitor.visit_bool(value),
            Self::Unsigned(value) => visitor.visit_u64(value),
            Self::Signed(value) => visitor.visit_i64(value),
            Self::Float(value) => visitor.visit_f64(value),
            Self::Text(value) => visitor.visit_string(value),
            Self::Array(items) => {
                let mut access = SeqDeserializer::new(items.into_iter());
                let value = visitor.visit_seq(&mut access)?;
                access.end()?;
                Ok(value)
            }
            Self::Object(members) => {
                let mut access = MapDeserializer::new(members.into_iter());
                let value = visitor.visit_map(&mut access)?;
                access.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ShapeError> {
        match self {
            Self::Null => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ShapeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ShapeError> {
        match self {
            // A unit variant, written as its name, as serde_json writes it.
            Self::Text(name) => visitor.visit_enum(name.into_deserializer()),
            other => other.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests;
