//! The plan on its own: sources and pieces made up, time moved by hand, no socket.

use std::collections::BTreeSet;

use super::*;

/// What cancels a request in these tests: the request itself, so a test can say which.
type Handle = (u32, u32);

const TIMEOUT: Duration = Duration::from_secs(5);
const MIB: u64 = 1 << 20;

fn holder(n: u32, partial: bool) -> Holder {
    Holder {
        peer_id: format!("peer-{n}"),
        address: format!("127.0.0.1:{}", 5000 + n),
        partial,
        pieces_root: None,
    }
}

fn field(len: u32, ones: &[u32]) -> Bitfield {
    let mut b = Bitfield::new(len);
    for &i in ones {
        b.set(PieceIndex(i));
    }
    b
}

/// A download of `pieces` pieces with one source per entry of `partial` (`true`: a partial
/// holder, known to hold nothing until its bitfield comes).
struct Sim {
    plan: Plan<Handle>,
    verified: Bitfield,
    now: Instant,
    meters: Vec<(Ask, Arc<Meter>)>,
}

impl Sim {
    fn new(pieces: u32, partial: &[bool]) -> Self {
        Self::with(pieces, partial, 8)
    }

    fn with(pieces: u32, partial: &[bool], max_sources: usize) -> Self {
        Self::blocks(pieces, 1, partial, max_sources)
    }

    /// Pieces of 1 MiB in `blocks` blocks each.
    fn blocks(pieces: u32, blocks: u64, partial: &[bool], max_sources: usize) -> Self {
        let now = Instant::now();
        let tuning = Tuning {
            max_sources,
            io_timeout: TIMEOUT,
            check_slots: 4,
            seed: 7,
        };
        let geometry = Geometry::new(u64::from(pieces) * MIB, MIB, MIB / blocks);
        let mut plan = Plan::new(geometry, pieces, tuning, now);
        let added = plan.add_holders(
            partial
                .iter()
                .enumerate()
                .map(|(i, &p)| holder(i as u32, p)),
        );
        assert_eq!(added, partial.len());
        Sim {
            plan,
            verified: Bitfield::new(pieces),
            now,
            meters: Vec::new(),
        }
    }

    /// One round of asks, as the engine makes it.
    fn assign(&mut self) -> Vec<Ask> {
        let active = self.plan.active(&self.verified, self.now);
        let mut asks = Vec::new();
        let meters = &mut self.meters;
        self.plan
            .assign(&active, &self.verified, self.now, |peer, ask, meter| {
                assert_eq!(peer.peer_id, format!("peer-{}", ask.source.0));
                asks.push(ask);
                meters.push((ask, Arc::clone(meter)));
                Some((ask.source.0, ask.piece.0 * 100 + ask.block))
            });
        asks
    }

    fn meter(&self, ask: Ask) -> &Meter {
        &self.meters.iter().rev().find(|(a, _)| *a == ask).unwrap().1
    }

    /// `ask`'s bytes arrive after `took`.
    fn arrive(&mut self, ask: Ask, took: Duration) -> Next<Handle> {
        self.now += took;
        let len = self.plan.geometry().block_range(ask.piece, ask.block);
        self.plan.fetched(
            ask.source,
            ask.piece,
            ask.block,
            Fetched::Bytes {
                len: len.end - len.start,
            },
            self.now,
        )
    }

    /// `ask`'s bytes arrive after `took`, complete their piece and it verifies; returns the
    /// other copies of the block that were cancelled.
    fn deliver(&mut self, ask: Ask, took: Duration) -> Vec<Handle> {
        let Next::Check(cancelled) = self.arrive(ask, took) else {
            panic!("{ask:?} did not complete its piece");
        };
        self.verified.set(ask.piece);
        assert_eq!(
            self.plan
                .checked(ask.piece, Checked::Verified(None), self.now),
            Next::Continue
        );
        cancelled
    }

    fn fail(&mut self, ask: Ask, what: Fetched) -> Next<Handle> {
        self.plan
            .fetched(ask.source, ask.piece, ask.block, what, self.now)
    }
}

fn pieces(asks: &[Ask]) -> Vec<u32> {
    let mut v: Vec<u32> = asks.iter().map(|a| a.piece.0).collect();
    v.sort_unstable();
    v
}

