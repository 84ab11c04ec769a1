//! Who is served first when uploads are contended: the rule, pure (no sockets, no clock).
//!
//! BitTorrent's answer, adapted to HTTP requests: a peer sends bodies on a few upload slots
//! (`transfer.upload_slots`); when they are all busy, piece requests wait, and a freed slot goes
//! to the waiting peer that gave this process the most lately (the [`super::ledger`]), as a
//! BitTorrent peer unchokes the peers it downloads from fastest. Peers that gave nothing share
//! one optimistic slot while reciprocating peers are served: whenever none of them holds a
//! slot, the oldest waiting one gets the next, so a newcomer always gets something to start
//! trading with; more of them are served only when no reciprocating peer is. Among those, a
//! requester that names the address it serves at (a peer) goes before one that names none (a
//! client that serves nothing: the CLI's standalone `get`, a free rider by construction), which
//! is how a seed, that receives nothing and so credits nobody, still prefers the swarm. With the
//! upload rate limited here, the bodies of lesser classes are also paced to one slot's share of
//! it while a higher class is served ([`newcomer_rate`], [`paced`]). Nothing is refused: the rule
//! only orders the queue (a request waits at most a bounded time, then is served anyway).

use super::ledger::Standing;

/// How a request ranks, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Names no address: serves nothing.
    Unnamed,
    /// Names an address that gave us nothing (or nothing we can tie to it): a newcomer.
    Newcomer,
    /// Gave this process `credit` bytes lately (decayed), from the IP it connects from.
    Reciprocating { credit: u64 },
}

impl Class {
    pub fn of(standing: Standing) -> Class {
        match standing {
            Standing::Gave(credit) if credit > 0 => Class::Reciprocating { credit },
            Standing::Unnamed => Class::Unnamed,
            _ => Class::Newcomer,
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Class::Reciprocating { .. } => "reciprocating",
            Class::Newcomer => "newcomer",
            Class::Unnamed => "unnamed",
        }
    }

    /// Rank, then credit: what the choker sorts by.
    fn key(self) -> (u8, u64) {
        match self {
            Class::Unnamed => (0, 0),
            Class::Newcomer => (1, 0),
            Class::Reciprocating { credit } => (2, credit),
        }
    }

    fn gave(self) -> bool {
        matches!(self, Class::Reciprocating { .. })
    }
}

/// The upload slots as they are now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slots {
    /// The cap (`transfer.upload_slots`); 0: none.
    pub cap: usize,
    /// Slots held by reciprocating peers, newcomers and unnamed clients.
    pub givers: usize,
    pub newcomers: usize,
    pub unnamed: usize,
}

impl Slots {
    pub fn busy(self) -> usize {
        self.givers + self.newcomers + self.unnamed
    }

    fn free(self) -> bool {
        self.cap == 0 || self.busy() < self.cap
    }

    pub fn add(&mut self, class: Class, n: isize) {
        let count = match class {
            Class::Reciprocating { .. } => &mut self.givers,
            Class::Newcomer => &mut self.newcomers,
            Class::Unnamed => &mut self.unnamed,
        };
        *count = count.saturating_add_signed(n);
    }
}

/// Which of `waiting` (in arrival order) gets a free slot now, if any: the best of the lesser
/// classes when none of them holds a slot (the optimistic slot), else the reciprocating peer
/// with the most credit, else the best of the lesser classes while no reciprocating peer is
/// served (the oldest of equals each time). While reciprocating peers are, lesser requests
/// beyond the optimistic one wait even if slots are free: the upload rate is shared by the
/// bodies in flight, so fewer bodies lose no bytes, they only go to the peers that give.
pub fn next(waiting: &[Class], s: Slots) -> Option<usize> {
    if s.cap != 0 && !s.free() {
        return None;
    }
    // max_by_key keeps the last of equals: reverse the index so the oldest wins.
    let best = |eligible: &dyn Fn(Class) -> bool| {
        waiting
            .iter()
            .enumerate()
            .filter(|(_, c)| eligible(**c))
            .max_by_key(|(i, c)| (c.key(), std::cmp::Reverse(*i)))
            .map(|(i, _)| i)
    };
    if s.newcomers + s.unnamed == 0
        && let Some(i) = best(&|c| !c.gave())
    {
        return Some(i);
    }
    best(&|c| c.gave() || s.givers == 0)
}

/// Whether a request of `class` arriving now, with `waiting` queued, is sent at once: the
/// choker would pick it before any of them.
pub fn admit_now(class: Class, waiting: &[Class], s: Slots) -> bool {
    if s.cap == 0 {
        return true;
    }
    let mut all = waiting.to_vec();
    all.push(class);
    next(&all, s) == Some(waiting.len())
}

