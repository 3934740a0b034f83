//! The authorization matrix, driven by the OpenAPI document so that a new
//! route is covered the day it is added: every operation x identity x object,
//! with the exact expected status, nobody else's notes and no trace of the
//! other tenant in any body, and no change to a tenant the request had no right
//! to change.
//!
//! The app runs in the default sign-up mode (admin only), with the `/admin`
//! API on the same admin token. Identities:
//! anonymous; a member of A; the owner of A; a member of B; A's member token
//! sent to B's host; an expired token of A's member; the admin token. `/admin`
//! operations act on a third tenant, C (`{slug}`), and on a custom domain
//! added to C for the cell (`{domain}`), so A and B must not change. Objects
//! (for `{id}` paths): for notes, a note of A's member, of A's owner, of B's
//! member; for users, the caller, a colleague in A (created fresh, as removing
//! it must not remove a matrix identity), a user of B. Every author also has a
//! note from the start, so lists have something to leak. Operations marked
//! `x-tenantry-role: owner` answer 403 to anyone but the owner.
//! Bodies are the document's own examples; `username`, `email` and `slug` are
//! made unique per request so that creations do not collide.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    helpers::{BASE_DOMAIN, TestApp, TestTenant, spawn_app_with},
    openapi::{fetch_document, operations},
};

const ADMIN_TOKEN: &str = "matrix-admin-token-0123456789abcdefghij";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Identity {
    Anonymous,
    MemberOfA,
    OwnerOfA,
    MemberOfB,
    TokenOfAOnHostOfB,
    ExpiredTokenOfA,
    Admin,
}

const IDENTITIES: [Identity; 7] = [
    Identity::Anonymous,
    Identity::MemberOfA,
    Identity::OwnerOfA,
    Identity::MemberOfB,
    Identity::TokenOfAOnHostOfB,
    Identity::ExpiredTokenOfA,
    Identity::Admin,
];

/// Who wrote a note.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Author {
    MemberOfA,
    OwnerOfA,
    MemberOfB,
}

const AUTHORS: [Author; 3] = [Author::MemberOfA, Author::OwnerOfA, Author::MemberOfB];

/// What an `{id}` refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Object {
    NoteBy(Author),
    /// The caller's own user.
    OwnUser,
    /// Another user of tenant A.
    ColleagueUser,
    /// A user of tenant B.
    ForeignUser,
}

/// The objects an `{id}` path is exercised with.
fn objects_for(path: &str) -> Vec<Option<Object>> {
    if !path.contains("{id}") {
        return vec![None];
    }
    if path.starts_with("/v1/notes/") {
        return AUTHORS
            .into_iter()
            .map(|author| Some(Object::NoteBy(author)))
            .collect();
    }
    if path.starts_with("/v1/users/") {
        return vec![
            Some(Object::OwnUser),
            Some(Object::ColleagueUser),
            Some(Object::ForeignUser),
        ];
    }
    panic!("the matrix does not know what {path} refers to; teach objects_for")
}

