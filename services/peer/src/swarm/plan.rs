//! The download's plan: which holder is asked for which block of which piece, and what is on
//! the way.
//!
//! Pure: no sockets, no disk and no clock of its own (time comes in as `now`), so each rule is
//! tested here without a network. The event loop (`engine`) does the I/O and tells the plan what
//! came back; the plan answers with what to start or cancel.
//!
//! Requests are for blocks, smaller than pieces, so one piece comes from several sources at
//! once and is complete, verified and offered to others sooner; pieces stay the unit of
//! verification and of bitfields. A source is kept busy with a pipeline of block requests
//! sized by its measured rate. One record per request ([`Request`]) is all there is of "on the
//! way", and one record per piece being put together ([`Open`]); the picker's view, each
//! source's requests and the pieces being checked are all read from them, so they cannot
//! disagree. A source has one id, its [`SourceId`], the index of its [`Source`].

mod active;
mod assign;
mod choose;
mod counts;
mod open;
mod sources;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::picker::SourceId;
use crate::share::bitfield::Bitfield;
use crate::share::{Digest, PieceIndex};
use crate::tracker::Holder;
use counts::Counts;
pub use open::Geometry;
use open::{Open, Suspect};
pub use sources::{Meter, Source};

/// In endgame, at most this many sources fetch one block.
const ENDGAME_COPIES: usize = 2;
/// Block requests a source has running at least, and at most: in between, what it sends in
/// [`PIPELINE`] (so it never waits a round trip between blocks, and a slow source does not
/// hold many blocks that others could send sooner).
const MIN_DEPTH: usize = 2;
const MAX_DEPTH: usize = 16;
const PIPELINE: Duration = Duration::from_millis(500);
/// A complete holder that partial holders relieve (a seed, above all) gets this many block
/// requests from one downloader: its upload is what every downloader of the file competes for,
/// and it shares it per request.
const RELIEVED_DEPTH: usize = 2;
/// Complete holders that partial holders relieve are asked only for pieces fewer than this
/// many partial holders have (see `assign`).
const SEED_RARER_THAN: u32 = 2;
/// Pieces being put together at once, in bytes: each holds its blocks until it is checked.
/// Counted in bytes, not pieces, so small pieces (a swarm's) keep as many blocks in the air as
/// large ones; at least [`MIN_OPEN`] pieces whatever their size.
const MAX_OPEN_BYTES: u64 = 16 << 20;
const MIN_OPEN: usize = 4;
/// A source that sends no byte this long after being asked is set aside for others, and its
/// blocks are asked elsewhere: silent holders cost seconds, not a timeout each.
const FIRST_BYTE: Duration = Duration::from_secs(2);
/// A source's rate is measured over windows at least this long.
const RATE_WINDOW: Duration = Duration::from_millis(500);
/// Partial holders' bitfields are refreshed this often: they grow while we download, and a
/// piece they have is one the complete holders need not send (a few bytes per second each).
/// A holder that waits for news (`?after=N`, the swarm's "have") is asked again as soon as
/// [`HAVE_GAP`] after each answer instead: it answers when it has a new piece, so others learn
/// of a piece within a round trip of its check, and nothing is sent while nothing changes; the
/// gap folds a burst of pieces into one answer.
const BITFIELD_EVERY: Duration = Duration::from_secs(1);
const HAVE_GAP: Duration = Duration::from_millis(200);
/// How long the optimistic place among the sources in use ([`Plan::active`]) stays with one
/// holder before it goes to the next.
const OPTIMISTIC_EVERY: Duration = Duration::from_secs(2);
/// Candidate sources kept per download, per source in use (`max_sources`): holders the tracker
/// names beyond that are not kept, so a swarm of thousands costs each downloader a bounded set.
const CANDIDATES_PER_SOURCE: usize = 4;

/// What the plan is given by its process.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Holders used at once (`transfer.max_sources`).
    pub max_sources: usize,
    /// A request this old that is far slower than an idle source is fetched there too.
    pub io_timeout: Duration,
    /// Pieces checked at once: while the checks lag behind, no new block is asked for.
    pub check_slots: usize,
    /// Breaks the picker's ties (see `picker`).
    pub seed: u64,
}

/// One block asked of one source, until it arrives, fails or is cancelled.
#[derive(Debug)]
struct Request<H> {
    source: SourceId,
    piece: PieceIndex,
    block: u32,
    handle: H,
    meter: Arc<Meter>,
    started: Instant,
}

/// A block request to start: the engine fetches block `block` of `piece` from `source` and
/// returns what cancels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub source: SourceId,
    pub piece: PieceIndex,
    pub block: u32,
    /// The holder may not defer it (see `http::seeding`): it deferred the piece before, or
    /// this downloader is already taking the piece from it.
    pub insist: bool,
    /// The first block asked of this source.
    pub first: bool,
}

