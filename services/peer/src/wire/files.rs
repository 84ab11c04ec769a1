//! `GET /files`: the share by name.

use serde::{Deserialize, Serialize};

use crate::share::Digest;

/// One entry of the `GET /files` answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct FileJson {
    pub name: String,
    pub size: u64,
    pub sha256: Digest,
}
