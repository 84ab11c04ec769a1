//! The network join token: a bearer token every tracker RPC (except health) and every peer
//! transfer must carry once one is configured. Several may be accepted at once, for rotation.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// `[auth]` of both services. No token configured: authentication is off (the local demo).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// A token accepted, and the one this process sends when `token_file` is not set.
    pub token: String,
    /// A file of tokens, one per line (blank lines and `#` comments ignored). All are accepted;
    /// the first is sent. Put the new token first and keep the old one while rotating.
    pub token_file: PathBuf,
    /// Require the token on `/metrics` too (health always stays open).
    pub protect_metrics: bool,
}

impl std::fmt::Debug for AuthConfig {
    // Never print a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "token",
                &if self.token.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("token_file", &self.token_file)
            .field("protect_metrics", &self.protect_metrics)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("auth.token_file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("auth.token_file {0} holds no token")]
    Empty(PathBuf),
    #[error("tokens must be printable ASCII without spaces")]
    BadToken,
}

/// The accepted tokens.
#[derive(Clone)]
pub struct Tokens {
    accepted: Vec<Vec<u8>>,
    send: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} accepted)", self.accepted.len())
    }
}

fn read_tokens(path: &Path) -> Result<Vec<String>, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::File {
        path: path.to_path_buf(),
        source,
    })?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    if tokens.is_empty() {
        return Err(AuthError::Empty(path.to_path_buf()));
    }
    Ok(tokens)
}

impl AuthConfig {
    /// The tokens, or None when authentication is off.
    pub fn tokens(&self) -> Result<Option<Tokens>, AuthError> {
        let mut list = Vec::new();
        if !self.token_file.as_os_str().is_empty() {
            list = read_tokens(&self.token_file)?;
        }
        if !self.token.is_empty() {
            list.push(self.token.clone());
        }
        if list.is_empty() {
            return Ok(None);
        }
        if list
            .iter()
            .any(|t| !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(AuthError::BadToken);
        }
        Ok(Some(Tokens {
            send: list[0].clone(),
            accepted: list.into_iter().map(String::into_bytes).collect(),
        }))
    }
}

/// The credentials of a `Bearer` authorization value. The scheme is case-insensitive and may
/// be followed by more than one space (RFC 9110 section 11.1, RFC 6750 section 2.1).
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";
    let (scheme, rest) = value.split_at_checked(SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) || rest.first() != Some(&b' ') {
        return None;
    }
    let start = rest.iter().position(|b| *b != b' ')?;
    Some(&rest[start..])
}

impl Tokens {
    /// The token this process presents.
    pub fn outgoing(&self) -> &str {
        &self.send
    }

    /// Whether an `Authorization` value carries an accepted bearer token. Every accepted token
    /// is compared in constant time, so timing tells nothing about which or how much matched.
    pub fn accepts_header(&self, value: Option<&[u8]>) -> bool {
        let Some(presented) = value.and_then(bearer_credentials) else {
            return false;
        };
        self.accepted
            .iter()
            .fold(subtle::Choice::from(0), |ok, t| {
                ok | t.as_slice().ct_eq(presented)
            })
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_rotate_and_compare() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# rotation\nnew-token\n\nold-token\n").unwrap();
        let cfg = AuthConfig {
            token_file: file,
            ..Default::default()
        };
        let t = cfg.tokens().unwrap().unwrap();
        assert_eq!(t.outgoing(), "new-token");
        assert!(t.accepts_header(Some(b"Bearer new-token")));
        assert!(t.accepts_header(Some(b"Bearer old-token")));
        assert!(!t.accepts_header(Some(b"Bearer new-toke")));
        assert!(!t.accepts_header(Some(b"new-token")));
        // The scheme is case-insensitive (RFC 9110); the token is not.
        assert!(t.accepts_header(Some(b"bearer new-token")));
        assert!(t.accepts_header(Some(b"BEARER old-token")));
        assert!(t.accepts_header(Some(b"bEaReR  new-token")));
        assert!(!t.accepts_header(Some(b"Bearer NEW-TOKEN")));
        assert!(!t.accepts_header(Some(b"Bearernew-token")));
        assert!(!t.accepts_header(Some(b"Basic new-token")));
        assert!(!t.accepts_header(Some(b"bearer ")));
        assert!(!t.accepts_header(None));
        assert!(AuthConfig::default().tokens().unwrap().is_none());
        let bad = AuthConfig {
            token: "has space".into(),
            ..Default::default()
        };
        assert!(matches!(bad.tokens(), Err(AuthError::BadToken)));
        assert!(!format!("{bad:?}").contains("space"));
    }
}