/// What came back from a block request.
#[derive(Debug, Clone, Copy)]
pub enum Fetched {
    /// Every byte of the block.
    Bytes { len: u64 },
    /// The holder sends less served pieces first: asked again later, with `insist`.
    Deferred,
    /// The holder's upload queue is full: it rests a while (`Source::busy`).
    Busy,
    /// The holder does not have it (404).
    NotHeld,
    /// Anything else: the source is dropped.
    Failed,
}

/// What a complete piece's check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Verified and written; with the digests of its blocks when the plan asked for them
    /// ([`Plan::wants_block_digests`]).
    Verified(Option<Vec<Digest>>),
    /// It was verified before (a resumed download's piece).
    AlreadyHad,
    /// It does not match the manifest; the digests of its blocks as they came.
    Bad(Vec<Digest>),
}

/// What the engine does after telling the plan what came back.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<H> {
    /// The request had already been cancelled or its source dropped, or another copy of the
    /// block came first: nothing to do, the bytes are not used.
    Stale,
    /// Nothing beyond the next round of asks.
    Continue,
    /// Keep the block's bytes; cancel these other copies of it.
    Block(Vec<H>),
    /// Keep the block's bytes, cancel these other copies: the piece is complete, check it.
    Check(Vec<H>),
    /// The source is dropped: cancel its requests and report why.
    Dropped(Vec<H>),
    /// These sources sent bad data ([`Plan::blame`] each): a bad piece came from one source
    /// alone, or a piece verified whose earlier copy, made of several sources' blocks, was bad
    /// and they sent the blocks that differ.
    Blame(Vec<SourceId>),
}

/// Sources, requests and pieces being put together, and when progress was last seen, for one
/// download.
#[derive(Debug)]
pub struct Plan<H> {
    geometry: Geometry,
    pieces: u32,
    tuning: Tuning,
    sources: Vec<Source>,
    /// Addresses that are or were sources (or must never be): a refresh adds only new ones.
    known: HashSet<String>,
    requests: Vec<Request<H>>,
    open: BTreeMap<PieceIndex, Open>,
    /// How many sources hold each piece.
    counts: Counts,
    last_progress: Instant,
    /// The holder in the optimistic place among the sources in use, and since when.
    optimistic: Option<(SourceId, Instant)>,
}

