//! The index of a piece within one file's manifest.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Index of a piece within one file's manifest.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct PieceIndex(pub u32);

impl PieceIndex {
    pub(crate) fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for PieceIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
