//! Argon2id password hashing, kept off the async runtime and bounded.
//!
//! A hash takes ~50 ms of one core and 19 MiB (OWASP's minimum argon2id
//! parameters: m = 19 MiB, t = 2, p = 1), so it runs on the blocking pool,
//! behind a semaphore of `PASSWORD_HASH_CONCURRENCY` permits (by default half
//! the cores: a login flood must leave CPU for everything else). At most
//! `PASSWORD_HASH_MAX_QUEUE` logins wait for a permit; one more is shed at
//! once, and a waiting one that gets no permit within
//! `PASSWORD_HASH_QUEUE_TIMEOUT_MS` is shed too, both with a 503 and
//! `Retry-After`, so excess sign-ins are refused fast instead of queueing.
//! The permit moves into the blocking task, so a client that hangs up cannot
//! free its slot while the hash is still running.
//!
//! Logins for unknown users verify against a dummy hash, so they cost the same
//! time as a wrong password and do not reveal which usernames exist.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::{
    config::HashingSettings,
    domain::Password,
    error::{ApiError, Result},
};

/// OWASP Password Storage Cheat Sheet minimum for argon2id.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

/// Stored hashes asking for more than this are refused rather than computed,
/// so a corrupted or planted row cannot make a login allocate gigabytes.
const MAX_MEMORY_KIB: u32 = 256 * 1024;
const MAX_ITERATIONS: u32 = 16;
const MAX_PARALLELISM: u32 = 8;

/// Hashes and verifies passwords within the configured bounds.
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    /// Logins waiting for a permit now, and how many may.
    waiting: AtomicUsize,
    max_waiting: usize,
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// Prepares the hasher; computes the dummy hash once (one hash of CPU).
    pub fn new(settings: HashingSettings) -> anyhow::Result<Self> {
        let dummy_hash = hash_blocking(b"tenantry-dummy-password-for-unknown-users")
            .context("argon2 is unusable")?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(settings.concurrency)),
            queue_timeout: settings.queue_timeout,
            waiting: AtomicUsize::new(0),
            max_waiting: settings.max_queue,
            dummy_hash: dummy_hash.into(),
        })
    }

    /// Hashes a new password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
    pub async fn hash(&self, password: Password) -> Result<String> {
        self.on_blocking_pool(move || hash_blocking(password.expose()))
            .instrument(hashing_span("hash"))
            .await?
            .map_err(ApiError::Unexpected)
    }

    /// Checks `password` against `stored`, or against the dummy hash when the
    /// user does not exist (`None`), which always fails, in the same time.
    pub async fn verify(&self, password: Password, stored: Option<String>) -> Result<bool> {
        let user_exists = stored.is_some();
        let hash: Arc<str> = stored.map_or_else(|| Arc::clone(&self.dummy_hash), Arc::from);
        let matches = self
            .on_blocking_pool(move || verify_blocking(password.expose(), &hash))
            .instrument(hashing_span("verify"))
            .await?;
        Ok(user_exists && matches)
    }

    async fn on_blocking_pool<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        const BUSY: ApiError = ApiError::Busy("too many sign-ins in progress, retry shortly");
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let _place = QueuePlace::take(&self.waiting, self.max_waiting).ok_or(BUSY)?;
                let acquire = Arc::clone(&self.permits).acquire_owned();
                tokio::time::timeout(self.queue_timeout, acquire)
                    .await
                    .map_err(|_| BUSY)?
                    .context("the password hashing semaphore was closed")?
            }
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .context("password hashing task failed")
        .map_err(ApiError::Unexpected)
    }
}

/// The span of one argon2id computation (`hash` or `verify`), including the
/// wait for a hashing slot. It names the operation only, never the password
/// or the stored hash.
fn hashing_span(operation: &'static str) -> tracing::Span {
    tracing::info_span!(
        "password hashing",
        otel.name = format!("argon2id {operation}"),
        password.operation = operation,
    )
}

/// A place in the queue for a hashing permit, given back when dropped
/// (whether the wait ended with a permit, a timeout or a cancelled request).
struct QueuePlace<'a>(&'a AtomicUsize);

impl<'a> QueuePlace<'a> {
    /// A place, unless `max` are already taken.
    fn take(waiting: &'a AtomicUsize, max: usize) -> Option<Self> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now < max).then_some(now + 1)
            })
            .ok()
            .map(|_| Self(waiting))
    }
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn argon2() -> Argon2<'static> {
    // These constants are valid argon2 parameters; a failure is a programming error.
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &[u8]) -> anyhow::Result<String> {
    let hash = argon2()
        .hash_password(password)
        .map_err(|error| anyhow::anyhow!("argon2 hashing failed: {error}"))?;
    Ok(hash.to_string())
}

fn verify_blocking(password: &[u8], stored: &str) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else {
        tracing::error!("a stored password hash is not a valid PHC string");
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        tracing::error!("a stored password hash has invalid argon2 parameters");
        return false;
    };
    if params.m_cost() > MAX_MEMORY_KIB
        || params.t_cost() > MAX_ITERATIONS
        || params.p_cost() > MAX_PARALLELISM
    {
        tracing::error!(
            m = params.m_cost(),
            t = params.t_cost(),
            p = params.p_cost(),
            "refusing a stored hash with excessive parameters"
        );
        return false;
    }
    argon2().verify_password(password, &hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let hash = hash_blocking(b"correct horse").expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_blocking(b"correct horse", &hash));
        assert!(!verify_blocking(b"wrong horse", &hash));
    }

    #[test]
    fn hashes_with_excessive_parameters_are_refused_without_computing_them() {
        let hostile = "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        assert!(!verify_blocking(b"anything", hostile));
        assert!(!verify_blocking(b"anything", "not a phc string"));
    }
}
