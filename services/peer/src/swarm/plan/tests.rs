//! The plan on its own: sources and pieces made up, time moved by hand, no socket.

use super::*;

/// What cancels a request in these tests: the request itself, so a test can say which.
type Handle = (u32, u32);

const TIMEOUT: Duration = Duration::from_secs(5);

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
        let now = Instant::now();
        let tuning = Tuning {
            max_sources,
            io_timeout: TIMEOUT,
            check_slots: 4,
            seed: 7,
        };
        let mut plan = Plan::new(pieces, tuning, now);
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
        let active = self.plan.active(&self.verified);
        let mut asks = Vec::new();
        let meters = &mut self.meters;
        self.plan
            .assign(&active, &self.verified, self.now, |peer, ask, meter| {
                assert_eq!(peer.peer_id, format!("peer-{}", ask.source.0));
                asks.push(ask);
                meters.push((ask, Arc::clone(meter)));
                Some((ask.source.0, ask.piece.0))
            });
        asks
    }

    fn meter(&self, ask: Ask) -> &Meter {
        &self.meters.iter().rev().find(|(a, _)| *a == ask).unwrap().1
    }

    /// `ask`'s bytes (1 MiB) arrive after `took`, to be checked.
    fn arrive(&mut self, ask: Ask, took: Duration) -> Next<Handle> {
        self.plan
            .fetched(ask.source, ask.piece, Fetched::Bytes { len: 1 << 20, took })
    }

    /// `ask`'s bytes arrive after `took` and verify.
    fn deliver(&mut self, ask: Ask, took: Duration) -> Next<Handle> {
        assert_eq!(self.arrive(ask, took), Next::Check);
        self.verified.set(ask.piece);
        self.plan
            .checked(ask.source, ask.piece, Checked::Verified, self.now)
    }
}

fn pieces(asks: &[Ask]) -> Vec<u32> {
    let mut v: Vec<u32> = asks.iter().map(|a| a.piece.0).collect();
    v.sort_unstable();
    v
}

#[test]
fn each_source_gets_two_different_pieces_and_is_told_first_once() {
    let mut s = Sim::new(10, &[false, false, false]);
    let asks = s.assign();
    assert_eq!(asks.len(), 6, "{asks:?}");
    let mut p = pieces(&asks);
    p.dedup();
    assert_eq!(p.len(), 6, "no piece asked twice outside endgame: {asks:?}");
    for src in 0..3 {
        let mine: Vec<&Ask> = asks.iter().filter(|a| a.source.0 == src).collect();
        assert_eq!(mine.len(), 2);
        assert!(mine[0].first && !mine[1].first, "{mine:?}");
        assert!(!mine[0].insist && !mine[1].insist);
    }
    assert!(s.assign().is_empty(), "every source is busy");
}

#[test]
fn the_request_budget_caps_second_requests() {
    let mut s = Sim::new(100, &[false; 6]);
    let asks = s.assign();
    // One each, then second ones until REQUEST_BUDGET requests run.
    assert_eq!(asks.len(), REQUEST_BUDGET, "{asks:?}");
    let firsts = asks.iter().filter(|a| a.first).count();
    assert_eq!(firsts, 6);
}

#[test]
fn max_sources_bounds_the_sources_in_use_and_keeps_the_busy_ones() {
    let mut s = Sim::with(20, &[false; 5], 2);
    let asks = s.assign();
    let used: BTreeSet<u32> = asks.iter().map(|a| a.source.0).collect();
    assert_eq!(used.len(), 2, "{asks:?}");
    // The busy sources stay the active ones.
    let active: BTreeSet<u32> = s.plan.active(&s.verified).iter().map(|i| i.0).collect();
    assert_eq!(active, used);
}

