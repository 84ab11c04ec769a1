//! A holder as a source of one download: what it has shown of itself, its measured rate and
//! how many block requests it is given at once.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{MAX_DEPTH, MIN_DEPTH, PIPELINE, RATE_WINDOW};
use crate::share::PieceIndex;
use crate::share::bitfield::Bitfield;
use crate::tracker::Holder;

/// How long a holder that answered busy rests first, and at most after busy answers in a row:
/// from about a block's time at a slow holder up to a few times the engine's tick.
const BUSY_FIRST: Duration = Duration::from_millis(250);
const BUSY_MOST: Duration = Duration::from_secs(2);

/// Bytes received so far by a block request: written by its fetch, read by the plan to tell a
/// slow source from a fast one.
#[derive(Debug, Default)]
pub struct Meter {
    bytes: AtomicU64,
}

impl Meter {
    pub fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Bytes a source delivered over the time it was busy: stretches of running requests, the
/// gaps between them left out.
///
/// The gaps are the downloader's own (it had nothing to ask, or asks once per round): a source
/// asked for two blocks at a time, which both came back within a round trip, was idle when it
/// was next asked, and a window started afresh then never grew to [`RATE_WINDOW`]. Such a
/// source kept no rate at all, so it ranked last among proven ones; traced at 300 simulated
/// hosts, a third of the holders sat idle with every downloader that knew them holding no rate
/// or one from a congested moment long ago.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    /// Start of the stretch running now, and the last block delivered in it.
    stretch: Instant,
    last: Instant,
    /// Busy time of the earlier stretches.
    busy: Duration,
    got: u64,
}

impl Window {
    fn new(now: Instant) -> Self {
        Window {
            stretch: now,
            last: now,
            busy: Duration::ZERO,
            got: 0,
        }
    }

    fn span(&self, now: Instant) -> Duration {
        self.busy + now.saturating_duration_since(self.stretch)
    }
}

/// A holder of the file, and what it has shown of itself so far.
#[derive(Debug)]
pub struct Source {
    pub peer: Holder,
    /// What it holds; `None` until asked (complete holders are taken to hold everything).
    pub has: Option<Bitfield>,
    pub(super) bitfield_at: Option<Instant>,
    pub(super) bitfield_pending: bool,
    /// Its last bitfield answer said it waits for news of pieces (`?after=N`).
    pub(super) have_waits: bool,
    /// When it last had the optimistic place among the sources in use.
    pub(super) optimistic_at: Option<Instant>,
    /// Bytes per second it delivers while busy (an exponential average over windows).
    pub(super) rate: Option<f64>,
    /// The window being measured (bytes over the time it was busy).
    pub(super) window: Option<Window>,
    /// Bytes of blocks it delivered so far.
    pub(super) delivered: u64,
    pub dropped: bool,
    /// Found to have sent bad data (named once).
    pub(super) blamed: bool,
    /// It has been asked for a block.
    pub(super) started: bool,
    /// Pieces it asked to be asked for later (it sent them more often than others).
    pub(super) deferred: BTreeSet<PieceIndex>,
    /// Pieces asked of it with `insist` (it may not defer them again).
    pub(super) insisted: BTreeSet<PieceIndex>,
    /// It answered busy (its upload queue was full): not asked again before this, and how
    /// many times in a row, for the back-off.
    pub(super) busy_until: Option<Instant>,
    pub(super) busy_streak: u32,
}

impl Source {
    pub(super) fn new(peer: Holder, pieces: u32) -> Self {
        let has = (!peer.partial).then(|| Bitfield::full(pieces));
        Source {
            peer,
            has,
            bitfield_at: None,
            bitfield_pending: false,
            have_waits: false,
            optimistic_at: None,
            rate: None,
            window: None,
            delivered: 0,
            dropped: false,
            blamed: false,
            started: false,
            deferred: BTreeSet::new(),
            insisted: BTreeSet::new(),
            busy_until: None,
            busy_streak: 0,
        }
    }

    /// It answered busy at `now`: it rests for [`BUSY_FIRST`], twice as long each time in a
    /// row up to [`BUSY_MOST`] (the answers to a pipeline of requests count once).
    pub(super) fn busy(&mut self, now: Instant) {
        if self.resting(now) {
            return;
        }
        let rest = BUSY_FIRST
            .saturating_mul(1 << self.busy_streak.min(8))
            .min(BUSY_MOST);
        self.busy_streak += 1;
        self.busy_until = Some(now + rest);
    }

    /// Whether it is not to be asked for blocks at `now` (it answered busy lately).
    pub(super) fn resting(&self, now: Instant) -> bool {
        self.busy_until.is_some_and(|t| now < t)
    }

    /// What to ask its bitfield after: the pieces it is known to hold, when it waits for news
    /// (else it is asked for its bitfield as it is).
    pub fn have_after(&self) -> Option<u32> {
        self.have_waits
            .then(|| self.has.as_ref().map(Bitfield::count))
            .flatten()
    }

    /// What it adds to the counts of holders per piece (`plan::counts`): its bitfield while it
    /// is live and known, and whether it counts as a partial holder that delivered a block.
    pub(super) fn counted(&self) -> (Option<Bitfield>, bool) {
        (
            self.has.as_ref().filter(|_| !self.dropped).cloned(),
            self.peer.partial && self.delivered > 0,
        )
    }

    /// `bytes` arrived at `now`: the rate is updated once the window is long enough.
    pub(super) fn record(&mut self, bytes: u64, now: Instant) {
        self.delivered += bytes;
        self.busy_streak = 0;
        let w = self.window.get_or_insert(Window::new(now));
        w.got += bytes;
        w.last = now;
        let span = w.span(now);
        if span >= RATE_WINDOW {
            let r = w.got as f64 / span.as_secs_f64();
            self.rate = Some(self.rate.map_or(r, |old| 0.7 * old + 0.3 * r));
            self.window = Some(Window::new(now));
        }
    }

    /// It is asked for a block at `now` after a time with no request running: the stretch
    /// before counts up to its last delivery, and a new one starts (time spent idle is not the
    /// source's slowness).
    pub(super) fn resume(&mut self, now: Instant) {
        match &mut self.window {
            Some(w) => {
                w.busy += w.last.saturating_duration_since(w.stretch);
                w.stretch = now;
                w.last = now;
            }
            None => self.window = Some(Window::new(now)),
        }
    }

    /// Block requests to keep running here: about [`PIPELINE`] of its rate.
    pub(super) fn depth(&self, block: u64) -> usize {
        let want = self
            .rate
            .map_or(0.0, |r| r * PIPELINE.as_secs_f64() / block as f64);
        (want.ceil() as usize).clamp(MIN_DEPTH, MAX_DEPTH)
    }
}