/// The text of every note `author` writes, so a body that shows one is caught.
fn note_text(author: Author) -> String {
    format!("note written by {author:?}")
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
        // The user of the login operation's documented example, in A only.
        let example = serde_json::json!({"username": "alice", "email": "alice@acme.test", "password": "alice-demo-password"});
        let created = app
            .post(&a.host, "/api/register")
            .json(&example)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let expired_a = crate::helpers::expired_token(a.id, member_a.0);
        let world = Self {
            a,
            b,
            member_a,
            member_b,
            expired_a,
        };
        for author in AUTHORS {
            world.write_note(app, author).await;
        }
        world
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
            Identity::Admin => (&self.a.host, Some(ADMIN_TOKEN)),
        }
    }

    /// Which author an identity acts as, if its token is valid where it is sent.
    fn acts_as(identity: Identity) -> Option<Author> {
        match identity {
            Identity::MemberOfA => Some(Author::MemberOfA),
            Identity::OwnerOfA => Some(Author::OwnerOfA),
            Identity::MemberOfB => Some(Author::MemberOfB),
            _ => None,
        }
    }

    /// Creates a note by `author` and returns its id.
    async fn write_note(&self, app: &TestApp, author: Author) -> Uuid {
        let (tenant, token) = match author {
            Author::MemberOfA => (&self.a, &self.member_a.1),
            Author::OwnerOfA => (&self.a, &self.a.token),
            Author::MemberOfB => (&self.b, &self.member_b.1),
        };
        let body = serde_json::json!({ "content": note_text(author) });
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

    /// The id an object refers to for `identity`; notes and colleagues are
    /// created fresh, so destructive cells never consume shared fixtures.
    async fn object_id(
        &self,
        app: &TestApp,
        identity: Identity,
        object: Object,
        counter: usize,
    ) -> Uuid {
        match object {
            Object::NoteBy(author) => self.write_note(app, author).await,
            Object::OwnUser => match identity {
                Identity::OwnerOfA => self.a.owner_id,
                Identity::MemberOfB => self.member_b.0,
                _ => self.member_a.0,
            },
            Object::ColleagueUser => {
                app.register(&self.a.host, &format!("colleague{counter}"))
                    .await
                    .0
            }
            Object::ForeignUser => {
                app.register(&self.b.host, &format!("stranger{counter}"))
                    .await
                    .0
            }
        }
    }

    /// Text a response to `identity` on `host` must not contain: other
    /// authors' notes, and the other tenant's ids.
    fn forbidden(&self, identity: Identity, host: &str) -> Vec<String> {
        let actor = Self::acts_as(identity);
        let mut forbidden: Vec<String> = AUTHORS
            .into_iter()
            .filter(|a| Some(*a) != actor)
            .map(note_text)
            .collect();
        let (other, other_member) = if host == self.b.host {
            (&self.a, self.member_a.0)
        } else {
            (&self.b, self.member_b.0)
        };
        if host == self.a.host || host == self.b.host {
            forbidden.extend([
                other.id.to_string(),
                other.owner_id.to_string(),
                other_member.to_string(),
            ]);
        }
        forbidden
    }
}

/// The tenant `/admin` operations act on.
const ADMIN_TARGET: &str = "initech";

/// The exact status of an `/admin` operation: the admin token's, or 401.
fn expected_admin(operation_id: &str, identity: Identity, success: u16) -> u16 {
    if identity != Identity::Admin {
        return 401;
    }
    match operation_id {
        // C is active: a purge is refused until it is suspended.
        "purge_tenant" => 409,
        // Nobody published the domain's TXT record.
        "verify_domain" => 409,
        // 200 is documented for a replay; a fresh key-less request creates.
        "admin_create_tenant" => 201,
        _ => success,
    }
}

/// The exact status of a public (token-free) operation, by operation id. A
/// public operation missing here fails the test until its rule is written down.
fn expected_public(operation_id: &str, identity: Identity, host: &str, world: &World) -> u16 {
    match operation_id {
        // Tokens play no part; the body is unique, so each registration is new.
        "register" => 201,
        // The documented example user exists in A only.
        "login" if host == world.a.host => 200,
        "login" => 401,
        // SIGNUP_MODE=admin: only the admin token onboards.
        "create_tenant" if identity == Identity::Admin => 201,
        "create_tenant" => 401,
        "healthz" | "readyz" | "openapi_json" | "openapi_of_version" | "api_reference"
        | "api_reference_file" => 200,
        other => panic!("public operation {other} has no expected status in the matrix"),
    }
}

