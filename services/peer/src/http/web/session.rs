//! Sessions of the web page: with `auth.token` set, the page trades the token once for a random
//! session id kept in an `HttpOnly`, `SameSite=Strict` cookie, so that the token never sits in
//! the page's script and plain links (`/files/{name}`, "save as") carry the credential.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

pub(crate) const COOKIE: &str = "p2p_session";
/// How long a session lasts from its login, whatever it does meanwhile.
pub(crate) const TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; past it, a login ends the oldest one.
const MAX_SESSIONS: usize = 1024;
const ID_BYTES: usize = 32;

struct Session {
    id: [u8; ID_BYTES],
    expires: Instant,
}

/// The live sessions of this process (a restart logs everyone out).
#[derive(Default)]
pub(crate) struct Sessions {
    live: Mutex<Vec<Session>>,
}

impl Sessions {
    fn live(&self) -> std::sync::MutexGuard<'_, Vec<Session>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session; its id in the cookie's spelling (hex). `None` when the OS has no
    /// randomness to give, in which case there must be no session.
    pub(crate) fn create(&self) -> Option<String> {
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
        });
        Some(hex::encode(id))
    }

    /// Whether the request carries the cookie of a live session. Every live id is compared in
    /// constant time, so timing tells nothing about how much of an id matched.
    pub(crate) fn admits(&self, headers: &HeaderMap) -> bool {
        let presented = presented_ids(headers);
        if presented.is_empty() {
            return false;
        }
        let now = Instant::now();
        self.live()
            .iter()
            .filter(|s| s.expires > now)
            .fold(subtle::Choice::from(0), |ok, s| {
                presented
                    .iter()
                    .fold(ok, |ok, p| ok | s.id.as_slice().ct_eq(p.as_slice()))
            })
            .into()
    }

    /// Ends the sessions the request's cookies name.
    pub(crate) fn end(&self, headers: &HeaderMap) {
        let presented = presented_ids(headers);
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

/// The session ids of the request's `Cookie` headers (well-formed ones only).
fn presented_ids(headers: &HeaderMap) -> Vec<[u8; ID_BYTES]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            if name != COOKIE {
                return None;
            }
            let mut id = [0u8; ID_BYTES];
            hex::decode_to_slice(value, &mut id).ok()?;
            Some(id)
        })
        .collect()
}

/// The `Set-Cookie` value that starts a session (`Secure` when the peer serves TLS).
pub(crate) fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends it in the browser.
pub(crate) fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
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

    #[test]
    fn a_session_admits_its_cookie_until_it_ends_or_expires() {
        let s = Sessions::default();
        let id = s.create().unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(s.create().unwrap(), id, "ids are random");
        let good = with_cookie(&format!("theme=dark; {COOKIE}={id}"));
        assert!(s.admits(&good));
        // Another id, a truncated one, another cookie name, no cookie: refused.
        let mut other = id.clone().into_bytes();
        other[0] = if other[0] == b'0' { b'1' } else { b'0' };
        let other = String::from_utf8(other).unwrap();
        assert!(!s.admits(&with_cookie(&format!("{COOKIE}={other}"))));
        assert!(!s.admits(&with_cookie(&format!("{COOKIE}={}", &id[..62]))));
        assert!(!s.admits(&with_cookie(&format!("x{COOKIE}={id}"))));
        assert!(!s.admits(&HeaderMap::new()));
        s.end(&good);
        assert!(!s.admits(&good));
        let id = s.create().unwrap();
        let good = with_cookie(&format!("{COOKIE}={id}"));
        assert!(s.admits(&good));
        s.expire_all();
        assert!(
            !s.admits(&good),
            "expiry is the server's, whatever the browser keeps"
        );
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let c = set_cookie("ab", false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Max-Age="));
        assert!(!c.contains("Secure"));
        assert!(set_cookie("ab", true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
