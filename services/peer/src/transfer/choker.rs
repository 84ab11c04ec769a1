//! Who is served first when uploads are contended: the rule, pure (no sockets, no clock).
//!
//! BitTorrent's answer, adapted to HTTP requests: a peer sends bodies on a few upload slots
//! (`transfer.upload_slots`); when they are all busy, piece requests wait, and a freed slot goes
//! to the waiting peer that gave this process the most lately (the [`super::ledger`]), as a
//! BitTorrent peer unchokes the peers it downloads from fastest. Peers that gave nothing
//! (newcomers, and free riders, which look the same) are served in arrival order after them,
//! except for one optimistic slot: whenever no newcomer holds a slot, the oldest waiting one gets
//! the next, so a newcomer always gets something to start trading with. Nothing is refused: the
//! rule only orders the queue (a request waits at most a bounded time, then is served anyway).

use super::ledger::Standing;

/// How a request ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Gave this process `credit` bytes lately (decayed), from the IP it connects from.
    Reciprocating { credit: u64 },
    /// Gave nothing (or nothing we can tie to it): a newcomer or a free rider.
    Newcomer,
}

impl Class {
    pub(crate) fn of(standing: Standing) -> Class {
        match standing {
            Standing::Gave(credit) if credit > 0 => Class::Reciprocating { credit },
            _ => Class::Newcomer,
        }
    }

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Class::Reciprocating { .. } => "reciprocating",
            Class::Newcomer => "newcomer",
        }
    }

    pub(crate) fn is_newcomer(self) -> bool {
        self == Class::Newcomer
    }
}

/// Whether a request that arrives now is sent at once: a slot is free and nobody waits for
/// one (`slots` 0: no cap).
pub(crate) fn admit_now(slots: usize, busy: usize, waiting: usize) -> bool {
    slots == 0 || (busy < slots && waiting == 0)
}

/// Which of `waiting` (in arrival order) gets a freed slot, given how many slots newcomers
/// hold now: the oldest newcomer when none holds one (the optimistic slot), else the
/// reciprocating peer with the most credit (the oldest of equals), else the oldest newcomer.
pub(crate) fn next(waiting: &[Class], newcomers_busy: usize) -> Option<usize> {
    let oldest_newcomer = waiting.iter().position(|c| c.is_newcomer());
    if newcomers_busy == 0 && oldest_newcomer.is_some() {
        return oldest_newcomer;
    }
    let best = waiting
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            Class::Reciprocating { credit } => Some((i, *credit)),
            Class::Newcomer => None,
        })
        // max_by_key keeps the last of equals: reverse the index so the oldest wins.
        .max_by_key(|&(i, credit)| (credit, std::cmp::Reverse(i)))
        .map(|(i, _)| i);
    best.or(oldest_newcomer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: Class = Class::Newcomer;

    fn r(credit: u64) -> Class {
        Class::Reciprocating { credit }
    }

    #[test]
    fn standing_makes_the_class() {
        assert_eq!(Class::of(Standing::Gave(7)), r(7));
        // Nothing given, nothing we can tie to the requester, or no claim at all.
        assert_eq!(Class::of(Standing::Gave(0)), N);
        assert_eq!(Class::of(Standing::Mismatch), N);
        assert_eq!(Class::of(Standing::Unknown), N);
    }

    #[test]
    fn a_request_waits_only_when_the_slots_are_taken_or_others_wait() {
        assert!(admit_now(4, 3, 0));
        assert!(!admit_now(4, 4, 0));
        // A free slot is about to go to the queue, not to whoever arrives.
        assert!(!admit_now(4, 3, 1));
        // No cap: everything goes at once.
        assert!(admit_now(0, 100, 5));
    }

    #[test]
    fn reciprocating_peers_go_first_by_credit() {
        // A newcomer holds the optimistic slot: the most generous peer is next.
        assert_eq!(next(&[N, r(10), r(50), r(20)], 1), Some(2));
        // Equal credit: the one that waited longest.
        assert_eq!(next(&[r(5), N, r(5)], 1), Some(0));
        // Only newcomers wait: first come, first served.
        assert_eq!(next(&[N, N], 3), Some(0));
        assert_eq!(next(&[], 0), None);
    }

    #[test]
    fn a_newcomer_always_gets_the_optimistic_slot() {
        // No newcomer is being served: the oldest waiting one is, ahead of any credit.
        assert_eq!(next(&[r(1 << 30), N, N], 0), Some(1));
        // No newcomer waits: credit decides.
        assert_eq!(next(&[r(1), r(2)], 0), Some(1));
    }

    /// Slot by slot: with the slots all busy and reciprocating peers always asking, a free
    /// rider gets one slot at a time, never more; the others share the rest.
    #[test]
    fn a_free_rider_holds_at_most_the_optimistic_slot_while_others_wait() {
        let slots = 4;
        // Who holds each slot; the queue always has two reciprocators and the rider waiting.
        let mut held: Vec<Class> = vec![r(100), r(200), r(300), N];
        for round in 0..100 {
            let freed = held.remove(round % held.len());
            let newcomers_busy = held.iter().filter(|c| c.is_newcomer()).count();
            let waiting = [N, r(100), r(300)];
            let i = next(&waiting, newcomers_busy).unwrap();
            held.push(waiting[i]);
            assert_eq!(held.len(), slots);
            let riders = held.iter().filter(|c| c.is_newcomer()).count();
            assert_eq!(riders, 1, "round {round}: freed {freed:?}, held {held:?}");
        }
    }
}
