//! What a download is asked for and how it reports progress. The download itself is
//! [`crate::swarm::Swarm::fetch`]: pieces from many holders, each verified, then the whole file.

use p2p_common::proto::{FileMatch, PeerInfo};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Characters left as they are in a path segment; everything else is percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn file_path(name: &str) -> String {
    format!("/files/{}", utf8_percent_encode(name, SEGMENT))
}

/// What to fetch.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Hex `pieces_root` the tracker returned with the file (empty: not announced).
    pub pieces_root: String,
    pub peers: Vec<PeerInfo>,
}

impl Target {
    pub fn from_match(m: FileMatch) -> Option<Self> {
        let f = m.file?;
        Some(Self {
            name: f.name,
            size: f.size,
            sha256: f.sha256,
            pieces_root: f.pieces_root,
            peers: m.peers,
        })
    }
}

/// Where a download reports how it goes (a progress bar or plain lines).
pub trait Progress: Send + Sync {
    fn attempt(&self, peer: &PeerInfo, total: u64, already: u64);
    fn advance(&self, bytes: u64);
    /// `integrity`: the bytes arrived but did not hash right.
    fn failed(&self, peer: &PeerInfo, why: &str, integrity: bool);
    fn done(&self);
    /// How many sources the download uses now (called when the number changes).
    fn sources(&self, _n: usize) {}
}

/// No output at all (the peer's own downloads).
pub struct Silent;

impl Progress for Silent {
    fn attempt(&self, _: &PeerInfo, _: u64, _: u64) {}
    fn advance(&self, _: u64) {}
    fn failed(&self, peer: &PeerInfo, why: &str, _: bool) {
        tracing::warn!(peer = %peer.peer_id, "download attempt failed: {why}");
    }
    fn done(&self) {}
}
