//! What a holder that defers pieces ("least served first") or answers busy is asked for, and
//! when.

use super::*;

#[test]
fn a_block_deferred_by_a_seed_is_not_followed_by_an_insisting_one() {
    let mut s = Sim::blocks(2, 4, &[false], 8);
    let asks = s.assign();
    // One block of each piece, none insisting.
    assert_eq!(asks.len(), 2, "{asks:?}");
    assert!(asks.iter().all(|a| a.block == 0 && !a.insist), "{asks:?}");
    // Piece 0 is deferred; piece 1 flows, so the seed took it up.
    let deferred = asks.iter().find(|a| a.piece == PieceIndex(0)).unwrap();
    let taken = asks.iter().find(|a| a.piece == PieceIndex(1)).unwrap();
    s.plan.fetched(
        deferred.source,
        deferred.piece,
        deferred.block,
        Fetched::Deferred,
        s.now,
    );
    s.meter(*taken).add(1);
    let more = s.assign();
    assert!(!more.is_empty(), "{more:?}");
    assert!(
        more.iter().all(|a| a.piece == PieceIndex(1) && a.insist),
        "only the piece taken up goes on, insisting: {more:?}"
    );
}

#[test]
fn a_deferred_piece_is_asked_for_last_and_then_with_insist() {
    let mut s = Sim::new(2, &[false]);
    let asks = s.assign();
    assert_eq!(asks.len(), 2);
    let (deferred, other) = (asks[0], asks[1]);
    assert_eq!(s.fail(deferred, Fetched::Deferred), Next::Continue);
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
fn a_busy_holder_rests_longer_each_time_in_a_row_and_is_kept() {
    let mut s = Sim::new(4, &[false]);
    let asks = s.assign();
    assert_eq!(asks.len(), 2);
    // Both requests of the pipeline answered busy: one rest, not two.
    for a in &asks {
        assert_eq!(s.fail(*a, Fetched::Busy), Next::Continue);
    }
    assert!(!s.plan.source(SourceId(0)).dropped);
    assert!(s.assign().is_empty(), "asked again while it rests");
    s.now += Duration::from_millis(250);
    let again = s.assign();
    assert_eq!(again.len(), 2, "asked again once the rest is over");
    assert!(again.iter().all(|a| !a.insist), "busy is not a deferral");
    // Busy again: twice the rest.
    assert_eq!(s.fail(again[0], Fetched::Busy), Next::Continue);
    s.now += Duration::from_millis(300);
    assert!(s.assign().is_empty(), "rests 500 ms the second time");
    s.now += Duration::from_millis(200);
    let third = s.assign();
    assert_eq!(third.len(), 1, "{third:?}");
    // A delivered block ends the streak: the next rest is the first one again.
    s.deliver(again[1], Duration::from_millis(1));
    assert_eq!(s.fail(third[0], Fetched::Busy), Next::Continue);
    s.now += Duration::from_millis(250);
    assert!(!s.assign().is_empty());
}
