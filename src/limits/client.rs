//! Per-client limits on the costly unauthenticated routes (login, register,
//! onboarding), keyed by the client's address.
//!
//! Which address is the client's depends on the ingress, so it is configured:
//! `TRUSTED_PROXY_HOPS` is the number of proxies in front of the service that
//! append to `X-Forwarded-For`. The client is the entry that many places from
//! the right; entries further left were sent by the client and prove nothing.
//!
//! | ingress                                   | `TRUSTED_PROXY_HOPS` | client address |
//! |-------------------------------------------|----------------------|----------------|
//! | none (local, or a TCP load balancer)      | 0                    | the TCP peer   |
//! | Cloud Run's own URL (Google Front End)    | 1                    | last XFF entry |
//! | global external Application Load Balancer -> Cloud Run | 2       | second to last |
//!
//! With fewer entries than hops (a request that skipped a proxy) the leftmost
//! entry is used: every entry was then added by a trusted proxy. Without any
//! entry, or if the chosen one is not an address, it is the TCP peer. IPv6
//! clients are keyed by their /64, which one subscriber usually holds whole.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use axum::http::HeaderMap;

use super::RequestLimiter;
use crate::{config::ClientLimitSettings, error::ApiError};

/// A costly route that clients are limited on, each in its own bucket.
pub trait CostlyRoute {
    /// The bucket's name.
    const NAME: &'static str;
}

/// `POST /api/login`.
#[derive(Debug)]
pub struct Login;
impl CostlyRoute for Login {
    const NAME: &'static str = "login";
}

/// `POST /api/register`.
#[derive(Debug)]
pub struct Register;
impl CostlyRoute for Register {
    const NAME: &'static str = "register";
}

/// `POST /api/tenants`.
#[derive(Debug)]
pub struct Onboarding;
impl CostlyRoute for Onboarding {
    const NAME: &'static str = "onboarding";
}

/// Requests per client address and route, per minute.
pub struct ClientLimiter {
    requests: RequestLimiter<(&'static str, IpAddr)>,
    trusted_proxy_hops: usize,
}

impl ClientLimiter {
    /// The limiter `settings` describe, for one of `instances` instances.
    pub fn new(settings: &ClientLimitSettings, instances: u32) -> Self {
        Self {
            requests: RequestLimiter::new(
                Duration::from_secs(60),
                settings.per_minute,
                settings.burst,
                instances,
            ),
            trusted_proxy_hops: settings.trusted_proxy_hops,
        }
    }

    /// Counts one request to `route` from the client of `headers` / `peer`.
    /// A forwarded entry that a trusted proxy should have written but is not
    /// an address is a 400: keying such requests on the proxy's own address
    /// would put every client in one bucket.
    pub fn admit(
        &self,
        route: &'static str,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<crate::domain::RateLimitStatus, ApiError> {
        match client_address(headers, peer, self.trusted_proxy_hops) {
            Ok(Some(client)) => self.requests.check(&(route, client_key(client))),
            Ok(None) => Err(ApiError::Unexpected(anyhow::anyhow!(
                // Our accept loop records every peer; only an in-process
                // caller could get here.
                "no client address to rate-limit on"
            ))),
            Err(MalformedForwardedFor) => Err(ApiError::BadRequest(
                "the X-Forwarded-For header is malformed".to_owned(),
            )),
        }
    }

    pub(super) fn sweep(&self) {
        self.requests.sweep();
    }

    pub(super) fn len(&self) -> usize {
        self.requests.len()
    }
}

/// The trusted proxy's entry in `X-Forwarded-For` is not an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedForwardedFor;

/// The client's address (see the module docs): `None` only without any
/// forwarded entry and without a peer.
pub fn client_address(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trusted_proxy_hops: usize,
) -> Result<Option<IpAddr>, MalformedForwardedFor> {
    let peer = peer.map(|peer| peer.ip());
    if trusted_proxy_hops == 0 {
        return Ok(peer);
    }
    // Repeated headers form one list, in order (RFC 9110 §5.3). Entries are
    // split as bytes: a client's non-ASCII entry must not hide the ones the
    // proxies appended after it.
    let entries: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.as_bytes().split(|byte| *byte == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    let chosen = match entries.len().checked_sub(trusted_proxy_hops) {
        Some(index) => entries.get(index),
        None => entries.first(),
    };
    match chosen {
        None => Ok(peer),
        Some(entry) => parse_entry(entry).map(Some).ok_or(MalformedForwardedFor),
    }
}

/// An address as proxies write it: bare, or with a port (`1.2.3.4:80`,
/// `[2001:db8::1]:443`).
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(entry).ok()?;
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|address| address.ip()))
        .ok()
}

/// The key a client is limited under: IPv4 as is, IPv6 by its /64 (an
/// IPv4-mapped IPv6 address is the IPv4 address).
fn client_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().expect("header value"));
        }
        headers
    }

    const PEER: &str = "10.0.0.1:4000";

    fn address(values: &[&str], hops: usize) -> Option<String> {
        client_address(&forwarded(values), PEER.parse().ok(), hops)
            .expect("well-formed")
            .map(|ip| ip.to_string())
    }

    #[test]
    fn the_client_is_the_entry_as_many_hops_from_the_right() {
        let cases: &[(&[&str], usize, &str)] = &[
            // No trusted proxy: XFF is the client's own claim, ignored.
            (&["1.1.1.1"], 0, "10.0.0.1"),
            // Cloud Run's front end appends the address it saw.
            (&["203.0.113.9"], 1, "203.0.113.9"),
            (&["1.1.1.1, 203.0.113.9"], 1, "203.0.113.9"),
            (&["1.1.1.1", "203.0.113.9"], 1, "203.0.113.9"),
            // Load balancer: client, then the forwarding rule's address.
            (&["1.1.1.1, 203.0.113.9, 34.1.2.3"], 2, "203.0.113.9"),
            (&["203.0.113.9, 34.1.2.3"], 2, "203.0.113.9"),
            // Fewer entries than hops: all were added by trusted proxies.
            (&["203.0.113.9"], 2, "203.0.113.9"),
            // No forwarded entry at all: the peer.
            (&[], 1, "10.0.0.1"),
            // The client's own garbage is to the left of what counts.
            (&["not-an-address, 203.0.113.9"], 1, "203.0.113.9"),
            // Ports and brackets as some proxies write them.
            (&["203.0.113.9:5555"], 1, "203.0.113.9"),
            (&["[2001:db8::1]:443"], 1, "2001:db8::1"),
        ];
        for (values, hops, expected) in cases {
            assert_eq!(
                address(values, *hops).as_deref(),
                Some(*expected),
                "{values:?} with {hops} hops"
            );
        }
    }

    #[test]
    fn a_malformed_trusted_entry_is_refused_whatever_the_client_sent_before_it() {
        let peer = PEER.parse().ok();
        let garbage = forwarded(&["1.1.1.1, not-an-address"]);
        assert_eq!(
            client_address(&garbage, peer, 1),
            Err(MalformedForwardedFor)
        );
        let mut non_ascii = HeaderMap::new();
        non_ascii.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff, 203.0.113.7").expect("opaque bytes are allowed"),
        );
        assert_eq!(
            client_address(&non_ascii, peer, 1),
            Ok(Some("203.0.113.7".parse().expect("v4")))
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("v6");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("v6");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("mapped");
        assert_eq!(
            client_key(mapped),
            "192.0.2.7".parse::<IpAddr>().expect("v4")
        );
    }
}