#[test]
fn each_source_gets_two_blocks_and_is_told_first_once() {
    let mut s = Sim::blocks(10, 4, &[false, false, false], 8);
    let asks = s.assign();
    assert_eq!(asks.len(), 6, "{asks:?}");
    let mut blocks: Vec<(u32, u32)> = asks.iter().map(|a| (a.piece.0, a.block)).collect();
    blocks.sort_unstable();
    blocks.dedup();
    assert_eq!(
        blocks.len(),
        6,
        "no block asked twice outside endgame: {asks:?}"
    );
    let pieces: BTreeSet<u32> = asks.iter().map(|a| a.piece.0).collect();
    assert!(pieces.len() as u64 <= MAX_OPEN_BYTES / MIB, "{asks:?}");
    for src in 0..3 {
        let mine: Vec<&Ask> = asks.iter().filter(|a| a.source.0 == src).collect();
        assert_eq!(mine.len(), 2);
        assert!(mine[0].first && !mine[1].first, "{mine:?}");
    }
    assert!(s.assign().is_empty(), "every source is busy");
}

#[test]
fn pieces_started_at_once_are_bounded() {
    // Pieces of one 1 MiB block, 20 sources of 2 requests each: one piece each until the pieces
    // being put together hold MAX_OPEN_BYTES; the other sources wait for a piece to finish.
    let mut s = Sim::with(100, &[false; 20], 20);
    let asks = s.assign();
    let open = (MAX_OPEN_BYTES / MIB) as usize;
    assert_eq!(asks.len(), open, "{asks:?}");
    assert_eq!(pieces(&asks).len(), open, "{asks:?}");
    let firsts = asks.iter().filter(|a| a.first).count();
    assert_eq!(firsts, open.min(20));
}

#[test]
fn max_sources_bounds_the_sources_in_use_and_keeps_the_busy_ones() {
    let mut s = Sim::with(20, &[false; 5], 2);
    let asks = s.assign();
    let used: BTreeSet<u32> = asks.iter().map(|a| a.source.0).collect();
    assert_eq!(used.len(), 2, "{asks:?}");
    // The busy sources stay the active ones.
    let active: BTreeSet<u32> = s
        .plan
        .active(&s.verified, s.now)
        .iter()
        .map(|i| i.0)
        .collect();
    assert_eq!(active, used);
}

#[test]
fn a_refresh_keeps_a_bounded_set_of_candidates() {
    let mut s = Sim::with(4, &[], 2);
    let added = s.plan.add_holders((0..1000).map(|i| holder(i, true)));
    assert_eq!(added, 2 * CANDIDATES_PER_SOURCE);
    // A dropped source makes room for one more.
    let a = Ask {
        source: SourceId(0),
        piece: PieceIndex(0),
        block: 0,
        insist: false,
        first: true,
    };
    s.plan.bitfield(a.source, None, s.now);
    assert_eq!(s.plan.add_holders((1000..1010).map(|i| holder(i, true))), 1);
}

#[test]
fn a_piece_comes_in_blocks_from_several_sources_at_once() {
    let mut s = Sim::blocks(1, 4, &[false, false], 8);
    // A complete holder is asked for one block of a piece until it takes the piece up: it may
    // defer the piece ("least served first"), and a second block asked meanwhile with
    // `insist` would be sent anyway.
    let first = s.assign();
    assert!(
        first.iter().all(|a| a.piece == PieceIndex(0) && !a.insist),
        "{first:?}"
    );
    let asked: BTreeSet<u32> = first.iter().map(|a| a.block).collect();
    assert_eq!(
        asked,
        BTreeSet::from([0, 1]),
        "one block per source: {first:?}"
    );
    let from: BTreeSet<u32> = first.iter().map(|a| a.source.0).collect();
    assert_eq!(from.len(), 2, "both sources send blocks of the one piece");
    // Each first block came in (its copy at the other source is let go of): each source took
    // the piece up and is asked for more of it, with `insist`.
    let originals = [0, 1].map(|b| *first.iter().find(|a| a.block == b).unwrap());
    for a in originals {
        assert!(matches!(
            s.arrive(a, Duration::from_millis(1)),
            Next::Block(_)
        ));
    }
    let more = s.assign();
    let rest: BTreeSet<u32> = more.iter().map(|a| a.block).collect();
    assert_eq!(rest, BTreeSet::from([2, 3]), "{more:?}");
    assert!(more.iter().all(|a| a.insist && !a.first), "{more:?}");
    let last = *more.iter().find(|a| a.block == 3).unwrap();
    let other = *more.iter().find(|a| a.block == 2).unwrap();
    assert!(matches!(
        s.arrive(other, Duration::from_millis(1)),
        Next::Block(_)
    ));
    assert!(!s.plan.is_checking());
    assert!(matches!(
        s.arrive(last, Duration::from_millis(1)),
        Next::Check(_)
    ));
    assert!(s.plan.is_checking() && !s.plan.is_idle());
    assert_eq!(
        s.plan
            .checked(PieceIndex(0), Checked::Verified(None), s.now),
        Next::Continue
    );
    assert!(s.plan.is_idle());
}

