//! Access tokens: every forged, stale, foreign or malformed token is the same
//! 401, and key rotation keeps tokens signed with the previous key valid.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    JWT_CURRENT, JWT_ISSUER, JWT_PREVIOUS, TestApp, TestTenant, expect_error, spawn_app,
};

/// Claims for `tenant`'s owner, valid unless a test changes them.
fn claims(tenant: &TestTenant) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "sub": tenant.owner_id,
        "tenant": tenant.id,
        "role": "owner",
        "iat": now,
        "exp": now + 600,
        "iss": JWT_ISSUER,
        "aud": format!("tenant:{}", tenant.id),
        "jti": Uuid::new_v4(),
    })
}

fn sign(
    claims: &Value,
    kid: Option<&str>,
    secret: &str,
    algorithm: Algorithm,
    typ: Option<&str>,
) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    header.typ = typ.map(str::to_owned);
    encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Signed exactly as the service signs, with the current key.
fn good(claims: &Value) -> String {
    sign(
        claims,
        Some(JWT_CURRENT.0),
        JWT_CURRENT.1,
        Algorithm::HS256,
        Some("at+jwt"),
    )
}

fn with(tenant: &TestTenant, change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut value = claims(tenant);
    change(value.as_object_mut().unwrap());
    value
}

async fn status_of_me(
    app: &TestApp,
    tenant: &TestTenant,
    authorization: &str,
) -> reqwest::Response {
    app.get(&tenant.host, "/api/me")
        .header("authorization", authorization)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_token_the_test_mints_like_the_service_is_accepted() {
    // The control for every rejection below: only the one defect differs.
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let response = status_of_me(&app, &acme, &format!("Bearer {}", good(&claims(&acme)))).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn forged_stale_and_foreign_tokens_are_all_401() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let globex = app.onboard("globex").await;
    let now = chrono::Utc::now().timestamp();

    let valid = good(&claims(&acme));
    let (header, rest) = valid.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let other_payload = URL_SAFE_NO_PAD.encode(claims(&globex).to_string());
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt","kid":"current"}"#);
    let flipped_signature = format!(
        "{}{}",
        &signature[..signature.len() - 2],
        if signature.ends_with("AA") {
            "BB"
        } else {
            "AA"
        }
    );

    let cases: Vec<(&str, String)> = vec![
        (
            "expired beyond the leeway",
            good(&with(&acme, |c| {
                c["exp"] = json!(now - 60);
                c["iat"] = json!(now - 4000);
            })),
        ),
        (
            "not yet valid",
            good(&with(&acme, |c| {
                c.insert("nbf".into(), json!(now + 3600));
            })),
        ),
        (
            "wrong issuer",
            good(&with(&acme, |c| {
                c["iss"] = json!("someone-else");
            })),
        ),
        (
            "no issuer",
            good(&with(&acme, |c| {
                c.remove("iss");
            })),
        ),
        (
            "wrong audience",
            good(&with(&acme, |c| {
                c["aud"] = json!(format!("tenant:{}", globex.id));
            })),
        ),
        (
            "no audience",
            good(&with(&acme, |c| {
                c.remove("aud");
            })),
        ),
        (
            "no expiry",
            good(&with(&acme, |c| {
                c.remove("exp");
            })),
        ),
        (
            "expiry as a string",
            good(&with(&acme, |c| {
                c["exp"] = json!("never");
            })),
        ),
        (
            "no subject",
            good(&with(&acme, |c| {
                c.remove("sub");
            })),
        ),
        (
            "tenant claim of another tenant",
            good(&with(&acme, |c| {
                c["tenant"] = json!(globex.id);
            })),
        ),
        ("alg none", format!("{none_header}.{payload}.")),
        (
            "payload swapped after signing",
            format!("{header}.{other_payload}.{signature}"),
        ),
        (
            "signature tampered",
            format!("{header}.{payload}.{flipped_signature}"),
        ),
        (
            "signed with an unknown secret",
            sign(
                &claims(&acme),
                Some(JWT_CURRENT.0),
                "an-attacker-secret-0123456789abcdef!!",
                Algorithm::HS256,
                Some("at+jwt"),
            ),
        ),
        (
            "unknown kid",
            sign(
                &claims(&acme),
                Some("retired"),
                JWT_CURRENT.1,
                Algorithm::HS256,
                Some("at+jwt"),
            ),
        ),
        (
            "kid with a path",
            sign(
                &claims(&acme),
                Some("../../etc/passwd"),
                JWT_CURRENT.1,
                Algorithm::HS256,
                Some("at+jwt"),
            ),
        ),
        (
            "no kid",
            sign(
                &claims(&acme),
                None,
                JWT_CURRENT.1,
                Algorithm::HS256,
                Some("at+jwt"),
            ),
        ),
        (
            "HS512 instead of HS256",
            sign(
                &claims(&acme),
                Some(JWT_CURRENT.0),
                JWT_CURRENT.1,
                Algorithm::HS512,
                Some("at+jwt"),
            ),
        ),
        (
            "not an access token (typ JWT)",
            sign(
                &claims(&acme),
                Some(JWT_CURRENT.0),
                JWT_CURRENT.1,
                Algorithm::HS256,
                Some("JWT"),
            ),
        ),
        ("garbage", "not.a.jwt".to_owned()),
        ("empty", String::new()),
    ];
    for (what, token) in cases {
        let response = status_of_me(&app, &acme, &format!("Bearer {token}")).await;
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer"),
            "{what}"
        );
        assert_eq!(
            expect_error(response, StatusCode::UNAUTHORIZED).await,
            "unauthorized",
            "{what}"
        );
    }
}

