//! Sessions of the web page: with `auth.token` set, the page trades the token once for a random
//! session id kept in an `HttpOnly`, `SameSite=Strict` cookie, so that the token never sits in
//! the page's script and plain links (`/files/{name}`, "save as") carry the credential.
//!
//! Browsers scope cookies by host, not by port: every web server on this host receives the
//! cookie. So its name carries this peer's port (two peers on one host keep a session each,
//! and `__Host-` under TLS, which no other site can set), and a session is good only from the
//! client address that logged in: a copy replayed from elsewhere is refused.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

/// The cookie's name before the port: `p2p_session_5000`.
pub(crate) const COOKIE: &str = "p2p_session";
/// How long a session lasts from its login, whatever it does meanwhile.
pub(crate) const TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; past it, a login ends the oldest one.
const MAX_SESSIONS: usize = 1024;
const ID_BYTES: usize = 32;

struct Session {
    id: [u8; ID_BYTES],
    expires: Instant,
    /// The address that logged in (IPv4-mapped IPv6 as IPv4).
    client: IpAddr,
}

/// The live sessions of this process (a restart logs everyone out).
pub(crate) struct Sessions {
    live: Mutex<Vec<Session>>,
    /// This peer's cookie name.
    name: String,
    /// Cookies are `Secure` (and `__Host-`).
    secure: bool,
}

impl Sessions {
    /// Sessions of the peer listening on `port`; `secure` when it serves TLS.
    pub(crate) fn new(port: u16, secure: bool) -> Self {
        let prefix = if secure { "__Host-" } else { "" };
        Self {
            live: Mutex::default(),
            name: format!("{prefix}{COOKIE}_{port}"),
            secure,
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Vec<Session>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session; its id in the cookie's spelling (hex). `None` when the OS has no
    /// randomness to give, in which case there must be no session.
    pub(crate) fn create(&self, client: IpAddr) -> Option<String> {
        let mut id = [0u8; ID_BYTES];
        getrandom::fill(&mut id).ok()?;
        let now = Instant::now();
        let mut live = self.live();
        live.retain(|s| s.expires > now);
        if live.len() >= MAX_SESSIONS {
            live.remove(0);
        }
        live.push(Session {
            id,
            expires: now + TTL,
            client: client.to_canonical(),
        });
        Some(hex::encode(id))
    }

    /// Whether the request, from `client`, carries the cookie of a live session that client
    /// opened. Every live id is compared in constant time, so timing tells nothing about how
    /// much of an id matched.
    pub(crate) fn admits(&self, headers: &HeaderMap, client: Option<IpAddr>) -> bool {
        let presented = presented_ids(headers, &self.name);
        let Some(client) = client.map(|c| c.to_canonical()) else {
            return false;
        };
        if presented.is_empty() {
            return false;
        }
        let now = Instant::now();
        self.live()
            .iter()
            .filter(|s| s.expires > now && s.client == client)
            .fold(subtle::Choice::from(0), |ok, s| {
                presented
                    .iter()
                    .fold(ok, |ok, p| ok | s.id.as_slice().ct_eq(p.as_slice()))
            })
            .into()
    }

    /// Ends the sessions the request's cookies name.
    pub(crate) fn end(&self, headers: &HeaderMap) {
        let presented = presented_ids(headers, &self.name);
        self.live()
            .retain(|s| !presented.iter().any(|p| bool::from(s.id.ct_eq(p))));
    }

    #[cfg(test)]
    fn expire_all(&self) {
        let past = Instant::now() - Duration::from_secs(1);
        for s in self.live().iter_mut() {
            s.expires = past;
        }
    }
}

/// The session ids of the request's `Cookie` headers named `cookie` (well-formed ones only).
fn presented_ids(headers: &HeaderMap, cookie: &str) -> Vec<[u8; ID_BYTES]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            if name != cookie {
                return None;
            }
            let mut id = [0u8; ID_BYTES];
            hex::decode_to_slice(value, &mut id).ok()?;
            Some(id)
        })
        .collect()
}

impl Sessions {
    /// The `Set-Cookie` value that starts a session (`Secure` when the peer serves TLS).
    pub(crate) fn set_cookie(&self, id: &str) -> String {
        format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.name,
            TTL.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// The `Set-Cookie` value that ends it in the browser.
    pub(crate) fn clear_cookie(&self) -> String {
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            self.name,
            if self.secure { "; Secure" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(v).unwrap());
        h
    }

    const HOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    const COOKIE: &str = "p2p_session_5000";

    #[test]
    fn a_session_admits_its_cookie_until_it_ends_or_expires() {
        let s = Sessions::new(5000, false);
        let here = HOME.unwrap();
        let id = s.create(here).unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(s.create(here).unwrap(), id, "ids are random");
        let good = with_cookie(&format!("theme=dark; {COOKIE}={id}"));
        assert!(s.admits(&good, HOME));
        // Another id, a truncated one, another cookie name, no cookie: refused.
        let mut other = id.clone().into_bytes();
        other[0] = if other[0] == b'0' { b'1' } else { b'0' };
        let other = String::from_utf8(other).unwrap();
        assert!(!s.admits(&with_cookie(&format!("{COOKIE}={other}")), HOME));
        assert!(!s.admits(&with_cookie(&format!("{COOKIE}={}", &id[..62])), HOME));
        assert!(!s.admits(&with_cookie(&format!("x{COOKIE}={id}")), HOME));
        assert!(!s.admits(&with_cookie(&format!("p2p_session_5001={id}")), HOME));
        assert!(!s.admits(&HeaderMap::new(), HOME));
        // From another address, or none: refused.
        assert!(!s.admits(&good, Some("127.0.0.2".parse().unwrap())));
        assert!(!s.admits(&good, None));
        assert!(s.admits(&good, Some("::ffff:127.0.0.1".parse().unwrap())));
        s.end(&good);
        assert!(!s.admits(&good, HOME));
        let id = s.create(here).unwrap();
        let good = with_cookie(&format!("{COOKIE}={id}"));
        assert!(s.admits(&good, HOME));
        s.expire_all();
        assert!(
            !s.admits(&good, HOME),
            "expiry is the server's, whatever the browser keeps"
        );
    }

    #[test]
    fn cookies_are_http_only_strict_and_named_by_port() {
        let c = Sessions::new(5000, false).set_cookie("ab");
        assert!(c.starts_with("p2p_session_5000=ab;"), "{c}");
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Max-Age="));
        assert!(!c.contains("Secure"));
        let tls = Sessions::new(5001, true);
        assert!(
            tls.set_cookie("ab")
                .starts_with("__Host-p2p_session_5001=ab; Path=/;")
        );
        assert!(tls.set_cookie("ab").ends_with("; Secure"));
        assert!(
            Sessions::new(5000, false)
                .clear_cookie()
                .contains("Max-Age=0")
        );
    }
}
