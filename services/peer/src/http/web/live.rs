//! What is moving now, for the page's "transfers" panel and `GET /api/transfers`: the
//! downloads `POST /downloads` runs (fed by their own progress events) and the rates of the
//! peer's byte counters, sampled at most once a second.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::share::Digest;
use crate::wire::download::Event;

/// Rates are differences over at least this long.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One download in progress, as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LiveDownload {
    pub name: String,
    pub sha256: Option<Digest>,
    pub size: u64,
    /// Bytes verified.
    pub have: u64,
    pub sources: u64,
    /// Verified bytes per second over the last sample.
    pub rate: u64,
    #[serde(skip)]
    sampled: (Instant, u64),
}

/// The downloads `POST /downloads` runs now, by a key of their own.
#[derive(Default)]
pub(crate) struct LiveDownloads {
    next: AtomicU64,
    running: Mutex<BTreeMap<u64, LiveDownload>>,
}

impl LiveDownloads {
    fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, LiveDownload>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A download of `name` starts; its key for [`Self::observe`] and [`Self::end`].
    pub(crate) fn begin(&self, name: &str) -> u64 {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.running().insert(
            key,
            LiveDownload {
                name: name.to_owned(),
                sha256: None,
                size: 0,
                have: 0,
                sources: 0,
                rate: 0,
                sampled: (Instant::now(), 0),
            },
        );
        key
    }

    pub(crate) fn observe(&self, key: u64, e: &Event) {
        let mut running = self.running();
        let Some(d) = running.get_mut(&key) else {
            return;
        };
        match e {
            Event::Start {
                name,
                sha256,
                size,
                have,
            } => {
                d.name.clone_from(name);
                d.sha256 = Some(*sha256);
                d.size = *size;
                d.have = *have;
                d.sampled = (Instant::now(), *have);
            }
            Event::Progress { have, sources, .. } => {
                d.have = *have;
                d.sources = *sources;
                let (at, then) = d.sampled;
                let dt = at.elapsed();
                if dt >= SAMPLE_EVERY {
                    d.rate = per_second(have.saturating_sub(then), dt);
                    d.sampled = (Instant::now(), *have);
                }
            }
            _ => {}
        }
    }

    pub(crate) fn end(&self, key: u64) {
        self.running().remove(&key);
    }

    pub(crate) fn list(&self) -> Vec<LiveDownload> {
        self.running().values().cloned().collect()
    }
}

fn per_second(bytes: u64, over: Duration) -> u64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 {
        (bytes as f64 / secs) as u64
    } else {
        0
    }
}

/// Bytes per second of a counter that only grows, sampled at most every [`SAMPLE_EVERY`].
#[derive(Default)]
pub(crate) struct Rate {
    last: Mutex<Option<(Instant, u64, u64)>>,
}

impl Rate {
    /// The rate with the counter now at `total` (the last one when sampled too recently).
    pub(crate) fn update(&self, total: u64) -> u64 {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some((at, _, rate)) if at.elapsed() < SAMPLE_EVERY => rate,
            Some((at, then, _)) => {
                let rate = per_second(total.saturating_sub(then), at.elapsed());
                *last = Some((Instant::now(), total, rate));
                rate
            }
            None => {
                *last = Some((Instant::now(), total, 0));
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn a_download_is_listed_from_begin_to_end() {
        let live = LiveDownloads::default();
        let k = live.begin("a.bin");
        live.observe(
            k,
            &Event::Start {
                name: "a.bin".into(),
                sha256: D.parse().unwrap(),
                size: 100,
                have: 10,
            },
        );
        live.observe(
            k,
            &Event::Progress {
                have: 60,
                size: 100,
                sources: 2,
            },
        );
        let l = live.list();
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].have, l[0].size, l[0].sources), (60, 100, 2));
        assert_eq!(l[0].sha256.map(|d| d.to_string()).as_deref(), Some(D));
        live.end(k);
        assert!(live.list().is_empty());
    }

    #[test]
    fn a_rate_is_a_difference_over_time() {
        let r = Rate::default();
        assert_eq!(r.update(1000), 0);
        assert_eq!(r.update(5000), 0, "too soon: the last rate");
        *r.last.lock().unwrap() = Some((Instant::now() - Duration::from_secs(2), 1000, 0));
        let rate = r.update(5000);
        assert!((1900..=2000).contains(&rate), "{rate}");
    }
}
