//! The downloader's side: what `swarm::engine` does around its plan (start, holders from the
//! tracker, block answers, checks, the end of a download, leaving), on the engine's cadence.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2p_peer::serving::Class;
use p2p_peer::share::PieceIndex;
use p2p_peer::swarm::core::{
    self as core, Checked, Fetched, Geometry, Next, Plan, SourceId, Tuning,
};
use rand::Rng;

use crate::world::{ANNOUNCE, Download, Ev, Host, Life, Req, Stage, World, host_of};

impl World {
    pub(crate) fn start(&mut self, h: u32, at: Duration) {
        let now = self.instant(at);
        let tuning = Tuning {
            max_sources: self.cfg.max_sources,
            io_timeout: Duration::from_secs_f64(self.cfg.io_timeout_s),
            check_slots: 2,
            seed: self.rng.random(),
        };
        let mut plan = Plan::new(self.geometry, self.pieces, tuning, now);
        let host = &mut self.hosts[h as usize];
        plan.exclude([host.address.clone()]);
        host.life = Life::Downloading;
        host.started = at;
        host.dirty = true;
        host.download = Some(Download {
            plan,
            holders_at: None,
            holders_pending: false,
            asked_when_out: false,
            next_tick: at,
            last_schedule: None,
            open: BTreeSet::new(),
            next_req: 0,
        });
        let delay = ANNOUNCE + self.tracker_rtt(h) / 2;
        self.at(
            at + delay,
            Ev::Announce {
                host: h,
                complete: false,
            },
        );
        self.ask_holders(h, at);
    }

    pub(crate) fn ask_holders(&mut self, h: u32, at: Duration) {
        let rtt = self.tracker_rtt(h);
        let named = self.tracker.answer(
            &mut self.rng,
            self.cfg.holders_per_answer,
            &self.ids,
            self.cfg.shuffle_answers,
        );
        if let Some(d) = self.hosts[h as usize].download.as_mut() {
            d.holders_pending = true;
            d.holders_at = Some(at);
        }
        self.at(at + rtt, Ev::Holders { host: h, named });
    }

    pub(crate) fn leave(&mut self, h: u32, at: Duration) {
        let host = &mut self.hosts[h as usize];
        if host.life == Life::Gone {
            return;
        }
        let was_downloading = host.life == Life::Downloading;
        host.life = Life::Gone;
        host.ended = Some(at);
        self.tracker.remove(h);
        self.stats.left += 1;
        if was_downloading {
            self.stats.host_seconds += (at - self.hosts[h as usize].started).as_secs_f64();
        }
        // Its own requests end with it.
        if let Some(d) = self.hosts[h as usize].download.take() {
            for r in d.open {
                self.cancel(r, at);
            }
        }
        self.serve_leave(h, at);
    }

    /// A block request's answer came back to its downloader.
    pub(crate) fn end(&mut self, r: u64, what: Fetched, at: Duration) {
        let Some(req) = self.reqs.remove(&r) else {
            return;
        };
        let now = self.instant(at);
        let from = req.from;
        let host = &mut self.hosts[from as usize];
        let Some(d) = host.download.as_mut() else {
            return;
        };
        d.open.remove(&r);
        host.dirty = true;
        if let Fetched::Bytes { len } = what {
            let to = &self.hosts[req.to as usize];
            let (addr, ip) = (to.address.clone(), to.ip);
            self.hosts[from as usize]
                .serve
                .ledger
                .credit(&addr, Some(ip), len, now);
        }
        let Some(d) = self.hosts[from as usize].download.as_mut() else {
            return;
        };
        let next = d
            .plan
            .fetched(req.src, req.ask.piece, req.ask.block, what, now);
        let check = matches!(next, Next::Check(_));
        self.follow(from, next, at);
        if check {
            self.verify(from, req.ask.piece, at);
        }
    }

    /// Cancels what the plan lets go of.
    pub(crate) fn follow(&mut self, h: u32, next: Next<u64>, at: Duration) {
        match next {
            Next::Stale | Next::Continue | Next::Blame(_) => {}
            Next::Block(others) | Next::Check(others) | Next::Dropped(others) => {
                for r in others {
                    if let Some(d) = self.hosts[h as usize].download.as_mut() {
                        d.open.remove(&r);
                    }
                    self.cancel(r, at);
                }
            }
        }
    }

    /// A piece's blocks are all in: checked at once (hashing a piece takes a millisecond).
    fn verify(&mut self, h: u32, piece: PieceIndex, at: Duration) {
        let now = self.instant(at);
        let host = &mut self.hosts[h as usize];
        host.verified.set(piece);
        if let Some(d) = host.download.as_mut() {
            let next = d.plan.checked(piece, Checked::Verified(None), now);
            self.follow(h, next, at);
        }
        self.have(h, at);
        let host = &self.hosts[h as usize];
        if host.verified.is_complete()
            && host
                .download
                .as_ref()
                .is_some_and(|d| !d.plan.is_checking())
        {
            self.complete(h, at);
        }
    }

    fn complete(&mut self, h: u32, at: Duration) {
        let host = &mut self.hosts[h as usize];
        host.life = Life::Done;
        host.ended = Some(at);
        let took = (at - host.started).as_secs_f64();
        self.stats.host_seconds += took;
        // A host that is to leave is not waited for, nor counted, whether it finished first.
        if !self.cfg.leaves(h as usize) {
            self.stats.done.push((h, took));
            self.waiting_for = self.waiting_for.saturating_sub(1);
        }
        if let Some(d) = host.download.take() {
            for r in d.open {
                self.cancel(r, at);
            }
        }
        let delay = ANNOUNCE + self.tracker_rtt(h) / 2;
        self.at(
            at + delay,
            Ev::Announce {
                host: h,
                complete: true,
            },
        );
    }

