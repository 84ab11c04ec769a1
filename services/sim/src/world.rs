//! The simulated swarm: hosts, their requests and the event loop.
//!
//! A downloader is what `swarm::engine` is, minus the sockets: its [`Plan`] is the peer's own,
//! told what came back and asked what to start, on the engine's cadence (after news, and every
//! `TICK`; holders from the tracker every `HOLDERS_EARLY_EVERY` then `HOLDERS_EVERY`; bitfields
//! as the plan says, waiting ones answered when the holder verifies a piece). Time advances in
//! steps; within a step events happen at their own times, and the network moves every flow at
//! its max-min fair rate.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2p_peer::serving::{Class, Seeding};
use p2p_peer::share::bitfield::Bitfield;
use p2p_peer::share::{Digest, Manifest};
use p2p_peer::swarm::core::{self as core, Ask, Fetched, Geometry, Meter, Plan, SourceId};
use p2p_peer::tracker::Holder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Config;
use crate::net::{Fairness, Route};
use crate::queue::Queue;
use crate::summary::Stats;
use crate::tracker::{Named, Tracker};

const MIB: f64 = 1048576.0;
/// A download is announced to the tracker this long after it starts or ends (the membership
/// loop's floor between announces, `membership::run`).
pub(crate) const ANNOUNCE: Duration = Duration::from_millis(200);

/// Where a host is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Life {
    NotStarted,
    Downloading,
    Done,
    Gone,
}

/// A downloader's engine state (the parts of `swarm::engine::Engine` that decide anything).
pub(crate) struct Download {
    pub plan: Plan<u64>,
    pub(crate) holders_at: Option<Duration>,
    pub(crate) holders_pending: bool,
    pub(crate) asked_when_out: bool,
    pub(crate) next_tick: Duration,
    pub(crate) last_schedule: Option<Duration>,
    /// Block requests of this download not yet ended.
    pub open: BTreeSet<u64>,
    /// Requests this download has made (its part of their ids).
    pub(crate) next_req: u64,
}

pub(crate) struct Host {
    pub up: f64,
    pub down: f64,
    x: f64,
    pub address: String,
    pub ip: IpAddr,
    pub life: Life,
    pub started: Duration,
    pub ended: Option<Duration>,
    pub verified: Bitfield,
    pub download: Option<Download>,
    pub serve: crate::holder::Serving,
    pub dirty: bool,
}

/// A block request from `from` to `to`.
pub(crate) struct Req {
    pub from: u32,
    pub to: u32,
    pub src: SourceId,
    pub ask: Ask,
    pub len: u64,
    pub meter: Arc<Meter>,
    pub stage: Stage,
    pub class: Class,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// On its way to the holder, or its answer on its way back.
    Travel,
    /// Waiting for one of the holder's upload slots.
    Queued,
    /// Its bytes flow (the index in `World::flows`).
    Flowing(u32),
}

pub(crate) enum Ev {
    Start(u32),
    Leave(u32),
    Announce {
        host: u32,
        complete: bool,
    },
    Arrive(u64),
    Overflow(u64),
    End(u64, Fetched),
    BitfieldAsk {
        from: u32,
        to: u32,
        src: SourceId,
        after: Option<u32>,
    },
    BitfieldBack {
        to: u32,
        src: SourceId,
        has: Option<Bitfield>,
    },
    Holders {
        host: u32,
        named: Vec<Named>,
    },
}

/// A request's bytes in the network, with what each step reads of its request (a map lookup
/// per flow and step was a tenth of the run at 10,000 hosts).
pub(crate) struct Flow {
    pub req: u64,
    pub left: f64,
    from: u32,
    to: u32,
    class: Class,
    len: u64,
    meter: Arc<Meter>,
}

pub(crate) struct World {
    pub cfg: Config,
    pub hosts: Vec<Host>,
    pub reqs: HashMap<u64, Req>,
    /// Threads the plans run on (`fetch::schedule_all`); the result does not depend on it.
    pub(crate) threads: usize,
    events: Queue<Ev>,
    pub flows: Vec<Flow>,
    routes: Vec<Route>,
    rates: Vec<f64>,
    capacity: Vec<f64>,
    fair: Fairness,
    pub rng: StdRng,
    pub tracker: Tracker,
    pub now: Duration,
    /// The clock the plan reads: `base + now`. Only differences of it are ever used.
    base: Instant,
    pub geometry: Geometry,
    pub pieces: u32,
    pub digest: Digest,
    pub manifest: Manifest,
    pub ids: Vec<u64>,
    pub stats: Stats,
    step: Duration,
    pub(crate) schedule_every: Duration,
    pub max_wait: Duration,
    limit: Duration,
    pub(crate) waiting_for: usize,
}