#[test]
fn a_fast_source_gets_a_deeper_pipeline() {
    let mut s = Sim::blocks(64, 8, &[false], 8);
    let mut asks = s.assign();
    assert_eq!(asks.len(), MIN_DEPTH, "no rate yet: {asks:?}");
    // 128 KiB blocks every 2 ms (64 MiB/s): half a second of that is more than MAX_DEPTH blocks.
    for _ in 0..400 {
        if s.plan.fetching(SourceId(0)) == MAX_DEPTH {
            break;
        }
        let a = asks.remove(0);
        if let Next::Check(_) = s.arrive(a, Duration::from_millis(2)) {
            s.verified.set(a.piece);
            s.plan.checked(a.piece, Checked::Verified(None), s.now);
        }
        asks.extend(s.assign());
    }
    assert_eq!(
        s.plan.fetching(SourceId(0)),
        MAX_DEPTH,
        "a fast source keeps MAX_DEPTH blocks asked"
    );
}

#[test]
fn a_slow_source_loses_its_block_to_an_idle_fast_one_after_the_timeout() {
    // Peer 0 holds everything; peer 1 is partial and holds 0 and 1.
    let mut s = Sim::new(8, &[false, true]);
    assert_eq!(s.plan.bitfields_due(s.now), vec![SourceId(1)]);
    assert_eq!(
        s.plan
            .bitfield(SourceId(1), Some((field(8, &[0, 1]), false)), s.now),
        Next::Continue
    );
    let asks = s.assign();
    // The partial holder is asked for its two; the complete one only for pieces nobody else
    // has, and at most RELIEVED_DEPTH of them.
    let (partial, complete): (Vec<Ask>, Vec<Ask>) = asks.iter().partition(|a| a.source.0 == 1);
    assert_eq!(pieces(&partial), vec![0, 1]);
    assert_eq!(complete.len(), RELIEVED_DEPTH, "{asks:?}");
    assert!(complete.iter().all(|a| a.piece.0 >= 2));
    let slow = complete[0];
    for a in partial {
        assert_eq!(s.deliver(a, Duration::from_millis(10)), vec![]);
    }
    // Peer 1 got the slow piece meanwhile (from elsewhere) and is idle.
    s.plan.bitfield(
        SourceId(1),
        Some((field(8, &[0, 1, slow.piece.0]), false)),
        s.now,
    );
    s.meter(slow).add(10);
    s.now += TIMEOUT / 2;
    assert!(s.assign().is_empty(), "too early to call it slow");
    s.now += TIMEOUT;
    let rescue = s.assign();
    assert_eq!(rescue.len(), 1, "{rescue:?}");
    assert_eq!((rescue[0].source.0, rescue[0].piece), (1, slow.piece));
    // Whichever copy comes first is kept: the slow one is cancelled.
    assert_eq!(
        s.deliver(rescue[0], Duration::from_millis(10)),
        vec![(0, slow.piece.0 * 100)]
    );
    assert_eq!(s.arrive(slow, TIMEOUT), Next::Stale);
}

#[test]
fn a_source_that_is_only_somewhat_slower_keeps_its_block() {
    let mut s = Sim::new(8, &[false, true]);
    s.plan.bitfields_due(s.now);
    s.plan
        .bitfield(SourceId(1), Some((field(8, &[0, 1]), false)), s.now);
    let asks = s.assign();
    let slow = *asks.iter().find(|a| a.source.0 == 0).unwrap();
    for a in asks.iter().filter(|a| a.source.0 == 1) {
        s.deliver(*a, Duration::from_secs(1)); // 1 MiB/s
    }
    s.plan.bitfield(
        SourceId(1),
        Some((field(8, &[0, 1, slow.piece.0]), false)),
        s.now,
    );
    s.now += TIMEOUT * 2;
    // 5 MiB in more than 10 s: about half the idle source's rate, not under a quarter of it.
    s.meter(slow).add(5 << 20);
    assert!(s.assign().is_empty());
}

