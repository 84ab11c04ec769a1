//! The download's plan: which holder is asked for which piece, and what is on the way.
//!
//! Pure: no sockets, no disk and no clock of its own (time comes in as `now`), so each rule is
//! tested here without a network. The event loop (`engine`) does the I/O and tells the plan what
//! came back; the plan answers with what to start or cancel.
//!
//! One record per request ([`Request`]) is all there is of "in flight": the picker's view, the
//! requests each source runs and the pieces being checked are all read from it, so they cannot
//! disagree. A source has one id, its [`SourceId`], the index of its [`Source`].

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::picker::{self, InFlight, SourceId, View};
use crate::share::PieceIndex;
use crate::share::bitfield::Bitfield;
use crate::tracker::Holder;

/// In endgame, at most this many sources fetch one piece.
const ENDGAME_COPIES: usize = 2;
/// Piece requests one source may have running at once.
const PER_SOURCE: usize = 2;
/// Beyond one request per source, no more than this many requests in all.
const REQUEST_BUDGET: usize = 8;
/// Partial holders' bitfields are refreshed this often: they grow while we download, and a
/// piece they have is one the complete holders need not send (a few bytes per second each).
const BITFIELD_EVERY: Duration = Duration::from_secs(1);

/// What the plan is given by its process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// Holders used at once (`transfer.max_sources`).
    pub max_sources: usize,
    /// A request this old that is far slower than an idle source is fetched there too.
    pub io_timeout: Duration,
    /// Pieces checked at once: while the checks lag behind, no new piece is asked for.
    pub check_slots: usize,
    /// Breaks the picker's ties (see `picker`).
    pub seed: u64,
}

/// Bytes received so far by a piece request: written by its fetch, read by the plan to tell a
/// slow source from a fast one.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    bytes: AtomicU64,
}

impl Meter {
    pub(super) fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// A holder of the file, and what it has shown of itself so far.
#[derive(Debug)]
pub(crate) struct Source {
    pub peer: Holder,
    /// What it holds; `None` until asked (complete holders are taken to hold everything).
    pub has: Option<Bitfield>,
    bitfield_at: Option<Instant>,
    bitfield_pending: bool,
    /// Bytes per second over its finished pieces (an exponential average).
    rate: Option<f64>,
    pub dropped: bool,
    /// It has been asked for a piece.
    started: bool,
    /// Pieces it asked to be asked for later (it sent them more often than others).
    deferred: BTreeSet<PieceIndex>,
}

impl Source {
    fn new(peer: Holder, pieces: u32) -> Self {
        let has = (!peer.partial).then(|| Bitfield::full(pieces));
        Source {
            peer,
            has,
            bitfield_at: None,
            bitfield_pending: false,
            rate: None,
            dropped: false,
            started: false,
            deferred: BTreeSet::new(),
        }
    }

    fn record_rate(&mut self, bytes: u64, took: Duration) {
        let r = bytes as f64 / took.as_secs_f64().max(1e-3);
        self.rate = Some(match self.rate {
            Some(old) => 0.7 * old + 0.3 * r,
            None => r,
        });
    }
}

#[derive(Debug)]
enum Stage<H> {
    /// The bytes are on the way; `handle` cancels the fetch.
    Fetching {
        handle: H,
        meter: Arc<Meter>,
        started: Instant,
    },
    /// The bytes are in and being checked: nobody else needs to fetch this piece now.
    Checking,
}

/// One piece asked of one source, until it is verified, fails or is cancelled.
#[derive(Debug)]
struct Request<H> {
    source: SourceId,
    piece: PieceIndex,
    stage: Stage<H>,
}

/// A piece request to start: the engine fetches `piece` from `source` and returns what cancels
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ask {
    pub source: SourceId,
    pub piece: PieceIndex,
    /// The holder deferred this piece before: it may not again (see `http::seeding`).
    pub insist: bool,
    /// The first piece asked of this source.
    pub first: bool,
}

/// What came back from a piece request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fetched {
    /// Every byte, to be checked.
    Bytes { len: u64, took: Duration },
    /// The holder sends less served pieces first: asked again later, with `insist`.
    Deferred,
    /// The holder does not have it (404).
    NotHeld,
    /// Anything else: the source is dropped.
    Failed,
}

/// What a received piece's check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    /// Verified and written.
    Verified,
    /// Another copy was verified first.
    AlreadyHad,
    /// It does not match the manifest: the source is dropped.
    Bad,
}

/// What the engine does after telling the plan what came back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<H> {
    /// The request had already been cancelled or its source dropped: nothing to do.
    Stale,
    /// Nothing beyond the next round of asks.
    Continue,
    /// Check the bytes that came (`Fetched::Bytes`).
    Check,
    /// The piece is in: cancel these other copies of it.
    Cancel(Vec<H>),
    /// The source is dropped: cancel its requests and report why.
    Dropped(Vec<H>),
}

