use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "only deserialized")]
struct Owner {
    username: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "only deserialized")]
struct Onboard {
    slug: String,
    owner: Owner,
}

fn reject(body: &str) -> ApiError {
    parse_json::<Onboard>(body.as_bytes()).expect_err("must be rejected")
}

fn field_and_message(error: &ApiError) -> (String, String) {
    match error {
        ApiError::Validation { field, message } => (field.clone(), message.clone()),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn syntax_errors_are_400s() {
    for body in [
        "{",
        "{\"slug\": }",
        "nul",
        "{\"slug\":\"a\"} trailing",
        "\u{1}",
    ] {
        assert!(matches!(reject(body), ApiError::BadRequest(_)), "{body:?}");
    }
    let invalid_utf8 = parse_json::<Onboard>(b"{\"slug\":\"\xff\xfe\"}").expect_err("bad utf-8");
    assert!(matches!(invalid_utf8, ApiError::BadRequest(_)));
}

#[test]
fn shape_errors_name_the_field_without_rust_type_names() {
    let cases = [
        (r#"{"owner":{"username":"a"}}"#, "slug", "slug is required"),
        (
            r#"{"slug":"a","owner":{}}"#,
            "owner.username",
            "owner.username is required",
        ),
        (
            r#"{"slug":"a","owner":{"username":"a"},"tenant_id":"x"}"#,
            "tenant_id",
            "tenant_id is not an accepted field",
        ),
        (
            r#"{"slug":"a","owner":{"username":"a","role":"owner"}}"#,
            "owner.role",
            "owner.role is not an accepted field",
        ),
        (
            r#"{"slug":5,"owner":{"username":"a"}}"#,
            "slug",
            "slug must be a string",
        ),
        (
            r#"{"slug":"a","owner":"bob"}"#,
            "owner",
            "owner must be an object",
        ),
        (r#"[1,2]"#, "body", "body must be an object"),
        (
            r#"["acme", {"username": "a"}]"#,
            "body",
            "body must be an object",
        ),
    ];
    for (body, field, message) in cases {
        let (got_field, got_message) = field_and_message(&reject(body));
        assert_eq!(
            (got_field.as_str(), got_message.as_str()),
            (field, message),
            "{body}"
        );
        assert!(
            !got_message.contains("struct") && !got_message.contains("Onboard"),
            "{got_message}"
        );
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Limits {
    burst: Option<u32>,
    plan: Option<Kind>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Free,
    Pro,
}

#[test]
fn each_kind_of_check_is_told_apart_by_serde_not_by_its_wording() {
    let shape = |body: &str| {
        let tree: Tree = serde_json::from_str(body).expect("valid JSON");
        serde_path_to_error::deserialize::<_, Onboard>(tree)
            .expect_err("must be rejected")
            .into_inner()
    };
    assert_eq!(
        shape(r#"{"owner":{"username":"a"}}"#),
        ShapeError::Missing("slug")
    );
    assert_eq!(
        shape(r#"{"slug":"a","owner":{"username":"a"},"x":1}"#),
        ShapeError::Unknown("x".to_owned())
    );
    assert_eq!(
        shape(r#"{"slug":"a","slug":"b","owner":{"username":"a"}}"#),
        ShapeError::Duplicate("slug")
    );
    assert!(matches!(
        shape(r#"{"slug":1,"owner":{"username":"a"}}"#),
        ShapeError::Expected(_)
    ));
}

#[test]
fn values_beyond_what_a_program_holds_are_422s_naming_the_field() {
    for (body, field) in [
        (r#"{"slug":1e999999,"owner":{"username":"a"}}"#, "slug"),
        (
            r#"{"slug":"a","owner":{"username":-1e400}}"#,
            "owner.username",
        ),
        (r#"{"slug":"\ud800","owner":{"username":"a"}}"#, "slug"),
    ] {
        let (got, message) = field_and_message(&reject(body));
        assert_eq!(got, field, "{body}");
        assert!(message.starts_with(field), "{message}");
    }
}

#[test]
fn nesting_is_capped_before_the_document_is_read_into_a_tree() {
    let nested = |depth: usize| {
        format!(
            r#"{{"slug":{}"a"{},"owner":{{"username":"a"}}}}"#,
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    };
    // At the cap the depth is fine and the type check answers; one more is refused.
    let (field, _) = field_and_message(&reject(&nested(MAX_DEPTH)));
    assert_eq!(field, "slug");
    let (field, message) = field_and_message(&reject(&nested(MAX_DEPTH + 1)));
    assert_eq!(field, "body");
    assert!(message.contains("nested"), "{message}");
    // Brackets inside strings are text, not nesting.
    assert_eq!(nesting_depth(br#"{"a":"[[[[{{{{\"]]"}"#), 1);
}

#[test]
fn options_integers_and_unit_enums_read_as_serde_json_reads_them() {
    let limits: Limits = parse_json(br#"{"burst":7,"plan":"pro"}"#).expect("valid");
    assert_eq!(
        limits,
        Limits {
            burst: Some(7),
            plan: Some(Kind::Pro)
        }
    );
    let empty: Limits = parse_json(br#"{"burst":null}"#).expect("valid");
    assert_eq!(
        empty,
        Limits {
            burst: None,
            plan: None
        }
    );
    for (body, message) in [
        (r#"{"burst":-1}"#, "burst must be an integer"),
        (r#"{"burst":4294967296}"#, "burst must be an integer"),
        (r#"{"burst":1.5}"#, "burst must be an integer"),
        (r#"{"plan":"gold"}"#, "plan must be of a different type"),
    ] {
        let error = parse_json::<Limits>(body.as_bytes()).expect_err("must be rejected");
        assert_eq!(field_and_message(&error).1, message, "{body}");
    }
    let _ = Kind::Free;
}
