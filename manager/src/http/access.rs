//! Who may use the API over TCP (HTTPS), and for what. A caller shows a bearer
//! token (the admin token, or the read-only one dashboards use) or a client
//! certificate from the cluster's CA (a manager's may do everything, any other
//! node's may only read). Failed attempts are counted per source address: past
//! [`MAX_FAILURES`] in [`WINDOW`] that address is turned away until the window
//! ends. Refusals are logged with the address, never with what was sent.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shoal_api::cluster::Cluster;
use shoal_pki::{Peer, Role};

use super::{Api, ApiError};

/// Failed authentications an address may make in a [`WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Read: `GET` and `HEAD`, except the paths that show secrets.
    ReadOnly,
    /// Everything.
    Admin,
}

/// Paths that show secrets (tokens): only for admins, even to read.
/// (`/swarm` is the Docker Engine API's, with the join tokens.)
const SECRET_PATHS: &[&str] = &["/v1/cluster/join-tokens", "/v1/cluster/api-token", "/swarm"];

/// The scope the caller's credentials give, if any: a token is compared in
/// constant time with both of the cluster's.
pub fn scope_of(cluster: &Cluster, token: Option<&str>, peer: Option<&Peer>) -> Option<Scope> {
    if let Some(t) = token {
        if !cluster.api_token.is_empty() && constant_time_eq(t.as_bytes(), cluster.api_token.as_bytes()) {
            return Some(Scope::Admin);
        }
        if !cluster.read_only_api_token.is_empty()
            && constant_time_eq(t.as_bytes(), cluster.read_only_api_token.as_bytes())
        {
            return Some(Scope::ReadOnly);
        }
        return None;
    }
    let cert = peer.and_then(|p| p.cert.as_ref())?;
    let s = &cert.subject;
    if s.cluster_id != cluster.id || cluster.ca.revoked_nodes.contains(&s.node_id) {
        return None;
    }
    Some(if s.role == Role::Manager { Scope::Admin } else { Scope::ReadOnly })
}

/// Whether `scope` allows `method` on `path`.
pub fn allows(scope: Scope, method: &Method, path: &str) -> bool {
    match scope {
        Scope::Admin => true,
        Scope::ReadOnly => {
            (method == Method::GET || method == Method::HEAD)
                && !SECRET_PATHS.iter().any(|p| path.starts_with(p))
        }
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Failed authentications by source address.
#[derive(Debug, Default)]
pub(crate) struct Failures(Mutex<HashMap<IpAddr, (Instant, u32)>>);

impl Failures {
    /// How long `ip` must still wait, if it failed too often.
    fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.0.lock().expect("failures lock");
        let (since, count) = map.get(&ip)?;
        let left = WINDOW.checked_sub(now.duration_since(*since)).filter(|l| !l.is_zero())?;
        (*count >= MAX_FAILURES).then_some(left)
    }

    /// Counts a failure of `ip`; returns the count in the current window.
    fn fail(&self, ip: IpAddr, now: Instant) -> u32 {
        let mut map = self.0.lock().expect("failures lock");
        if map.len() > 10_000 {
            map.retain(|_, (since, _)| now.duration_since(*since) < WINDOW);
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1
    }
}

/// The TCP listener's gate: the caller's scope must allow the call.
pub(super) async fn require_access(State(api): State<Api>, req: Request, next: Next) -> Response {
    match check(&api, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Whether the caller of `req` may make it: its token or certificate, and its
/// address's recent failures (the Docker Engine API's TCP listener uses it too).
pub(crate) fn check(api: &Api, req: &Request) -> Result<(), ApiError> {
    let peer = req.extensions().get::<Peer>().cloned();
    let ip = peer.as_ref().map(|p| p.addr.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let now = Instant::now();
    if let Some(wait) = api.failures.blocked(ip, now) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failures",
            format!("too many failed authentications from {ip}: wait {}s", wait.as_secs().max(1)),
        ));
    }
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let scope = api.manager.cluster().and_then(|c| scope_of(&c, token, peer.as_ref()));
    match scope {
        Some(s) if allows(s, req.method(), req.uri().path()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "these credentials may only read: use the admin API token or a manager's certificate",
        )),
        None => {
            let count = api.failures.fail(ip, now);
            tracing::warn!(client = %ip, failures = count, "refused an API call: no valid token or certificate");
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this listener needs the cluster's API token (`Authorization: Bearer <token>`; \
                 `shoal cluster api-token` on a manager shows it) or a client certificate from the cluster's CA",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        let mut c = crate::testing::cluster("c1");
        c.api_token = "SHAPI-1-admin".into();
        c.read_only_api_token = "SHRO-1-read".into();
        c.ca.revoked_nodes.insert("gone".into());
        c
    }

    fn peer(node: &str, role: Role, cluster: &str) -> Peer {
        Peer {
            addr: "127.0.0.1:9".parse().unwrap(),
            cert: Some(shoal_pki::CertInfo {
                subject: shoal_pki::Subject { node_id: node.into(), role, cluster_id: cluster.into() },
                not_before: 0,
                not_after: 1,
                issuer: String::new(),
                serial: String::new(),
            }),
        }
    }

    #[test]
    fn tokens_and_certificates_give_their_scopes() {
        let c = cluster();
        assert_eq!(scope_of(&c, Some("SHAPI-1-admin"), None), Some(Scope::Admin));
        assert_eq!(scope_of(&c, Some("SHRO-1-read"), None), Some(Scope::ReadOnly));
        assert_eq!(scope_of(&c, Some("SHRO-1-reaD"), None), None);
        assert_eq!(scope_of(&c, None, None), None);
        assert_eq!(scope_of(&c, None, Some(&peer("m", Role::Manager, "c1"))), Some(Scope::Admin));
        assert_eq!(scope_of(&c, None, Some(&peer("w", Role::Worker, "c1"))), Some(Scope::ReadOnly));
        assert_eq!(scope_of(&c, None, Some(&peer("m", Role::Manager, "c2"))), None, "another cluster");
        assert_eq!(scope_of(&c, None, Some(&peer("gone", Role::Manager, "c1"))), None, "revoked");
    }

    #[test]
    fn read_only_reads_everything_but_secrets() {
        assert!(allows(Scope::ReadOnly, &Method::GET, "/v1/services"));
        assert!(!allows(Scope::ReadOnly, &Method::POST, "/v1/services"));
        assert!(!allows(Scope::ReadOnly, &Method::DELETE, "/v1/services/web"));
        assert!(!allows(Scope::ReadOnly, &Method::GET, "/v1/cluster/join-tokens"));
        assert!(!allows(Scope::ReadOnly, &Method::GET, "/v1/cluster/api-token"));
        assert!(allows(Scope::Admin, &Method::POST, "/v1/cluster/api-token/rotate"));
    }

    #[test]
    fn failures_past_the_limit_turn_an_address_away_until_the_window_ends() {
        let f = Failures::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for i in 1..MAX_FAILURES {
            assert_eq!(f.fail(ip, t0), i);
            assert!(f.blocked(ip, t0).is_none());
        }
        f.fail(ip, t0);
        assert!(f.blocked(ip, t0).is_some());
        assert!(f.blocked("10.0.0.2".parse().unwrap(), t0).is_none(), "others are not affected");
        assert!(f.blocked(ip, t0 + WINDOW).is_none(), "the window ends");
        assert_eq!(f.fail(ip, t0 + WINDOW), 1, "a new window starts afresh");
    }
}
