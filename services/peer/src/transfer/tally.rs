//! The one account of a download that every screen shows: the CLI's bar and lines, its `--json`
//! answer, `GET /api/transfers` and the page's panels all read a [`Tally`], so that two of them
//! cannot disagree about one download. It tells apart the bytes verified by an earlier run
//! (kept in `.partial/`, what a resume starts from) and this run's, and every rate is over the
//! same stated window ([`RATE_WINDOW`]), never since the start (which a resume would inflate
//! with the kept bytes) nor over one noisy sample.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::wire::download::Event;

/// Rates are the bytes verified (or received from a source) over the last this long.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(5);

/// A download as every screen shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct View {
    pub size: u64,
    /// Verified bytes held now (kept and this run's).
    pub have: u64,
    /// Verified bytes an earlier run left (resumed from).
    pub kept: u64,
    /// Verified bytes this run fetched.
    pub this_run: u64,
    /// Verified bytes per second over the last `rate_window_secs` (less at the start).
    pub rate: u64,
    pub rate_window_secs: u64,
    /// Seconds left at `rate`; none while nothing moves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_secs: Option<u64>,
    /// Seconds since this run started.
    pub elapsed_secs: f64,
    /// Holders in use, with what each sent over the window.
    pub sources: Vec<SourceView>,
}

/// One holder a download uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SourceView {
    pub peer: String,
    pub address: String,
    /// Bytes per second received from it over the window (all this process's downloads from
    /// that address: the ledger counts by address).
    pub rate: u64,
}

/// Samples of a counter that only grows, kept for [`RATE_WINDOW`] (and one older, so the
/// window is always covered once it has run that long).
#[derive(Debug, Default, Clone)]
struct Samples(VecDeque<(Instant, u64)>);

impl Samples {
    fn push(&mut self, at: Instant, value: u64) {
        self.0.push_back((at, value));
        while self.0.len() > 2 && self.0[1].0 + RATE_WINDOW <= at {
            self.0.pop_front();
        }
    }

    /// Per second between the oldest sample in the window and `now`'s value.
    fn rate(&self, now: Instant) -> u64 {
        let (Some((t0, v0)), Some((_, v1))) = (self.0.front(), self.0.back()) else {
            return 0;
        };
        let secs = now.saturating_duration_since(*t0).as_secs_f64();
        // Less than a quarter second says nothing yet.
        if secs < 0.25 {
            return 0;
        }
        (v1.saturating_sub(*v0) as f64 / secs) as u64
    }
}

#[derive(Debug, Clone)]
struct Source {
    peer: String,
    received: Samples,
}

/// What one download did so far, fed its events (and, for the sources' rates, the bytes the
/// ledger counted from each address).
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    size: u64,
    kept: u64,
    have: u64,
    started: Instant,
    verified: Samples,
    sources: BTreeMap<String, Source>,
}

impl Tally {
    /// A run of a download of `size` bytes that starts with `kept` verified.
    pub(crate) fn new(size: u64, kept: u64, now: Instant) -> Self {
        let mut verified = Samples::default();
        verified.push(now, kept);
        Self {
            size,
            kept,
            have: kept,
            started: now,
            verified,
            sources: BTreeMap::new(),
        }
    }

    /// Takes what `e` says. A resumed download's first source says how much was kept when the
    /// start could not (the CLI's own download learns it there).
    pub(crate) fn observe(&mut self, e: &Event, now: Instant) {
        match e {
            Event::Start { size, have, .. } => {
                *self = Tally::new(*size, *have, now);
            }
            Event::Source {
                peer,
                address,
                size,
                have,
            } => {
                self.size = *size;
                if self.have == self.kept && *have > self.kept {
                    *self = Tally {
                        sources: std::mem::take(&mut self.sources),
                        ..Tally::new(*size, *have, self.started)
                    };
                    self.verified = Samples::default();
                    self.verified.push(now, *have);
                }
                self.sources.entry(address.clone()).or_insert(Source {
                    peer: peer.clone(),
                    received: Samples::default(),
                });
            }
            Event::Progress { have, size, .. } => {
                self.size = *size;
                self.set_have(*have, now);
            }
            Event::SourceFailed { address, .. } => {
                self.sources.remove(address);
            }
            Event::Verified { size } => {
                self.size = *size;
                self.set_have(*size, now);
                self.sources.clear();
            }
            Event::Done { .. } | Event::Error { .. } => self.sources.clear(),
        }
    }

