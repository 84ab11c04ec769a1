//! Which piece to ask a source for next: rarest first, as a pure function of what is known.
//!
//! Rarest first spreads the pieces that few holders have before those holders leave, and makes
//! downloaders that start together fetch different pieces, so they can serve each other. Ties are
//! broken by a seed so that peers with the same view still pick differently, while a given seed
//! always gives the same answer (tests and logs can replay a choice).

use std::collections::HashMap;

use crate::share::PieceIndex;
use crate::share::bitfield::Bitfield;

/// A source of one download (the engine numbers its holders).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u32);

/// Pieces requested and not yet verified or abandoned, and from which sources: the picker's view
/// of a download's requests, which the plan builds from its records.
#[derive(Debug, Clone, Default)]
pub(super) struct InFlight {
    by_piece: HashMap<PieceIndex, Vec<SourceId>>,
}

impl InFlight {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// How many sources this piece is requested from.
    pub(super) fn requests(&self, piece: PieceIndex) -> usize {
        self.by_piece.get(&piece).map_or(0, Vec::len)
    }

    pub(super) fn is_requested_from(&self, piece: PieceIndex, source: SourceId) -> bool {
        self.by_piece
            .get(&piece)
            .is_some_and(|s| s.contains(&source))
    }
}

/// What a download does with its requests, for the picker's own simulations below; the engine's
/// plan asks for blocks and keeps its own records (`plan::Plan`), giving the picker only pieces
/// nobody has started.
#[cfg(test)]
impl InFlight {
    /// Records a request; returns false if this source already has this piece in flight.
    pub(super) fn add(&mut self, piece: PieceIndex, source: SourceId) -> bool {
        let sources = self.by_piece.entry(piece).or_default();
        if sources.contains(&source) {
            return false;
        }
        sources.push(source);
        true
    }

    /// A request ended (piece verified, failed, or cancelled as an endgame loser).
    pub(super) fn remove(&mut self, piece: PieceIndex, source: SourceId) {
        if let Some(sources) = self.by_piece.get_mut(&piece) {
            sources.retain(|&s| s != source);
            if sources.is_empty() {
                self.by_piece.remove(&piece);
            }
        }
    }

    /// A piece was verified: every request for it ends; returns the sources to cancel.
    pub(super) fn finish(&mut self, piece: PieceIndex) -> Vec<SourceId> {
        self.by_piece.remove(&piece).unwrap_or_default()
    }

    /// A source was dropped: its requests end; returns the pieces it had in flight.
    pub(super) fn remove_source(&mut self, source: SourceId) -> Vec<PieceIndex> {
        let mut pieces = Vec::new();
        self.by_piece.retain(|&piece, sources| {
            if sources.contains(&source) {
                pieces.push(piece);
                sources.retain(|&s| s != source);
            }
            !sources.is_empty()
        });
        pieces.sort();
        pieces
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_piece.is_empty()
    }
}

/// How many known holders have each piece. Counted over every source the download knows,
/// whether or not it is busy, since rarity is about the swarm, not about who is free now.
pub(super) fn availability<'a>(
    len: u32,
    holders: impl IntoIterator<Item = &'a Bitfield>,
) -> Vec<u32> {
    let mut counts = vec![0u32; len as usize];
    for h in holders {
        for i in h.ones() {
            if let Some(c) = counts.get_mut(i.as_usize()) {
                *c += 1;
            }
        }
    }
    counts
}

/// Everything the choice depends on.
#[derive(Debug, Clone, Copy)]
pub(super) struct View<'a> {
    /// Pieces this peer has verified.
    pub verified: &'a Bitfield,
    /// Per piece, how many holders have it ([`availability`]).
    pub availability: &'a [u32],
    pub in_flight: &'a InFlight,
    /// In endgame, at most this many sources fetch one piece at once.
    pub endgame_copies: usize,
}

/// What to ask a source for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pick {
    /// A piece nobody is fetching yet.
    Piece(PieceIndex),
    /// Endgame: every missing piece is already in flight; fetch this one here too and keep
    /// whichever copy verifies first (the others are cancelled).
    Duplicate(PieceIndex),
}

