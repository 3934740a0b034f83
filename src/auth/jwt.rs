//! Access tokens: HS256 JWTs bound to one tenant.
//!
//! A token carries `sub` (the user), `tenant`, `role`, `iat`, `exp`, `iss`,
//! a tenant-specific `aud` (`tenant:{id}`) and a `jti`. Verification pins the
//! algorithm to HS256 (so `alg: none` and algorithm confusion fail), requires
//! `exp`, `iss`, `aud` and `sub` (jsonwebtoken only requires `exp` by
//! default), allows 5 s of clock skew, and checks both the audience and the
//! `tenant` claim against the tenant the Host resolved to: a valid token for
//! tenant A is worthless on tenant B's host.
//!
//! Keys are identified by `kid`. The first key of `JWT_KEYS` signs; every key
//! verifies. To rotate, put a new key first and keep the old one until the
//! longest-lived token signed with it has expired.

use std::{collections::HashMap, time::Duration};

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Role, UserId};
use crate::{config::JwtSettings, domain::TenantId};

/// The `typ` header of our access tokens (RFC 9068), so no other kind of JWT
/// signed with the same key is accepted as one.
const TOKEN_TYPE: &str = "at+jwt";
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 5;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub tenant: Uuid,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    pub jti: Uuid,
}

/// A freshly minted token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: Duration,
}

/// Why a token was refused. Logged at debug level, never sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Malformed,
    WrongType,
    UnknownKey,
    Invalid,
    OtherTenant,
}

/// The signing key and every key tokens may be verified with.
pub struct JwtKeys {
    signing_kid: String,
    signing_key: EncodingKey,
    verifying_keys: HashMap<String, DecodingKey>,
    issuer: String,
    ttl: Duration,
}

impl JwtKeys {
    /// Loads the keys from settings; the first key signs.
    pub fn new(settings: &JwtSettings) -> anyhow::Result<Self> {
        let (signing_kid, signing_secret) = settings
            .keys
            .first()
            .ok_or_else(|| anyhow::anyhow!("JWT_KEYS is empty"))?;
        Ok(Self {
            signing_kid: signing_kid.clone(),
            signing_key: EncodingKey::from_secret(signing_secret.expose_secret().as_bytes()),
            verifying_keys: settings
                .keys
                .iter()
                .map(|(kid, secret)| {
                    (
                        kid.clone(),
                        DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                    )
                })
                .collect(),
            issuer: settings.issuer.clone(),
            ttl: settings.ttl,
        })
    }

    /// Mints an access token for `user` in `tenant`.
    pub fn mint(&self, user: UserId, tenant: TenantId, role: Role) -> anyhow::Result<IssuedToken> {
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(self.ttl.as_secs())?;
        let claims = Claims {
            sub: *user.as_uuid(),
            tenant: *tenant.as_uuid(),
            role,
            iat: now,
            exp: now + ttl,
            iss: self.issuer.clone(),
            aud: audience(tenant),
            jti: Uuid::new_v4(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.signing_kid.clone());
        header.typ = Some(TOKEN_TYPE.to_owned());
        let token = encode(&header, &claims, &self.signing_key)?;
        Ok(IssuedToken {
            token,
            expires_in: self.ttl,
        })
    }

    /// Verifies `token` for use on `tenant`'s host.
    pub fn verify(&self, token: &str, tenant: TenantId) -> Result<Claims, Rejection> {
        // The header is read unverified only to choose among our own keys.
        let header = decode_header(token).map_err(|_| Rejection::Malformed)?;
        if header.typ.as_deref() != Some(TOKEN_TYPE) {
            return Err(Rejection::WrongType);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.verifying_keys.get(kid))
            .ok_or(Rejection::UnknownKey)?;
        let claims = decode::<Claims>(token, key, &self.validation(tenant))
            .map_err(|_| Rejection::Invalid)?
            .claims;
        // Redundant with the audience, on purpose: two independent checks.
        if claims.tenant != *tenant.as_uuid() {
            return Err(Rejection::OtherTenant);
        }
        Ok(claims)
    }

    fn validation(&self, tenant: TenantId) -> Validation {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[audience(tenant)]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation
    }
}

/// The audience of tokens for `tenant`.
fn audience(tenant: TenantId) -> String {
    format!("tenant:{tenant}")
}
