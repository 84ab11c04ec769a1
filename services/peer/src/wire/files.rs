//! `GET /files`: the share by name.

use serde::Serialize;

use crate::share::Digest;

/// One entry of the `GET /files` answer, borrowed from the index it is written from.
#[derive(Debug, Serialize)]
pub(crate) struct FileJson<'a> {
    pub name: &'a str,
    pub size: u64,
    pub sha256: &'a Digest,
}