#[test]
fn a_slow_source_loses_its_piece_to_an_idle_fast_one_after_the_timeout() {
    // Peer 0 holds everything; peer 1 is partial and holds 0 and 1.
    let mut s = Sim::new(4, &[false, true]);
    assert_eq!(s.plan.bitfields_due(s.now), vec![SourceId(1)]);
    assert_eq!(
        s.plan.bitfield(SourceId(1), Some(field(4, &[0, 1])), s.now),
        Next::Continue
    );
    let asks = s.assign();
    // The partial holder is asked for its two; the complete one for one piece nobody else has.
    let (partial, complete): (Vec<Ask>, Vec<Ask>) = asks.iter().partition(|a| a.source.0 == 1);
    assert_eq!(pieces(&partial), vec![0, 1]);
    assert_eq!(complete.len(), 1, "{asks:?}");
    let slow = complete[0];
    assert!(slow.piece.0 >= 2);
    for a in partial {
        assert_eq!(
            s.deliver(a, Duration::from_millis(10)),
            Next::Cancel(vec![])
        );
    }
    // Peer 1 got the slow piece meanwhile (from elsewhere) and is idle.
    s.plan
        .bitfield(SourceId(1), Some(field(4, &[0, 1, slow.piece.0])), s.now);
    s.meter(slow).add(10);
    s.now += TIMEOUT / 2;
    assert!(s.assign().is_empty(), "too early to call it slow");
    s.now += TIMEOUT;
    let rescue = s.assign();
    assert_eq!(rescue.len(), 1, "{rescue:?}");
    assert_eq!((rescue[0].source.0, rescue[0].piece), (1, slow.piece));
    // Whichever copy verifies first wins: the slow one is cancelled.
    assert_eq!(
        s.deliver(rescue[0], Duration::from_millis(10)),
        Next::Cancel(vec![(0, slow.piece.0)])
    );
    assert_eq!(s.arrive(slow, TIMEOUT), Next::Stale);
}

#[test]
fn a_source_that_is_only_somewhat_slower_keeps_its_piece() {
    let mut s = Sim::new(4, &[false, true]);
    s.plan.bitfields_due(s.now);
    s.plan.bitfield(SourceId(1), Some(field(4, &[0, 1])), s.now);
    let asks = s.assign();
    let slow = *asks.iter().find(|a| a.source.0 == 0).unwrap();
    for a in asks.iter().filter(|a| a.source.0 == 1) {
        s.deliver(*a, Duration::from_secs(1)); // 1 MiB/s
    }
    s.plan
        .bitfield(SourceId(1), Some(field(4, &[0, 1, slow.piece.0])), s.now);
    s.now += TIMEOUT * 2;
    // 5 MiB in 10 s: half the idle source's rate, not under a quarter of it.
    s.meter(slow).add(5 << 20);
    assert!(s.assign().is_empty());
}

#[test]
fn a_stall_is_only_a_stall_when_nothing_is_on_the_way_and_nothing_changes() {
    let stall = Duration::from_secs(30);
    // One partial holder that has nothing yet.
    let mut s = Sim::new(3, &[true]);
    s.plan.bitfields_due(s.now);
    s.plan.bitfield(SourceId(0), Some(field(3, &[])), s.now);
    assert!(s.assign().is_empty());
    assert!(
        !s.plan
            .stalled(s.now + stall - Duration::from_millis(1), stall)
    );
    assert!(s.plan.stalled(s.now + stall, stall));
    // Its bitfield grows: that is progress, and it is asked.
    s.now += stall;
    s.plan.bitfield(SourceId(0), Some(field(3, &[2])), s.now);
    assert!(!s.plan.stalled(s.now + stall / 2, stall));
    let asks = s.assign();
    assert_eq!(pieces(&asks), vec![2]);
    // A request on the way is never a stall, however long it takes.
    assert!(!s.plan.stalled(s.now + stall * 10, stall));
    assert!(!s.plan.is_idle());
}

#[test]
fn endgame_fetches_the_last_piece_from_two_sources_and_cancels_the_loser() {
    let mut s = Sim::new(1, &[false, false, false]);
    let asks = s.assign();
    assert_eq!(asks.len(), ENDGAME_COPIES, "{asks:?}");
    assert!(asks.iter().all(|a| a.piece == PieceIndex(0)));
    assert_ne!(asks[0].source, asks[1].source);
    let (win, lose) = (asks[1], asks[0]);
    assert_eq!(
        s.deliver(win, Duration::from_millis(5)),
        Next::Cancel(vec![(lose.source.0, 0)])
    );
    assert!(s.plan.is_idle());
    assert_eq!(
        s.plan.fetched(lose.source, lose.piece, Fetched::Failed),
        Next::Stale,
        "a cancelled request's late end drops nobody"
    );
    assert!(!s.plan.source(lose.source).dropped);
}

#[test]
fn a_copy_checked_after_the_winner_is_let_go() {
    let mut s = Sim::new(1, &[false, false]);
    let asks = s.assign();
    for a in &asks {
        let got = s.arrive(*a, Duration::from_millis(1));
        assert_eq!(got, Next::Check);
    }
    assert!(s.plan.is_checking());
    assert!(
        s.assign().is_empty(),
        "a piece being checked is not asked again"
    );
    let v = s
        .plan
        .checked(asks[0].source, asks[0].piece, Checked::Verified, s.now);
    assert_eq!(v, Next::Cancel(vec![]), "nothing left fetching it");
    assert!(
        s.plan.is_idle(),
        "the other check's record went with the piece"
    );
    let late = s
        .plan
        .checked(asks[1].source, asks[1].piece, Checked::AlreadyHad, s.now);
    assert_eq!(late, Next::Continue);
}

