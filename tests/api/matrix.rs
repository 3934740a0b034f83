//! The authorization matrix, driven by the OpenAPI document so that a new
//! route is covered the day it is added: every operation x identity x object,
//! with the exact expected status, no trace of the other tenant in any body,
//! and no change to a tenant the request had no right to change.
//!
//! Identities: anonymous; a member of A; the owner of A; a member of B; A's
//! member token sent to B's host; an expired token of A's member.
//! Objects (for `{id}` paths): a note of A's member, of A's owner, of B's member.
//! Bodies are the document's own examples; `username`, `email` and `slug` are
//! made unique per request so that creations do not collide.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    helpers::{BASE_DOMAIN, TestApp, TestTenant, spawn_app},
    openapi::{fetch_document, operations},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Identity {
    Anonymous,
    MemberOfA,
    OwnerOfA,
    MemberOfB,
    TokenOfAOnHostOfB,
    ExpiredTokenOfA,
}

const IDENTITIES: [Identity; 6] = [
    Identity::Anonymous,
    Identity::MemberOfA,
    Identity::OwnerOfA,
    Identity::MemberOfB,
    Identity::TokenOfAOnHostOfB,
    Identity::ExpiredTokenOfA,
];

/// Whose note an `{id}` refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Author {
    MemberOfA,
    OwnerOfA,
    MemberOfB,
}

struct World {
    a: TestTenant,
    b: TestTenant,
    member_a: (Uuid, String),
    member_b: (Uuid, String),
    expired_a: String,
}

impl World {
    async fn build(app: &TestApp) -> Self {
        let a = app.onboard("acme").await;
        let b = app.onboard("globex").await;
        let member_a = app.register(&a.host, "anna").await;
        let member_b = app.register(&b.host, "bert").await;
        let expired_a = crate::helpers::expired_token(a.id, member_a.0);
        Self {
            a,
            b,
            member_a,
            member_b,
            expired_a,
        }
    }

    /// The host a request is sent to and the token it carries.
    fn credentials(&self, identity: Identity) -> (&str, Option<&str>) {
        match identity {
            Identity::Anonymous => (&self.a.host, None),
            Identity::MemberOfA => (&self.a.host, Some(&self.member_a.1)),
            Identity::OwnerOfA => (&self.a.host, Some(&self.a.token)),
            Identity::MemberOfB => (&self.b.host, Some(&self.member_b.1)),
            Identity::TokenOfAOnHostOfB => (&self.b.host, Some(&self.member_a.1)),
            Identity::ExpiredTokenOfA => (&self.a.host, Some(&self.expired_a)),
        }
    }

    /// Which owner an identity acts as, if its token is valid where it is sent.
    fn acts_as(identity: Identity) -> Option<Author> {
        match identity {
            Identity::MemberOfA => Some(Author::MemberOfA),
            Identity::OwnerOfA => Some(Author::OwnerOfA),
            Identity::MemberOfB => Some(Author::MemberOfB),
            Identity::Anonymous | Identity::TokenOfAOnHostOfB | Identity::ExpiredTokenOfA => None,
        }
    }

    /// Text that must never appear in a response to a request on `host`'s
    /// tenant: the other tenant's ids, slug and note contents.
    fn foreign_markers(&self, host: &str) -> Vec<String> {
        let other = if host == self.a.host {
            &self.b
        } else {
            &self.a
        };
        let other_member = if host == self.a.host {
            self.member_b.0
        } else {
            self.member_a.0
        };
        // Not the slug: example bodies (e.g. an email at acme.test) may carry it innocently.
        vec![
            other.id.to_string(),
            other.owner_id.to_string(),
            other_member.to_string(),
            format!("secret of {}", other.slug),
        ]
    }
}

