//! Moving bytes between peers: rate limits, and who is served first when uploads are
//! contended (what each peer gave us, the choker's rule, the upload slots).

pub(crate) mod choker;
pub(crate) mod ledger;
pub(crate) mod limit;
pub(crate) mod slots;

use serde::{Deserialize, Serialize};

pub(crate) use limit::Direction;
pub use limit::{ByteRate, Limits};

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
