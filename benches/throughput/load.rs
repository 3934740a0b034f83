//! HTTP load: access tokens minted here, and closed-loop clients.
//!
//! Each of `clients` tasks has its own keep-alive connection and sends one
//! request after the other until the phase ends; every request picks a
//! tenant (uniformly or by Zipf), a note of that tenant and the note's
//! owner, and carries that tenant's `Host` and that user's token.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{
    Client, Method,
    header::{AUTHORIZATION, CONTENT_TYPE, HOST},
};
use serde::Serialize;
use uuid::Uuid;

use super::data::{self, Distribution, Spec, USERS_PER_TENANT};

/// The key the service verifies with (`JWT_KEYS=bench:<secret>`).
pub const JWT_KID: &str = "bench";
pub const JWT_SECRET: &str = "tenantry-throughput-bench-secret-0123456789abcdef";
/// The service's default `JWT_ISSUER`.
const JWT_ISSUER: &str = "tenantry";
/// Host names are `{slug}.{BASE_DOMAIN}`.
pub const BASE_DOMAIN: &str = "bench.test";
/// The content W3 creates and W4 writes (about 100 characters).
pub const CONTENT: &str = "benchmark note: lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// GET /api/notes/{id}
    W1,
    /// GET /api/notes (the newest 20)
    W2,
    /// POST /api/notes
    W3,
    /// PATCH /api/notes/{id}
    W4,
    /// 40 % W1, 40 % W2, 10 % W3, 10 % W4
    W5,
    /// POST /api/login
    W6,
}

impl Workload {
    pub const MEASURED: [Self; 5] = [Self::W1, Self::W2, Self::W3, Self::W4, Self::W5];
    /// The single-request workloads W5 mixes, with their weights.
    pub const MIX: [(Self, u32); 4] = [
        (Self::W1, 40),
        (Self::W2, 40),
        (Self::W3, 10),
        (Self::W4, 10),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::W1 => "W1",
            Self::W2 => "W2",
            Self::W3 => "W3",
            Self::W4 => "W4",
            Self::W5 => "W5",
            Self::W6 => "W6",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::W1 => "GET /api/notes/{id}",
            Self::W2 => "GET /api/notes (newest 20)",
            Self::W3 => "POST /api/notes",
            Self::W4 => "PATCH /api/notes/{id}",
            Self::W5 => "mix: 40% W1, 40% W2, 10% W3, 10% W4",
            Self::W6 => "POST /api/login (argon2id)",
        }
    }

    fn expected(self) -> u16 {
        if self == Self::W3 { 201 } else { 200 }
    }
}

/// One request's context: its tenant, note and user (1-based numbers).
#[derive(Debug, Clone, Copy)]
pub struct Pick {
    pub tenant: u32,
    pub note: i64,
    pub user: u32,
}

/// Picks tenants and notes as the dataset spreads them.
pub struct Picker {
    counts: Vec<i64>,
    /// Cumulative tenant probabilities (Zipf only).
    cdf: Option<Vec<f64>>,
}

impl Picker {
    pub fn new(spec: &Spec) -> Self {
        let cdf = match spec.distribution {
            Distribution::Uniform => None,
            Distribution::Zipf(s) => {
                let weights: Vec<f64> = (1..=spec.tenants).map(|t| f64::from(t).powf(-s)).collect();
                let total: f64 = weights.iter().sum();
                let mut acc = 0.0;
                Some(
                    weights
                        .iter()
                        .map(|w| {
                            acc += w / total;
                            acc
                        })
                        .collect(),
                )
            }
        };
        Self {
            counts: spec.counts(),
            cdf,
        }
    }

    pub fn pick(&self, rng: &mut Rng) -> Pick {
        let tenants = self.counts.len();
        let index = match &self.cdf {
            None => rng.below(tenants as u64) as usize,
            Some(cdf) => {
                let draw = rng.unit();
                cdf.partition_point(|p| *p < draw).min(tenants - 1)
            }
        };
        let count = self.counts.get(index).copied().unwrap_or(1).max(1);
        let note = 1 + rng.below(count.unsigned_abs()) as i64;
        Pick {
            tenant: u32::try_from(index + 1).unwrap_or(1),
            note,
            user: data::owner_of(note),
        }
    }
}

/// xorshift64*: fast, and good enough to pick tenants.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Serialize)]
struct Claims {
    sub: Uuid,
    tenant: Uuid,
    role: &'static str,
    iat: i64,
    exp: i64,
    iss: &'static str,
    aud: String,
    jti: Uuid,
}

/// `Bearer <token>` of every user, index `(t - 1) * U + (u - 1)`: the
/// claims and header the service mints (src/auth/jwt.rs).
pub fn mint_tokens(tenants: u32) -> anyhow::Result<Vec<String>> {
    let key = EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(JWT_KID.to_owned());
    header.typ = Some("at+jwt".to_owned());
    let now = chrono::Utc::now().timestamp();
    let mut tokens = Vec::with_capacity(tenants as usize * USERS_PER_TENANT as usize);
    for t in 1..=tenants {
        let tenant = data::tenant_id(t);
        for u in 1..=USERS_PER_TENANT {
            let claims = Claims {
                sub: data::user_id(t, u),
                tenant,
                role: if u == 1 { "owner" } else { "member" },
                iat: now,
                exp: now + 4 * 3600,
                iss: JWT_ISSUER,
                aud: format!("tenant:{tenant}"),
                jti: Uuid::new_v4(),
            };
            let token =
                jsonwebtoken::encode(&header, &claims, &key).context("could not mint a token")?;
            tokens.push(format!("Bearer {token}"));
        }
    }
    Ok(tokens)
}

