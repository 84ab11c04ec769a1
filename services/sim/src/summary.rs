//! What a run measured, and the one JSON object it prints.

use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, Scenario};

/// Samples of upload used are kept per this much simulated time.
const BUCKET: Duration = Duration::from_secs(1);

/// Counters the world keeps while it runs.
#[derive(Debug)]
pub(crate) struct Stats {
    file_bytes: u64,
    bound_s: f64,
    /// (host, seconds from its start to its last piece) of each host that finished.
    pub done: Vec<(u32, f64)>,
    pub left: usize,
    /// Seconds hosts spent downloading (the tracker's calls are per host per such second).
    pub host_seconds: f64,
    seed_sent: f64,
    /// Bytes sent and upload capacity (byte-seconds) per [`BUCKET`].
    sent: Vec<f64>,
    capacity: Vec<f64>,
    pub sim_end: Duration,
}

impl Stats {
    pub(crate) fn new(file_bytes: u64, bound_s: f64) -> Self {
        Stats {
            file_bytes,
            bound_s,
            done: Vec::new(),
            left: 0,
            host_seconds: 0.0,
            seed_sent: 0.0,
            sent: Vec::new(),
            capacity: Vec::new(),
            sim_end: Duration::ZERO,
        }
    }

    fn bucket(v: &mut Vec<f64>, now: Duration) -> &mut f64 {
        let i = (now.as_secs_f64() / BUCKET.as_secs_f64()) as usize;
        if v.len() <= i {
            v.resize(i + 1, 0.0);
        }
        &mut v[i]
    }

    pub(crate) fn sent(&mut self, by_seed: bool, bytes: f64, now: Duration) {
        if by_seed {
            self.seed_sent += bytes;
        }
        *Self::bucket(&mut self.sent, now) += bytes;
    }

    pub(crate) fn capacity(&mut self, upload: f64, now: Duration, dt: f64) {
        *Self::bucket(&mut self.capacity, now) += upload * dt;
    }

    pub(crate) fn summary(
        &self,
        cfg: &Config,
        tracker_calls: u64,
        wall: Duration,
    ) -> (Summary, Trace) {
        let mut times: Vec<f64> = self.done.iter().map(|d| d.1).collect();
        times.sort_by(f64::total_cmp);
        let expected = (1..=cfg.hosts).filter(|&i| !cfg.leaves(i)).count();
        let unfinished = expected - times.len();
        let sim_s = self.sim_end.as_secs_f64();
        // A host that never finished counts as finishing when the run gave up.
        let last_s = if unfinished > 0 {
            sim_s
        } else {
            times.last().copied().unwrap_or(0.0)
        };
        let pct = |p: f64| -> f64 {
            if times.is_empty() {
                return 0.0;
            }
            let i = ((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
            times[i]
        };
        let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
        let summary = Summary {
            hosts: cfg.hosts,
            scenario: cfg.scenario,
            seed: cfg.seed,
            bound_s: round(self.bound_s, 3),
            last_s: round(last_s, 3),
            ratio: round(last_s / self.bound_s, 3),
            p50_s: round(pct(0.5), 3),
            p99_s: round(pct(0.99), 3),
            seed_served_f: round(self.seed_sent / self.file_bytes as f64, 3),
            tracker_calls_per_host_s: round(tracker_calls as f64 / self.host_seconds.max(1e-9), 3),
            wall_s: round(wall.as_secs_f64(), 2),
            finished: times.len(),
            unfinished,
            left: self.left,
            sim_s: round(sim_s, 3),
        };
        let used = self
            .sent
            .iter()
            .zip(&self.capacity)
            .map(|(s, c)| if *c > 0.0 { round(s / c, 4) } else { 0.0 })
            .collect();
        let trace = Trace {
            summary: summary.clone(),
            completion_s: times.iter().map(|t| round(*t, 3)).collect(),
            upload_used: used,
            bucket_s: BUCKET.as_secs_f64(),
        };
        (summary, trace)
    }
}

/// The one JSON object `p2p-sim --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Downloaders (the seed comes on top).
    pub hosts: usize,
    pub scenario: Scenario,
    pub seed: u64,
    /// max(F/U_seed, N·F/(U_seed + ΣU_i)).
    pub bound_s: f64,
    /// The slowest host's time from its own start to its last piece (hosts that leave are not
    /// counted; when some never finished, the simulated time at which the run gave up).
    pub last_s: f64,
    pub ratio: f64,
    pub p50_s: f64,
    pub p99_s: f64,
    /// Bytes the seed sent, in files.
    pub seed_served_f: f64,
    /// Holder lookups per downloading host per second.
    pub tracker_calls_per_host_s: f64,
    /// Wall time of the run (reported only: nothing in the run reads the wall clock).
    pub wall_s: f64,
    pub finished: usize,
    pub unfinished: usize,
    pub left: usize,
    pub sim_s: f64,
}

/// What `--trace FILE` writes for pictures: each finished host's time, and the fraction of the
/// live hosts' upload in use per second.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    pub summary: Summary,
    pub completion_s: Vec<f64>,
    pub upload_used: Vec<f64>,
    pub bucket_s: f64,
}