#[test]
fn a_stall_is_only_a_stall_when_nothing_is_on_the_way_and_nothing_changes() {
    let mut s = Sim::new(2, &[true]);
    let stall = Duration::from_secs(30);
    assert!(!s.plan.stalled(s.now, stall));
    s.plan.bitfields_due(s.now);
    s.plan
        .bitfield(SourceId(0), Some((field(2, &[]), false)), s.now);
    assert!(s.assign().is_empty(), "it holds nothing yet");
    assert!(!s.plan.stalled(s.now + stall / 2, stall));
    // A bitfield that grows is progress.
    s.plan.bitfield(
        SourceId(0),
        Some((field(2, &[1]), false)),
        s.now + stall / 2,
    );
    assert!(!s.plan.stalled(s.now + stall, stall));
    let asks = s.assign();
    assert_eq!(asks.len(), 1);
    assert!(!s.plan.stalled(s.now + stall * 3, stall), "a request runs");
}

#[test]
fn endgame_fetches_the_last_block_from_two_sources_and_cancels_the_loser() {
    let mut s = Sim::new(1, &[false, false, false]);
    let asks = s.assign();
    assert_eq!(asks.len(), ENDGAME_COPIES, "{asks:?}");
    assert!(asks.iter().all(|a| a.piece == PieceIndex(0)));
    assert_ne!(asks[0].source, asks[1].source);
    let (win, lose) = (asks[1], asks[0]);
    assert_eq!(
        s.deliver(win, Duration::from_millis(5)),
        vec![(lose.source.0, 0)]
    );
    assert!(s.plan.is_idle());
    assert_eq!(
        s.fail(lose, Fetched::Failed),
        Next::Stale,
        "a cancelled request's late end drops nobody"
    );
    assert!(!s.plan.source(lose.source).dropped);
}

#[test]
fn a_bad_piece_from_one_source_blames_it_and_the_rest_comes_from_the_others() {
    let mut s = Sim::new(8, &[false, false]);
    let asks = s.assign();
    let bad = *asks.iter().find(|a| a.source.0 == 0).unwrap();
    let other_of_bad: Vec<Handle> = asks
        .iter()
        .filter(|a| a.source.0 == 0 && **a != bad)
        .map(|a| (0, a.piece.0 * 100))
        .collect();
    assert_eq!(s.arrive(bad, Duration::from_millis(1)), Next::Check(vec![]));
    assert_eq!(
        s.plan.checked(bad.piece, Checked::Bad(vec![]), s.now),
        Next::Blame(vec![SourceId(0)])
    );
    assert_eq!(s.plan.blame(SourceId(0)), Next::Dropped(other_of_bad));
    assert!(s.plan.source(SourceId(0)).dropped);
    assert_eq!(s.plan.active(&s.verified, s.now), vec![SourceId(1)]);
    // Source 1's first requests still run; everything else now comes from it alone.
    let mut open: Vec<Ask> = asks.into_iter().filter(|a| a.source.0 == 1).collect();
    for _ in 0..20 {
        open.extend(s.assign());
        assert!(open.iter().all(|a| a.source.0 == 1), "{open:?}");
        let Some(a) = open.pop() else { break };
        s.deliver(a, Duration::from_millis(1));
    }
    assert!(
        s.verified.is_complete(),
        "the bad source's piece came from the other"
    );
}

#[test]
fn a_bad_piece_of_several_sources_is_fetched_from_one_and_only_the_liar_is_blamed() {
    let d = |b: u8| Digest([b; 32]);
    let mut s = Sim::blocks(1, 2, &[false, false, false], 8);
    let asks = s.assign();
    let (b0, b1) = (
        *asks.iter().find(|a| a.block == 0).unwrap(),
        *asks.iter().find(|a| a.block == 1).unwrap(),
    );
    assert_ne!(b0.source, b1.source);
    // Endgame copies of each block may run too; the first copy of each block is taken.
    assert!(matches!(s.arrive(b0, Duration::ZERO), Next::Block(_)));
    assert!(matches!(s.arrive(b1, Duration::ZERO), Next::Check(_)));
    // Block 1 was bad: nobody can tell yet who lied.
    assert_eq!(
        s.plan
            .checked(PieceIndex(0), Checked::Bad(vec![d(0), d(66)]), s.now),
        Next::Continue
    );
    assert!(s.plan.ids().all(|i| !s.plan.source(i).dropped));
    // Fetched again, from one source alone.
    let mut again = s.assign();
    assert_eq!(
        again.len(),
        1,
        "one block until the source takes it up: {again:?}"
    );
    s.meter(again[0]).add(1);
    again.extend(s.assign());
    let solo: BTreeSet<u32> = again.iter().map(|a| a.source.0).collect();
    assert_eq!(solo.len(), 1, "{again:?}");
    assert_eq!(again.len(), 2, "both blocks, from that source: {again:?}");
    assert!(s.plan.wants_block_digests(PieceIndex(0)));
    assert!(matches!(s.arrive(again[0], Duration::ZERO), Next::Block(_)));
    assert!(matches!(s.arrive(again[1], Duration::ZERO), Next::Check(_)));
    // The verified copy's block 1 differs from what b1's source sent: that source lied.
    assert_eq!(
        s.plan.checked(
            PieceIndex(0),
            Checked::Verified(Some(vec![d(0), d(1)])),
            s.now
        ),
        Next::Blame(vec![b1.source])
    );
}