    /// Runs each downloader's engine step that is due: ticks (holders), then the plan.
    ///
    /// The plans are run side by side on every core ([`decide`]: each touches only its own
    /// host), and what they decided is applied to the world afterwards in host order, so a run
    /// gives the same result on any number of cores.
    pub(crate) fn schedule_all(&mut self) {
        let at = self.now;
        let mut due_hosts = Vec::new();
        for h in 0..self.hosts.len() as u32 {
            let host = &mut self.hosts[h as usize];
            let (started, dirty) = (host.started, host.dirty);
            let Some(d) = host.download.as_mut() else {
                continue;
            };
            let mut due = dirty;
            let mut ask = false;
            if at >= d.next_tick {
                d.next_tick = at + core::TICK;
                due = true;
                let every = if at.saturating_sub(started) < core::EARLY {
                    core::HOLDERS_EARLY_EVERY
                } else {
                    core::HOLDERS_EVERY
                };
                ask = !d.holders_pending && d.holders_at.is_none_or(|t| at - t >= every);
            }
            let recent = d
                .last_schedule
                .is_some_and(|t| at - t < self.schedule_every);
            if ask {
                self.ask_holders(h, at);
            }
            if due && !recent {
                due_hosts.push(h);
            }
        }
        let now = self.instant(at);
        let geometry = self.geometry;
        let threads = self.threads.min(due_hosts.len() / MIN_PER_THREAD).max(1);
        let decided: Vec<Decided> = if threads == 1 {
            due_hosts
                .iter()
                .map(|&h| decide(&mut self.hosts[h as usize], h, geometry, at, now))
                .collect()
        } else {
            // Contiguous ranges of hosts, one per thread, each with the due hosts inside it.
            let per = self.hosts.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let mut rest = &due_hosts[..];
                let workers: Vec<_> = self
                    .hosts
                    .chunks_mut(per)
                    .enumerate()
                    .map(|(i, chunk)| {
                        let first = (i * per) as u32;
                        let end = first + chunk.len() as u32;
                        let split = rest.partition_point(|&h| h < end);
                        let (mine, later) = rest.split_at(split);
                        rest = later;
                        scope.spawn(move || {
                            mine.iter()
                                .map(|&h| {
                                    let host = &mut chunk[(h - first) as usize];
                                    decide(host, h, geometry, at, now)
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            })
        };
        for d in decided {
            self.apply(d, at);
        }
    }

    /// Applies what a plan decided ([`decide`]): the tracker asked, bitfields asked, block
    /// requests sent.
    fn apply(&mut self, d: Decided, at: Duration) {
        let h = d.host;
        if d.ask_holders {
            self.ask_holders(h, at);
        }
        for (src, to, after) in d.bitfields {
            let delay = self.delay(h, to);
            self.at(
                at + delay,
                Ev::BitfieldAsk {
                    from: h,
                    to,
                    src,
                    after,
                },
            );
        }
        if let Some(dl) = self.hosts[h as usize].download.as_mut() {
            dl.open.extend(d.started.iter().map(|s| s.0));
        }
        for (id, req) in d.started {
            let delay = self.delay(h, req.to);
            self.reqs.insert(id, req);
            self.at(at + delay, Ev::Arrive(id));
        }
    }
}

/// Hosts due in a step below which a thread is not worth starting.
const MIN_PER_THREAD: usize = 64;

/// What one downloader's plan decided in a step.
pub(crate) struct Decided {
    host: u32,
    /// No source in use: ask the tracker (once, until holders come).
    ask_holders: bool,
    bitfields: Vec<(SourceId, u32, Option<u32>)>,
    started: Vec<(u64, Req)>,
}

/// The engine's `schedule` for host `h`: sources in use, bitfields due, block requests to
/// start. It touches nothing but the host, so plans run side by side.
fn decide(host: &mut Host, h: u32, geometry: Geometry, at: Duration, now: Instant) -> Decided {
    let mut out = Decided {
        host: h,
        ask_holders: false,
        bitfields: Vec::new(),
        started: Vec::new(),
    };
    host.dirty = false;
    let Some(d) = host.download.as_mut() else {
        return out;
    };
    d.last_schedule = Some(at);
    let active = d.plan.active(&host.verified, now);
    if active.is_empty() {
        if !d.holders_pending && !d.asked_when_out {
            d.asked_when_out = true;
            out.ask_holders = true;
        }
        return out;
    }
    out.bitfields = d
        .plan
        .bitfields_due(now)
        .into_iter()
        .map(|src| {
            let s = d.plan.source(src);
            (src, host_of(&s.peer.address), s.have_after())
        })
        .collect();
    // Request ids are the host's own (its index above the counter), so no other plan's
    // progress changes them.
    let next_req = &mut d.next_req;
    let started = &mut out.started;
    d.plan
        .assign(&active, &host.verified, now, |peer, ask, meter| {
            let range = geometry.block_range(ask.piece, ask.block);
            *next_req += 1;
            let id = (u64::from(h) << REQ_BITS) | *next_req;
            started.push((
                id,
                Req {
                    from: h,
                    to: host_of(&peer.address),
                    src: ask.source,
                    ask,
                    len: range.end - range.start,
                    meter: Arc::clone(meter),
                    stage: Stage::Travel,
                    class: Class::Unnamed,
                },
            ));
            Some(id)
        });
    out
}

/// Bits of a request id counted per host (2^40 requests of one host: more than any run makes).
const REQ_BITS: u32 = 40;