/// The exact status of an operation that requires a tenant's bearer token.
fn expected_secured(
    identity: Identity,
    success: u16,
    owner_only: bool,
    object: Option<Object>,
) -> u16 {
    let Some(actor) = World::acts_as(identity) else {
        return 401;
    };
    if owner_only && actor != Author::OwnerOfA {
        return 403;
    }
    match object {
        None => success,
        Some(Object::NoteBy(author)) if author == actor => success,
        Some(Object::NoteBy(_) | Object::ForeignUser) => 404,
        // Only the owner reaches user objects: it may not remove itself.
        Some(Object::OwnUser) => 409,
        Some(Object::ColleagueUser) => success,
    }
}

/// The operation's example body; in bodies that create something, `username`,
/// `email` and `slug` are made unique.
fn example_body(operation: &Value, counter: usize) -> Option<Value> {
    let mut body = operation["requestBody"]["content"]["application/json"]["example"].clone();
    if body.is_null() {
        return None;
    }
    // Only bodies that create something (sign-in refers to an existing user).
    if ["email", "slug", "domain"]
        .iter()
        .any(|key| body.get(key).is_some())
    {
        uniquify(&mut body, counter);
    }
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
                ("domain", Some(text)) => *field = Value::String(format!("m{counter}.{text}")),
                _ => uniquify(field, counter),
            }
        }
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
    let app = spawn_app_with(|settings| {
        settings.signup = tenantry::config::SignupMode::AdminOnly {
            admin_token: ADMIN_TOKEN.into(),
        };
        if let Some(api) = &mut settings.admin_api {
            api.token = ADMIN_TOKEN.into();
        }
    })
    .await;
    let world = World::build(&app).await;
    app.onboard(ADMIN_TARGET).await;
    let ops = app.ops();
    let document = fetch_document(&app).await;
    let mut counter = 0;
    let mut per_status: BTreeMap<u16, usize> = BTreeMap::new();

    for (method, path, operation) in operations(&document) {
        let operation_id = operation["operationId"].as_str().unwrap().to_owned();
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
        let owner_only = operation["x-tenantry-role"] == "owner";
        let admin_only = operation["security"] == serde_json::json!([{"admin": []}]);
        let objects = objects_for(&path);
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
                    Some(object) => path.replace(
                        "{id}",
                        &world
                            .object_id(&app, identity, *object, counter)
                            .await
                            .to_string(),
                    ),
                    None => path.clone(),
                };
                let concrete = concrete
                    .replace("{slug}", ADMIN_TARGET)
                    .replace("{file}", "swagger-ui.css")
                    .replace("{version}", "2026-11-22");
                let concrete = if concrete.contains("{domain}") {
                    let domain = format!("cell{counter}.initech.io");
                    ops.add_domain(ADMIN_TARGET, &domain, None).await.unwrap();
                    concrete.replace("{domain}", &domain)
                } else {
                    concrete
                };
                let before = fingerprints(&app, &world).await;

                let mut request = app.request(method.clone(), &host, &concrete);
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                if let Some(body) = example_body(&operation, counter) {
                    request = request.json(&body);
                }
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let text = response.text().await.unwrap();
                let cell = format!("{method} {path} as {identity:?} on {object:?}");

                let expected = if admin_only {
                    expected_admin(&operation_id, identity, success)
                } else if secured {
                    expected_secured(identity, success, owner_only, *object)
                } else {
                    expected_public(&operation_id, identity, &host, &world)
                };
                assert_eq!(status, expected, "{cell}: {text}");
                assert!(
                    operation["responses"].get(status.to_string()).is_some(),
                    "{cell}: undocumented {status}"
                );
                for marker in world.forbidden(identity, &host) {
                    assert!(
                        !text.contains(&marker),
                        "{cell}: the response shows what is not the caller's ({marker}): {text}"
                    );
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
                *per_status.entry(status).or_default() += 1;
            }
        }
    }
    // Every kind of answer the matrix exists to check actually happened.
    for status in [200, 201, 204, 401, 404, 409] {
        assert!(
            per_status.get(&status).is_some_and(|n| *n > 0),
            "no cell answered {status}: {per_status:?}"
        );
    }
}