#[test]
fn a_source_that_leaves_gives_back_its_pieces() {
    let mut s = Sim::new(4, &[false, false]);
    let asks = s.assign();
    assert_eq!(asks.len(), 4, "every piece asked once: {asks:?}");
    let gone: Vec<Ask> = asks.iter().copied().filter(|a| a.source.0 == 0).collect();
    assert_eq!(gone.len(), 2);
    let got = s.fail(gone[0], Fetched::Failed);
    assert_eq!(got, Next::Dropped(vec![(0, gone[1].piece.0 * 100)]));
    // A second failure of a dropped source is not reported twice.
    assert_eq!(
        s.plan.bitfield(SourceId(0), None, s.now),
        Next::Continue,
        "dropped once"
    );
    for a in asks.iter().filter(|a| a.source.0 == 1) {
        s.deliver(*a, Duration::from_millis(1));
    }
    let again = s.assign();
    assert!(again.iter().all(|a| a.source.0 == 1));
    assert_eq!(
        pieces(&again),
        pieces(&gone),
        "the left source's pieces are asked of the other"
    );
}

#[test]
fn a_partial_holder_that_lacks_a_piece_is_asked_again_for_its_bitfield_not_dropped() {
    let mut s = Sim::new(2, &[true]);
    assert_eq!(s.plan.bitfields_due(s.now), vec![SourceId(0)]);
    assert!(s.plan.bitfields_due(s.now).is_empty(), "one ask at a time");
    s.plan
        .bitfield(SourceId(0), Some((field(2, &[0, 1]), false)), s.now);
    let asks = s.assign();
    assert_eq!(asks.len(), 2);
    let got = s.fail(asks[0], Fetched::NotHeld);
    assert_eq!(got, Next::Continue);
    assert!(!s.plan.source(SourceId(0)).dropped);
    assert!(s.plan.source(SourceId(0)).has.is_none());
    assert!(
        s.assign().is_empty(),
        "not asked for pieces until its bitfield is in"
    );
    assert!(
        s.plan.bitfields_due(s.now).is_empty(),
        "not due before BITFIELD_EVERY"
    );
    assert_eq!(
        s.plan.bitfields_due(s.now + BITFIELD_EVERY),
        vec![SourceId(0)]
    );
}

#[test]
fn a_complete_holder_that_partial_holders_relieve_is_asked_only_for_what_they_lack() {
    let mut s = Sim::blocks(6, 4, &[false, true, true], 8);
    s.plan.bitfields_due(s.now);
    s.plan
        .bitfield(SourceId(1), Some((field(6, &[0, 1, 2]), false)), s.now);
    s.plan
        .bitfield(SourceId(2), Some((field(6, &[2, 3]), false)), s.now);
    // Partial holders relieve the seed once they have delivered a block.
    for id in [1, 2] {
        s.plan.change(SourceId(id), |src| src.delivered = 1);
    }
    let asks = s.assign();
    let seed: Vec<&Ask> = asks.iter().filter(|a| a.source.0 == 0).collect();
    assert_eq!(seed.len(), RELIEVED_DEPTH, "{asks:?}");
    assert!(
        seed.iter().all(|a| a.piece.0 >= 4),
        "only what no partial holder has: {asks:?}"
    );
    assert!(
        asks.iter()
            .filter(|a| a.source.0 != 0)
            .all(|a| a.piece.0 < 4)
    );
}