impl Pick {
    pub(super) fn piece(self) -> PieceIndex {
        match self {
            Pick::Piece(p) | Pick::Duplicate(p) => p,
        }
    }
}

/// The next piece to request from `source`, whose pieces are `source_has`; `None` when it has
/// nothing useful to fetch now.
///
/// Only pieces the source has and this peer has not verified are ever chosen. A piece nobody is
/// fetching comes first, rarest first (ties by `seed`). Only when every missing piece is in flight
/// (endgame; pieces no holder has do not count) is a piece fetched twice: the one with the fewest requests, then the rarest, never
/// twice from one source and never by more than `endgame_copies` sources.
pub(super) fn pick(
    view: &View<'_>,
    source: SourceId,
    source_has: &Bitfield,
    seed: u64,
) -> Option<Pick> {
    let len = view.verified.len();
    let wanted = || {
        source_has
            .ones()
            .filter(|&i| i.0 < len && !view.verified.get(i))
    };
    let rarity = |i: PieceIndex| view.availability.get(i.as_usize()).copied().unwrap_or(0);

    let fresh = wanted()
        .filter(|&i| view.in_flight.requests(i) == 0)
        .min_by_key(|&i| (rarity(i), tie(seed, i)));
    if let Some(i) = fresh {
        return Some(Pick::Piece(i));
    }

    // Pieces no known holder has cannot be in flight; they must not hold endgame back.
    let endgame = view
        .verified
        .zeros()
        .filter(|&i| rarity(i) > 0)
        .all(|i| view.in_flight.requests(i) > 0);
    if !endgame {
        return None;
    }
    wanted()
        .filter(|&i| {
            let n = view.in_flight.requests(i);
            n < view.endgame_copies && !view.in_flight.is_requested_from(i, source)
        })
        .min_by_key(|&i| (view.in_flight.requests(i), rarity(i), tie(seed, i)))
        .map(Pick::Duplicate)
}