/// Sources, requests and when progress was last seen, for one download.
#[derive(Debug)]
pub(crate) struct Plan<H> {
    pieces: u32,
    tuning: Tuning,
    sources: Vec<Source>,
    /// Addresses that are or were sources (or must never be): a refresh adds only new ones.
    known: HashSet<String>,
    requests: Vec<Request<H>>,
    last_progress: Instant,
}

impl<H> Plan<H> {
    pub(super) fn new(pieces: u32, tuning: Tuning, now: Instant) -> Self {
        Plan {
            pieces,
            tuning,
            sources: Vec::new(),
            known: HashSet::new(),
            requests: Vec::new(),
            last_progress: now,
        }
    }

    /// Addresses never to use as sources (this peer's own, holders that already failed).
    pub(super) fn exclude(&mut self, addresses: impl IntoIterator<Item = String>) {
        self.known.extend(addresses);
    }

    /// Holders not seen before become sources; returns how many.
    pub(super) fn add_holders(&mut self, peers: impl IntoIterator<Item = Holder>) -> usize {
        let mut added = 0;
        for p in peers {
            if self.known.insert(p.address.clone()) {
                self.sources.push(Source::new(p, self.pieces));
                added += 1;
            }
        }
        added
    }

    pub(super) fn source(&self, id: SourceId) -> &Source {
        &self.sources[id.0 as usize]
    }

    fn source_mut(&mut self, id: SourceId) -> &mut Source {
        &mut self.sources[id.0 as usize]
    }

    fn ids(&self) -> impl Iterator<Item = SourceId> + use<H> {
        (0..self.sources.len() as u32).map(SourceId)
    }

    /// Piece requests `source` has running.
    fn fetching(&self, source: SourceId) -> usize {
        self.requests
            .iter()
            .filter(|r| r.source == source && matches!(r.stage, Stage::Fetching { .. }))
            .count()
    }

    fn fetching_total(&self) -> usize {
        self.requests
            .iter()
            .filter(|r| matches!(r.stage, Stage::Fetching { .. }))
            .count()
    }

    fn checking(&self) -> BTreeSet<PieceIndex> {
        self.requests
            .iter()
            .filter(|r| matches!(r.stage, Stage::Checking))
            .map(|r| r.piece)
            .collect()
    }

    /// Pieces whose bytes are in and still being checked.
    pub(super) fn is_checking(&self) -> bool {
        self.requests
            .iter()
            .any(|r| matches!(r.stage, Stage::Checking))
    }

    /// No request at all, fetching or being checked.
    pub(super) fn is_idle(&self) -> bool {
        self.requests.is_empty()
    }

    fn in_flight(&self) -> InFlight {
        let mut f = InFlight::new();
        for r in &self.requests {
            f.add(r.piece, r.source);
        }
        f
    }

    fn position(&self, source: SourceId, piece: PieceIndex) -> Option<usize> {
        self.requests
            .iter()
            .position(|r| r.source == source && r.piece == piece)
    }

    /// Sources in use, at most `max_sources`: those fetching now, then those holding a piece
    /// still missing, then those whose pieces are not known yet; holders with nothing useful
    /// wait (their bitfields are still refreshed, so they come in when they have something).
    pub(super) fn active(&self, verified: &Bitfield) -> Vec<SourceId> {
        let rank = |id: SourceId| {
            let s = self.source(id);
            match &s.has {
                _ if self.fetching(id) > 0 => 0,
                Some(h) if h.ones().any(|i| !verified.get(i)) => 1,
                None => 2,
                Some(_) => 3,
            }
        };
        let mut live: Vec<SourceId> = self.ids().filter(|&i| !self.source(i).dropped).collect();
        // Stable: holders of one rank keep their (random) order.
        live.sort_by_key(|&i| rank(i));
        live.truncate(self.tuning.max_sources.max(1));
        live
    }

    /// Partial holders whose bitfield is due for a refresh; each is marked as asked.
    pub(super) fn bitfields_due(&mut self, now: Instant) -> Vec<SourceId> {
        let due: Vec<SourceId> = self
            .ids()
            .filter(|&i| {
                let s = self.source(i);
                s.peer.partial
                    && !s.dropped
                    && !s.bitfield_pending
                    && s.bitfield_at
                        .is_none_or(|at| now.saturating_duration_since(at) >= BITFIELD_EVERY)
            })
            .collect();
        for &i in &due {
            self.source_mut(i).bitfield_pending = true;
        }
        due
    }

