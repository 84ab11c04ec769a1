//! The one digest type of p2pshare: a SHA-256 value, as the tracker, the peers and their wire
//! forms carry it. Strings become a `Digest` once, where they enter a process (a gRPC field, an
//! HTTP path, a CLI argument, an index file), through the one check here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A raw SHA-256 digest. Shown and parsed as 64 lowercase hex digits (what `sha256sum` prints).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub const LEN: usize = 32;

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        // From a table into a buffer: `hex::encode` collects chars one at a time, which was a
        // few percent of a tracker Search's CPU (three digests per answered file).
        let mut buf = vec![0u8; 64];
        match hex::encode_to_slice(self.0, &mut buf) {
            Ok(()) => String::from_utf8(buf).unwrap_or_else(|_| hex::encode(self.0)),
            Err(_) => hex::encode(self.0),
        }
    }

    /// A field where the empty string means "none" (a `pieces_root` that was not announced).
    pub fn parse_optional(s: &str) -> Result<Option<Self>, BadDigest> {
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse().map(Some)
        }
    }

    /// The wire form of an optional digest: its hex, or the empty string for none.
    pub fn hex_or_empty(d: Option<&Self>) -> String {
        d.map(Digest::to_hex).unwrap_or_default()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // Always succeeds: the buffer is exactly twice the digest's length.
        match hex::encode_to_slice(self.0, &mut buf) {
            Ok(()) => f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 digest (64 lowercase hex digits): {0:?}")]
pub struct BadDigest(pub String);

impl FromStr for Digest {
    type Err = BadDigest;

    /// Lowercase only: the digest is an identity, and one identity must have one spelling.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadDigest(s.chars().take(80).collect());
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(Digest(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hex_round_trip_and_strict_parsing() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_hex(), EMPTY);
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(format!("{d:?}"), format!("Digest({EMPTY})"));
        assert!(EMPTY.to_uppercase().parse::<Digest>().is_err());
        assert!("abc".parse::<Digest>().is_err());
        assert!(format!("{EMPTY}0").parse::<Digest>().is_err());
        assert!(format!("{}g", &EMPTY[..63]).parse::<Digest>().is_err());
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{EMPTY}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"zz\"").is_err());
    }

    #[test]
    fn optional_fields_use_the_empty_string_for_none() {
        assert_eq!(Digest::parse_optional(""), Ok(None));
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(Digest::parse_optional(EMPTY), Ok(Some(d)));
        assert!(Digest::parse_optional("XYZ").is_err());
        assert_eq!(Digest::hex_or_empty(None), "");
        assert_eq!(Digest::hex_or_empty(Some(&d)), EMPTY);
    }
}
