//! Who may use a route: the one rule every route that needs one goes through, as a layer.
//!
//! With `auth.token` set, every route but `/healthz` (and `/metrics` unless protected) needs an
//! accepted bearer token, wherever the client is. Without it, the share is open to anyone, as
//! the original peers were, but what makes this peer act for the caller is not: a download into
//! the share could fill the disk with whatever the network holds, and leaving stops the peer.
//! The web page's session cookie (`web::Sessions`) stands for the token, and no request that
//! changes something is taken from another site's page ([`cross_site`]), whatever it carries.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use p2p_common::auth::Tokens;

use super::error::ApiError;
use super::web::session::Sessions;

/// What a route lets its caller do, and so who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read the share, upload to it: anyone, with the token when authentication is on.
    Share,
    /// Make this peer act (download into its share): the token when authentication is on, else
    /// a client on this host.
    Act,
    /// Stop the peer: a client on this host, and with the token when authentication is on.
    Stop,
}

const BAD_TOKEN: &str = "missing or invalid bearer token (set auth.token or auth.token_file)";

/// Whether a client at `from` presenting `authorization` may call a route of `access`; `Err`
/// is the status and message to answer. (The layer checks the session cookie too, so it calls
/// [`admit_checked`]; this bearer-only form is how the tests state the rule.)
#[cfg(test)]
pub(crate) fn admit(
    tokens: Option<&Tokens>,
    authorization: Option<&[u8]>,
    from: Option<IpAddr>,
    access: Access,
) -> Result<(), (StatusCode, &'static str)> {
    admit_checked(
        tokens.map(|t| t.accepts_header(authorization)),
        from,
        access,
    )
}

/// [`admit`] once the credentials are checked: `authenticated` is `None` while authentication
/// is off, else whether the client presented an accepted token (or a session of the web page).
pub(crate) fn admit_checked(
    authenticated: Option<bool>,
    from: Option<IpAddr>,
    access: Access,
) -> Result<(), (StatusCode, &'static str)> {
    let local = from.is_some_and(|ip| ip.to_canonical().is_loopback());
    if authenticated == Some(false) {
        return Err((StatusCode::UNAUTHORIZED, BAD_TOKEN));
    }
    match access {
        Access::Share => Ok(()),
        Access::Act if authenticated.is_some() || local => Ok(()),
        Access::Act => Err((StatusCode::FORBIDDEN, ACT_LOCAL_ONLY)),
        Access::Stop if local => Ok(()),
        Access::Stop => Err((
            StatusCode::FORBIDDEN,
            "leave is only accepted from this host",
        )),
    }
}

pub(crate) const ACT_LOCAL_ONLY: &str = "this may be requested only from this host while authentication is off (set auth.token to allow other hosts with a token)";

/// Why a request that changes something is refused as coming from another site, if it is: a
/// browser says where a request comes from (`Sec-Fetch-Site`, else `Origin`), and a page of
/// another origin (another port included) must not make this peer act with the user's session
/// or from the user's loopback. Clients that are no browser send neither and are not affected.
pub(crate) fn cross_site(method: &Method, headers: &HeaderMap) -> Option<&'static str> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    const REFUSED: &str = "cross-site request refused: state-changing requests are accepted only from this peer's own page";
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => None,
            _ => Some(REFUSED),
        };
    }
    let origin = headers.get(header::ORIGIN)?;
    let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
    let authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, a)| a.as_bytes());
    if authority.is_some() && authority == host {
        None
    } else {
        Some(REFUSED)
    }
}

