//! Giving the sources in use work: the order in which each source is asked for blocks (pieces
//! already started, rescues, new pieces, endgame copies, deferred pieces last), and the
//! request record each ask leaves.

use std::sync::Arc;
use std::time::Instant;

use super::super::picker::{self, InFlight, SourceId, View};
use super::{
    Ask, Counts, ENDGAME_COPIES, MAX_DEPTH, MIN_DEPTH, Meter, Open, Plan, RELIEVED_DEPTH, Request,
};
use crate::share::PieceIndex;
use crate::share::bitfield::Bitfield;
use crate::tracker::Holder;

impl<H> Plan<H> {
    /// Gives the `active` sources work: `start` begins each block request and returns what
    /// cancels it (`None`: it could not be started).
    ///
    /// Every source gets one request first, then more each up to its depth, round by round.
    /// Partial holders are served first: complete holders fill in what they leave.
    pub fn assign(
        &mut self,
        active: &[SourceId],
        verified: &Bitfield,
        now: Instant,
        mut start: impl FnMut(&Holder, Ask, &Arc<Meter>) -> Option<H>,
    ) {
        let count = self.pieces;
        if self.checking() >= self.tuning.check_slots {
            return;
        }
        // What the picker may start: neither verified nor being put together.
        let mut wanted = verified.clone();
        for &p in self.open.keys() {
            wanted.set(p);
        }
        // Read throughout and changed by nothing below, so taken out for the call rather than
        // copied (two copies per call were a tenth of the simulator's time at 10,000 hosts).
        let counts = std::mem::replace(&mut self.counts, Counts::new(0));
        let avail = counts.all();
        debug_assert_eq!(
            avail,
            picker::availability(
                count,
                self.sources
                    .iter()
                    .filter(|s| !s.dropped)
                    .filter_map(|s| s.has.as_ref()),
            ),
            "the counts per piece went astray"
        );
        let partial_held = counts.partial();
        self.check_partial_counts(partial_held);
        let only_complete = partial_held.map(|held| self.for_complete_holders(&wanted, held));
        // What each source may be asked for, worked out when it is first asked (most sources
        // in use are at their depth already).
        let mut offers: Vec<Option<Option<Bitfield>>> = vec![None; active.len()];
        let mut order: Vec<(usize, SourceId)> = active.iter().copied().enumerate().collect();
        order.sort_by_key(|&(_, i)| !self.source(i).peer.partial);
        let no_progress = InFlight::new();
        for depth in 1..=MAX_DEPTH {
            let mut asked = false;
            for &(k, src) in &order {
                let s = self.source(src);
                let limit = if only_complete.is_some() && !s.peer.partial {
                    RELIEVED_DEPTH
                } else {
                    s.depth(self.geometry.block)
                };
                let running = self.fetching(src);
                if running >= depth || depth > limit || s.resting(now) {
                    continue;
                }
                let offer =
                    offers[k].get_or_insert_with(|| self.offer(src, only_complete.as_ref()));
                let Some(offer) = offer.as_ref() else {
                    continue;
                };
                // Pieces already started first, then blocks stuck at a silent or far slower
                // source, then a new piece, then (endgame) copies of blocks asked elsewhere.
                let mut pick = self
                    .next_block(src, offer)
                    .or_else(|| self.duplicate(src, offer, false, running == 0, now));
                if pick.is_none() && self.may_open() {
                    let view = View {
                        verified: &wanted,
                        availability: avail,
                        in_flight: &no_progress,
                        endgame_copies: ENDGAME_COPIES,
                    };
                    if let Some(p) = picker::pick(&view, src, offer, self.tuning.seed) {
                        let p = p.piece();
                        self.open.insert(p, Open::new(self.geometry.blocks(p), now));
                        wanted.set(p);
                        pick = Some((p, 0));
                    }
                }
                // Endgame: every missing piece some holder has is being put together.
                if pick.is_none()
                    && wanted
                        .zeros()
                        .all(|p| avail.get(p.as_usize()).is_none_or(|&n| n == 0))
                {
                    pick = self.duplicate(src, offer, true, running == 0, now);
                }
                // A deferred piece, last of all, with `insist`.
                if pick.is_none() && running == 0 {
                    pick = self.insist_on_deferred(src, verified, partial_held, now);
                    if let Some((p, _)) = pick {
                        wanted.set(p);
                    }
                }
                let Some((piece, block)) = pick else {
                    continue;
                };
                if self.ask(src, piece, block, now, &mut start) {
                    asked = true;
                } else {
                    self.prune(piece);
                }
            }
            if !asked && depth >= MIN_DEPTH {
                break;
            }
        }
        self.counts = counts;
    }

    /// Starts one block request; false when it could not be started.
    fn ask(
        &mut self,
        src: SourceId,
        piece: PieceIndex,
        block: u32,
        now: Instant,
        start: &mut impl FnMut(&Holder, Ask, &Arc<Meter>) -> Option<H>,
    ) -> bool {
        // Taking a piece from this holder already: go on with it even if others went out less.
        let continues = self.taken_up(src, piece);
        let s = &self.sources[src.0 as usize];
        let ask = Ask {
            source: src,
            piece,
            block,
            insist: continues || s.insisted.contains(&piece),
            first: !s.started,
        };
        let meter = Arc::new(Meter::default());
        let Some(handle) = start(&s.peer, ask, &meter) else {
            return false;
        };
        let idle = self.fetching(src) == 0;
        let s = self.source_mut(src);
        s.started = true;
        if idle {
            s.resume(now);
        }
        if let Some(o) = self.open.get_mut(&piece)
            && o.solo == Some(None)
        {
            o.solo = Some(Some(src));
        }
        self.requests.push(Request {
            source: src,
            piece,
            block,
            handle,
            meter,
            started: now,
        });
        true
    }
}
