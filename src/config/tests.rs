//! Unit tests of the configuration: defaults, and every variable that is
//! refused naming itself.

use std::collections::HashMap;

use secrecy::ExposeSecret;

use super::*;

const KEY: &str = "k1:0123456789abcdef0123456789abcdef";

fn source(pairs: &[(&str, &str)]) -> impl Source {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn minimal() -> Vec<(&'static str, &'static str)> {
    vec![
        ("DATABASE_URL", "postgres://app@db/tenantry"),
        ("JWT_KEYS", KEY),
        ("SIGNUP_MODE", "open"),
    ]
}

#[test]
fn database_citus_is_auto_by_default_and_refuses_unknown_values() {
    use CitusMode;
    let default = Settings::from_source(&source(&minimal())).expect("valid");
    assert_eq!(default.citus, CitusMode::Auto);
    let mut env = minimal();
    env.push(("DATABASE_CITUS", "on"));
    assert_eq!(
        Settings::from_source(&source(&env)).expect("valid").citus,
        CitusMode::On
    );
    let mut env = minimal();
    env.push(("DATABASE_CITUS", "maybe"));
    let error = Settings::from_source(&source(&env))
        .expect_err("not a mode")
        .to_string();
    assert!(
        error.contains("DATABASE_CITUS=\"maybe\" is invalid: expected auto, on or off"),
        "{error}"
    );
}

#[test]
fn defaults_fill_everything_optional() {
    let settings = Settings::from_source(&source(&minimal())).expect("valid");
    assert_eq!(settings.port, 8080);
    assert_eq!(settings.base_domain.as_str(), "localhost");
    assert_eq!(settings.database.pool_size, 10);
    assert_eq!(settings.jwt.issuer, "tenantry");
    assert!(matches!(settings.signup, SignupMode::Open));
}

#[test]
fn tenant_limits_come_from_the_variable_or_a_file_but_not_both() {
    let json = r#"{"tenants": {"acme": {"burst": 77}}}"#;
    let mut env = minimal();
    env.push(("TENANT_LIMITS", json));
    let inline = Settings::from_source(&source(&env)).expect("valid");
    assert_eq!(
        inline.limits.document,
        crate::domain::LimitsDocument::parse(json).expect("valid")
    );

    let path = std::env::temp_dir().join(format!("tenantry-limits-{}.json", std::process::id()));
    std::fs::write(&path, json).expect("write");
    let path_text = path.to_string_lossy().into_owned();
    let mut env = minimal();
    env.push(("TENANT_LIMITS_FILE", &path_text));
    let from_file = Settings::from_source(&source(&env)).expect("valid");
    assert_eq!(from_file.limits.document, inline.limits.document);

    env.push(("TENANT_LIMITS", json));
    let both = Settings::from_source(&source(&env)).expect_err("both set");
    assert!(format!("{both:#}").contains("not both"));
    std::fs::remove_file(&path).expect("remove");

    let mut env = minimal();
    env.push(("TENANT_LIMITS", r#"{"tenants": {"acme": {"burst": 0}}}"#));
    let invalid = Settings::from_source(&source(&env)).expect_err("invalid");
    let message = format!("{invalid:#}");
    assert!(
        message.contains("TENANT_LIMITS") && message.contains("tenants.acme"),
        "{message}"
    );
}

#[test]
fn a_missing_database_url_is_named() {
    let error = Settings::from_source(&source(&[("JWT_KEYS", KEY), ("SIGNUP_MODE", "open")]))
        .expect_err("must fail");
    assert!(
        error.to_string().contains("DATABASE_URL is required"),
        "{error}"
    );
}

#[test]
fn a_bad_port_is_named_with_its_value() {
    let mut env = minimal();
    env.push(("PORT", "eighty"));
    let error = Settings::from_source(&source(&env)).expect_err("must fail");
    assert!(
        error.to_string().contains("PORT=\"eighty\" is invalid"),
        "{error}"
    );
}

#[test]
fn admin_signup_is_the_default_and_needs_a_token() {
    let env = [("DATABASE_URL", "postgres://x"), ("JWT_KEYS", KEY)];
    let error = Settings::from_source(&source(&env)).expect_err("must fail");
    assert!(
        error.to_string().contains("ADMIN_TOKEN is required"),
        "{error}"
    );
}

#[test]
fn jwt_keys_keep_their_order_and_reject_short_secrets_without_echoing_them() {
    let keys = parse_jwt_keys(
        "new:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, old:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    )
    .expect("valid");
    assert_eq!(keys[0].0, "new");
    assert_eq!(
        keys[1].1.expose_secret(),
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
    );

    let error = parse_jwt_keys("k:short-secret").expect_err("too short");
    assert!(!error.to_string().contains("short-secret"), "{error}");
    assert!(parse_jwt_keys("bad kid!:0123456789abcdef0123456789abcdef").is_err());
    assert!(
        parse_jwt_keys(&format!("{KEY},{KEY}")).is_err(),
        "duplicate kid"
    );
}

#[test]
fn a_body_limit_too_small_for_valid_notes_is_refused() {
    let mut env = minimal();
    env.push(("MAX_BODY_BYTES", "65536"));
    let error = Settings::from_source(&source(&env)).expect_err("too small");
    assert!(
        error
            .to_string()
            .contains("MAX_BODY_BYTES must be at least"),
        "{error}"
    );
}

#[test]
fn the_admin_api_is_off_without_its_database_and_needs_a_token_with_it() {
    let settings = Settings::from_source(&source(&minimal())).expect("valid");
    assert!(settings.admin_api.is_none());

    let mut env = minimal();
    env.push(("ADMIN_DATABASE_URL", "postgres://admin@db/tenantry"));
    let error = Settings::from_source(&source(&env)).expect_err("no token");
    assert!(
        error.to_string().contains("ADMIN_TOKEN is required"),
        "{error}"
    );

    env.push(("ADMIN_TOKEN", "0123456789abcdef0123456789abcdef"));
    env.push(("DNS_RESOLVER", "127.0.0.1:5353"));
    let admin = Settings::from_source(&source(&env))
        .expect("valid")
        .admin_api
        .expect("enabled");
    assert_eq!(admin.ops.dns_resolver, Some(([127, 0, 0, 1], 5353).into()));
    assert!(admin.ops.analytics_database.is_none());
}

#[test]
fn the_cli_needs_the_admin_database_and_a_resolver_address_with_a_port() {
    let error = CliOpsSettings::from_source(&source(&[])).expect_err("no url");
    assert!(
        error.to_string().contains("ADMIN_DATABASE_URL is required"),
        "{error}"
    );
    let env = [
        ("ADMIN_DATABASE_URL", "postgres://admin@db/tenantry"),
        ("DNS_RESOLVER", "8.8.8.8"),
    ];
    let error = CliOpsSettings::from_source(&source(&env)).expect_err("no port");
    assert!(
        error
            .to_string()
            .contains("DNS_RESOLVER=\"8.8.8.8\" is invalid"),
        "{error}"
    );
    let settings = CliOpsSettings::from_source(&source(&env[..1])).expect("valid");
    assert_eq!(
        settings.ops.admin_database.statement_timeout,
        Duration::from_secs(600)
    );
}

#[test]
fn an_unknown_signup_mode_is_rejected() {
    let mut env = minimal();
    env.retain(|(k, _)| *k != "SIGNUP_MODE");
    env.push(("SIGNUP_MODE", "sometimes"));
    assert!(Settings::from_source(&source(&env)).is_err());
}

#[test]
fn the_release_ring_defaults_to_stable_and_deprecations_are_checked_by_name() {
    use crate::domain::{ApiVersion, Ring};
    let default = Settings::from_source(&source(&minimal())).expect("valid");
    assert_eq!(default.release.ring, Ring::Stable);
    assert!(default.release.deprecations.is_empty());

    let mut env = minimal();
    env.push(("RELEASE_RING", "canary"));
    env.push(("API_DEPRECATIONS", "2026-11-22:2026-12-07:2027-06-30"));
    let settings = Settings::from_source(&source(&env)).expect("valid");
    assert_eq!(settings.release.ring, Ring::Canary);
    let deprecation = settings.release.deprecation(ApiVersion::V2026_11_22);
    assert_eq!(
        deprecation.map(|d| d.sunset_on.to_string()).as_deref(),
        Some("2027-06-30")
    );
    assert!(settings.release.deprecation(ApiVersion::NEWEST).is_none());

    for (name, value, says) in [
        ("RELEASE_RING", "beta", "RELEASE_RING"),
        ("API_DEPRECATIONS", "2026-11-22", "API_DEPRECATIONS"),
        (
            "API_DEPRECATIONS",
            "2026-11-22:2026-12-07:2027-06-30,2026-11-22:2026-12-08:2027-07-30",
            "appears twice",
        ),
    ] {
        let mut env = minimal();
        env.push((name, value));
        let error = format!("{:#}", Settings::from_source(&source(&env)).unwrap_err());
        assert!(error.contains(says), "{name}={value}: {error}");
    }
}