/// The layer form of [`admit`]: `from_fn_with_state((tokens, sessions, access), require)`.
/// The web page's session cookie counts as the token, and a cross-site request that changes
/// something is refused whatever it carries.
pub(crate) async fn require(
    State((tokens, sessions, access)): State<(Option<Tokens>, Arc<Sessions>, Access)>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(msg) = cross_site(req.method(), req.headers()) {
        return ApiError::new(StatusCode::FORBIDDEN, msg).into_response();
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let from = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let authenticated = tokens
        .as_ref()
        .map(|t| t.accepts_header(authorization) || sessions.admits(req.headers(), from));
    match admit_checked(authenticated, from, access) {
        Ok(()) => next.run(req).await,
        Err((status, msg)) => {
            let mut resp = ApiError::new(status, msg).into_response();
            if status == StatusCode::UNAUTHORIZED {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        let auth = p2p_common::auth::AuthConfig {
            token: "right-token-0123456789".into(),
            ..Default::default()
        };
        auth.tokens().unwrap().unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn without_auth_only_this_host_may_ask() {
        for addr in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(admit(None, None, ip(addr), Access::Act), Ok(()), "{addr}");
        }
        for addr in ["10.0.0.5", "192.168.1.2", "::ffff:10.0.0.5", "2001:db8::1"] {
            let (status, msg) = admit(None, None, ip(addr), Access::Act).unwrap_err();
            assert_eq!(status, StatusCode::FORBIDDEN, "{addr}");
            assert!(msg.contains("only from this host"), "{msg}");
            // The share itself stays open to anyone.
            assert_eq!(admit(None, None, ip(addr), Access::Share), Ok(()));
        }
        assert!(admit(None, None, None, Access::Act).is_err());
    }

    #[test]
    fn with_auth_the_token_decides_wherever_the_client_is() {
        let t = tokens();
        for addr in ["10.0.0.5", "127.0.0.1"] {
            for access in [Access::Share, Access::Act] {
                assert_eq!(
                    admit(
                        Some(&t),
                        Some(b"Bearer right-token-0123456789"),
                        ip(addr),
                        access
                    ),
                    Ok(())
                );
                assert_eq!(
                    admit(Some(&t), Some(b"Bearer wrong-token"), ip(addr), access)
                        .unwrap_err()
                        .0,
                    StatusCode::UNAUTHORIZED
                );
                // Loopback is no way around a configured token.
                assert_eq!(
                    admit(Some(&t), None, ip(addr), access).unwrap_err().0,
                    StatusCode::UNAUTHORIZED
                );
            }
        }
    }

    #[test]
    fn only_this_host_may_stop_the_peer_and_with_the_token() {
        let t = tokens();
        let good: Option<&[u8]> = Some(b"Bearer right-token-0123456789");
        assert_eq!(admit(None, None, ip("::1"), Access::Stop), Ok(()));
        assert_eq!(admit(Some(&t), good, ip("127.0.0.1"), Access::Stop), Ok(()));
        assert_eq!(
            admit(Some(&t), good, ip("10.0.0.5"), Access::Stop)
                .unwrap_err()
                .0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            admit(Some(&t), None, ip("127.0.0.1"), Access::Stop)
                .unwrap_err()
                .0,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn a_session_counts_as_the_token() {
        assert_eq!(
            admit_checked(Some(true), ip("10.0.0.5"), Access::Act),
            Ok(())
        );
        assert_eq!(
            admit_checked(Some(false), ip("127.0.0.1"), Access::Share)
                .unwrap_err()
                .0,
            StatusCode::UNAUTHORIZED
        );
        let (status, msg) = admit_checked(None, ip("10.0.0.5"), Access::Act).unwrap_err();
        assert_eq!((status, msg), (StatusCode::FORBIDDEN, ACT_LOCAL_ONLY));
    }

    #[test]
    fn only_this_peers_own_page_may_change_things_from_a_browser() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        let host = ("host", "127.0.0.1:5000");
        // No browser metadata (curl, the CLI): allowed; reads: always allowed.
        assert_eq!(cross_site(&Method::POST, &h(&[host])), None);
        let evil = h(&[host, ("origin", "http://evil.example")]);
        assert_eq!(cross_site(&Method::GET, &evil), None);
        for m in [Method::POST, Method::DELETE, Method::PUT] {
            assert!(cross_site(&m, &evil).is_some(), "{m}");
        }
        assert_eq!(
            cross_site(
                &Method::POST,
                &h(&[host, ("origin", "http://127.0.0.1:5000")])
            ),
            None
        );
        // Another port is another origin (and the same site, which SameSite does not cover).
        for bad in [
            h(&[host, ("origin", "http://127.0.0.1:5001")]),
            h(&[host, ("origin", "null")]),
            h(&[("origin", "http://127.0.0.1:5000")]),
            h(&[host, ("sec-fetch-site", "same-site")]),
            h(&[host, ("sec-fetch-site", "cross-site")]),
            // Sec-Fetch-Site is the browser's own word and wins over a matching Origin.
            h(&[
                host,
                ("origin", "http://127.0.0.1:5000"),
                ("sec-fetch-site", "cross-site"),
            ]),
        ] {
            assert!(cross_site(&Method::POST, &bad).is_some(), "{bad:?}");
        }
        for good in ["same-origin", "none"] {
            let m = h(&[host, ("sec-fetch-site", good)]);
            assert_eq!(cross_site(&Method::POST, &m), None, "{good}");
        }
    }
}