    /// Gives the `active` sources work: `start` begins each request and returns what cancels
    /// it (`None`: it could not be started).
    ///
    /// Every source gets one request first; a second one each (so that a source never waits a
    /// round trip between pieces) only while few pieces are on the way, since each sits in
    /// memory until checked. Partial holders are served first: complete holders fill in what
    /// they leave.
    pub(super) fn assign(
        &mut self,
        active: &[SourceId],
        verified: &Bitfield,
        now: Instant,
        mut start: impl FnMut(&Holder, Ask, &Arc<Meter>) -> Option<H>,
    ) {
        let count = self.pieces;
        let checking = self.checking();
        if checking.len() >= self.tuning.check_slots {
            return;
        }
        let mut wanted = verified.clone();
        for &p in &checking {
            wanted.set(p);
        }
        let avail = picker::availability(
            count,
            self.sources
                .iter()
                .filter(|s| !s.dropped)
                .filter_map(|s| s.has.as_ref()),
        );
        // What complete holders are asked for: only pieces no partial holder has. Complete
        // holders (a seed, above all) are the scarce upload when many peers fetch one file; a
        // piece a partial holder has comes from there, and the seed's bytes go to pieces
        // nobody else can send.
        let partials: Vec<&Bitfield> = self
            .sources
            .iter()
            .filter(|s| !s.dropped && s.peer.partial)
            .filter_map(|s| s.has.as_ref())
            .collect();
        let only_complete = (!partials.is_empty()).then(|| {
            let held = picker::availability(count, partials.iter().copied());
            let mut b = Bitfield::new(count);
            for (i, n) in held.iter().enumerate() {
                if *n == 0 {
                    b.set(PieceIndex(i as u32));
                }
            }
            b
        });
        let mut in_flight = self.in_flight();
        let mut order = active.to_vec();
        order.sort_by_key(|&i| !self.source(i).peer.partial);
        for depth in 1..=PER_SOURCE {
            for &src in &order {
                let running = self.fetching(src);
                if running >= depth {
                    continue;
                }
                if depth > 1 && self.fetching_total() >= REQUEST_BUDGET {
                    break;
                }
                let s = self.source(src);
                // A complete holder that partial holders relieve is asked for one piece at a
                // time, and only for pieces no partial holder has: its upload is what every
                // downloader of the file competes for. It is never left idle, though: it hands
                // out its least-sent pieces first (`http::seeding`), so what it sends is new
                // to the swarm, and a seed kept busy is what the bound max(F/U, NF/((N+1)U))
                // assumes.
                if only_complete.is_some() && !s.peer.partial && depth > 1 {
                    continue;
                }
                let Some(has) = &s.has else { continue };
                let offer = match &only_complete {
                    Some(only) if !s.peer.partial => only,
                    _ => has,
                };
                // Pieces this holder deferred are asked for last, and then with `insist`.
                let trimmed;
                let offer = if s.deferred.is_empty() {
                    offer
                } else {
                    let mut b = Bitfield::new(count);
                    for p in offer.ones().filter(|p| !s.deferred.contains(p)) {
                        b.set(p);
                    }
                    trimmed = b;
                    &trimmed
                };
                let view = View {
                    verified: &wanted,
                    availability: &avail,
                    in_flight: &in_flight,
                    endgame_copies: ENDGAME_COPIES,
                };
                let mut piece =
                    picker::pick(&view, src, offer, self.tuning.seed).map(|p| (p.piece(), false));
                if piece.is_none() && running == 0 {
                    piece = s
                        .deferred
                        .iter()
                        .copied()
                        .filter(|&p| !wanted.get(p) && !in_flight.is_requested_from(p, src))
                        .min()
                        .map(|p| (p, true));
                }
                if piece.is_none() && running == 0 {
                    piece = self
                        .rescue(src, has, &checking, &in_flight, now)
                        .map(|p| (p, false));
                }
                let Some((piece, insist)) = piece else {
                    continue;
                };
                if !in_flight.add(piece, src) {
                    continue;
                }
                let s = self.source_mut(src);
                if insist {
                    s.deferred.remove(&piece);
                }
                let ask = Ask {
                    source: src,
                    piece,
                    insist,
                    first: !s.started,
                };
                let meter = Arc::new(Meter::default());
                match start(&s.peer, ask, &meter) {
                    Some(handle) => {
                        s.started = true;
                        self.requests.push(Request {
                            source: src,
                            piece,
                            stage: Stage::Fetching {
                                handle,
                                meter,
                                started: now,
                            },
                        });
                    }
                    None => in_flight.remove(piece, src),
                }
            }
        }
    }