/// Requests that may wait for an upload slot, per slot. Beyond that a request is answered
/// "busy" at once and its downloader asks again a little later or elsewhere, as a BitTorrent
/// peer is choked rather than queued: a long queue only holds requests that go stale while
/// they wait (a thousand downloaders starting at one seed queued 30 s of its upload for pieces
/// the swarm soon had), and a queue of a few blocks per slot keeps the upload busy.
pub const WAITING_PER_SLOT: usize = 16;
/// The longest a request waits in that queue before it is answered busy: by then the
/// downloader may have the piece from elsewhere, and what the origin decided to send it
/// (`http::seeding`) is stale.
pub const QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// What becomes of a request that arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Sent at once.
    Now,
    /// It waits for a slot.
    Wait,
    /// It waits, and the waiter at this index (the lowest ranked, the newest of equals) is
    /// answered busy to make room.
    WaitRefusing(usize),
    /// Answered busy: the queue is full of requests that rank as high.
    Busy,
}

/// The rule for a request of `class` arriving with `waiting` queued (in arrival order). The
/// queue holds [`WAITING_PER_SLOT`] per slot; when it is full, an arrival that ranks above the
/// lowest ranked waiter takes its place, and so does one of the lesser classes when only
/// reciprocating peers wait (the optimistic slot's candidate always has a place).
pub fn arrive(class: Class, waiting: &[Class], s: Slots) -> Arrival {
    if admit_now(class, waiting, s) {
        return Arrival::Now;
    }
    if waiting.len() < s.cap.saturating_mul(WAITING_PER_SLOT) {
        return Arrival::Wait;
    }
    let lowest = waiting
        .iter()
        .enumerate()
        .min_by_key(|(i, c)| (c.key(), std::cmp::Reverse(*i)));
    match lowest {
        Some((i, worst)) if class.key() > worst.key() => Arrival::WaitRefusing(i),
        Some((i, worst)) if !class.gave() && worst.gave() => Arrival::WaitRefusing(i),
        _ => Arrival::Busy,
    }
}

/// Whether a body of `class` is paced to the lesser classes' rate now: while a higher class is
/// served.
pub fn paced(class: Class, s: Slots) -> bool {
    match class {
        Class::Reciprocating { .. } => false,
        Class::Newcomer => s.givers > 0,
        Class::Unnamed => s.givers + s.newcomers > 0,
    }
}