impl<H> Plan<H> {
    pub fn new(geometry: Geometry, pieces: u32, tuning: Tuning, now: Instant) -> Self {
        Plan {
            geometry,
            pieces,
            tuning,
            sources: Vec::new(),
            known: HashSet::new(),
            requests: Vec::new(),
            open: BTreeMap::new(),
            counts: Counts::new(pieces),
            last_progress: now,
            optimistic: None,
        }
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Addresses never to use as sources (this peer's own, holders that already failed).
    pub fn exclude(&mut self, addresses: impl IntoIterator<Item = String>) {
        self.known.extend(addresses);
    }

    /// Holders not seen before become sources, while the download keeps fewer than
    /// [`CANDIDATES_PER_SOURCE`] live ones per source it uses; returns how many. When there is
    /// room for fewer than are new: complete holders first, then partial ones in an order of
    /// this download's own (its seed). The tracker answers in peer-id order, and taking its
    /// first ones made every downloader of a swarm past 32 hosts keep the same 32 holders while
    /// the others' upload idled (found by `p2p-sim`, issue 26: N=50 went from 1.25x to 5.9x
    /// the bound).
    pub fn add_holders(&mut self, peers: impl IntoIterator<Item = Holder>) -> usize {
        let cap = self.tuning.max_sources.max(1) * CANDIDATES_PER_SOURCE;
        let mut live = self.sources.iter().filter(|s| !s.dropped).count();
        let mut added = 0;
        let mut peers: Vec<Holder> = peers
            .into_iter()
            .filter(|p| !self.known.contains(&p.address))
            .collect();
        if peers.len() > cap.saturating_sub(live) {
            let seed = self.tuning.seed;
            peers.sort_by_cached_key(|p| (p.partial, holder_order(seed, &p.address)));
        }
        for p in peers {
            if live >= cap {
                break;
            }
            if self.known.insert(p.address.clone()) {
                let s = Source::new(p, self.pieces);
                let (has, partial) = s.counted();
                self.counts.apply(has.as_ref(), partial, true);
                self.sources.push(s);
                added += 1;
                live += 1;
            }
        }
        added
    }

    pub fn source(&self, id: SourceId) -> &Source {
        &self.sources[id.0 as usize]
    }

    fn source_mut(&mut self, id: SourceId) -> &mut Source {
        &mut self.sources[id.0 as usize]
    }

    /// Changes source `id` by `f` (what it has, whether it is dropped, its first delivery):
    /// the one way to, so that the counts of holders per piece stay true.
    fn change<T>(&mut self, id: SourceId, f: impl FnOnce(&mut Source) -> T) -> T {
        let s = &mut self.sources[id.0 as usize];
        let (before, partial) = s.counted();
        let out = f(s);
        let (after, now_partial) = s.counted();
        self.counts
            .replace((before.as_ref(), partial), (after.as_ref(), now_partial));
        out
    }

    fn ids(&self) -> impl Iterator<Item = SourceId> + use<H> {
        (0..self.sources.len() as u32).map(SourceId)
    }

    /// Block requests `source` has running.
    fn fetching(&self, source: SourceId) -> usize {
        self.requests.iter().filter(|r| r.source == source).count()
    }

    fn copies(&self, piece: PieceIndex, block: u32) -> usize {
        self.requests
            .iter()
            .filter(|r| r.piece == piece && r.block == block)
            .count()
    }

    fn checking(&self) -> usize {
        self.open.values().filter(|o| o.checking).count()
    }

    /// Pieces whose blocks are all in and still being checked.
    pub fn is_checking(&self) -> bool {
        self.checking() > 0
    }

    /// No request running and no piece being checked.
    pub fn is_idle(&self) -> bool {
        self.requests.is_empty() && !self.is_checking()
    }

    /// Partial holders whose bitfield is due for a refresh; each is marked as asked.
    pub fn bitfields_due(&mut self, now: Instant) -> Vec<SourceId> {
        let due: Vec<SourceId> = self
            .ids()
            .filter(|&i| {
                let s = self.source(i);
                let every = if s.have_waits {
                    HAVE_GAP
                } else {
                    BITFIELD_EVERY
                };
                s.peer.partial
                    && !s.dropped
                    && !s.bitfield_pending
                    && s.bitfield_at
                        .is_none_or(|at| now.saturating_duration_since(at) >= every)
            })
            .collect();
        for &i in &due {
            self.source_mut(i).bitfield_pending = true;
        }
        due
    }

    /// Forgets a piece being put together that has nothing in and nothing asked (its source
    /// deferred it or left), so the picker may start it afresh, anywhere.
    fn prune(&mut self, piece: PieceIndex) {
        let empty = self.open.get(&piece).is_some_and(|o| {
            o.received() == 0 && !o.checking && o.solo.is_none() && o.suspect.is_none()
        });
        if empty && !self.requests.iter().any(|r| r.piece == piece) {
            self.open.remove(&piece);
        }
    }

    fn position(&self, source: SourceId, piece: PieceIndex, block: u32) -> Option<usize> {
        self.requests
            .iter()
            .position(|r| r.source == source && r.piece == piece && r.block == block)
    }

    /// A block request ended with `what` at `now`.
    pub fn fetched(
        &mut self,
        src: SourceId,
        piece: PieceIndex,
        block: u32,
        what: Fetched,
        now: Instant,
    ) -> Next<H> {
        // None: cancelled (another copy came first, or the source was dropped) after it had
        // already finished.
        let Some(at) = self.position(src, piece, block) else {
            return Next::Stale;
        };
        self.requests.swap_remove(at);
        match what {
            Fetched::Bytes { len } => {
                // The first block makes a partial holder count as one (`Counts::partial`).
                self.change(src, |s| s.record(len, now));
                let Some(o) = self.open.get_mut(&piece) else {
                    return Next::Stale;
                };
                let Some(slot) = o.got.get_mut(block as usize) else {
                    return Next::Stale;
                };
                if slot.is_some() || o.checking {
                    return Next::Stale;
                }
                *slot = Some(src);
                let complete = o.is_complete();
                if complete {
                    o.checking = true;
                }
                let others = self.take(|r| r.piece == piece && r.block == block);
                if complete {
                    Next::Check(others)
                } else {
                    Next::Block(others)
                }
            }
            Fetched::Deferred => {
                self.source_mut(src).deferred.insert(piece);
                self.prune(piece);
                Next::Continue
            }
            Fetched::Busy => {
                self.source_mut(src).busy(now);
                self.prune(piece);
                Next::Continue
            }
            // It holds less than its bitfield said: ask again before asking it for pieces.
            Fetched::NotHeld if self.source(src).peer.partial => {
                self.change(src, |s| s.has = None);
                self.prune(piece);
                Next::Continue
            }
            Fetched::NotHeld | Fetched::Failed => {
                let next = self.drop_source(src);
                self.prune(piece);
                next
            }
        }
    }

    /// When the first block of a piece being put together was asked for.
    pub(super) fn opened(&self, piece: PieceIndex) -> Option<Instant> {
        self.open.get(&piece).map(|o| o.opened)
    }

    /// Whether a piece's check should also hand back the digests of its blocks: a copy of it
    /// was bad before, and the verified copy tells who lied.
    pub(super) fn wants_block_digests(&self, piece: PieceIndex) -> bool {
        self.open.get(&piece).is_some_and(|o| o.suspect.is_some())
    }

    /// The check of a complete piece ended with `what`.
    pub fn checked(&mut self, piece: PieceIndex, what: Checked, now: Instant) -> Next<H> {
        let Some(open) = self.open.get_mut(&piece) else {
            return Next::Stale;
        };
        match what {
            Checked::Verified(digests) => {
                self.last_progress = now;
                let suspect = self.open.remove(&piece).and_then(|o| o.suspect);
                match (suspect, digests) {
                    (Some(s), Some(good)) => Next::Blame(s.liars(&good)),
                    _ => Next::Continue,
                }
            }
            Checked::AlreadyHad => {
                self.open.remove(&piece);
                Next::Continue
            }
            Checked::Bad(digests) => {
                let senders = open.senders();
                let by_block: Vec<SourceId> = open.got.iter().flatten().copied().collect();
                open.reset();
                match senders[..] {
                    // One source sent all of it: that source lied.
                    [one] => {
                        open.solo = None;
                        self.prune(piece);
                        Next::Blame(vec![one])
                    }
                    _ => {
                        // Several sources: which one lied shows when a copy from one source
                        // alone verifies and its blocks are compared with these.
                        open.solo = Some(None);
                        if by_block.len() == digests.len() {
                            open.suspect = Some(Suspect {
                                senders: by_block,
                                digests,
                            });
                        }
                        Next::Continue
                    }
                }
            }
        }
    }

    /// Drops a source found to have sent a block that did not match ([`Next::Blame`]).
    /// Named bad once, even when it was dropped before for another failure (a liar's
    /// connection may break before its bad block is found out).
    pub(super) fn blame(&mut self, src: SourceId) -> Next<H> {
        let s = self.source_mut(src);
        if s.blamed {
            return Next::Continue;
        }
        s.blamed = true;
        match self.drop_source(src) {
            Next::Continue => Next::Dropped(Vec::new()),
            next => next,
        }
    }

    /// A bitfield request ended: `Some` with what the source has and whether it waits for
    /// news (see [`HAVE_GAP`]), `None` when it failed.
    pub fn bitfield(
        &mut self,
        src: SourceId,
        has: Option<(Bitfield, bool)>,
        now: Instant,
    ) -> Next<H> {
        let s = self.source_mut(src);
        s.bitfield_pending = false;
        s.bitfield_at = Some(now);
        match has {
            Some((b, waits)) => {
                s.have_waits = waits;
                if s.has.as_ref() != Some(&b) {
                    self.change(src, |s| s.has = Some(b));
                    self.last_progress = now;
                }
                Next::Continue
            }
            None => self.drop_source(src),
        }
    }

    /// Ends a source's part in this download. Blocks it sent stay: the piece's check judges
    /// them.
    fn drop_source(&mut self, src: SourceId) -> Next<H> {
        if self.source(src).dropped {
            return Next::Continue;
        }
        self.change(src, |s| s.dropped = true);
        for o in self.open.values_mut() {
            if o.solo == Some(Some(src)) {
                o.solo = Some(None);
            }
        }
        let gone = self.take(|r| r.source == src);
        let pieces: Vec<PieceIndex> = self.open.keys().copied().collect();
        for p in pieces {
            self.prune(p);
        }
        Next::Dropped(gone)
    }

    /// Removes the requests `which` selects; returns what cancels them.
    fn take(&mut self, which: impl Fn(&Request<H>) -> bool) -> Vec<H> {
        let (gone, kept) = std::mem::take(&mut self.requests)
            .into_iter()
            .partition::<Vec<_>, _>(|r| which(r));
        self.requests = kept;
        gone.into_iter().map(|r| r.handle).collect()
    }

    /// Nothing on the way and nothing new for `stall`: the live holders are not going to send
    /// the missing pieces either.
    pub fn stalled(&self, now: Instant, stall: Duration) -> bool {
        self.is_idle() && now.saturating_duration_since(self.last_progress) >= stall
    }
}

/// A seeded, well-mixed order of holders by address.
fn holder_order(seed: u64, address: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same order for the same seed, run after run.
    let mut h = std::hash::DefaultHasher::new();
    seed.hash(&mut h);
    address.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests;
