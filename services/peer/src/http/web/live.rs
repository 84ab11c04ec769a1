//! What is moving now, for the page's "transfers" panel and `GET /api/transfers`: the rates
//! of the peer's byte counters, sampled at most once a second. (Each download's own account
//! is its `transfer::tally::Tally`, in the daemon's registry.)

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rates are differences over at least this long.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

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
