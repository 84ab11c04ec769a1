//! Transfer rate limits: one token bucket per direction per process, shared by every transfer.
//!
//! Why not `governor` (already a dependency, used for request rates): its waiters retry on their
//! own and are served in no particular order, so a transfer asking for big chunks can starve
//! behind many small ones, and it sleeps on the wall clock, which tests cannot pause. Here a
//! transfer reserves at most one quantum at a time and reservations are served in arrival order,
//! so transfers that are all waiting share the rate equally in bytes.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::time::Instant;

/// A rate in bytes per second; 0 is unlimited. Written as a number with an optional binary or
/// decimal unit: "16MiB", "500KiB", "2MB", "1048576", "0".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteRate(u64);

const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("kb", 1_000),
    ("kib", 1 << 10),
    ("mb", 1_000_000),
    ("mib", 1 << 20),
    ("gb", 1_000_000_000),
    ("gib", 1 << 30),
    ("tb", 1_000_000_000_000),
    ("tib", 1 << 40),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad byte rate {0:?}: expected a whole number of bytes per second with an optional unit \
     (B, KB, KiB, MB, MiB, GB, GiB), e.g. \"16MiB\" or \"500KiB\"; \"0\" is unlimited"
)]
pub struct BadByteRate(pub String);

impl ByteRate {
    pub(crate) const UNLIMITED: ByteRate = ByteRate(0);

    pub const fn per_second(bytes: u64) -> Self {
        ByteRate(bytes)
    }

    pub(crate) fn bytes_per_second(self) -> u64 {
        self.0
    }

    pub(crate) fn is_unlimited(self) -> bool {
        self.0 == 0
    }
}

impl FromStr for ByteRate {
    type Err = BadByteRate;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        parse_bytes(t.strip_suffix("/s").unwrap_or(t))
            .map(ByteRate)
            .ok_or_else(|| BadByteRate(s.chars().take(40).collect()))
    }
}

impl fmt::Display for ByteRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_bytes(self.0, f)
    }
}

/// A whole number of bytes with an optional unit (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB, any
/// case); `None` when it is not one or does not fit.
pub(crate) fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let unit = unit.trim_start().to_ascii_lowercase();
    let scale = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|&(_, scale)| scale)?;
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// `n` bytes in the largest binary unit that divides them, so it parses back to the same value.
pub(crate) fn fmt_bytes(n: u64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (unit, scale) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if n != 0 && n.is_multiple_of(scale) {
            return write!(f, "{}{unit}", n / scale);
        }
    }
    write!(f, "{n}")
}