#[test]
fn checks_that_lag_behind_hold_new_requests_back() {
    let mut s = Sim::new(40, &[false, false, false, false, false]);
    let asks = s.assign();
    for a in asks.iter().take(4) {
        let got = s.arrive(*a, Duration::from_millis(1));
        assert_eq!(got, Next::Check(vec![]));
    }
    assert!(s.assign().is_empty(), "four checks running, four slots");
    s.plan
        .checked(asks[0].piece, Checked::Verified(None), s.now);
    s.verified.set(asks[0].piece);
    assert!(!s.assign().is_empty());
}

#[test]
fn a_refresh_adds_only_holders_not_seen_and_never_excluded_ones() {
    let mut s = Sim::new(4, &[false]);
    s.plan.exclude([holder(7, false).address]);
    assert_eq!(
        s.plan
            .add_holders([holder(0, false), holder(7, false), holder(1, true)]),
        1
    );
    assert_eq!(s.plan.source(SourceId(1)).peer.peer_id, "peer-1");
}

#[test]
fn a_request_that_could_not_start_is_not_on_the_way() {
    let mut s = Sim::new(3, &[false]);
    let active = s.plan.active(&s.verified, s.now);
    s.plan
        .assign(&active, &s.verified, s.now, |_, _, _| None::<Handle>);
    assert!(s.plan.is_idle());
    assert_eq!(s.assign().len(), 2, "asked again next round");
}

#[test]
fn a_silent_source_is_set_aside_and_its_blocks_are_asked_elsewhere() {
    let mut s = Sim::with(8, &[false, false, false], 2);
    let asks = s.assign();
    let busy: BTreeSet<u32> = asks.iter().map(|a| a.source.0).collect();
    assert_eq!(busy.len(), 2, "{asks:?}");
    let quiet = asks[0].source;
    // The third holder has sent blocks before (rescues go to proven holders); the other busy
    // source sends something now, the quiet one nothing.
    s.plan.change(SourceId(2), |src| src.delivered = 1);
    for a in asks.iter().filter(|a| a.source != quiet) {
        s.meter(*a).add(1);
    }
    s.now += FIRST_BYTE / 2;
    assert!(!s.plan.is_silent(quiet, s.now), "too early");
    s.now += FIRST_BYTE;
    assert!(s.plan.is_silent(quiet, s.now));
    let active = s.plan.active(&s.verified, s.now);
    assert!(!active.contains(&quiet), "{active:?}");
    assert!(
        active.contains(&SourceId(2)),
        "the third holder takes its place"
    );
    let next = s.assign();
    let quiet_blocks: BTreeSet<(PieceIndex, u32)> = asks
        .iter()
        .filter(|a| a.source == quiet)
        .map(|a| (a.piece, a.block))
        .collect();
    let rescued = next
        .iter()
        .filter(|a| quiet_blocks.contains(&(a.piece, a.block)))
        .count();
    assert!(
        rescued > 0,
        "the silent source's blocks are asked elsewhere: {next:?}"
    );
    assert!(next.iter().all(|a| a.source != quiet));
}

#[test]
fn a_holder_that_waits_for_news_is_asked_again_soon_and_after_what_it_holds() {
    // Two partial holders: one answers plain bitfields (polled every BITFIELD_EVERY), one
    // takes `?after=N` (asked again HAVE_GAP after each answer, after the pieces it holds).
    let mut s = Sim::new(8, &[true, true]);
    assert_eq!(s.plan.bitfields_due(s.now), vec![SourceId(0), SourceId(1)]);
    assert_eq!(
        s.plan.source(SourceId(1)).have_after(),
        None,
        "nothing known yet"
    );
    s.plan
        .bitfield(SourceId(0), Some((field(8, &[0]), false)), s.now);
    s.plan
        .bitfield(SourceId(1), Some((field(8, &[0, 3, 5]), true)), s.now);
    assert_eq!(s.plan.source(SourceId(0)).have_after(), None);
    assert_eq!(s.plan.source(SourceId(1)).have_after(), Some(3));
    assert!(s.plan.bitfields_due(s.now + HAVE_GAP / 2).is_empty());
    assert_eq!(
        s.plan.bitfields_due(s.now + HAVE_GAP),
        vec![SourceId(1)],
        "the waiting holder is asked again after HAVE_GAP"
    );
    assert!(s.plan.bitfields_due(s.now + BITFIELD_EVERY / 2).is_empty());
    assert_eq!(
        s.plan.bitfields_due(s.now + BITFIELD_EVERY),
        vec![SourceId(0)],
        "the other is polled after BITFIELD_EVERY"
    );
}

mod places;
mod seeds;
