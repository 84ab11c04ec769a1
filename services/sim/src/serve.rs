//! The holder's side: what `http::blobs::get_piece` and `get_bitfield` decide, over the
//! simulated network.
//!
//! Called for real: super-seeding (`Seeding::admit`, only the file's origin; a copy downloaded
//! through the swarm serves whatever is asked), the ledger's credit and standing, the choker's
//! order of who gets a free upload slot (`admit_now`, `next`) and which classes are paced
//! (`paced`, `newcomer_rate`). Mirrored, because they live in socket code today:
//! `transfer::slots::UploadSlots::acquire` (a queued request is sent over the cap after
//! `max_wait`, `io_timeout / 2`) and the `?after=N` wait of `get_bitfield` (answered when the
//! holder verifies a piece, or after `HAVE_WAIT`).

use std::time::Duration;

use p2p_peer::serving::{self, Arrival, Class, Slots};
use p2p_peer::share::bitfield::Bitfield;
use p2p_peer::swarm::core::{Fetched, SourceId};

use crate::holder::HaveWait;
use crate::world::{Ev, Life, Stage, World};

impl World {
    fn answer(&mut self, r: u64, what: Fetched, at: Duration) {
        let Some(req) = self.reqs.get_mut(&r) else {
            return;
        };
        req.stage = Stage::Travel;
        let (from, to) = (req.from, req.to);
        let delay = self.delay(to, from);
        self.at(at + delay, Ev::End(r, what));
    }

    /// A block request reached its holder (`get_piece`).
    pub(crate) fn arrive(&mut self, r: u64, at: Duration) {
        let Some(req) = self.reqs.get(&r) else {
            return; // cancelled on the way
        };
        let (from, to, piece, len, insist) =
            (req.from, req.to, req.ask.piece, req.len, req.ask.insist);
        let now = self.instant(at);
        let holder = &self.hosts[to as usize];
        let what = match holder.life {
            Life::Gone | Life::NotStarted => Some(Fetched::Failed),
            Life::Downloading if !holder.verified.get(piece) => Some(Fetched::NotHeld),
            _ => None,
        };
        if let Some(what) = what {
            return self.answer(r, what, at);
        }
        if let Some(seeding) = &holder.serve.seeding
            && !seeding.admit(&self.digest, &self.manifest, piece, len, insist)
        {
            return self.answer(r, Fetched::Deferred, at);
        }
        let requester = &self.hosts[from as usize];
        let standing = holder
            .serve
            .ledger
            .standing_at(Some(&requester.address), requester.ip, now);
        let class = Class::of(standing);
        let s = &mut self.hosts[to as usize].serve;
        let classes = s.classes();
        self.set_class(r, class);
        let arrival = serving::arrive(class, &classes, self.hosts[to as usize].serve.held);
        if let Arrival::WaitRefusing(i) = arrival {
            let (refused, _) = self.hosts[to as usize].serve.waiting.remove(i);
            self.busy(refused, at);
        }
        match arrival {
            Arrival::Now => {
                self.hosts[to as usize].serve.held.add(class, 1);
                self.start_flow(r);
            }
            Arrival::Wait | Arrival::WaitRefusing(_) => {
                self.hosts[to as usize].serve.waiting.push((r, class));
                if let Some(req) = self.reqs.get_mut(&r) {
                    req.stage = Stage::Queued;
                }
                let wait = self.max_wait;
                self.at(at + wait, Ev::Overflow(r));
            }
            Arrival::Busy => self.busy(r, at),
        }
    }

    /// `r` is answered busy (`get_piece`): what the origin counted for it is not sent.
    fn busy(&mut self, r: u64, at: Duration) {
        let Some(req) = self.reqs.get(&r) else {
            return;
        };
        if let Some(seeding) = &self.hosts[req.to as usize].serve.seeding {
            seeding.unsent(&self.digest, req.ask.piece, req.len);
        }
        self.answer(r, Fetched::Busy, at);
    }

    fn set_class(&mut self, r: u64, class: Class) {
        if let Some(req) = self.reqs.get_mut(&r) {
            req.class = class;
        }
    }

    /// A queued request waited `max_wait`: answered busy.
    pub(crate) fn overflow(&mut self, r: u64, at: Duration) {
        let Some(req) = self.reqs.get(&r) else {
            return;
        };
        if req.stage != Stage::Queued {
            return;
        }
        self.hosts[req.to as usize]
            .serve
            .waiting
            .retain(|w| w.0 != r);
        self.busy(r, at);
    }

    /// A slot of `h` was given back: the choker hands free slots to waiters.
    fn release(&mut self, h: u32, class: Class) {
        self.hosts[h as usize].serve.held.add(class, -1);
        loop {
            let s = &mut self.hosts[h as usize].serve;
            let Some(i) = serving::next(&s.classes(), s.held) else {
                break;
            };
            let (r, c) = s.waiting.remove(i);
            s.held.add(c, 1);
            self.start_flow(r);
        }
    }

