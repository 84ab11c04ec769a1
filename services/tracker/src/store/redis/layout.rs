//! Values as the scripts write them, read back (`lua/common.lua` has the key layout). Digests
//! and roots are stored as hex, "" for no root; a value that does not parse was not written
//! by a tracker, so it is [`StoreError::Corrupt`], never a guess.

use p2p_common::Digest;

use crate::store::{FileKey, StoreError};

pub(super) fn digest(value: &str) -> Result<Digest, StoreError> {
    value
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("digest {value:?} is not 64 lowercase hex")))
}

/// A pieces_root as stored: hex, or "" when the peer announced none.
pub(super) fn root(value: &str) -> Result<Option<Digest>, StoreError> {
    Digest::parse_optional(value)
        .map_err(|_| StoreError::Corrupt(format!("pieces_root {value:?} is not 64 lowercase hex")))
}

/// A partial holding as the scripts write it: `size:root`.
pub(super) fn size_and_root(value: &str) -> Result<(u64, &str), StoreError> {
    let (size, root) = value.split_once(':').unwrap_or((value, ""));
    let size = size
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("holding {value:?} has no size")))?;
    Ok((size, root))
}

/// A member of the `keys` set: `name NUL sha256`.
pub(super) fn member(key: &FileKey) -> String {
    format!("{}\0{}", key.name, key.sha256)
}

pub(super) fn split_key(member: &str) -> Result<FileKey, StoreError> {
    let (name, sha) = member
        .split_once('\0')
        .ok_or_else(|| StoreError::Corrupt(format!("file key {member:?} has no digest")))?;
    Ok(FileKey {
        name: name.to_owned(),
        sha256: digest(sha)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_holdings_read_with_and_without_a_root() {
        assert_eq!(size_and_root("12").unwrap(), (12, ""));
        assert_eq!(size_and_root("12:").unwrap(), (12, ""));
        assert_eq!(size_and_root("12:ab").unwrap(), (12, "ab"));
        assert!(matches!(size_and_root("x:ab"), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn digests_read_as_written_and_anything_else_is_corrupt() {
        let d = Digest([0xab; 32]);
        let key = FileKey {
            name: "a.iso".into(),
            sha256: d,
        };
        assert_eq!(split_key(&member(&key)).unwrap(), key);
        assert_eq!(root("").unwrap(), None);
        assert_eq!(root(&d.to_hex()).unwrap(), Some(d));
        for bad in ["ab", &d.to_hex().to_uppercase()] {
            assert!(matches!(root(bad), Err(StoreError::Corrupt(_))));
            assert!(matches!(digest(bad), Err(StoreError::Corrupt(_))));
            assert!(matches!(
                split_key(&format!("a.iso\0{bad}")),
                Err(StoreError::Corrupt(_))
            ));
        }
        assert!(matches!(digest(""), Err(StoreError::Corrupt(_))));
    }
}
