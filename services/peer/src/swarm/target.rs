//! What a download is given: what to fetch ([`Target`]), where to report how it goes
//! ([`Report`]) and what it may use of its process ([`Swarm`]).

use std::sync::Arc;
use std::time::Duration;

use crate::net::Net;
use crate::share::Digest;
use crate::share::partial::Partials;
use crate::tracker::{Holder, Match};
use crate::transfer::{Limits, Room};
use crate::wire::download::Event;

/// Everything a download needs from its process. The CLI, the menu and the daemon build one
/// each and call [`Swarm::fetch`]; nothing else starts a download.
#[derive(Clone)]
pub struct Swarm {
    pub net: Net,
    /// Holders are refreshed from the tracker by digest while a download runs.
    pub tracker: Option<crate::tracker::Tracker>,
    /// The process's transfer limits (one bucket per direction, shared by all transfers).
    pub limits: Limits,
    /// Holders one download uses at once (`transfer.max_sources`).
    pub max_sources: usize,
    /// A source that sends nothing for this long loses its piece to another.
    pub io_timeout: Duration,
    /// The daemon's registry of downloads in progress: set, its verified pieces are served and
    /// announced while it downloads. `None` for the CLI, which serves nothing.
    pub partials: Option<Arc<Partials>>,
    pub metrics: Option<crate::metrics::Metrics>,
    /// An address never to fetch from (this peer's own).
    pub skip: Option<String>,
    /// What the process's downloads may take (`transfer.max_concurrent_downloads`,
    /// `transfer.min_free_space`), shared by all of them.
    pub room: Arc<Room>,
}

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
pub(crate) struct Logged;

impl Report for Logged {
    fn event(&self, e: Event) {
        if let Event::SourceFailed {
            peer, reason, bad, ..
        } = e
        {
            tracing::warn!(%peer, "{}", Event::source_fate(&reason, bad));
        }
    }
}
