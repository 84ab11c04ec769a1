//! DNS rebinding: a page on `rebind.attacker.test:PORT` whose name later resolves to this peer
//! reaches it as its own origin, so the browser's same-origin rules (and [`super::auth`]'s
//! cross-site rule, which compares `Origin` with `Host`) let its scripts read and act. Only
//! the `Host` header still names the attacker's site. So the page, its JSON and every request
//! a browser sends to change something are answered only under this peer's own names: an IP
//! address (a rebinding needs a name), `localhost`, the advertised host, and the names of
//! `peer.allowed_hosts`. Clients that are not browsers (the CLI, other peers) are not held to
//! it on the routes they use: they send no `Origin`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The names this peer answers the page and browser requests under.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hosts {
    /// Lower-cased, without a trailing dot.
    names: Vec<String>,
    /// `*` among the configured names: no check.
    any: bool,
}

/// The host part of a `Host` value (`name`, `name:port`, `[v6]:port`), lower-cased, without a
/// trailing dot.
fn host_part(value: &str) -> String {
    let host = if let Some(rest) = value.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match value.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => value,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl Hosts {
    pub(crate) fn new(allowed: &[String], advertised: &str) -> Self {
        let mut names = vec!["localhost".to_owned()];
        let any = allowed.iter().any(|n| n.trim() == "*");
        for n in allowed.iter().map(|n| host_part(n.trim())) {
            if !n.is_empty() && n != "*" {
                names.push(n);
            }
        }
        if !advertised.is_empty() {
            names.push(host_part(advertised));
        }
        names.sort();
        names.dedup();
        Self { names, any }
    }

    /// Whether a request that named `host` may reach the guarded routes.
    pub(crate) fn allows(&self, host: &str) -> bool {
        let h = host_part(host);
        self.any || h.parse::<IpAddr>().is_ok() || self.names.contains(&h)
    }
}

/// The page, its assets and its JSON are for browsers; so is any request that carries
/// `Origin` or `Sec-Fetch-Site` and changes something.
fn guarded(req: &Request) -> bool {
    let path = req.uri().path();
    if path == "/" || path.starts_with("/ui/") || path.starts_with("/api/") {
        return true;
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let browser =
        req.headers().contains_key(header::ORIGIN) || req.headers().contains_key("sec-fetch-site");
    changes && browser
}

/// The layer: `from_fn_with_state(hosts, check)`.
pub(crate) async fn check(State(hosts): State<Arc<Hosts>>, req: Request, next: Next) -> Response {
    if guarded(&req) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
        if let Some(host) = host
            && !hosts.allows(&host)
        {
            let name: String = host.chars().take(80).collect();
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{name:?} is not a name of this peer (add it to peer.allowed_hosts to use the page under it)"
                ),
            )
            .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_names_and_addresses_only() {
        let h = Hosts::new(&["Peer.Example.".into()], "peer-0.peers.svc:5000");
        for ok in [
            "localhost:5000",
            "LOCALHOST",
            "127.0.0.1:5000",
            "[::1]:5000",
            "10.1.2.3:5000",
            "peer.example:8080",
            "peer-0.peers.svc:5000",
            "peer-0.peers.svc.:5000",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in [
            "rebind.attacker.test:5000",
            "localhost.attacker.test",
            "peer.example.attacker.test",
            "",
        ] {
            assert!(!h.allows(bad), "{bad}");
        }
        assert!(Hosts::new(&["*".into()], "").allows("anything:1"));
    }
}
