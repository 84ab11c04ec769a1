//! What one simulation is given.

use crate::error::SimError;

/// Who joins, leaves and how fast each host uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Every downloader uploads U and starts at once.
    Uniform,
    /// Odd-numbered downloaders upload U/4 (as `bench-swarm.sh --netns` mixed).
    Mixed,
    /// Every fourth downloader leaves at half the bound (as the testbed's churn: SIGTERM).
    Churn,
    /// The last quarter of the downloaders (at least one) starts at half the bound.
    Late,
}

/// One run's settings. Rates are MiB/s, times milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Config {
    /// Downloaders (the seed comes on top).
    pub hosts: usize,
    pub file_mib: f64,
    /// Each downloader's upload (U).
    pub upload_mib: f64,
    /// The seed's upload (U when not given).
    pub seed_upload_mib: Option<f64>,
    /// Each host's download; `None`: not limited (the testbed shapes uploads only).
    pub download_mib: Option<f64>,
    pub scenario: Scenario,
    pub seed: u64,
    /// Round-trip times between hosts are spread between these (hosts on a line, the time
    /// growing with their distance).
    pub rtt_min_ms: f64,
    pub rtt_max_ms: f64,
    /// Bytes a block's answer costs beyond the block (HTTP headers, TCP/IP framing at 1500
    /// bytes MTU: about 2.7%).
    pub overhead: f64,
    /// Simulated time per network step.
    pub step_ms: f64,
    /// A downloader's plan is run at most this often (0: after every step it had news in).
    pub schedule_ms: f64,
    /// `transfer.max_sources` and `transfer.upload_slots` of every peer.
    pub max_sources: usize,
    pub upload_slots: usize,
    /// `peer.io_timeout` (a queued request is answered busy after `QUEUE_WAIT` or half of it).
    pub io_timeout_s: f64,
    /// Holders per tracker answer (`registry.holders_per_answer`).
    pub holders_per_answer: usize,
    /// Gives up after this many bounds of simulated time.
    pub give_up_bounds: f64,
    /// An experiment, not the tracker's behaviour: holders answers in random order instead
    /// of peer-id order (README, "Simulated swarms").
    pub shuffle_answers: bool,
    /// Threads the downloaders' plans run on each step (0: one per core). The result does not
    /// depend on it.
    pub threads: usize,
}

impl Config {
    /// The defaults for a run of `hosts` downloaders of a `file_mib` file at `upload_mib`.
    pub fn new(hosts: usize, file_mib: f64, upload_mib: f64) -> Self {
        Config {
            hosts,
            file_mib,
            upload_mib,
            seed_upload_mib: None,
            download_mib: None,
            scenario: Scenario::Uniform,
            seed: 1,
            rtt_min_ms: 20.0,
            rtt_max_ms: 120.0,
            overhead: 0.027,
            step_ms: 5.0,
            schedule_ms: 0.0,
            max_sources: 8,
            upload_slots: 4,
            io_timeout_s: 30.0,
            holders_per_answer: 50,
            give_up_bounds: 20.0,
            shuffle_answers: false,
            threads: 0,
        }
    }

    pub(crate) fn check(&self) -> Result<(), SimError> {
        let bad = |what: &str| Err(SimError::Usage(what.to_owned()));
        let positive = |x: f64| x.is_finite() && x > 0.0;
        // False for NaN as well.
        let at_least_zero = |x: f64| x.is_finite() && x >= 0.0;
        if self.hosts == 0 || self.hosts > 1_000_000 {
            return bad("--hosts must be 1 to 1000000");
        }
        if !positive(self.file_mib) || self.file_mib > 1_048_576.0 {
            return bad("--file-mib must be above 0 and at most 1048576");
        }
        if !positive(self.upload_mib) {
            return bad("--upload-mib must be above 0");
        }
        if self.seed_upload_mib.is_some_and(|u| !positive(u)) {
            return bad("--seed-upload-mib must be above 0");
        }
        if self.download_mib.is_some_and(|u| !positive(u)) {
            return bad("--download-mib must be above 0");
        }
        if !at_least_zero(self.rtt_min_ms) || !at_least_zero(self.rtt_max_ms - self.rtt_min_ms) {
            return bad("--rtt-min-ms must be at least 0 and at most --rtt-max-ms");
        }
        if !positive(self.step_ms) || self.step_ms > 1000.0 {
            return bad("--step-ms must be above 0 and at most 1000");
        }
        if !at_least_zero(self.schedule_ms) || !at_least_zero(self.overhead) {
            return bad("--schedule-ms and the overhead must be at least 0");
        }
        if self.max_sources == 0 || self.holders_per_answer == 0 {
            return bad("--max-sources and --holders-per-answer must be at least 1");
        }
        Ok(())
    }

    pub(crate) fn seed_upload(&self) -> f64 {
        self.seed_upload_mib.unwrap_or(self.upload_mib)
    }

    /// Downloader `i`'s upload (1-based: 0 is the seed).
    pub(crate) fn upload_of(&self, i: usize) -> f64 {
        match self.scenario {
            Scenario::Mixed if i % 2 == 1 => self.upload_mib / 4.0,
            _ => self.upload_mib,
        }
    }

    /// Kumar and Ross's bound, max(F/U_seed, N·F/(U_seed + ΣU_i)), in seconds.
    pub fn bound_s(&self) -> f64 {
        let sum: f64 = (1..=self.hosts).map(|i| self.upload_of(i)).sum();
        let n = self.hosts as f64;
        (self.file_mib / self.seed_upload()).max(n * self.file_mib / (self.seed_upload() + sum))
    }

    /// Downloaders that leave at half the bound (churn) or start then (late).
    pub(crate) fn leaves(&self, i: usize) -> bool {
        self.scenario == Scenario::Churn && i.is_multiple_of(4)
    }

    pub(crate) fn starts_late(&self, i: usize) -> bool {
        self.scenario == Scenario::Late && i > self.hosts - (self.hosts / 4).max(1)
    }
}