    /// A flow's last byte left its holder at `at`.
    pub(crate) fn flow_done(&mut self, r: u64, at: Duration) {
        let Some(req) = self.reqs.get(&r) else {
            return;
        };
        let Stage::Flowing(i) = req.stage else {
            return;
        };
        let (to, class, len) = (req.to, req.class, req.len);
        self.remove_flow(i);
        self.release(to, class);
        self.answer(r, Fetched::Bytes { len }, at);
    }

    /// The downloader gave up a request (another copy came first, the source was dropped, or
    /// the download ended).
    pub(crate) fn cancel(&mut self, r: u64, _at: Duration) {
        let Some(req) = self.reqs.remove(&r) else {
            return;
        };
        match req.stage {
            Stage::Travel => {}
            Stage::Queued => {
                self.hosts[req.to as usize]
                    .serve
                    .waiting
                    .retain(|w| w.0 != r);
            }
            Stage::Flowing(i) => {
                // `remove_flow` looks the moved flow's request up: put this one back first.
                self.reqs.insert(r, req);
                let (to, class) = {
                    let q = &self.reqs[&r];
                    (q.to, q.class)
                };
                self.remove_flow(i);
                self.reqs.remove(&r);
                self.release(to, class);
            }
        }
    }

    /// A bitfield request reached its holder (`get_bitfield`).
    pub(crate) fn bitfield_ask(
        &mut self,
        from: u32,
        to: u32,
        src: SourceId,
        after: Option<u32>,
        at: Duration,
    ) {
        let holder = &self.hosts[to as usize];
        match holder.life {
            Life::Gone | Life::NotStarted => self.bitfield_back(to, from, src, None, at),
            Life::Downloading if after.is_some_and(|n| holder.verified.count() <= n) => {
                let wait = HaveWait {
                    from,
                    src,
                    after: after.unwrap_or(0),
                    deadline: at + p2p_peer::wire::blobs::HAVE_WAIT,
                };
                self.hosts[to as usize].serve.waits.push(wait);
            }
            _ => {
                let has = holder.verified.clone();
                self.bitfield_back(to, from, src, Some(has), at);
            }
        }
    }

    fn bitfield_back(
        &mut self,
        holder: u32,
        to: u32,
        src: SourceId,
        has: Option<Bitfield>,
        at: Duration,
    ) {
        let delay = self.delay(holder, to);
        self.at(at + delay, Ev::BitfieldBack { to, src, has });
    }

    /// `h` verified a piece: the waits it now satisfies are answered.
    pub(crate) fn have(&mut self, h: u32, at: Duration) {
        let count = self.hosts[h as usize].verified.count();
        let waits = std::mem::take(&mut self.hosts[h as usize].serve.waits);
        let (ready, kept): (Vec<HaveWait>, Vec<HaveWait>) =
            waits.into_iter().partition(|w| count > w.after);
        self.hosts[h as usize].serve.waits = kept;
        for w in ready {
            let has = self.hosts[h as usize].verified.clone();
            self.bitfield_back(h, w.from, w.src, Some(has), at);
        }
    }

    /// Waits past `HAVE_WAIT` are answered with what the holder has.
    pub(crate) fn serve_tick(&mut self) {
        let at = self.now;
        for h in 0..self.hosts.len() as u32 {
            let s = &self.hosts[h as usize].serve;
            if s.waits.iter().all(|w| w.deadline > at) {
                continue;
            }
            let waits = std::mem::take(&mut self.hosts[h as usize].serve.waits);
            let (ready, kept): (Vec<HaveWait>, Vec<HaveWait>) =
                waits.into_iter().partition(|w| w.deadline <= at);
            self.hosts[h as usize].serve.waits = kept;
            for w in ready {
                let has = self.hosts[h as usize].verified.clone();
                self.bitfield_back(h, w.from, w.src, Some(has), at);
            }
        }
    }

    /// `h` left: what it was sending or about to send fails, its waits fail.
    pub(crate) fn serve_leave(&mut self, h: u32, at: Duration) {
        let flowing: Vec<u64> = self
            .flows
            .iter()
            .map(|f| f.req)
            .filter(|r| self.reqs.get(r).is_some_and(|q| q.to == h))
            .collect();
        for r in flowing {
            if let Some(Stage::Flowing(i)) = self.reqs.get(&r).map(|q| q.stage) {
                self.remove_flow(i);
                self.answer(r, Fetched::Failed, at);
            }
        }
        let s = &mut self.hosts[h as usize].serve;
        s.held = Slots {
            cap: s.held.cap,
            ..Slots::default()
        };
        let queued: Vec<u64> = s.waiting.drain(..).map(|w| w.0).collect();
        let waits = std::mem::take(&mut s.waits);
        for r in queued {
            self.answer(r, Fetched::Failed, at);
        }
        for w in waits {
            self.bitfield_back(h, w.from, w.src, None, at);
        }
    }
}
