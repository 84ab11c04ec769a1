//! Upload slots: at most `transfer.upload_slots` piece bodies are sent at once; requests beyond
//! that (and, while reciprocating peers are served, lesser requests beyond the optimistic one)
//! wait, and each freed slot goes to the waiter [`super::choker::next`] picks. The queue is
//! bounded ([`super::choker::arrive`]) and a request waits at most `max_wait`
//! ([`super::choker::QUEUE_WAIT`]); beyond either it is answered busy, and its downloader asks
//! again a little later or asks another holder.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::choker::{self, Arrival, Class, Slots};
use super::limit::{Bucket, ByteRate, Throttle};

/// How a request got its slot (the metric label; "busy" when it got none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Got {
    /// A slot was free.
    AtOnce,
    /// A freed slot was handed to it.
    Queued,
}

impl Got {
    pub(crate) fn label(got: Option<Got>) -> &'static str {
        match got {
            Some(Got::AtOnce) => "at_once",
            Some(Got::Queued) => "queued",
            None => "busy",
        }
    }
}

#[derive(Debug)]
pub(crate) struct UploadSlots {
    slots: usize,
    max_wait: Duration,
    /// What the lesser classes' bodies share while paced (see [`choker::newcomer_rate`]);
    /// None: the upload is not limited here, slots alone decide.
    newcomers: Option<Arc<Bucket>>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Slots held, by class (`cap` unused here: the owner's).
    held: Slots,
    seq: u64,
    /// In arrival order.
    waiting: Vec<Waiter>,
}

#[derive(Debug)]
struct Waiter {
    seq: u64,
    class: Class,
    /// True: a slot; false: answered busy to make room for a higher ranked request.
    grant: oneshot::Sender<bool>,
}

impl State {
    fn slots(&self, cap: usize) -> Slots {
        Slots { cap, ..self.held }
    }

    fn classes(&self) -> Vec<Class> {
        self.waiting.iter().map(|w| w.class).collect()
    }

    /// Gives back a slot of `class` and hands free slots to the waiters the choker picks.
    fn release(&mut self, class: Class, cap: usize) {
        self.held.add(class, -1);
        while let Some(i) = choker::next(&self.classes(), self.slots(cap)) {
            let w = self.waiting.remove(i);
            self.held.add(w.class, 1);
            // A waiter that went away gives the slot back from its guard's drop (it finds
            // itself no longer waiting), so a failed send needs nothing here.
            let _ = w.grant.send(true);
        }
    }
}

/// A slot held while one body is sent; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct UploadSlot {
    owner: Arc<UploadSlots>,
    class: Class,
    /// A lesser class's share of the lesser classes' rate.
    pace: Option<Throttle>,
}

impl UploadSlot {
    /// Waits until `n` more bytes of this body may go: at once for a reciprocating peer, and
    /// for a lesser class while no higher class is served; else at the lesser classes' rate.
    pub(crate) async fn pace(&mut self, n: u64) {
        let Some(throttle) = &mut self.pace else {
            return;
        };
        let paced = choker::paced(self.class, self.owner.lock().held);
        if paced {
            throttle.take(n).await;
        }
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        self.owner.lock().release(self.class, self.owner.slots);
    }
}

/// While a request waits. It ends in one of three ways, each under the lock: still queued
/// (taken out), handed a slot (`true` sent), or refused to make room (`false` sent). If it is
/// dropped (the client went away) it leaves the queue, or gives back the slot handed to it.
struct Waiting<'a> {
    owner: &'a Arc<UploadSlots>,
    seq: u64,
    class: Class,
    grant: oneshot::Receiver<bool>,
    done: bool,
}

impl Waiting<'_> {
    /// Ends the wait now: whether a slot is ours.
    fn end(&mut self) -> bool {
        self.done = true;
        let mut s = self.owner.lock();
        match s.waiting.iter().position(|w| w.seq == self.seq) {
            Some(i) => {
                s.waiting.remove(i);
                false
            }
            None => self.grant.try_recv().unwrap_or(false),
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.done && self.end() {
            self.owner.lock().release(self.class, self.owner.slots);
        }
    }
}