    /// A piece stuck at a source far slower than `src`, which is idle and holds it: fetched
    /// there too (whichever copy verifies first wins), so one slow holder cannot hold it back.
    fn rescue(
        &self,
        src: SourceId,
        has: &Bitfield,
        checking: &BTreeSet<PieceIndex>,
        in_flight: &InFlight,
        now: Instant,
    ) -> Option<PieceIndex> {
        let mine = self.source(src).rate;
        self.requests
            .iter()
            .filter_map(|r| match &r.stage {
                Stage::Fetching { meter, started, .. } => Some((r, meter, *started)),
                Stage::Checking => None,
            })
            .filter(|(r, _, _)| {
                r.source != src
                    && has.get(r.piece)
                    && !checking.contains(&r.piece)
                    && in_flight.requests(r.piece) < ENDGAME_COPIES
                    && !in_flight.is_requested_from(r.piece, src)
            })
            .filter_map(|(r, meter, started)| {
                let age = now.saturating_duration_since(started);
                if age < self.tuning.io_timeout {
                    return None;
                }
                let rate = meter.bytes() as f64 / age.as_secs_f64();
                mine.is_none_or(|m| rate * 4.0 < m)
                    .then_some((r.piece, rate))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(p, _)| p)
    }

    /// A piece request ended with `what`.
    pub(super) fn fetched(&mut self, src: SourceId, piece: PieceIndex, what: Fetched) -> Next<H> {
        // None: cancelled (the piece came from elsewhere, or the source was dropped) after it
        // had already finished.
        let Some(at) = self.position(src, piece) else {
            return Next::Stale;
        };
        if !matches!(self.requests[at].stage, Stage::Fetching { .. }) {
            return Next::Stale;
        }
        match what {
            Fetched::Bytes { len, took } => {
                self.requests[at].stage = Stage::Checking;
                self.source_mut(src).record_rate(len, took);
                Next::Check
            }
            Fetched::Deferred => {
                self.requests.swap_remove(at);
                self.source_mut(src).deferred.insert(piece);
                Next::Continue
            }
            // It holds less than its bitfield said: ask again before asking it for pieces.
            Fetched::NotHeld if self.source(src).peer.partial => {
                self.requests.swap_remove(at);
                self.source_mut(src).has = None;
                Next::Continue
            }
            Fetched::NotHeld | Fetched::Failed => {
                self.requests.swap_remove(at);
                self.drop_source(src)
            }
        }
    }

    /// A received piece's check ended with `what`.
    pub(super) fn checked(
        &mut self,
        src: SourceId,
        piece: PieceIndex,
        what: Checked,
        now: Instant,
    ) -> Next<H> {
        match what {
            Checked::Verified => {
                self.last_progress = now;
                Next::Cancel(self.take(|r| r.piece == piece))
            }
            Checked::AlreadyHad => {
                if let Some(at) = self.position(src, piece) {
                    self.requests.swap_remove(at);
                }
                Next::Continue
            }
            Checked::Bad => {
                if let Some(at) = self.position(src, piece) {
                    self.requests.swap_remove(at);
                }
                self.drop_source(src)
            }
        }
    }

    /// A bitfield request ended: `Some` with what the source has, `None` when it failed.
    pub(super) fn bitfield(
        &mut self,
        src: SourceId,
        has: Option<Bitfield>,
        now: Instant,
    ) -> Next<H> {
        let s = self.source_mut(src);
        s.bitfield_pending = false;
        s.bitfield_at = Some(now);
        match has {
            Some(b) => {
                if s.has.as_ref() != Some(&b) {
                    s.has = Some(b);
                    self.last_progress = now;
                }
                Next::Continue
            }
            None => self.drop_source(src),
        }
    }

    /// Ends a source's part in this download. Its pieces being checked stay: their checks
    /// still count.
    fn drop_source(&mut self, src: SourceId) -> Next<H> {
        let s = self.source_mut(src);
        if s.dropped {
            return Next::Continue;
        }
        s.dropped = true;
        Next::Dropped(self.take(|r| r.source == src && matches!(r.stage, Stage::Fetching { .. })))
    }

    /// Removes the requests `which` selects; returns what cancels those still fetching.
    fn take(&mut self, which: impl Fn(&Request<H>) -> bool) -> Vec<H> {
        let (gone, kept) = std::mem::take(&mut self.requests)
            .into_iter()
            .partition::<Vec<_>, _>(|r| which(r));
        self.requests = kept;
        gone.into_iter()
            .filter_map(|r| match r.stage {
                Stage::Fetching { handle, .. } => Some(handle),
                Stage::Checking => None,
            })
            .collect()
    }

    /// Nothing on the way and nothing new for `stall`: the live holders are not going to send
    /// the missing pieces either.
    pub(super) fn stalled(&self, now: Instant, stall: Duration) -> bool {
        self.is_idle() && now.saturating_duration_since(self.last_progress) >= stall
    }
}

#[cfg(test)]
mod tests;