/// Creates a fresh note for `owner` and returns its id.
async fn note_of(app: &TestApp, world: &World, owner: Author) -> Uuid {
    let (tenant, token) = match owner {
        Author::MemberOfA => (&world.a, &world.member_a.1),
        Author::OwnerOfA => (&world.a, &world.a.token),
        Author::MemberOfB => (&world.b, &world.member_b.1),
    };
    let body = serde_json::json!({ "content": format!("secret of {}", tenant.slug) });
    let response = app
        .call(Method::POST, &tenant.host, "/api/notes", token, Some(body))
        .await;
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The operation's example body, with `username`, `email` and `slug` made unique.
fn example_body(operation: &Value, counter: usize) -> Option<Value> {
    let mut body = operation["requestBody"]["content"]["application/json"]["example"].clone();
    if body.is_null() {
        return None;
    }
    uniquify(&mut body, counter);
    Some(body)
}

fn uniquify(value: &mut Value, counter: usize) {
    if let Some(object) = value.as_object_mut() {
        for (key, field) in object.iter_mut() {
            match (key.as_str(), field.as_str()) {
                ("username" | "slug", Some(text)) => {
                    *field = Value::String(format!("{text}{counter}"));
                }
                ("email", Some(text)) => *field = Value::String(format!("{counter}{text}")),
                _ => uniquify(field, counter),
            }
        }
    }
}

/// The exact status expected for a secured tenant operation.
fn expected_secured(identity: Identity, success: u16, object: Option<Author>) -> u16 {
    match (World::acts_as(identity), object) {
        (None, _) => 401,
        (Some(_), None) => success,
        (Some(actor), Some(owner)) if actor == owner => success,
        (Some(_), Some(_)) => 404,
    }
}

async fn fingerprints(app: &TestApp, world: &World) -> (String, String) {
    (
        app.fingerprint(world.a.id).await,
        app.fingerprint(world.b.id).await,
    )
}

#[tokio::test]
async fn every_operation_identity_and_object_gets_exactly_its_due() {
    let app = spawn_app().await;
    let world = World::build(&app).await;
    let document = fetch_document(&app).await;
    let mut counter = 0;
    let mut cells = 0;
    // Public operations must answer every identity the way they answer anonymous.
    let mut baselines: BTreeMap<(String, String), u16> = BTreeMap::new();

    for (method, path, operation) in operations(&document) {
        let success: u16 = operation["responses"]
            .as_object()
            .unwrap()
            .keys()
            .filter_map(|s| s.parse().ok())
            .filter(|s: &u16| *s < 300)
            .min()
            .unwrap();
        let secured = operation["security"].as_array().is_some_and(|r| {
            !r.is_empty() && r.iter().all(|r| r != &Value::Object(Default::default()))
        });
        let objects: Vec<Option<Author>> = if path.contains("{id}") {
            vec![
                Some(Author::MemberOfA),
                Some(Author::OwnerOfA),
                Some(Author::MemberOfB),
            ]
        } else {
            vec![None]
        };
        for identity in IDENTITIES {
            for object in &objects {
                counter += 1;
                let (tenant_host, token) = world.credentials(identity);
                let host = match operation["x-tenantry-host"].as_str() {
                    Some("tenant") => tenant_host.to_owned(),
                    Some("apex") => BASE_DOMAIN.to_owned(),
                    _ => "any-host.invalid".to_owned(),
                };
                let concrete = match object {
                    Some(owner) => {
                        path.replace("{id}", &note_of(&app, &world, *owner).await.to_string())
                    }
                    None => path.clone(),
                };
                let body = example_body(&operation, counter);
                let before = fingerprints(&app, &world).await;

                let mut request = app.request(method.clone(), &host, &concrete);
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                if let Some(body) = body {
                    request = request.json(&body);
                }
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let text = response.text().await.unwrap();
                let cell = format!("{method} {path} as {identity:?} on {object:?}");

                let expected = if secured {
                    expected_secured(identity, success, *object)
                } else {
                    *baselines
                        .entry((method.to_string(), format!("{host}{path}")))
                        .or_insert(status)
                };
                assert_eq!(status, expected, "{cell}: {text}");
                assert!(
                    operation["responses"].get(status.to_string()).is_some(),
                    "{cell}: undocumented {status}"
                );
                if host != "any-host.invalid" && host != BASE_DOMAIN {
                    for marker in world.foreign_markers(&host) {
                        assert!(
                            !text.contains(&marker),
                            "{cell}: the response shows the other tenant ({marker}): {text}"
                        );
                    }
                }
                let after = fingerprints(&app, &world).await;
                if status >= 400 {
                    assert_eq!(after, before, "{cell}: a refused request changed data");
                } else if host == world.a.host {
                    assert_eq!(after.1, before.1, "{cell}: tenant B changed");
                } else if host == world.b.host {
                    assert_eq!(after.0, before.0, "{cell}: tenant A changed");
                } else {
                    assert_eq!(after, before, "{cell}: a tenant changed");
                }
                cells += 1;
            }
        }
    }
    assert!(cells >= 100, "the matrix covered {cells} cells");
}
