//! Who may use a route: the one rule every route that needs one goes through, as a layer.
//!
//! With `auth.token` set, every route but `/healthz` (and `/metrics` unless protected) needs an
//! accepted bearer token, wherever the client is. Without it, the share is open to anyone, as
//! the original peers were, but what makes this peer act for the caller is not: a download into
//! the share could fill the disk with whatever the network holds, and leaving stops the peer.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use p2p_common::auth::Tokens;

use super::error::ApiError;

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
/// is the status and message to answer.
pub(crate) fn admit(
    tokens: Option<&Tokens>,
    authorization: Option<&[u8]>,
    from: Option<IpAddr>,
    access: Access,
) -> Result<(), (StatusCode, &'static str)> {
    let local = from.is_some_and(|ip| ip.to_canonical().is_loopback());
    if let Some(t) = tokens
        && !t.accepts_header(authorization)
    {
        return Err((StatusCode::UNAUTHORIZED, BAD_TOKEN));
    }
    match access {
        Access::Share => Ok(()),
        Access::Act if tokens.is_some() || local => Ok(()),
        Access::Act => Err((
            StatusCode::FORBIDDEN,
            "this may be requested only from this host while authentication is off (set auth.token to allow other hosts with a token)",
        )),
        Access::Stop if local => Ok(()),
        Access::Stop => Err((
            StatusCode::FORBIDDEN,
            "leave is only accepted from this host",
        )),
    }
}

/// The layer form of [`admit`]: `from_fn_with_state((tokens, access), require)`.
pub(crate) async fn require(
    State((tokens, access)): State<(Option<Tokens>, Access)>,
    req: Request,
    next: Next,
) -> Response {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let from = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    match admit(tokens.as_ref(), authorization, from, access) {
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
}
