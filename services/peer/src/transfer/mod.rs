//! Moving bytes between peers: rate limits, what downloads may take of the process and the
//! disk (`room`), and who is served first when uploads are contended (what each peer gave us,
//! the choker's rule, the upload slots).

pub(crate) mod choker;
pub(crate) mod ledger;
pub(crate) mod limit;
pub mod room;
pub(crate) mod shares;
pub(crate) mod slots;
pub(crate) mod tally;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use limit::Direction;
pub use limit::{ByteRate, Limits};
pub use room::{FreeSpace, Room};

/// The `[transfer]` section of the peer's configuration (DESIGN "Transfer limits"); the peer and
/// the CLI take the same keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferSection {
    /// Bytes per second this process sends over all its transfers; "0" is unlimited.
    pub upload_limit: ByteRate,
    /// Bytes per second this process receives over all its transfers; "0" is unlimited.
    pub download_limit: ByteRate,
    /// Holders one download uses at once.
    pub max_sources: usize,
    /// Downloads this process runs at once; more are refused (HTTP 507, exit code 7).
    pub max_concurrent_downloads: usize,
    /// Free space downloads leave on the file system they write to ("1GiB", "5%").
    pub min_free_space: FreeSpace,
    /// Partial downloads in the share untouched this long are removed (only by a serving peer).
    #[serde(with = "p2p_common::config::duration")]
    pub partial_ttl: Duration,
    /// Piece bodies this process sends at once; more wait, peers that gave us bytes lately
    /// first (see `choker`). 0: no cap.
    pub upload_slots: usize,
}

impl Default for TransferSection {
    fn default() -> Self {
        Self {
            upload_limit: ByteRate::UNLIMITED,
            download_limit: ByteRate::UNLIMITED,
            max_sources: 8,
            max_concurrent_downloads: 8,
            min_free_space: FreeSpace::Bytes(1 << 30),
            partial_ttl: Duration::from_secs(24 * 3600),
            upload_slots: 4,
        }
    }
}

impl TransferSection {
    /// The process's limiters: build once and share them with every transfer.
    pub fn limits(&self) -> Limits {
        Limits::new(self.upload_limit, self.download_limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_strict_keys() {
        let s: TransferSection = serde_json::from_str("{}").unwrap();
        assert_eq!(s, TransferSection::default());
        assert!(s.upload_limit.is_unlimited() && s.download_limit.is_unlimited());
        assert_eq!(s.max_sources, 8);
        assert_eq!(s.min_free_space, FreeSpace::Bytes(1 << 30));
        assert_eq!(s.partial_ttl, Duration::from_secs(86_400));
        let s: TransferSection =
            serde_json::from_str(r#"{"min_free_space":"5%","partial_ttl":"90m"}"#).unwrap();
        assert_eq!(s.min_free_space, FreeSpace::Percent(5));
        assert_eq!(s.partial_ttl, Duration::from_secs(5400));
        let err = serde_json::from_str::<TransferSection>(r#"{"min_free_space":"lots"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad free space"), "{err}");
        assert_eq!(s.upload_slots, 4);
        let s: TransferSection =
            serde_json::from_str(r#"{"upload_limit":"16MiB","download_limit":"500KiB"}"#).unwrap();
        assert_eq!(s.upload_limit.bytes_per_second(), 16 << 20);
        assert_eq!(s.download_limit.bytes_per_second(), 500 << 10);
        let err = serde_json::from_str::<TransferSection>(r#"{"upload_limt":"1MiB"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("upload_limt"), "{err}");
    }
}