    fn set_have(&mut self, have: u64, now: Instant) {
        self.have = self.have.max(have);
        self.verified.push(now, self.have);
    }

    /// The sources' addresses, to look their bytes up in the ledger.
    pub(crate) fn source_addresses(&self) -> Vec<String> {
        self.sources.keys().cloned().collect()
    }

    /// `address` has sent this process `total` bytes in all (the ledger's count).
    pub(crate) fn received(&mut self, address: &str, total: u64, now: Instant) {
        if let Some(s) = self.sources.get_mut(address) {
            s.received.push(now, total);
        }
    }

    pub(crate) fn view(&self, now: Instant) -> View {
        let rate = self.verified.rate(now);
        let left = self.size.saturating_sub(self.have);
        View {
            size: self.size,
            have: self.have,
            kept: self.kept,
            this_run: self.have.saturating_sub(self.kept),
            rate,
            rate_window_secs: RATE_WINDOW.as_secs(),
            eta_secs: (rate > 0 && left > 0).then(|| left.div_ceil(rate)),
            elapsed_secs: now.saturating_duration_since(self.started).as_secs_f64(),
            sources: self
                .sources
                .iter()
                .map(|(address, s)| SourceView {
                    peer: s.peer.clone(),
                    address: address.clone(),
                    rate: s.received.rate(now),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn progress(have: u64) -> Event {
        Event::Progress {
            have,
            size: 1000,
            sources: 1,
        }
    }

    /// Issue 29 point 3: after a resume the CLI showed 659.94 MiB/s under a 25 MiB/s limit,
    /// counting the kept bytes as this run's.
    #[test]
    fn kept_bytes_are_not_this_runs_rate() {
        let t0 = Instant::now();
        let mut t = Tally::new(0, 0, t0);
        t.observe(
            &Event::Start {
                name: "a".into(),
                sha256: D.parse().unwrap(),
                size: 1000,
                have: 600,
            },
            t0,
        );
        t.observe(&progress(700), t0 + Duration::from_secs(1));
        let v = t.view(t0 + Duration::from_secs(1));
        assert_eq!((v.kept, v.have, v.this_run), (600, 700, 100));
        assert_eq!(v.rate, 100, "{v:?}");
        assert_eq!(v.eta_secs, Some(3));
    }

    #[test]
    fn a_rate_is_over_the_window_only() {
        let t0 = Instant::now();
        let mut t = Tally::new(100_000, 0, t0);
        // Fast at first, then slow: the rate is the last window's.
        t.observe(&progress(50_000), t0 + Duration::from_secs(1));
        for s in 2..=12 {
            t.observe(
                &progress(50_000 + (s - 1) * 100),
                t0 + Duration::from_secs(s),
            );
        }
        let v = t.view(t0 + Duration::from_secs(12));
        assert!((90..=110).contains(&v.rate), "{v:?}");
        assert_eq!(v.rate_window_secs, 5);
    }

    #[test]
    fn a_resumed_source_says_what_was_kept_and_sources_have_rates() {
        let t0 = Instant::now();
        let mut t = Tally::new(1000, 0, t0);
        t.observe(
            &Event::Source {
                peer: "p1".into(),
                address: "127.0.0.1:5000".into(),
                size: 1000,
                have: 400,
            },
            t0,
        );
        t.received("127.0.0.1:5000", 10_000, t0);
        t.received("127.0.0.1:5000", 10_500, t0 + Duration::from_secs(1));
        t.observe(&progress(500), t0 + Duration::from_secs(1));
        let v = t.view(t0 + Duration::from_secs(1));
        assert_eq!((v.kept, v.this_run), (400, 100));
        assert_eq!(v.sources.len(), 1);
        assert_eq!((v.sources[0].peer.as_str(), v.sources[0].rate), ("p1", 500));
        t.observe(
            &Event::SourceFailed {
                peer: "p1".into(),
                address: "127.0.0.1:5000".into(),
                reason: "gone".into(),
                bad: false,
            },
            t0 + Duration::from_secs(2),
        );
        assert!(t.view(t0 + Duration::from_secs(2)).sources.is_empty());
    }
}