impl UploadSlots {
    /// `slots` 0: no cap (every request is sent at once); `upload` is the process's upload
    /// limit.
    pub(crate) fn new(slots: usize, max_wait: Duration, upload: ByteRate) -> Arc<Self> {
        let newcomers = choker::newcomer_rate(upload.bytes_per_second(), slots).map(|rate| {
            // No burst beyond a quantum: the share holds from the first byte.
            Arc::new(Bucket::with_burst(ByteRate::per_second(rate), 0))
        });
        Arc::new(Self {
            slots,
            max_wait,
            newcomers,
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a request of `class`, at once or when the choker picks it within
    /// `max_wait`; `None`: busy (see the module's doc). Cancel-safe.
    pub(crate) async fn acquire(self: &Arc<Self>, class: Class) -> Option<(UploadSlot, Got)> {
        // Made only once the slot is ours: its drop gives one back.
        let slot = || UploadSlot {
            owner: Arc::clone(self),
            class,
            pace: self
                .newcomers
                .as_ref()
                .filter(|_| !matches!(class, Class::Reciprocating { .. }))
                .map(|b| Throttle::new(Arc::clone(b))),
        };
        let mut waiting = {
            let mut s = self.lock();
            match choker::arrive(class, &s.classes(), s.slots(self.slots)) {
                Arrival::Now => {
                    s.held.add(class, 1);
                    return Some((slot(), Got::AtOnce));
                }
                Arrival::Busy => return None,
                Arrival::WaitRefusing(i) => {
                    let refused = s.waiting.remove(i);
                    let _ = refused.grant.send(false);
                }
                Arrival::Wait => {}
            }
            let (tx, rx) = oneshot::channel();
            s.seq += 1;
            let seq = s.seq;
            s.waiting.push(Waiter {
                seq,
                class,
                grant: tx,
            });
            Waiting {
                owner: self,
                seq,
                class,
                grant: rx,
                done: false,
            }
        };
        let got = match tokio::time::timeout(self.max_wait, &mut waiting.grant).await {
            Ok(answer) => {
                waiting.done = true;
                answer.unwrap_or(false)
            }
            Err(_) => waiting.end(),
        };
        got.then(|| (slot(), Got::Queued))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: Class = Class::Newcomer;
    const R: Class = Class::Reciprocating { credit: 10 };
    const LONG: Duration = Duration::from_secs(60);

    fn busy(s: &UploadSlots) -> (usize, usize, usize) {
        let st = s.lock();
        (st.held.busy(), st.held.newcomers, st.waiting.len())
    }

    #[tokio::test(start_paused = true)]
    async fn a_freed_slot_goes_to_the_reciprocating_waiter() {
        let s = UploadSlots::new(2, LONG, ByteRate::UNLIMITED);
        let (a, got) = s.acquire(N).await.unwrap();
        assert_eq!(got, Got::AtOnce);
        let (b, _) = s.acquire(R).await.unwrap();
        assert_eq!(busy(&s), (2, 1, 0));
        // A newcomer, then a reciprocating peer, wait.
        let rider = tokio::spawn({
            let s = Arc::clone(&s);
            async move { s.acquire(N).await }
        });
        tokio::task::yield_now().await;
        let giver = tokio::spawn({
            let s = Arc::clone(&s);
            async move { s.acquire(R).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(busy(&s), (2, 1, 2));
        // A newcomer holds a slot, so the slot `b` frees goes to the giver, not the rider.
        drop(b);
        let (c, got) = giver.await.unwrap().unwrap();
        assert_eq!(got, Got::Queued);
        assert_eq!(busy(&s), (2, 1, 1));
        // The newcomer's slot frees: the rider takes the optimistic slot.
        drop(a);
        let (d, got) = rider.await.unwrap().unwrap();
        assert_eq!(got, Got::Queued);
        assert_eq!(busy(&s), (2, 1, 0));
        drop((c, d));
        assert_eq!(busy(&s), (0, 0, 0));
    }

    /// With a limited upload, newcomers' bodies share a fifth of it (four slots) while a
    /// reciprocating peer is served, and go at full speed when none is.
    #[tokio::test(start_paused = true)]
    async fn newcomers_are_paced_only_while_givers_are_served() {
        const MIB: u64 = 1 << 20;
        let s = UploadSlots::new(4, LONG, ByteRate::per_second(10 * MIB));
        let (mut rider, _) = s.acquire(N).await.unwrap();
        let t = tokio::time::Instant::now();
        for _ in 0..64 {
            rider.pace(64 << 10).await;
        }
        assert_eq!(t.elapsed(), Duration::ZERO, "paced with nobody to prefer");
        let (giver, _) = s.acquire(R).await.unwrap();
        let t = tokio::time::Instant::now();
        for _ in 0..64 {
            rider.pace(64 << 10).await;
        }
        // 4 MiB at 2 MiB/s (after the first quantum).
        let secs = t.elapsed().as_secs_f64();
        assert!((1.9..2.1).contains(&secs), "4 MiB took {secs} s");
        drop(giver);
        let (mut g, _) = s.acquire(R).await.unwrap();
        let t = tokio::time::Instant::now();
        g.pace(100 * MIB).await;
        assert_eq!(t.elapsed(), Duration::ZERO, "a giver is never paced here");
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_wait_is_answered_busy() {
        let s = UploadSlots::new(1, Duration::from_secs(1), ByteRate::UNLIMITED);
        let (a, _) = s.acquire(R).await.unwrap();
        let t = tokio::time::Instant::now();
        assert!(s.acquire(N).await.is_none());
        assert_eq!(t.elapsed(), Duration::from_secs(1));
        assert_eq!(busy(&s), (1, 0, 0));
        drop(a);
        assert_eq!(busy(&s), (0, 0, 0));
    }

    /// A full queue answers busy at once; a higher ranked request makes room by refusing the
    /// lowest ranked waiter, and nothing is left taken.
    #[tokio::test(start_paused = true)]
    async fn a_full_queue_answers_busy_and_refuses_the_lowest_for_a_giver() {
        let s = UploadSlots::new(2, LONG, ByteRate::UNLIMITED);
        let (a, _) = s.acquire(N).await.unwrap();
        let (b, _) = s.acquire(N).await.unwrap();
        let room = 2 * choker::WAITING_PER_SLOT;
        let waiters: Vec<_> = (0..room)
            .map(|_| {
                let s = Arc::clone(&s);
                tokio::spawn(async move { s.acquire(N).await.map(|(slot, _)| slot) })
            })
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(busy(&s), (2, 2, room));
        let t = tokio::time::Instant::now();
        assert!(s.acquire(N).await.is_none(), "a newcomer past a full queue");
        assert_eq!(t.elapsed(), Duration::ZERO);
        let giver = tokio::spawn({
            let s = Arc::clone(&s);
            async move { s.acquire(R).await.map(|(slot, _)| slot) }
        });
        tokio::task::yield_now().await;
        // The newest newcomer made room for it.
        let mut waiters = waiters;
        let newest = waiters.pop().unwrap();
        assert!(newest.await.unwrap().is_none());
        assert_eq!(busy(&s), (2, 2, room));
        // A newcomer still holds a slot, so the freed one goes to the giver.
        drop(a);
        let g = giver.await.unwrap().expect("the giver goes first");
        drop((g, b));
        for w in waiters {
            drop(w.await.unwrap().expect("served in turn"));
        }
        assert_eq!(busy(&s), (0, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_goes_away_leaves_no_slot_taken() {
        let s = UploadSlots::new(1, LONG, ByteRate::UNLIMITED);
        let (a, _) = s.acquire(R).await.unwrap();
        let gone = tokio::time::timeout(Duration::from_secs(1), s.acquire(N)).await;
        assert!(gone.is_err());
        assert_eq!(busy(&s), (1, 0, 0));
        drop(a);
        assert_eq!(busy(&s), (0, 0, 0));
        // Uncapped: never waits.
        let free = UploadSlots::new(0, LONG, ByteRate::UNLIMITED);
        let held: Vec<_> = futures::future::join_all((0..10).map(|_| free.acquire(N))).await;
        assert!(
            held.iter()
                .all(|h| h.as_ref().is_some_and(|(_, g)| *g == Got::AtOnce))
        );
    }
}