/// The rate the lesser classes' bodies share while paced, with the process's upload limited
/// to `upload` bytes per second: one slot's worth beside the `slots` (BitTorrent's four regular
/// unchokes and one optimistic), so a few bodies to free riders cannot take a large part of the
/// rate, which a token bucket shares by body, not by peer. None when the upload is not limited
/// here (slots alone decide) or not capped.
pub fn newcomer_rate(upload: u64, slots: usize) -> Option<u64> {
    (upload > 0 && slots > 0).then(|| (upload / (slots as u64 + 1)).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: Class = Class::Newcomer;
    const U: Class = Class::Unnamed;

    fn r(credit: u64) -> Class {
        Class::Reciprocating { credit }
    }

    fn slots(cap: usize, givers: usize, newcomers: usize, unnamed: usize) -> Slots {
        Slots {
            cap,
            givers,
            newcomers,
            unnamed,
        }
    }

    #[test]
    fn standing_makes_the_class() {
        assert_eq!(Class::of(Standing::Gave(7)), r(7));
        // Nothing given, or nothing we can tie to the requester: a newcomer.
        assert_eq!(Class::of(Standing::Gave(0)), N);
        assert_eq!(Class::of(Standing::Mismatch), N);
        assert_eq!(Class::of(Standing::Unknown), N);
        assert_eq!(Class::of(Standing::Unnamed), U);
        assert_eq!(r(1).label(), "reciprocating");
        assert_eq!(U.label(), "unnamed");
    }

    #[test]
    fn newcomers_share_one_slot_of_the_rate() {
        assert_eq!(newcomer_rate(10_000, 4), Some(2_000));
        assert_eq!(newcomer_rate(3, 4), Some(1));
        assert_eq!(newcomer_rate(0, 4), None);
        assert_eq!(newcomer_rate(10_000, 0), None);
        assert!(!paced(r(1), slots(4, 3, 0, 0)));
        assert!(paced(N, slots(4, 1, 1, 0)));
        assert!(!paced(N, slots(4, 0, 3, 1)));
        assert!(paced(U, slots(4, 0, 1, 1)));
        assert!(!paced(U, slots(4, 0, 0, 2)));
    }

    #[test]
    fn who_is_sent_at_once() {
        // A free slot: a reciprocating peer, or the first of the lesser classes.
        assert!(admit_now(r(1), &[N], slots(4, 2, 1, 0)));
        assert!(admit_now(N, &[], slots(4, 1, 0, 0)));
        assert!(admit_now(U, &[], slots(4, 1, 0, 0)));
        // No slot free: nobody.
        assert!(!admit_now(r(1), &[], slots(4, 4, 0, 0)));
        // A newcomer holds the optimistic slot while a reciprocating peer is served: the next
        // one waits although slots are free.
        assert!(!admit_now(N, &[], slots(4, 1, 1, 0)));
        assert!(!admit_now(U, &[], slots(4, 1, 0, 1)));
        // Nobody reciprocating is served (a seed's lot): the slots fill in arrival order,
        // peers before unnamed clients.
        assert!(admit_now(N, &[], slots(4, 0, 3, 0)));
        assert!(!admit_now(N, &[N], slots(4, 0, 3, 0)));
        assert!(!admit_now(U, &[N], slots(4, 0, 2, 0)));
        assert!(admit_now(N, &[U], slots(4, 0, 2, 0)));
        // No cap: everything goes at once.
        assert!(admit_now(U, &[N, N], slots(0, 100, 100, 100)));
    }

    #[test]
    fn the_queue_is_bounded_and_the_lowest_ranked_make_room() {
        let busy = slots(2, 0, 2, 0);
        let room = 2 * WAITING_PER_SLOT;
        // A full queue: `first`, then peers that gave the most (never the lowest ranked).
        let full = |first: &[Class]| {
            let mut q = first.to_vec();
            q.resize(room, r(u64::MAX));
            q
        };
        let mut queue = vec![N; room - 1];
        assert_eq!(arrive(N, &queue, busy), Arrival::Wait);
        queue.push(N);
        assert_eq!(arrive(N, &queue, busy), Arrival::Busy);
        // A reciprocating peer makes room: the newest of the lowest class is refused.
        assert_eq!(
            arrive(r(5), &full(&[N, U, N, U]), busy),
            Arrival::WaitRefusing(3)
        );
        assert_eq!(
            arrive(r(5), &full(&[N, r(9), N, r(1)]), busy),
            Arrival::WaitRefusing(2)
        );
        // It does not push out a peer that gave as much or more.
        assert_eq!(arrive(r(5), &full(&[r(5), r(9)]), busy), Arrival::Busy);
        assert_eq!(
            arrive(r(5), &full(&[r(9), r(4), r(6)]), busy),
            Arrival::WaitRefusing(1)
        );
        // A newcomer past newcomers waits its turn elsewhere; past givers only, it takes the
        // place of the least generous, newest one (the optimistic slot's candidate).
        assert_eq!(arrive(N, &full(&[N, r(1)]), busy), Arrival::Busy);
        assert_eq!(
            arrive(U, &full(&[r(3), r(1), r(2), r(1)]), busy),
            Arrival::WaitRefusing(3)
        );
        // A free slot, or no cap: at once, whatever waits.
        assert_eq!(arrive(N, &[], slots(2, 0, 1, 0)), Arrival::Now);
        assert_eq!(arrive(U, &[N; 100], slots(0, 0, 0, 0)), Arrival::Now);
    }

    #[test]
    fn reciprocating_peers_go_first_by_credit() {
        // A newcomer holds the optimistic slot: the most generous peer is next.
        assert_eq!(next(&[N, r(10), r(50), r(20)], slots(4, 2, 1, 0)), Some(2));
        // Equal credit: the one that waited longest.
        assert_eq!(next(&[r(5), N, r(5)], slots(4, 2, 1, 0)), Some(0));
        // Only lesser classes wait, and nobody reciprocating is served: peers first.
        assert_eq!(next(&[U, N, N], slots(4, 0, 3, 0)), Some(1));
        // ... but not while a reciprocating peer is served and the optimistic slot is taken.
        assert_eq!(next(&[N, U], slots(4, 2, 0, 1)), None);
        // No free slot, or nobody waiting: nothing.
        assert_eq!(next(&[r(1)], slots(4, 4, 0, 0)), None);
        assert_eq!(next(&[], slots(4, 0, 0, 0)), None);
    }

    #[test]
    fn the_optimistic_slot_goes_to_a_newcomer_before_an_unnamed_client() {
        assert_eq!(next(&[r(1 << 30), U, N, N], slots(4, 3, 0, 0)), Some(2));
        assert_eq!(next(&[r(1 << 30), U], slots(4, 3, 0, 0)), Some(1));
        // No lesser request waits: credit decides.
        assert_eq!(next(&[r(1), r(2)], slots(4, 3, 0, 0)), Some(1));
    }

    /// Slot by slot: with reciprocating peers always asking, free riders hold one slot at a
    /// time, never more, however many slots free up.
    #[test]
    fn free_riders_hold_at_most_the_optimistic_slot_while_others_give() {
        let cap = 4;
        let mut held: Vec<Class> = vec![r(100), r(200), U];
        for round in 0..100 {
            // Sometimes one slot frees, sometimes two.
            for _ in 0..(1 + round % 2) {
                held.remove(round % held.len());
            }
            let waiting = [U, U, r(100), r(300)];
            loop {
                let mut s = slots(cap, 0, 0, 0);
                held.iter().for_each(|c| s.add(*c, 1));
                let Some(i) = next(&waiting, s) else { break };
                held.push(waiting[i]);
            }
            assert_eq!(held.len(), cap, "round {round}: a slot left free");
            let riders = held.iter().filter(|c| !c.gave()).count();
            assert_eq!(riders, 1, "round {round}: held {held:?}");
        }
    }
}