/// What the clients need: the server, the dataset's picker and the tokens.
#[derive(Clone)]
pub struct Target {
    pub base: String,
    pub picker: Arc<Picker>,
    pub tokens: Arc<Vec<String>>,
}

/// One answered (or failed) request.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub micros: u32,
    /// HTTP status; 0 for no answer.
    pub status: u16,
    pub expected: bool,
    pub tenant: u32,
    pub workload: Workload,
}

/// The samples of one phase, and how long it took.
pub struct Phase {
    pub samples: Vec<Sample>,
    pub elapsed: Duration,
}

impl Phase {
    /// Requests answered as expected, per second.
    pub fn throughput(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn ok(&self) -> usize {
        self.samples.iter().filter(|s| s.expected).count()
    }

    pub fn errors(&self) -> usize {
        self.samples.len() - self.ok()
    }

    /// Sorted latencies (ms) of the expected answers, optionally of one tenant set.
    pub fn latencies(&self, keep: impl Fn(&Sample) -> bool) -> Vec<f64> {
        let mut sorted: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.expected && keep(s))
            .map(|s| f64::from(s.micros) / 1000.0)
            .collect();
        sorted.sort_by(f64::total_cmp);
        sorted
    }

    /// Up to five unexpected answers, for the report.
    pub fn error_examples(&self) -> String {
        let mut seen: Vec<String> = Vec::new();
        for sample in self.samples.iter().filter(|s| !s.expected) {
            let label = format!("{} {}", sample.workload.name(), sample.status);
            if !seen.contains(&label) {
                seen.push(label);
            }
            if seen.len() == 5 {
                break;
            }
        }
        seen.join(", ")
    }
}

pub fn http_client() -> anyhow::Result<Client> {
    Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("could not build the HTTP client")
}

/// Runs `workload` with `clients` closed-loop clients for `duration`.
pub async fn run(
    target: &Target,
    workload: Workload,
    clients: usize,
    duration: Duration,
    seed: u64,
) -> anyhow::Result<Phase> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client_number in 0..clients {
        let target = target.clone();
        let client = http_client()?;
        let mut rng =
            Rng::new(seed ^ (client_number as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93));
        tasks.spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let kind = match workload {
                    Workload::W5 => mix(&mut rng),
                    other => other,
                };
                let pick = target.picker.pick(&mut rng);
                let sent = Instant::now();
                let status = send(&client, &target, kind, pick).await;
                let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                samples.push(Sample {
                    micros,
                    status,
                    expected: status == kind.expected(),
                    tenant: pick.tenant,
                    workload: kind,
                });
            }
            samples
        });
    }
    let mut samples = Vec::new();
    while let Some(done) = tasks.join_next().await {
        samples.extend(done.context("a load client panicked")?);
    }
    Ok(Phase {
        samples,
        elapsed: started.elapsed(),
    })
}

fn mix(rng: &mut Rng) -> Workload {
    let mut roll = rng.below(100) as u32;
    for (workload, weight) in Workload::MIX {
        if roll < weight {
            return workload;
        }
        roll -= weight;
    }
    Workload::W1
}

/// The request of `workload` for `pick`, as (method, path, token?, body?).
pub fn request(
    target: &Target,
    workload: Workload,
    pick: Pick,
) -> (Method, String, Option<&str>, Option<String>) {
    let token = target
        .tokens
        .get((pick.tenant as usize - 1) * USERS_PER_TENANT as usize + (pick.user as usize - 1))
        .map(String::as_str);
    let note = || data::note_id(pick.tenant, pick.note);
    let content = || serde_json::json!({ "content": CONTENT }).to_string();
    match workload {
        Workload::W1 | Workload::W5 => (Method::GET, format!("/api/notes/{}", note()), token, None),
        Workload::W2 => (Method::GET, "/api/notes".to_owned(), token, None),
        Workload::W3 => (
            Method::POST,
            "/api/notes".to_owned(),
            token,
            Some(content()),
        ),
        Workload::W4 => (
            Method::PATCH,
            format!("/api/notes/{}", note()),
            token,
            Some(content()),
        ),
        Workload::W6 => {
            let body = serde_json::json!({ "username": data::username(pick.user), "password": data::USER_PASSWORD });
            (
                Method::POST,
                "/api/login".to_owned(),
                None,
                Some(body.to_string()),
            )
        }
    }
}

/// Sends one request and reads its whole answer; returns its status (0: none).
pub async fn send(client: &Client, target: &Target, workload: Workload, pick: Pick) -> u16 {
    let (method, path, token, body) = request(target, workload, pick);
    let mut builder = client
        .request(method, format!("{}{path}", target.base))
        .header(HOST, format!("{}.{BASE_DOMAIN}", data::slug(pick.tenant)));
    if let Some(token) = token {
        builder = builder.header(AUTHORIZATION, token);
    }
    if let Some(body) = body {
        builder = builder.header(CONTENT_TYPE, "application/json").body(body);
    }
    match builder.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.bytes().await {
                Ok(_) => status,
                Err(_) => 0,
            }
        }
        Err(_) => 0,
    }
}