/// A seeded, well-mixed order of pieces (splitmix64's finaliser).
fn tie(seed: u64, i: PieceIndex) -> u64 {
    let mut z = seed ^ u64::from(i.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(len: u32, ones: &[u32]) -> Bitfield {
        let mut b = Bitfield::new(len);
        for &i in ones {
            b.set(PieceIndex(i));
        }
        b
    }

    fn view<'a>(verified: &'a Bitfield, avail: &'a [u32], in_flight: &'a InFlight) -> View<'a> {
        View {
            verified,
            availability: avail,
            in_flight,
            endgame_copies: 2,
        }
    }

    const S0: SourceId = SourceId(0);
    const S1: SourceId = SourceId(1);
    const S2: SourceId = SourceId(2);

    #[test]
    fn rarest_piece_first() {
        // Piece 3 is held by one holder, 1 and 2 by two, 0 by three.
        let a = field(4, &[0, 1, 2, 3]);
        let b = field(4, &[0, 1, 2]);
        let c = field(4, &[0]);
        let avail = availability(4, [&a, &b, &c]);
        assert_eq!(avail, [3, 2, 2, 1]);
        let verified = Bitfield::new(4);
        let fl = InFlight::new();
        let v = view(&verified, &avail, &fl);
        for seed in 0..50 {
            assert_eq!(pick(&v, S0, &a, seed), Some(Pick::Piece(PieceIndex(3))));
            let p = pick(&v, S1, &b, seed).unwrap();
            assert!(matches!(p, Pick::Piece(PieceIndex(1 | 2))), "{p:?}");
            assert_eq!(pick(&v, S2, &c, seed), Some(Pick::Piece(PieceIndex(0))));
        }
    }

    #[test]
    fn ties_depend_on_the_seed_and_only_on_it() {
        let all = Bitfield::full(64);
        let avail = availability(64, [&all]);
        let verified = Bitfield::new(64);
        let fl = InFlight::new();
        let v = view(&verified, &avail, &fl);
        let firsts: std::collections::HashSet<_> = (0..32)
            .map(|seed| pick(&v, S0, &all, seed).unwrap().piece())
            .collect();
        assert!(
            firsts.len() > 8,
            "seeds should spread the first pick: {firsts:?}"
        );
        for seed in 0..32 {
            assert_eq!(pick(&v, S0, &all, seed), pick(&v, S0, &all, seed));
        }
    }

    #[test]
    fn skips_verified_and_in_flight_pieces() {
        let all = Bitfield::full(4);
        let avail = [1, 1, 1, 1];
        let verified = field(4, &[0, 2]);
        let mut fl = InFlight::new();
        fl.add(PieceIndex(1), S1);
        let v = view(&verified, &avail, &fl);
        assert_eq!(pick(&v, S0, &all, 7), Some(Pick::Piece(PieceIndex(3))));
    }

    #[test]
    fn a_source_with_nothing_useful_gets_nothing_outside_endgame() {
        let verified = field(4, &[0]);
        let mut fl = InFlight::new();
        fl.add(PieceIndex(1), S1);
        let avail = [2, 2, 1, 1];
        let v = view(&verified, &avail, &fl);
        // S0 has only 0 (verified) and 1 (in flight); 2 and 3 are missing and not in flight.
        assert_eq!(pick(&v, S0, &field(4, &[0, 1]), 1), None);
        assert_eq!(pick(&v, S0, &Bitfield::new(4), 1), None);
    }

    #[test]
    fn endgame_duplicates_the_least_requested_piece_from_another_source() {
        let all = Bitfield::full(4);
        let avail = [3, 3, 3, 3];
        let verified = field(4, &[0, 1]);
        let mut fl = InFlight::new();
        fl.add(PieceIndex(2), S0);
        fl.add(PieceIndex(3), S1);
        fl.add(PieceIndex(3), S2);
        let v = view(&verified, &avail, &fl);
        // S0 already fetches 2 and 3 has two copies (the cap): nothing for S0.
        assert_eq!(pick(&v, S0, &all, 0), None);
        // S1 fetches 3; 2 has one request: duplicate it.
        assert_eq!(pick(&v, S1, &all, 0), Some(Pick::Duplicate(PieceIndex(2))));
        let v3 = View {
            endgame_copies: 3,
            ..v
        };
        assert_eq!(pick(&v3, S0, &all, 0), Some(Pick::Duplicate(PieceIndex(3))));
    }

    #[test]
    fn pieces_nobody_holds_do_not_hold_endgame_back() {
        let has = field(3, &[0, 1]);
        let avail = [1, 1, 0];
        let verified = field(3, &[0]);
        let mut fl = InFlight::new();
        fl.add(PieceIndex(1), S1);
        let v = view(&verified, &avail, &fl);
        assert_eq!(pick(&v, S0, &has, 3), Some(Pick::Duplicate(PieceIndex(1))));
    }

    #[test]
    fn in_flight_bookkeeping() {
        let mut fl = InFlight::new();
        assert!(fl.add(PieceIndex(1), S0));
        assert!(!fl.add(PieceIndex(1), S0));
        assert!(fl.add(PieceIndex(1), S1));
        assert!(fl.add(PieceIndex(2), S1));
        assert_eq!(fl.requests(PieceIndex(1)), 2);
        assert_eq!(fl.remove_source(S1), [PieceIndex(1), PieceIndex(2)]);
        assert_eq!(fl.requests(PieceIndex(1)), 1);
        assert_eq!(fl.requests(PieceIndex(2)), 0);
        fl.add(PieceIndex(1), S2);
        let mut losers = fl.finish(PieceIndex(1));
        losers.sort();
        assert_eq!(losers, [S0, S2]);
        assert!(fl.is_empty());
        fl.add(PieceIndex(5), S0);
        fl.remove(PieceIndex(5), S0);
        assert!(fl.is_empty());
    }

    /// A small deterministic generator for the property tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            tie(self.0, PieceIndex(0))
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn field(&mut self, len: u32, percent: u64) -> Bitfield {
            let mut b = Bitfield::new(len);
            for i in 0..len {
                if self.below(100) < percent {
                    b.set(PieceIndex(i));
                }
            }
            b
        }
    }

    /// Random swarms: whatever is picked is held by the source, not verified, not already
    /// fetched from this source; a fresh pick is never rarer-beaten by another fresh candidate;
    /// duplicates happen only in endgame and within the cap; `None` only when nothing qualifies.
    #[test]
    fn property_picks_are_always_legal_and_rarest() {
        let mut rng = Rng(42);
        for round in 0..2000 {
            let len = 1 + rng.below(40) as u32;
            let holders: Vec<Bitfield> = (0..1 + rng.below(6))
                .map(|_| {
                    let p = rng.below(101);
                    rng.field(len, p)
                })
                .collect();
            let avail = availability(len, &holders);
            let p_verified = rng.below(101);
            let verified = rng.field(len, p_verified);
            let mut fl = InFlight::new();
            for _ in 0..rng.below(2 * u64::from(len)) {
                let s = rng.below(holders.len() as u64) as usize;
                let i = PieceIndex(rng.below(u64::from(len)) as u32);
                if holders[s].get(i) && !verified.get(i) {
                    fl.add(i, SourceId(s as u32));
                }
            }
            let copies = 1 + rng.below(3) as usize;
            let v = View {
                verified: &verified,
                availability: &avail,
                in_flight: &fl,
                endgame_copies: copies,
            };
            let s = rng.below(holders.len() as u64) as usize;
            let (src, has) = (SourceId(s as u32), &holders[s]);
            let seed = rng.next();
            let fresh: Vec<PieceIndex> = has
                .ones()
                .filter(|&i| !verified.get(i) && fl.requests(i) == 0)
                .collect();
            let endgame = verified
                .zeros()
                .filter(|i| avail[i.as_usize()] > 0)
                .all(|i| fl.requests(i) > 0);
            let ctx = format!("round {round}");
            match pick(&v, src, has, seed) {
                Some(Pick::Piece(i)) => {
                    assert!(has.get(i) && !verified.get(i), "{ctx}");
                    assert_eq!(fl.requests(i), 0, "{ctx}");
                    let rarest = fresh.iter().map(|f| avail[f.as_usize()]).min().unwrap();
                    assert_eq!(avail[i.as_usize()], rarest, "{ctx}: not rarest");
                }
                Some(Pick::Duplicate(i)) => {
                    assert!(has.get(i) && !verified.get(i), "{ctx}");
                    assert!(
                        fresh.is_empty() && endgame,
                        "{ctx}: duplicate outside endgame"
                    );
                    assert!(!fl.is_requested_from(i, src), "{ctx}: same source twice");
                    assert!(fl.requests(i) < copies, "{ctx}: over the cap");
                }
                None => {
                    assert!(fresh.is_empty(), "{ctx}: idle with fresh pieces");
                    if endgame {
                        assert!(
                            has.ones().all(|i| verified.get(i)
                                || fl.is_requested_from(i, src)
                                || fl.requests(i) >= copies),
                            "{ctx}: idle in endgame with a piece to duplicate"
                        );
                    }
                }
            }
        }
    }

    /// Picking until done, with sources that each fetch whatever they are given, verifies every
    /// piece that some holder has and never fetches a verified piece.
    #[test]
    fn property_a_simulated_download_completes() {
        let mut rng = Rng(7);
        for _ in 0..200 {
            let len = 1 + rng.below(30) as u32;
            let mut holders: Vec<Bitfield> = (0..1 + rng.below(4))
                .map(|_| {
                    let p = rng.below(101);
                    rng.field(len, p)
                })
                .collect();
            holders.push(Bitfield::full(len));
            let avail = availability(len, &holders);
            let mut verified = Bitfield::new(len);
            let mut fl = InFlight::new();
            let mut steps = 0;
            while !verified.is_complete() {
                steps += 1;
                assert!(steps < 10_000, "no progress");
                let s = rng.below(holders.len() as u64) as usize;
                let v = View {
                    verified: &verified,
                    availability: &avail,
                    in_flight: &fl,
                    endgame_copies: 2,
                };
                if let Some(p) = pick(&v, SourceId(s as u32), &holders[s], rng.next()) {
                    assert!(!verified.get(p.piece()));
                    assert!(fl.add(p.piece(), SourceId(s as u32)));
                }
                // Some request completes.
                if rng.below(2) == 0 {
                    let done = verified.zeros().find(|&i| fl.requests(i) > 0);
                    if let Some(i) = done {
                        fl.finish(i);
                        assert!(verified.set(i));
                    }
                }
            }
            assert!(fl.is_empty());
        }
    }
}
