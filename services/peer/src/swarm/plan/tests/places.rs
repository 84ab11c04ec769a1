//! Which holders are used at once, and what complete holders are asked for.

use super::*;

#[test]
fn the_last_place_goes_in_turn_to_holders_outside_and_a_faster_one_keeps_a_place() {
    // Six complete holders that all delivered, at 6, 5, .. 1 MiB/s; three used at once.
    let mut s = Sim::with(100, &[false; 6], 3);
    for i in 0..6u32 {
        let src = s.plan.source_mut(SourceId(i));
        src.delivered = 1;
        src.rate = Some(f64::from(6 - i) * MIB as f64);
    }
    let mut seen = BTreeSet::new();
    for _ in 0..4 {
        let a = s.plan.active(&s.verified, s.now);
        assert_eq!(a.len(), 3, "{a:?}");
        assert_eq!(
            a[..2],
            [SourceId(0), SourceId(1)],
            "the fastest keep their places"
        );
        seen.insert(a[2]);
        let later = s.plan.active(&s.verified, s.now + OPTIMISTIC_EVERY / 2);
        assert_eq!(
            later[2], a[2],
            "the optimistic place is kept for OPTIMISTIC_EVERY"
        );
        s.now += OPTIMISTIC_EVERY;
    }
    assert_eq!(
        seen,
        (2..6).map(SourceId).collect(),
        "every holder outside had the optimistic place in turn"
    );
    // One of them proves faster than the second: it takes a place of its own.
    s.plan.source_mut(SourceId(5)).rate = Some(10.0 * MIB as f64);
    let a = s.plan.active(&s.verified, s.now);
    assert_eq!(a[..2], [SourceId(5), SourceId(0)]);
    // Fewer holders than places: all of them, no rotation.
    let mut few = Sim::with(10, &[false; 2], 3);
    assert_eq!(
        few.plan.active(&few.verified, few.now),
        vec![SourceId(0), SourceId(1)]
    );
}

#[test]
fn complete_holders_are_asked_for_what_fewer_than_two_partial_holders_have() {
    // A seed and two partial holders of a 5-piece file.
    let mut s = Sim::new(5, &[false, true, true]);
    assert_eq!(s.plan.partial_availability(), None, "no bitfield yet");
    s.plan.bitfields_due(s.now);
    s.plan
        .bitfield(SourceId(1), Some((field(5, &[0, 1, 2]), false)), s.now);
    s.plan
        .bitfield(SourceId(2), Some((field(5, &[0, 1, 3]), false)), s.now);
    // A bitfield is a claim: partial holders count once they have delivered a block.
    assert_eq!(s.plan.partial_availability(), None, "none delivered yet");
    s.plan.change(SourceId(1), |src| src.delivered = 1);
    assert_eq!(s.plan.partial_availability().unwrap(), [1, 1, 1, 0, 0]);
    s.plan.change(SourceId(2), |src| src.delivered = 1);
    let held = s.plan.partial_availability().unwrap();
    assert_eq!(held, [2, 2, 1, 1, 0]);
    let ones = |b: Bitfield| -> Vec<u32> { b.ones().map(|p| p.0).collect() };
    // Piece 4 nobody has: only that.
    assert_eq!(
        ones(s.plan.for_complete_holders(&Bitfield::new(5), &held)),
        [4]
    );
    // Piece 4 done here: the pieces one partial holder has.
    assert_eq!(
        ones(s.plan.for_complete_holders(&field(5, &[4]), &held)),
        [2, 3]
    );
    // Only pieces both partial holders have are missing: nothing for the seed.
    assert_eq!(
        ones(s.plan.for_complete_holders(&field(5, &[2, 3, 4]), &held)),
        Vec::<u32>::new()
    );
}

#[test]
fn a_deferred_piece_is_insisted_on_only_when_no_partial_holder_has_it() {
    // A seed and a partial holder of piece 1; the seed deferred pieces 0 and 1.
    let mut s = Sim::new(3, &[false, true]);
    s.plan.bitfields_due(s.now);
    s.plan
        .bitfield(SourceId(1), Some((field(3, &[1]), false)), s.now);
    s.plan.change(SourceId(1), |src| src.delivered = 1);
    for p in [0, 1] {
        s.plan
            .source_mut(SourceId(0))
            .deferred
            .insert(PieceIndex(p));
    }
    let held = s.plan.partial_availability().unwrap();
    let verified = Bitfield::new(3);
    let first = s
        .plan
        .insist_on_deferred(SourceId(0), &verified, Some(&held), s.now);
    assert_eq!(first, Some((PieceIndex(0), 0)), "nobody else has piece 0");
    let second = s
        .plan
        .insist_on_deferred(SourceId(0), &verified, Some(&held), s.now);
    assert_eq!(second, None, "piece 1 comes from its partial holder");
}

