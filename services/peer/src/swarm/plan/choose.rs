//! Which block a source is asked for: a piece being put together first, then a new piece
//! (the picker's), then a copy of a block asked elsewhere (endgame, rescue), then a piece it
//! deferred, with `insist`.

use std::time::Instant;

use super::super::picker;
use super::{
    ENDGAME_COPIES, FIRST_BYTE, MAX_OPEN_BYTES, MIN_OPEN, Open, Plan, SEED_RARER_THAN, SourceId,
};
use crate::share::PieceIndex;
use crate::share::bitfield::Bitfield;

impl<H> Plan<H> {
    /// What complete holders that partial holders relieve are asked for, given how many
    /// partial holders have each piece (`held`, `Counts::partial`): the pieces
    /// fewest partial holders have, while that is none or one ([`SEED_RARER_THAN`]), of those
    /// neither verified nor being put together (`wanted` has both set); and the pieces being
    /// put together that no partial holder has.
    ///
    /// Complete holders (a seed, above all) are the scarce upload when many peers fetch one
    /// file: a piece partial holders have comes from there, and the seed's bytes go to pieces
    /// nobody else can send, or only one can (asked only for pieces nobody had, its upload
    /// idled for the last third of a testbed run while such pieces waited on their one holder;
    /// asked for any piece, it served more than 1.5 copies of the file).
    pub(super) fn for_complete_holders(&self, wanted: &Bitfield, held: &[u32]) -> Bitfield {
        // Walked by the missing pieces (whole bytes of wanted ones skipped), not piece by piece.
        let missing = || {
            wanted
                .zeros()
                .filter_map(|p| Some((p, *held.get(p.as_usize())?)))
        };
        let rarest = missing().map(|(_, n)| n).min().unwrap_or(0);
        let mut b = Bitfield::new(self.pieces);
        for (p, _) in missing().filter(|&(_, n)| n == rarest && n < SEED_RARER_THAN) {
            b.set(p);
        }
        for &p in self.open.keys() {
            if held.get(p.as_usize()) == Some(&0) {
                b.set(p);
            }
        }
        b
    }

    /// Checks (in debug builds) the counts of partial holders per piece (`held`,
    /// `Counts::partial`) against a count from scratch: only partial holders that have
    /// delivered a block count, since a bitfield is a claim, and holders that announce every
    /// piece and then trickle would otherwise spare the seed every piece and hold the download
    /// at their pace (issue 28 point 2).
    pub(super) fn check_partial_counts(&self, held: Option<&[u32]>) {
        debug_assert_eq!(
            held.map(<[u32]>::to_vec),
            {
                let partials: Vec<&Bitfield> = self
                    .sources
                    .iter()
                    .filter(|s| !s.dropped && s.peer.partial && s.delivered > 0)
                    .filter_map(|s| s.has.as_ref())
                    .collect();
                (!partials.is_empty()).then(|| picker::availability(self.pieces, partials))
            },
            "the counts per piece of partial holders went astray"
        );
    }

    /// Per piece, how many partial holders that delivered a block have it (`None`: no such
    /// holder yet), as `assign` reads it.
    #[cfg(test)]
    pub(super) fn partial_availability(&self) -> Option<Vec<u32>> {
        let held = self.counts.partial();
        self.check_partial_counts(held);
        held.map(<[u32]>::to_vec)
    }

    /// Whether another piece may be started: the pieces being put together hold less than
    /// [`MAX_OPEN_BYTES`], or fewer than [`MIN_OPEN`] pieces are.
    pub(super) fn may_open(&self) -> bool {
        let bytes: u64 = self.open.keys().map(|&p| self.geometry.piece_len(p)).sum();
        self.open.len() < MIN_OPEN || bytes < MAX_OPEN_BYTES
    }

    /// What `src` may be asked for: its pieces, less those a complete holder is spared
    /// (`only_complete`: pieces no partial holder has) and those it deferred.
    pub(super) fn offer(
        &self,
        src: SourceId,
        only_complete: Option<&Bitfield>,
    ) -> Option<Bitfield> {
        let s = self.source(src);
        let has = s.has.as_ref()?;
        let base = match only_complete {
            Some(only) if !s.peer.partial => only,
            _ => has,
        };
        if s.deferred.is_empty() {
            return Some(base.clone());
        }
        let mut b = Bitfield::new(self.pieces);
        for p in base.ones().filter(|p| !s.deferred.contains(p)) {
            b.set(p);
        }
        Some(b)
    }

    /// A block of a piece being put together that nobody is fetching, for `src`: the piece
    /// furthest along first, so pieces are finished (and offered to others) before new ones
    /// are started.
    pub(super) fn next_block(&self, src: SourceId, offer: &Bitfield) -> Option<(PieceIndex, u32)> {
        self.open
            .iter()
            .filter(|(p, o)| {
                !o.checking && offer.get(**p) && o.admits(src) && !self.awaiting_first(src, **p)
            })
            .filter_map(|(&p, o)| {
                let free = (0..o.got.len() as u32)
                    .find(|&b| o.got[b as usize].is_none() && self.copies(p, b) == 0)?;
                let asked = self.requests.iter().filter(|r| r.piece == p).count();
                Some((o.received() + asked, p, free))
            })
            .max_by_key(|&(progress, p, _)| (progress, std::cmp::Reverse(p)))
            .map(|(_, p, b)| (p, b))
    }

