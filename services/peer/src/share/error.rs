//! The share modules' one error type.

use std::path::{Path, PathBuf};

use super::index::PieceIndex;

/// Errors of the share modules. They map onto the client's [`crate::error::Error`] so that a
/// bad piece exits with the integrity code and everything else with the generic failure.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file's length moved while it was being hashed: the digests would describe no file.
    #[error("{path}: changed while being hashed (expected {expected} bytes, read {read})")]
    Changed {
        path: PathBuf,
        expected: u64,
        read: u64,
    },
    /// A piece's bytes do not hash to the manifest's digest (or have the wrong length).
    #[error("piece {index}: {reason}")]
    BadPiece { index: PieceIndex, reason: String },
    /// A manifest that contradicts itself or the `pieces_root` it was fetched for.
    #[error("bad manifest: {0}")]
    BadManifest(String),
    /// A manifest of a piece hash this peer does not check (an older or newer peer's): not a
    /// lie, so its holder is not counted bad, only not used.
    #[error("manifest of another version: {0}")]
    OtherPieceHash(String),
    /// A persisted bitfield that cannot be trusted; the caller starts from no verified pieces.
    #[error("{path}: bitfield not trusted: {reason}")]
    UntrustedBitfield { path: PathBuf, reason: String },
    /// A wire-form bitfield of the wrong length or with bits past the last piece.
    #[error("bad bitfield: {0}")]
    BadBitfield(String),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ShareError + '_ {
    move |source| ShareError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl From<ShareError> for crate::error::Error {
    fn from(e: ShareError) -> Self {
        match e {
            ShareError::BadPiece { .. } | ShareError::BadManifest(_) => {
                crate::error::Error::Integrity(e.to_string())
            }
            other => crate::error::Error::Other(other.into()),
        }
    }
}