#[test]
fn a_bad_piece_drops_its_source_and_the_rest_comes_from_the_others() {
    let mut s = Sim::new(8, &[false, false]);
    let asks = s.assign();
    let bad = *asks.iter().find(|a| a.source.0 == 0).unwrap();
    let other_of_bad: Vec<Handle> = asks
        .iter()
        .filter(|a| a.source.0 == 0 && **a != bad)
        .map(|a| (0, a.piece.0))
        .collect();
    assert_eq!(s.arrive(bad, Duration::from_millis(1)), Next::Check);
    assert_eq!(
        s.plan.checked(bad.source, bad.piece, Checked::Bad, s.now),
        Next::Dropped(other_of_bad)
    );
    assert!(s.plan.source(SourceId(0)).dropped);
    assert_eq!(s.plan.active(&s.verified), vec![SourceId(1)]);
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
fn a_source_that_leaves_gives_back_its_pieces() {
    let mut s = Sim::new(4, &[false, false]);
    let asks = s.assign();
    assert_eq!(asks.len(), 4, "every piece asked once: {asks:?}");
    let gone: Vec<Ask> = asks.iter().copied().filter(|a| a.source.0 == 0).collect();
    assert_eq!(gone.len(), 2);
    let got = s
        .plan
        .fetched(gone[0].source, gone[0].piece, Fetched::Failed);
    assert_eq!(got, Next::Dropped(vec![(0, gone[1].piece.0)]));
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
    s.plan.bitfield(SourceId(0), Some(field(2, &[0, 1])), s.now);
    let asks = s.assign();
    assert_eq!(asks.len(), 2);
    let got = s
        .plan
        .fetched(asks[0].source, asks[0].piece, Fetched::NotHeld);
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
fn a_complete_holder_that_partial_holders_relieve_is_asked_for_one_piece_they_lack() {
    let mut s = Sim::new(6, &[false, true, true]);
    s.plan.bitfields_due(s.now);
    s.plan
        .bitfield(SourceId(1), Some(field(6, &[0, 1, 2])), s.now);
    s.plan.bitfield(SourceId(2), Some(field(6, &[2, 3])), s.now);
    let asks = s.assign();
    let seed: Vec<&Ask> = asks.iter().filter(|a| a.source.0 == 0).collect();
    assert_eq!(seed.len(), 1, "{asks:?}");
    assert!(
        seed[0].piece.0 >= 4,
        "only what no partial holder has: {asks:?}"
    );
    assert!(
        asks.iter()
            .filter(|a| a.source.0 != 0)
            .all(|a| a.piece.0 < 4)
    );
}

#[test]
fn a_deferred_piece_is_asked_for_last_and_then_with_insist() {
    let mut s = Sim::new(2, &[false]);
    let asks = s.assign();
    assert_eq!(asks.len(), 2);
    let (deferred, other) = (asks[0], asks[1]);
    assert_eq!(
        s.plan
            .fetched(deferred.source, deferred.piece, Fetched::Deferred),
        Next::Continue
    );
    assert!(!s.plan.source(SourceId(0)).dropped);
    assert!(
        s.assign().is_empty(),
        "not asked again while anything else is to be had"
    );
    s.deliver(other, Duration::from_millis(1));
    let again = s.assign();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].piece, deferred.piece);
    assert!(again[0].insist);
}

#[test]
fn checks_that_lag_behind_hold_new_requests_back() {
    let mut s = Sim::new(40, &[false, false, false, false, false]);
    let asks = s.assign();
    for a in asks.iter().take(4) {
        let got = s.arrive(*a, Duration::from_millis(1));
        assert_eq!(got, Next::Check);
    }
    assert!(s.assign().is_empty(), "four checks running, four slots");
    s.plan
        .checked(asks[0].source, asks[0].piece, Checked::Verified, s.now);
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
    let active = s.plan.active(&s.verified);
    s.plan
        .assign(&active, &s.verified, s.now, |_, _, _| None::<Handle>);
    assert!(s.plan.is_idle());
    assert_eq!(s.assign().len(), 2, "asked again next round");
}