    /// Whether `src` has taken up `piece`: a block of it came from there, or bytes of one are
    /// arriving. Only then are its other blocks asked there with `insist`: a holder that
    /// defers the piece ("least served first") answers only the first ask so, and a second
    /// block asked with `insist` before that answer was sent anyway (traced at 300 simulated
    /// hosts: pieces the seed had deferred went out a block at a time to dozens of
    /// downloaders, none of which could finish them).
    pub(super) fn taken_up(&self, src: SourceId, piece: PieceIndex) -> bool {
        self.open
            .get(&piece)
            .is_some_and(|o| o.got.contains(&Some(src)))
            || self
                .requests
                .iter()
                .any(|r| r.source == src && r.piece == piece && r.meter.bytes() > 0)
    }

    /// A complete holder was asked for a block of `piece` and has not taken it up yet: no other
    /// block of it is asked there until it answers (see [`Plan::taken_up`]).
    fn awaiting_first(&self, src: SourceId, piece: PieceIndex) -> bool {
        let s = self.source(src);
        !s.peer.partial
            && !s.insisted.contains(&piece)
            && self
                .requests
                .iter()
                .any(|r| r.source == src && r.piece == piece)
            && !self.taken_up(src, piece)
    }

    /// A block already asked of another source, fetched at `src` too (whichever copy comes
    /// first is kept): in endgame (every missing piece is being put together), or to rescue a
    /// block that got no byte for `FIRST_BYTE`, or, when `src` is `idle`, one stuck at a source
    /// far slower than `src` for longer than `io_timeout`.
    pub(super) fn duplicate(
        &self,
        src: SourceId,
        offer: &Bitfield,
        endgame: bool,
        idle: bool,
        now: Instant,
    ) -> Option<(PieceIndex, u32)> {
        let mine = self.source(src).rate;
        // Rescues go to holders that have sent blocks: an untried one may be silent too, and
        // each wave of silent holders would take the same stuck blocks over again.
        if !endgame && self.source(src).delivered == 0 {
            return None;
        }
        self.requests
            .iter()
            .filter(|r| {
                r.source != src
                    && offer.get(r.piece)
                    && self
                        .open
                        .get(&r.piece)
                        .is_some_and(|o| o.solo.is_none() && !o.checking)
                    && self.live_copies(r.piece, r.block, now) < ENDGAME_COPIES
                    && !self
                        .requests
                        .iter()
                        .any(|q| q.source == src && q.piece == r.piece && q.block == r.block)
            })
            .filter(|r| {
                if endgame {
                    return true;
                }
                let age = now.saturating_duration_since(r.started);
                if r.meter.bytes() == 0 && age >= FIRST_BYTE {
                    return true;
                }
                let rate = r.meter.bytes() as f64 / age.as_secs_f64().max(1e-3);
                idle && age >= self.tuning.io_timeout && mine.is_none_or(|m| rate * 4.0 < m)
            })
            .min_by_key(|r| r.started)
            .map(|r| (r.piece, r.block))
    }

    /// A piece `src` deferred, asked of it again with `insist` when it has nothing else to
    /// send here: the first free block of it.
    ///
    /// Not a piece some partial holder has (`held`): the holder deferred it because it went
    /// out more often than others, and a partial holder can send it (insisting on such pieces,
    /// every downloader of a churned swarm fetched the same lost pieces from the seed, and it
    /// served 1.9 copies of the file).
    pub(super) fn insist_on_deferred(
        &mut self,
        src: SourceId,
        verified: &Bitfield,
        held: Option<&[u32]>,
        now: Instant,
    ) -> Option<(PieceIndex, u32)> {
        let deferred: Vec<PieceIndex> = self.source(src).deferred.iter().copied().collect();
        let elsewhere = |p: PieceIndex| {
            held.and_then(|h| h.get(p.as_usize()))
                .is_some_and(|&n| n > 0)
        };
        for p in deferred
            .into_iter()
            .filter(|&p| !verified.get(p) && !elsewhere(p))
        {
            let block = match self.open.get(&p) {
                Some(o) if o.checking || !o.admits(src) => continue,
                Some(o) => {
                    let free = (0..o.got.len() as u32)
                        .find(|&b| o.got[b as usize].is_none() && self.copies(p, b) == 0);
                    // Or a block of it stuck at a silent or far slower source.
                    let mut only = Bitfield::new(self.pieces);
                    only.set(p);
                    match free.or_else(|| self.duplicate(src, &only, false, true, now).map(|x| x.1))
                    {
                        Some(b) => b,
                        None => continue,
                    }
                }
                None if !self.may_open() => continue,
                None => {
                    self.open.insert(p, Open::new(self.geometry.blocks(p), now));
                    0
                }
            };
            let s = self.source_mut(src);
            s.deferred.remove(&p);
            s.insisted.insert(p);
            return Some((p, block));
        }
        None
    }

    /// Copies of a block on the way that are not stuck at a silent source (one that sent no
    /// byte of it for `FIRST_BYTE`): those do not count against more copies.
    fn live_copies(&self, piece: PieceIndex, block: u32, now: Instant) -> usize {
        self.requests
            .iter()
            .filter(|r| r.piece == piece && r.block == block)
            .filter(|r| {
                r.meter.bytes() > 0 || now.saturating_duration_since(r.started) < FIRST_BYTE
            })
            .count()
    }
}