#[tokio::test]
async fn missing_or_malformed_authorization_headers_are_401() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    for header in [
        "",
        "Bearer",
        "Bearer ",
        "Basic YWxpY2U6c2VjcmV0",
        &acme.token,
        &format!("Token {}", acme.token),
    ] {
        let response = status_of_me(&app, &acme, header).await;
        assert_eq!(
            expect_error(response, StatusCode::UNAUTHORIZED).await,
            "unauthorized",
            "{header:?}"
        );
    }
    let none = app.get(&acme.host, "/api/me").send().await.unwrap();
    assert_eq!(
        expect_error(none, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
    let twice = app
        .get(&acme.host, "/api/me")
        .header("authorization", format!("Bearer {}", acme.token))
        .header("authorization", format!("Bearer {}", acme.token))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(twice, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
    // The scheme is case-insensitive (RFC 9110).
    let lower = status_of_me(&app, &acme, &format!("bearer {}", acme.token)).await;
    assert_eq!(lower.status(), StatusCode::OK);
}

#[tokio::test]
async fn tokens_signed_with_the_previous_key_stay_valid_during_rotation() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let previous = sign(
        &claims(&acme),
        Some(JWT_PREVIOUS.0),
        JWT_PREVIOUS.1,
        Algorithm::HS256,
        Some("at+jwt"),
    );
    let response = status_of_me(&app, &acme, &format!("Bearer {previous}")).await;
    assert_eq!(response.status(), StatusCode::OK);

    // New tokens are signed with the first key of JWT_KEYS.
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(acme.token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        header,
        json!({"alg": "HS256", "typ": "at+jwt", "kid": JWT_CURRENT.0})
    );
}

#[tokio::test]
async fn a_key_removed_from_the_configuration_no_longer_verifies() {
    let app = crate::helpers::spawn_app_with(|settings| settings.jwt.keys.truncate(1)).await;
    let acme = app.onboard("acme").await;
    let previous = sign(
        &claims(&acme),
        Some(JWT_PREVIOUS.0),
        JWT_PREVIOUS.1,
        Algorithm::HS256,
        Some("at+jwt"),
    );
    let response = status_of_me(&app, &acme, &format!("Bearer {previous}")).await;
    assert_eq!(
        expect_error(response, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
}

#[tokio::test]
async fn issued_tokens_carry_the_documented_claims() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let response: Value = app
        .post(&acme.host, "/api/login")
        .json(&json!({"username": "acme-owner", "password": "owner-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["token_type"], "Bearer");
    assert_eq!(response["expires_in"], 3600);
    let payload = response["token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["sub"], json!(acme.owner_id));
    assert_eq!(claims["tenant"], json!(acme.id));
    assert_eq!(claims["aud"], json!(format!("tenant:{}", acme.id)));
    assert_eq!(claims["iss"], JWT_ISSUER);
    assert_eq!(claims["role"], "owner");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
}

#[tokio::test]
async fn wrong_passwords_and_unknown_users_get_the_same_answer() {
    let app = spawn_app().await;
    let acme = app.onboard("acme").await;
    let attempt = async |username: &str, password: &str| {
        let response = app
            .post(&acme.host, "/api/login")
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    };
    let wrong_password = attempt("acme-owner", "not-the-password").await;
    let unknown_user = attempt("nobody-here", "owner-password").await;
    let impossible_user = attempt("x", "owner-password").await;
    assert_eq!(wrong_password.0, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password, unknown_user);
    assert_eq!(wrong_password, impossible_user);
    assert!(wrong_password.1.contains("invalid_credentials"));
    // Usernames are case-insensitive at login too.
    let token = app.login(&acme.host, "ACME-Owner", "owner-password").await;
    assert!(!token.is_empty());
}

/// Sends `count` wrong-password logins to acme at once, and returns each
/// answer with how long it took.
async fn concurrent_logins(
    app: &crate::helpers::TestApp,
    host: &str,
    count: usize,
) -> Vec<(reqwest::Response, std::time::Duration)> {
    let attempts: Vec<_> = (0..count)
        .map(|_| {
            let request = app
                .post(host, "/api/login")
                .json(&json!({"username": "acme-owner", "password": "wrong-password"}));
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let response = request.send().await.unwrap();
                (response, started.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for attempt in attempts {
        answers.push(attempt.await.unwrap());
    }
    answers
}

/// Checks that each answer is a 401 or a well-formed 503 `overloaded` that
/// came within `within`, and returns how many were 503s.
async fn count_shed(
    answers: Vec<(reqwest::Response, std::time::Duration)>,
    within: std::time::Duration,
) -> usize {
    let mut shed = 0;
    for (response, took) in answers {
        match response.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(took < within, "shed after {took:?}");
                assert_eq!(response.headers().get("retry-after").unwrap(), "1");
                assert_eq!(
                    expect_error(response, StatusCode::SERVICE_UNAVAILABLE).await,
                    "overloaded"
                );
                shed += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    shed
}

#[tokio::test]
async fn saturated_password_hashing_sheds_with_503_and_retry_after() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.password_hashing.concurrency = 1;
        settings.password_hashing.queue_timeout = std::time::Duration::from_millis(1);
    })
    .await;
    let acme = app.onboard("acme").await;
    let answers = concurrent_logins(&app, &acme.host, 12).await;
    assert!(
        count_shed(answers, std::time::Duration::from_secs(30)).await > 0,
        "with one hashing slot and a 1 ms queue, concurrent logins must be shed"
    );
}

#[tokio::test]
async fn logins_beyond_the_hashing_queue_are_shed_at_once() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.password_hashing.concurrency = 1;
        settings.password_hashing.max_queue = 2;
        // Long enough that only the queue's length can explain a fast 503.
        settings.password_hashing.queue_timeout = std::time::Duration::from_secs(30);
    })
    .await;
    let acme = app.onboard("acme").await;
    let answers = concurrent_logins(&app, &acme.host, 12).await;
    assert!(
        count_shed(answers, std::time::Duration::from_secs(10)).await > 0,
        "one hashing slot and two places in the queue cannot take 12 logins at once"
    );
}
