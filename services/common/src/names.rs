//! The naming rules of DESIGN.md, enforced the same way by the tracker and the peer.

use thiserror::Error;

pub const MAX_PEER_ID_LEN: usize = 64;
pub const MAX_FILE_NAME_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("peer id must not be empty")]
    EmptyPeerId,
    #[error("peer id is {0} characters long; at most {MAX_PEER_ID_LEN} are allowed")]
    PeerIdTooLong(usize),
    #[error("peer id may only contain A-Z, a-z, 0-9, '.', '_' and '-' (found {0:?})")]
    PeerIdChar(char),
    #[error("file name must not be empty")]
    EmptyFileName,
    #[error("file name is {0} bytes long; at most {MAX_FILE_NAME_BYTES} are allowed")]
    FileNameTooLong(usize),
    #[error("file name must not be \".\" or \"..\"")]
    DotName,
    #[error("file name must not contain {0}")]
    FileNameChar(&'static str),
    #[error("sha256 must be 64 lowercase hex characters")]
    BadDigest,
    #[error("address must be host:port with a port between 1 and 65535 (got {0:?})")]
    BadAddress(String),
}

/// `[A-Za-z0-9._-]{1,64}`.
pub fn validate_peer_id(id: &str) -> Result<(), NameError> {
    if id.is_empty() {
        return Err(NameError::EmptyPeerId);
    }
    let len = id.chars().count();
    if len > MAX_PEER_ID_LEN {
        return Err(NameError::PeerIdTooLong(len));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(NameError::PeerIdChar(c));
    }
    Ok(())
}

/// A flat file name: 1-255 bytes of UTF-8 with no separators, NUL or control characters, and
/// not `.` or `..`. Being flat is what keeps every request inside the share directory.
pub fn validate_file_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::EmptyFileName);
    }
    if name.len() > MAX_FILE_NAME_BYTES {
        return Err(NameError::FileNameTooLong(name.len()));
    }
    if name == "." || name == ".." {
        return Err(NameError::DotName);
    }
    for c in name.chars() {
        match c {
            '/' => return Err(NameError::FileNameChar("'/'")),
            '\\' => return Err(NameError::FileNameChar("'\\'")),
            '\0' => return Err(NameError::FileNameChar("NUL")),
            c if c.is_control() => return Err(NameError::FileNameChar("control characters")),
            _ => {}
        }
    }
    Ok(())
}

/// Lowercase hex SHA-256, as `sha256sum` prints it ([`crate::digest::Digest`]'s own check).
pub fn validate_digest(digest: &str) -> Result<(), NameError> {
    digest
        .parse::<crate::digest::Digest>()
        .map(|_| ())
        .map_err(|_| NameError::BadDigest)
}

/// `host:port` as other peers will dial it (a name or an IP, IPv6 in brackets).
pub fn validate_address(addr: &str) -> Result<(), NameError> {
    let bad = || NameError::BadAddress(addr.chars().take(80).collect());
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if port == 0 || !host_ok {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids() {
        assert!(validate_peer_id("peer_1").is_ok());
        assert!(validate_peer_id("p2pshare-peer-0.x").is_ok());
        assert_eq!(validate_peer_id(""), Err(NameError::EmptyPeerId));
        assert_eq!(
            validate_peer_id(&"a".repeat(65)),
            Err(NameError::PeerIdTooLong(65))
        );
        assert_eq!(validate_peer_id("a/b"), Err(NameError::PeerIdChar('/')));
        assert_eq!(validate_peer_id("a b"), Err(NameError::PeerIdChar(' ')));
        assert_eq!(validate_peer_id("pé"), Err(NameError::PeerIdChar('é')));
    }

    #[test]
    fn file_names() {
        assert!(validate_file_name("report 2024.pdf").is_ok());
        assert!(validate_file_name("ünïcødé-名前.txt").is_ok());
        assert!(validate_file_name(".hidden").is_ok());
        assert!(validate_file_name(&"x".repeat(255)).is_ok());
        assert_eq!(validate_file_name(""), Err(NameError::EmptyFileName));
        assert_eq!(validate_file_name("."), Err(NameError::DotName));
        assert_eq!(validate_file_name(".."), Err(NameError::DotName));
        assert_eq!(
            validate_file_name(&"x".repeat(256)),
            Err(NameError::FileNameTooLong(256))
        );
        // 128 two-byte characters are 256 bytes: the limit is in bytes.
        assert!(matches!(
            validate_file_name(&"é".repeat(128)),
            Err(NameError::FileNameTooLong(256))
        ));
        for bad in ["../etc/passwd", "a/b", "a\\b", "a\0b", "a\nb", "a\u{7f}b"] {
            assert!(validate_file_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn digests_and_addresses() {
        let d = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(validate_digest(d).is_ok());
        assert!(validate_digest(&d.to_uppercase()).is_err());
        assert!(validate_digest(&d[..63]).is_err());
        assert!(validate_address("127.0.0.1:5000").is_ok());
        assert!(validate_address("peer-0.peers.default.svc:5000").is_ok());
        assert!(validate_address("[::1]:5000").is_ok());
        for bad in [
            "",
            "host",
            "host:0",
            "host:99999",
            ":5000",
            "a b:1",
            "[zz]:1",
        ] {
            assert!(validate_address(bad).is_err(), "{bad:?} accepted");
        }
    }
}