impl World {
    pub(crate) fn new(cfg: &Config) -> Self {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let size = (cfg.file_mib * MIB) as u64;
        let digest = p2p_peer::share::digest::sha256(b"p2p-sim");
        let piece_size = p2p_peer::share::pieces::piece_size(size);
        let count = size.div_ceil(piece_size) as usize;
        let manifest = Manifest::new(size, vec![digest; count]).expect("a consistent manifest");
        let pieces = manifest.piece_count();
        let geometry = Geometry::new(size, manifest.piece_size(), core::BLOCK);
        let bound = cfg.bound_s();
        let n = cfg.hosts + 1;
        let mut hosts = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        let mut events = Vec::new();
        for i in 0..n {
            let origin = i == 0;
            let up = if origin {
                cfg.seed_upload()
            } else {
                cfg.upload_of(i)
            } * MIB;
            let peer_id: u64 = rng.random();
            ids.push(peer_id);
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + i as u32));
            let serve =
                crate::holder::Serving::new(origin.then(Seeding::default), cfg.upload_slots, up);
            let started = if cfg.starts_late(i) {
                Duration::from_secs_f64(bound / 2.0)
            } else {
                Duration::ZERO
            };
            if !origin {
                events.push((started, Ev::Start(i as u32)));
                if cfg.leaves(i) {
                    events.push((Duration::from_secs_f64(bound / 2.0), Ev::Leave(i as u32)));
                }
            }
            hosts.push(Host {
                up,
                down: cfg.download_mib.map_or(f64::INFINITY, |d| d * MIB),
                x: rng.random(),
                address: i.to_string(),
                ip,
                life: if origin { Life::Done } else { Life::NotStarted },
                started,
                ended: None,
                verified: if origin {
                    Bitfield::full(pieces)
                } else {
                    Bitfield::new(pieces)
                },
                download: None,
                serve,
                dirty: false,
            });
        }
        let mut tracker = Tracker::default();
        tracker.set_complete(0);
        let mut w = World {
            cfg: cfg.clone(),
            hosts,
            reqs: HashMap::new(),
            threads: match cfg.threads {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            },
            events: Queue::new(Duration::from_secs_f64(cfg.step_ms / 1000.0)),
            flows: Vec::new(),
            routes: Vec::new(),
            rates: Vec::new(),
            capacity: Vec::new(),
            fair: Fairness::default(),
            rng,
            tracker,
            now: Duration::ZERO,
            base: Instant::now(),
            geometry,
            pieces,
            digest,
            manifest,
            ids,
            stats: Stats::new(size, bound),
            step: Duration::from_secs_f64(cfg.step_ms / 1000.0),
            schedule_every: Duration::from_secs_f64(cfg.schedule_ms / 1000.0),
            max_wait: p2p_peer::serving::QUEUE_WAIT
                .min(Duration::from_secs_f64(cfg.io_timeout_s / 2.0)),
            limit: Duration::from_secs_f64(bound * cfg.give_up_bounds),
            waiting_for: (1..n).filter(|&i| !cfg.leaves(i)).count(),
        };
        for (at, ev) in events {
            w.at(at, ev);
        }
        w
    }

    pub(crate) fn instant(&self, t: Duration) -> Instant {
        self.base + t
    }

    /// Schedules `ev` at `at`.
    pub(crate) fn at(&mut self, at: Duration, ev: Ev) {
        self.events.push(at, ev);
    }

    /// One-way delay between two hosts.
    pub(crate) fn delay(&self, a: u32, b: u32) -> Duration {
        let d = (self.hosts[a as usize].x - self.hosts[b as usize].x).abs();
        let rtt = self.cfg.rtt_min_ms + (self.cfg.rtt_max_ms - self.cfg.rtt_min_ms) * d;
        Duration::from_secs_f64(rtt / 2000.0)
    }

    /// The tracker sits in the middle of the line.
    pub(crate) fn tracker_rtt(&self, h: u32) -> Duration {
        let d = (self.hosts[h as usize].x - 0.5).abs();
        let rtt = self.cfg.rtt_min_ms + (self.cfg.rtt_max_ms - self.cfg.rtt_min_ms) * d;
        Duration::from_secs_f64(rtt / 1000.0)
    }

    pub(crate) fn run(&mut self) {
        while self.waiting_for > 0 && self.now < self.limit {
            let until = self.now;
            while let Some(t) = self.events.pop_until(until) {
                self.handle(t.at, t.ev);
            }
            self.serve_tick();
            self.schedule_all();
            self.network();
            self.now += self.step;
        }
        self.stats.sim_end = self.now;
    }

    fn handle(&mut self, at: Duration, ev: Ev) {
        match ev {
            Ev::Start(h) => self.start(h, at),
            Ev::Leave(h) => self.leave(h, at),
            Ev::Announce { host, complete } => {
                if self.hosts[host as usize].life == Life::Gone {
                    return;
                }
                if complete {
                    self.tracker.set_complete(host);
                } else {
                    self.tracker.set_partial(host);
                }
            }
            Ev::Arrive(r) => self.arrive(r, at),
            Ev::Overflow(r) => self.overflow(r, at),
            Ev::End(r, what) => self.end(r, what, at),
            Ev::BitfieldAsk {
                from,
                to,
                src,
                after,
            } => self.bitfield_ask(from, to, src, after, at),
            Ev::BitfieldBack { to, src, has } => {
                let now = self.instant(at);
                let host = &mut self.hosts[to as usize];
                if let Some(d) = host.download.as_mut() {
                    // Every simulated holder takes `?after=N` (the peer's first answer says so).
                    let next = d.plan.bitfield(src, has.map(|b| (b, true)), now);
                    host.dirty = true;
                    self.follow(to, next, at);
                }
            }
            Ev::Holders { host, named } => {
                let ids = &self.ids;
                let h = &mut self.hosts[host as usize];
                let Some(d) = h.download.as_mut() else {
                    return;
                };
                d.holders_pending = false;
                let holders = named.into_iter().map(|n| Holder {
                    peer_id: format!("{:016x}", ids[n.host as usize]),
                    address: n.host.to_string(),
                    partial: n.partial,
                    pieces_root: None,
                });
                if d.plan.add_holders(holders) > 0 {
                    d.asked_when_out = false;
                }
                h.dirty = true;
            }
        }
    }

    /// Moves every flow one step at its max-min fair rate.
    fn network(&mut self) {
        let n = self.hosts.len();
        if self.capacity.is_empty() {
            self.capacity = vec![f64::INFINITY; 3 * n];
            for (i, h) in self.hosts.iter().enumerate() {
                self.capacity[i] = h.up;
                self.capacity[n + i] = h.down;
                self.capacity[2 * n + i] = h.serve.newcomer_rate;
            }
        }
        self.routes.clear();
        for f in &self.flows {
            let paced = p2p_peer::serving::paced(f.class, self.hosts[f.to as usize].serve.held)
                && self.hosts[f.to as usize].serve.newcomer_rate.is_finite();
            self.routes.push(Route([
                f.to,
                n as u32 + f.from,
                if paced {
                    2 * n as u32 + f.to
                } else {
                    Route::NONE
                },
            ]));
        }
        self.fair
            .max_min(&self.capacity, &self.routes, &mut self.rates);
        let dt = self.step.as_secs_f64();
        let mut finished: Vec<(Duration, u64)> = Vec::new();
        let overhead = 1.0 + self.cfg.overhead;
        for (i, f) in self.flows.iter_mut().enumerate() {
            let rate = self.rates[i];
            let sent = (rate * dt).min(f.left);
            let before = f.left;
            f.left -= sent;
            // The meter counts the block's bytes, not the framing.
            let payload = |left: f64| ((f.len as f64 * overhead - left) / overhead) as u64;
            f.meter.add(payload(f.left).saturating_sub(payload(before)));
            self.stats.sent(f.to == 0, sent, self.now);
            if f.left <= 1e-6 {
                let t = if rate > 0.0 { before / rate } else { dt };
                finished.push((self.now + Duration::from_secs_f64(t.min(dt)), f.req));
            }
        }
        let live = self.live_upload();
        self.stats.capacity(live, self.now, dt);
        finished.sort();
        for (t, r) in finished {
            self.flow_done(r, t);
        }
    }

    fn live_upload(&self) -> f64 {
        self.hosts
            .iter()
            .filter(|h| matches!(h.life, Life::Downloading | Life::Done))
            .map(|h| h.up)
            .sum()
    }

    /// Starts a request's bytes flowing.
    pub(crate) fn start_flow(&mut self, r: u64) {
        let Some(req) = self.reqs.get_mut(&r) else {
            return;
        };
        req.stage = Stage::Flowing(self.flows.len() as u32);
        let left = req.len as f64 * (1.0 + self.cfg.overhead);
        self.flows.push(Flow {
            req: r,
            left,
            from: req.from,
            to: req.to,
            class: req.class,
            len: req.len,
            meter: Arc::clone(&req.meter),
        });
    }

    /// Takes a flow out of the network (finished or cancelled).
    pub(crate) fn remove_flow(&mut self, at: u32) {
        let at = at as usize;
        self.flows.swap_remove(at);
        if let Some(moved) = self.flows.get(at)
            && let Some(req) = self.reqs.get_mut(&moved.req)
        {
            req.stage = Stage::Flowing(at as u32);
        }
    }

    pub(crate) fn summary(
        &self,
        wall: Duration,
    ) -> (crate::summary::Summary, crate::summary::Trace) {
        self.stats.summary(&self.cfg, self.tracker.calls, wall)
    }
}

/// The host a holder's address names (the simulator's addresses are host indexes).
pub(crate) fn host_of(address: &str) -> u32 {
    address.parse().unwrap_or(0)
}
