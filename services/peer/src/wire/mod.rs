//! The peer HTTP protocol, as both ends speak it: route paths, header names, and each message
//! with its one check. No I/O here: the serving side (`http`, `daemon`) and the client side
//! (`swarm::source`, `client::peer`) import these types, so an answer and its parse cannot
//! drift apart. The README's HTTP table documents the same routes.

pub mod blobs;
pub mod download;
pub mod files;
pub mod upload;

use serde::{Deserialize, Serialize};

/// Route templates (axum syntax). Metrics label requests by these and nothing else.
pub mod route {
    pub(crate) const FILES: &str = "/files";
    pub(crate) const FILE: &str = "/files/{name}";
    pub(crate) const UPLOAD: &str = "/upload";
    pub(crate) const HEALTHZ: &str = "/healthz";
    pub(crate) const METRICS: &str = "/metrics";
    pub(crate) const LEAVE: &str = "/leave";
    pub(crate) const BLOB: &str = "/blobs/{sha256}";
    pub(crate) const MANIFEST: &str = "/blobs/{sha256}/manifest";
    pub(crate) const BITFIELD: &str = "/blobs/{sha256}/bitfield";
    pub(crate) const PIECE: &str = "/blobs/{sha256}/pieces/{index}";
    pub(crate) const DOWNLOADS: &str = "/downloads";
    /// `DELETE`: cancel a download running here.
    pub(crate) const DOWNLOAD: &str = "/downloads/{sha256}";
    pub(crate) const DOWNLOAD_PAUSE: &str = "/downloads/{sha256}/pause";
    pub(crate) const DOWNLOAD_RESUME: &str = "/downloads/{sha256}/resume";
    /// The web page, its assets (one prefix), and the JSON it reads.
    pub(crate) const PAGE: &str = "/";
    pub(crate) const ASSET: &str = "/ui/{file}";
    pub(crate) const SESSION: &str = "/api/session";
    pub(crate) const STATUS: &str = "/api/status";
    pub(crate) const SHARE: &str = "/api/share";
    pub(crate) const SEARCH: &str = "/api/search";
    pub(crate) const TRANSFERS: &str = "/api/transfers";
    pub(crate) const EVENTS: &str = "/api/events";

    /// Every route a peer answers over HTTP/1.1 (gRPC health has its own service path).
    pub(crate) const ALL: &[&str] = &[
        FILES,
        FILE,
        UPLOAD,
        HEALTHZ,
        METRICS,
        LEAVE,
        BLOB,
        MANIFEST,
        BITFIELD,
        PIECE,
        DOWNLOADS,
        DOWNLOAD,
        DOWNLOAD_PAUSE,
        DOWNLOAD_RESUME,
        PAGE,
        ASSET,
        SESSION,
        STATUS,
        SHARE,
        SEARCH,
        TRANSFERS,
        EVENTS,
    ];
}

/// What a successful upload or download did to the destination: the one set of words the
/// upload answer, the download stream's last line and the client's output use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placed {
    Created,
    /// These bytes were already there under that name.
    Identical,
}

impl Placed {
    pub fn as_str(self) -> &'static str {
        match self {
            Placed::Created => "created",
            Placed::Identical => "identical",
        }
    }
}

impl std::fmt::Display for Placed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placed_words_are_the_wire_words() {
        for p in [Placed::Created, Placed::Identical] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
            assert_eq!(p.to_string(), p.as_str());
        }
        assert!(serde_json::from_str::<Placed>("\"conflict\"").is_err());
    }
}