/// Issue 26's finding: past the room for candidates (4 per source in use), which new holders a
/// download keeps is its own seeded choice, complete holders first, not the tracker's order
/// (peer ids), which made every downloader keep the same ones.
#[test]
fn holders_past_the_room_are_a_seeded_choice_complete_ones_first() {
    let kept = |seed: u64| -> BTreeSet<String> {
        let tuning = Tuning {
            max_sources: 2,
            io_timeout: TIMEOUT,
            check_slots: 4,
            seed,
        };
        let mut plan: Plan<Handle> =
            Plan::new(Geometry::new(4 * MIB, MIB, MIB), 4, tuning, Instant::now());
        // 20 partial holders in id order, then one complete holder last; room for 8.
        let mut offered: Vec<Holder> = (0..20).map(|n| holder(n, true)).collect();
        offered.push(holder(99, false));
        assert_eq!(plan.add_holders(offered), 8);
        (0..8)
            .map(|i| plan.source(SourceId(i)).peer.peer_id.clone())
            .collect()
    };
    let (a, b) = (kept(1), kept(2));
    assert!(
        a.contains("peer-99") && b.contains("peer-99"),
        "{a:?} {b:?}"
    );
    assert_ne!(a, b, "two downloads keep the same holders");
    let first: BTreeSet<String> = (0..8).map(|n| format!("peer-{n}")).collect();
    assert_ne!(a, first, "the tracker's first holders, in its order");
    assert_eq!(kept(1), a, "the choice follows the seed");
}

#[test]
fn the_only_holder_of_a_piece_being_put_together_keeps_a_place() {
    // A slow seed and two fast partial holders that lack piece 0; two places.
    let mut s = Sim::blocks(4, 4, &[false, true, true], 2);
    for (i, rate) in [(0, 1), (1, 8), (2, 8)] {
        let src = s.plan.source_mut(SourceId(i));
        src.delivered = 1;
        src.rate = Some(f64::from(rate) * MIB as f64);
    }
    for i in 1..3 {
        s.plan
            .bitfield(SourceId(i), Some((field(4, &[1, 2, 3]), false)), s.now);
    }
    let a = s.plan.active(&s.verified, s.now);
    assert!(!a.contains(&SourceId(0)), "the slow seed waits: {a:?}");
    // Piece 0 was begun at the seed, which alone holds it: the seed comes back in, first, or
    // the blocks already in would wait for as long as it stays outside.
    let mut begun = Open::new(4, s.now);
    begun.got[0] = Some(SourceId(0));
    s.plan.open.insert(PieceIndex(0), begun);
    let a = s.plan.active(&s.verified, s.now);
    assert_eq!((a.len(), a[0]), (2, SourceId(0)), "{a:?}");
    // Once a partial holder has piece 0 too, the seed is one holder among others again.
    s.plan
        .bitfield(SourceId(1), Some((field(4, &[0, 1, 2, 3]), false)), s.now);
    let a = s.plan.active(&s.verified, s.now);
    assert_eq!(a[0], SourceId(1), "{a:?}");
}

#[test]
fn a_source_asked_in_rounds_is_measured_over_the_time_it_was_busy() {
    // Two 256 KiB blocks at a time, both back within 50 ms, then 200 ms with nothing asked of
    // it: 10 MiB/s while busy, a fifth of that over the wall clock. Each round used to start
    // a window afresh, which never reached RATE_WINDOW: the source kept no rate at all.
    let mut s = Sim::blocks(64, 4, &[false], 8);
    let mut rounds = 0;
    while s.plan.source(SourceId(0)).rate.is_none() && rounds < 20 {
        let asks = s.assign();
        assert_eq!(asks.len(), MIN_DEPTH, "no rate yet: {asks:?}");
        let mut took = Duration::from_millis(50);
        for a in asks {
            if let Next::Check(_) = s.arrive(a, took) {
                s.verified.set(a.piece);
                s.plan.checked(a.piece, Checked::Verified(None), s.now);
            }
            took = Duration::ZERO;
        }
        s.now += Duration::from_millis(200);
        rounds += 1;
    }
    let rate = s
        .plan
        .source(SourceId(0))
        .rate
        .expect("a rate after 20 rounds");
    let mib = rate / MIB as f64;
    assert!(
        (9.0..=11.0).contains(&mib),
        "{mib:.2} MiB/s after {rounds} rounds"
    );
    assert_eq!(rounds, 10, "measured once RATE_WINDOW of busy time went by");
}
