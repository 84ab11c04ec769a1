//! Downloads the running peer makes on request: `POST /downloads` (`http::downloads`, what
//! `p2p-peer get --via` calls) and the serving menu's get. Both go through
//! [`Daemon::download`]: into this peer's share, with its partials registry so that verified
//! pieces are served while it downloads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::{self, Destination, Placed};
use crate::error::{Error, Result};
use crate::metrics::{DownloadMeter, Metrics};
use crate::share::Digest;
use crate::store::Store;
use crate::swarm::{Report, Swarm, Target};
use crate::tracker::Tracker;
use crate::wire::download::{Downloaded, Event};

/// Progress lines are sent at most this often...
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// ...and at least this often, so that a quiet download (waiting for a lock, a slow source)
/// does not look like a dead connection to the client.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);

/// What the peer downloads with. Built once by the server, shared by the route and the menu.
#[derive(Clone)]
pub struct Daemon {
    pub store: Arc<Store>,
    pub swarm: Swarm,
    pub tracker: Tracker,
    pub metrics: Metrics,
}

impl Daemon {
    /// Downloads `name` (the copy with `sha256`, when given) into this peer's share and
    /// publishes it, telling `events` how it goes. Already shared: done at once, "identical".
    pub async fn download(
        &self,
        name: &str,
        sha256: Option<&Digest>,
        events: &(dyn Fn(Event) + Send + Sync),
    ) -> Result<Downloaded> {
        let mut target = client::resolve(&self.tracker, name, sha256).await?;
        let done = |target: &Target, status: Placed| Downloaded {
            name: target.name.clone(),
            sha256: target.sha256,
            size: target.size,
            status,
        };
        if let Some(entry) = self.store.get(&target.name).await {
            if entry.sha256 != target.sha256 {
                return Err(Error::Refused(format!(
                    "a different file named {} is already shared here; kept it",
                    target.name
                )));
            }
            target.size = entry.size;
            events(start(&target, target.size));
            return Ok(done(&target, Placed::Identical));
        }
        // Refused before it starts: the HTTP answer is 507, not a stream. The number of
        // downloads and the reserve need no size, so they are checked before anyone is asked;
        // the file's size is the one the holders' manifests give, not the tracker's.
        let partial_dir = self.store.partial_dir();
        let sizeless = Target {
            size: 0,
            ..target.clone()
        };
        self.swarm.check_room(&sizeless, &partial_dir).await?;
        self.swarm.settle(&mut target).await;
        self.swarm.check_room(&target, &partial_dir).await?;
        let progress = EventProgress::new(&target, &self.metrics, events);
        events(start(&target, 0));
        let _active = self.metrics.transfer("download");
        let dest = Destination::Share(&self.store);
        let fetch = client::get(&self.swarm, &target, &dest, &progress);
        tokio::pin!(fetch);
        let mut keepalive = tokio::time::interval(KEEPALIVE_EVERY);
        let result = loop {
            tokio::select! {
                r = &mut fetch => break r,
                _ = keepalive.tick() => progress.keepalive(),
            }
        };
        let label = match &result {
            Ok(_) => "ok",
            Err(Error::Integrity(_)) => "integrity_failure",
            Err(_) => "error",
        };
        self.metrics.downloads.with_label_values(&[label]).inc();
        result.map(|status| done(&target, status))
    }
}

pub(crate) fn start(t: &Target, have: u64) -> Event {
    Event::Start {
        name: t.name.clone(),
        sha256: t.sha256,
        size: t.size,
        have,
    }
}

/// Streams a download's events (progress lines at most every [`PROGRESS_EVERY`], in their
/// wire form) and counts them in the peer's download metrics.
struct EventProgress<'a> {
    size: u64,
    /// Verified bytes.
    have: AtomicU64,
    /// Holders in use, as the engine last said.
    sources: AtomicU64,
    last: Mutex<Instant>,
    meter: DownloadMeter<'a>,
    events: &'a (dyn Fn(Event) + Send + Sync),
}

impl<'a> EventProgress<'a> {
    fn new(t: &Target, metrics: &'a Metrics, events: &'a (dyn Fn(Event) + Send + Sync)) -> Self {
        Self {
            size: t.size,
            have: AtomicU64::new(0),
            sources: AtomicU64::new(0),
            last: Mutex::new(Instant::now()),
            meter: DownloadMeter::new(metrics),
            events,
        }
    }

    /// Sends a progress line if none went out for `every`.
    fn report(&self, every: Duration) {
        let due = match self.last.lock() {
            Ok(mut last) if last.elapsed() >= every => {
                *last = Instant::now();
                true
            }
            _ => false,
        };
        if due {
            (self.events)(Event::Progress {
                have: self.have.load(Ordering::Relaxed).min(self.size),
                size: self.size,
                sources: self.sources.load(Ordering::Relaxed),
            });
        }
    }

    fn keepalive(&self) {
        self.report(KEEPALIVE_EVERY);
    }
}

impl Report for EventProgress<'_> {
    fn event(&self, e: Event) {
        self.meter.observe(&e);
        match e {
            // The bytes verified when a source starts (a resume, at first).
            Event::Source { have, .. } => {
                self.have.fetch_max(have, Ordering::Relaxed);
                self.report(PROGRESS_EVERY);
            }
            Event::Progress { have, sources, .. } => {
                self.have.fetch_max(have, Ordering::Relaxed);
                self.sources.store(sources, Ordering::Relaxed);
                self.report(PROGRESS_EVERY);
            }
            Event::Verified { size } => {
                self.sources.store(0, Ordering::Relaxed);
                self.have.store(size, Ordering::Relaxed);
                if let Some(line) = (Event::Verified { size }).on_wire() {
                    (self.events)(line);
                }
            }
            other => {
                if let Some(line) = other.on_wire() {
                    (self.events)(line);
                }
            }
        }
    }
}
