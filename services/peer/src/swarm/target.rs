//! What a download is asked for, and where it reports how it goes.

use crate::share::Digest;
use crate::tracker::{Holder, Match};
use crate::wire::download::Event;

/// What to fetch.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub size: u64,
    pub sha256: Digest,
    /// The root the tracker returned with the file (`None`: not announced).
    pub pieces_root: Option<Digest>,
    pub holders: Vec<Holder>,
}

impl From<Match> for Target {
    fn from(m: Match) -> Self {
        Target {
            name: m.name,
            size: m.size,
            sha256: m.sha256,
            pieces_root: m.pieces_root,
            holders: m.holders,
        }
    }
}

/// Where a download reports how it goes: `Source`, `Progress` (verified bytes, sources in use),
/// `SourceFailed` and, at the end, `Verified`.
pub trait Report: Send + Sync {
    fn event(&self, e: Event);
}

impl<F: Fn(Event) + Send + Sync> Report for F {
    fn event(&self, e: Event) {
        self(e)
    }
}

/// Nothing shown: failed sources go to the log (the peer's own downloads, the client menu).
pub struct Logged;

impl Report for Logged {
    fn event(&self, e: Event) {
        if let Event::SourceFailed { peer, reason, .. } = e {
            tracing::warn!(%peer, "download attempt failed: {reason}");
        }
    }
}