impl Serialize for ByteRate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteRate {
    /// Strings as documented; a bare integer is taken as bytes per second too.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteRate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte rate such as \"16MiB\", \"500KiB\" or \"0\" (unlimited)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteRate, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteRate, E> {
                Ok(ByteRate(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteRate, E> {
                u64::try_from(v)
                    .map(ByteRate)
                    .map_err(|_| E::custom(BadByteRate(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// Which way bytes move, from this process's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Serving bytes to other peers.
    Upload,
    /// Receiving bytes from other peers.
    Download,
}

/// The process's two buckets. Build once; every transfer shares them.
#[derive(Debug, Clone)]
pub struct Limits {
    upload: Arc<Bucket>,
    download: Arc<Bucket>,
}

impl Limits {
    pub fn new(upload: ByteRate, download: ByteRate) -> Self {
        Limits {
            upload: Arc::new(Bucket::new(upload)),
            download: Arc::new(Bucket::new(download)),
        }
    }

    pub fn unlimited() -> Self {
        Self::new(ByteRate::UNLIMITED, ByteRate::UNLIMITED)
    }

    pub fn bucket(&self, direction: Direction) -> &Arc<Bucket> {
        match direction {
            Direction::Upload => &self.upload,
            Direction::Download => &self.download,
        }
    }

    /// The throttle one transfer uses for its chunks.
    pub(crate) fn throttle(&self, direction: Direction) -> Throttle {
        Throttle::new(Arc::clone(self.bucket(direction)))
    }
}

/// One transfer's use of a shared bucket. It takes bytes from the bucket a quantum at a time,
/// whatever its chunk sizes, so transfers reading 4 KiB frames and transfers writing 256 KiB
/// blocks get the same share; credit left over when it is dropped goes back to the bucket.
#[derive(Debug)]
pub(crate) struct Throttle {
    bucket: Arc<Bucket>,
    credit: u64,
}

impl Throttle {
    pub(crate) fn new(bucket: Arc<Bucket>) -> Self {
        Throttle { bucket, credit: 0 }
    }

    /// Waits until `n` more bytes may move. Cancel-safe.
    pub(crate) async fn take(&mut self, n: u64) {
        let Some(lim) = &self.bucket.limited else {
            return;
        };
        while self.credit < n {
            self.bucket.acquire(lim.quantum).await;
            self.credit += lim.quantum;
        }
        self.credit -= n;
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        if let Some(lim) = &self.bucket.limited
            && self.credit > 0
        {
            lim.give_back(self.credit);
        }
    }
}

/// A token bucket of bytes: holds up to `burst` bytes, refills at `rate` bytes per second.
#[derive(Debug)]
pub struct Bucket {
    /// None: unlimited, nothing to count or wait for.
    limited: Option<Limited>,
    /// Bytes that had to wait for the bucket (for the rate-limited metric).
    delayed_bytes: AtomicU64,
}

#[derive(Debug)]
struct Limited {
    rate: u64,
    burst: u64,
    quantum: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Bytes available now; negative is debt owed by reservations already handed out, which
    /// is what queues later callers behind earlier ones.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A bucket for `rate` that can burst one second's worth of bytes.
    pub fn new(rate: ByteRate) -> Self {
        Self::with_burst(rate, rate.bytes_per_second())
    }

    /// A bucket for `rate` holding at most `burst` bytes (at least one quantum).
    pub(crate) fn with_burst(rate: ByteRate, burst: u64) -> Self {
        let limited = (!rate.is_unlimited()).then(|| {
            let rate = rate.bytes_per_second();
            // 20 ms of traffic, at least 16 KiB: waits stay well above the timer's 1 ms
            // resolution while transfers still take turns several times a second.
            let quantum = (rate / 50).max(16 << 10);
            let burst = burst.max(quantum);
            Limited {
                rate,
                burst,
                quantum,
                state: Mutex::new(State {
                    tokens: burst as f64,
                    at: Instant::now(),
                }),
            }
        });
        Bucket {
            limited,
            delayed_bytes: AtomicU64::new(0),
        }
    }

    #[cfg(test)]
    pub(crate) fn is_unlimited(&self) -> bool {
        self.limited.is_none()
    }

    /// Bytes that so far had to wait for this bucket.
    pub(crate) fn delayed_bytes(&self) -> u64 {
        self.delayed_bytes.load(Ordering::Relaxed)
    }

    /// Waits until `n` bytes may move. Callers are served a quantum at a time in arrival order,
    /// so callers asking for different sizes share by request, not by byte: a transfer should
    /// go through a [`Throttle`]. Cancel-safe: bytes reserved but not yet granted when the
    /// future is dropped go back to the bucket.
    pub(crate) async fn acquire(&self, n: u64) {
        let Some(lim) = &self.limited else {
            return;
        };
        let mut left = n;
        while left > 0 {
            let take = left.min(lim.quantum);
            let wait = lim.reserve(take);
            if !wait.is_zero() {
                self.delayed_bytes.fetch_add(take, Ordering::Relaxed);
                let refund = Refund { lim, bytes: take };
                tokio::time::sleep(wait).await;
                std::mem::forget(refund);
            }
            left -= take;
        }
    }
}

impl Limited {
    /// Takes `n` bytes now and says how long the caller must wait before using them.
    fn reserve(&self, n: u64) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.saturating_duration_since(s.at).as_secs_f64() * self.rate as f64;
        s.tokens = (s.tokens + refill).min(self.burst as f64);
        s.at = now;
        s.tokens -= n as f64;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / self.rate as f64)
        }
    }

    fn give_back(&self, n: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.tokens = (s.tokens + n as f64).min(self.burst as f64);
    }
}

/// Returns a reservation to the bucket if the waiting future is dropped.
struct Refund<'a> {
    lim: &'a Limited,
    bytes: u64,
}

impl Drop for Refund<'_> {
    fn drop(&mut self) {
        self.lim.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;

    #[test]
    fn parses_documented_forms() {
        let ok = |s: &str| s.parse::<ByteRate>().unwrap().bytes_per_second();
        assert_eq!(ok("0"), 0);
        assert_eq!(ok("16MiB"), 16 * MIB);
        assert_eq!(ok("500KiB"), 500 * KIB);
        assert_eq!(ok("2MB"), 2_000_000);
        assert_eq!(ok("1gib"), 1 << 30);
        assert_eq!(ok(" 8 MiB/s "), 8 * MIB);
        assert_eq!(ok("1234"), 1234);
        assert_eq!(ok("1234B"), 1234);
        assert!("0".parse::<ByteRate>().unwrap().is_unlimited());
    }

    #[test]
    fn rejects_bad_forms_with_a_clear_message() {
        for bad in [
            "",
            "MiB",
            "-1MiB",
            "1.5MiB",
            "16Mb/sec",
            "16 mebibytes",
            "99999999999GiB",
            "1e6",
        ] {
            let err = bad.parse::<ByteRate>().unwrap_err().to_string();
            assert!(
                err.contains("bad byte rate") && err.contains("\"16MiB\""),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for r in [0, 1, 1023, KIB, 500 * KIB, 16 * MIB, 3 << 30, 1_000_000] {
            let rate = ByteRate::per_second(r);
            assert_eq!(rate.to_string().parse::<ByteRate>(), Ok(rate));
        }
        assert_eq!(ByteRate::per_second(16 * MIB).to_string(), "16MiB");
    }

    #[test]
    fn serde_takes_strings_and_integers() {
        let r: ByteRate = serde_json::from_str("\"16MiB\"").unwrap();
        assert_eq!(r.bytes_per_second(), 16 * MIB);
        assert_eq!(
            serde_json::from_str::<ByteRate>("0").unwrap(),
            ByteRate::UNLIMITED
        );
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"16MiB\"");
        let err = serde_json::from_str::<ByteRate>("\"fast\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad byte rate \"fast\""), "{err}");
        assert!(serde_json::from_str::<ByteRate>("-5").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let b = Bucket::new(ByteRate::UNLIMITED);
        let t = Instant::now();
        b.acquire(1 << 40).await;
        assert_eq!(t.elapsed(), Duration::ZERO);
        assert_eq!(b.delayed_bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn holds_the_rate_after_the_burst() {
        let b = Bucket::new(ByteRate::per_second(MIB));
        let t = Instant::now();
        // The first second's worth is the burst; nine more seconds for the rest.
        for _ in 0..160 {
            b.acquire(64 * KIB).await;
        }
        let secs = t.elapsed().as_secs_f64();
        assert!(
            (8.9..9.1).contains(&secs),
            "10 MiB at 1 MiB/s took {secs} s"
        );
        assert_eq!(b.delayed_bytes(), 9 * MIB);
    }

    #[tokio::test(start_paused = true)]
    async fn one_large_request_waits_in_proportion() {
        let b = Bucket::with_burst(ByteRate::per_second(MIB), 0);
        let t = Instant::now();
        b.acquire(5 * MIB).await;
        let secs = t.elapsed().as_secs_f64();
        assert!((4.9..5.1).contains(&secs), "5 MiB took {secs} s");
    }

    /// Transfers asking for very different chunk sizes get the same share of the rate.
    #[tokio::test(start_paused = true)]
    async fn shared_fairly_between_transfers() {
        let bucket = Arc::new(Bucket::with_burst(ByteRate::per_second(MIB), 0));
        // Transfers asking the bucket directly would share by request; throttles share by byte.
        let deadline = Instant::now() + Duration::from_secs(30);
        let moved: Vec<Arc<AtomicU64>> = (0..3).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let mut tasks = Vec::new();
        for (chunk, count) in [256 * KIB, 4 * KIB, 64 * KIB].into_iter().zip(&moved) {
            let (mut throttle, count) = (Throttle::new(Arc::clone(&bucket)), Arc::clone(count));
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    throttle.take(chunk).await;
                    count.fetch_add(chunk, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let got: Vec<u64> = moved.iter().map(|m| m.load(Ordering::Relaxed)).collect();
        let total: u64 = got.iter().sum();
        // 30 s at 1 MiB/s, plus at most one chunk per transfer finishing past the deadline.
        assert!((29 * MIB..=31 * MIB).contains(&total), "{got:?}");
        for g in &got {
            let share = *g as f64 / total as f64;
            assert!((0.28..0.39).contains(&share), "unfair split {got:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_gives_its_bytes_back() {
        let b = Bucket::with_burst(ByteRate::per_second(MIB), 0);
        // Cut a 100 MiB request after one second: it moved about 1 MiB.
        let cut = tokio::time::timeout(Duration::from_secs(1), b.acquire(100 * MIB)).await;
        assert!(cut.is_err());
        // The next caller is not charged for the abandoned reservation.
        let t = Instant::now();
        b.acquire(MIB).await;
        let secs = t.elapsed().as_secs_f64();
        assert!(secs < 1.1, "waited {secs} s behind a cancelled request");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_throttle_returns_its_credit() {
        let bucket = Arc::new(Bucket::with_burst(ByteRate::per_second(MIB), 0));
        let mut t = Throttle::new(Arc::clone(&bucket));
        t.take(1).await; // takes a whole quantum from the bucket
        drop(t);
        // With the quantum back, a full quantum is available at once.
        let quantum = bucket.limited.as_ref().unwrap().quantum;
        let start = Instant::now();
        bucket.acquire(quantum - 1).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(bucket.delayed_bytes(), 0);
    }

    #[test]
    fn limits_pick_the_bucket_by_direction() {
        let l = Limits::new(ByteRate::UNLIMITED, ByteRate::per_second(MIB));
        assert!(l.bucket(Direction::Upload).is_unlimited());
        assert!(!l.bucket(Direction::Download).is_unlimited());
        assert!(
            Limits::unlimited()
                .bucket(Direction::Download)
                .is_unlimited()
        );
    }
}
