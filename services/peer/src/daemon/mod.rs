//! Downloads the running peer makes on request: `POST /downloads` (`http::downloads`, what
//! `p2p-peer get --via` calls) and the serving menu's get. Both go through
//! [`Daemon::download`]: into this peer's share, with its partials registry so that verified
//! pieces are served while it downloads. Each download running here can be cancelled, paused
//! and resumed by its digest (`control`).

pub(crate) mod control;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use control::{Command, Controls};

use crate::client::{self, Destination, Placed};
use crate::error::{Error, Result};
use crate::metrics::{DownloadMeter, Metrics};
use crate::share::{Digest, partial, sweep};
use crate::store::Store;
use crate::swarm::{Report, Swarm, Target};
use crate::tracker::Tracker;
use crate::transfer::ledger::Ledger;
use crate::transfer::tally::Tally;
use crate::wire::download::{Downloaded, Event};
use tokio_util::sync::CancellationToken;

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
    /// The downloads running here, for cancel, pause and resume.
    pub(crate) controls: Arc<Controls>,
    /// Cancelled when the peer stops: its downloads stop with it, their verified pieces kept.
    /// A peer that has left the tracker would otherwise go on taking the swarm's upload for
    /// its whole shutdown grace while nobody can fetch from it any more.
    pub(crate) stopping: CancellationToken,
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
        if self.stopping.is_cancelled() {
            return Err(stopping(name));
        }
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
        // Pieces kept by an earlier run of this download are not this run's bytes.
        let kept = client::kept_bytes(&partial_dir, &target).await;
        let progress = EventProgress::new(&target, kept, self, events);
        events(start(&target, kept));
        let _active = self.metrics.transfer("download");
        let mut registration =
            self.controls
                .register(target.sha256, &target.name, Arc::clone(&progress.tally));
        let result = loop {
            let dest = Destination::Share(&self.store);
            let fetch = client::get(&self.swarm, &target, &dest, &progress);
            // Stops at a command other than "run": the fetch is dropped with it (the engine
            // saves what it verified every quarter second; a later run resumes from there).
            let told = async {
                let commands = &mut registration.commands;
                commands.wait_for(|c| *c != Command::Run).await.map(|c| *c)
            };
            let outcome = tokio::select! {
                r = with_keepalive(fetch, &progress) => break r,
                c = told => c,
                () = self.stopping.cancelled() => break Err(self.stopped(&target, &partial_dir).await),
            };
            match outcome {
                Ok(Command::Pause) => {
                    tracing::info!(file = %target.name, "download paused");
                    let commands = &mut registration.commands;
                    let next = tokio::select! {
                        next = with_keepalive(
                            async {
                                commands
                                    .wait_for(|c| *c != Command::Pause)
                                    .await
                                    .map(|c| *c)
                            },
                            &progress,
                        ) => next,
                        () = self.stopping.cancelled() => {
                            break Err(self.stopped(&target, &partial_dir).await);
                        }
                    };
                    match next {
                        Ok(Command::Cancel { keep }) => {
                            break Err(self.cancelled(&target, &partial_dir, keep).await);
                        }
                        _ => tracing::info!(file = %target.name, "download resumed"),
                    }
                }
                Ok(Command::Cancel { keep }) => {
                    break Err(self.cancelled(&target, &partial_dir, keep).await);
                }
                // Run cannot come out of the wait; a closed channel cannot happen while the
                // registration lives. Either way: fetch on.
                Ok(Command::Run) | Err(_) => {}
            }
        };
        drop(registration);
        let label = match &result {
            Ok(_) => "ok",
            Err(Error::Integrity(_)) => "integrity_failure",
            // A cancel counts as "error": the label values are a contract (DESIGN.md).
            Err(_) => "error",
        };
        self.metrics.downloads.with_label_values(&[label]).inc();
        result.map(|status| done(&target, status))
    }
}

/// The verified bytes a stopped download leaves in `dir`, for its message.
async fn kept(dir: &Path, target: &Target) -> String {
    crate::client::render::human_bytes(client::kept_bytes(dir, target).await)
}

/// Why a download asked of a stopping peer is not started.
fn stopping(name: &str) -> Error {
    Error::Cancelled(format!(
        "this peer is stopping: download of {name} not started; ask again once it is back"
    ))
}

impl Daemon {
    /// The error a download stopped by the peer's shutdown ends with; its partial is kept.
    async fn stopped(&self, target: &Target, dir: &Path) -> Error {
        tracing::info!(file = %target.name, "download stopped: the peer is stopping");
        Error::Cancelled(format!(
            "this peer is stopping: download of {} stopped; {} kept, ask again once it is back to resume",
            target.name,
            kept(dir, target).await
        ))
    }

    /// The error a cancelled download ends with, after removing its partial unless `keep`.
    async fn cancelled(&self, target: &Target, dir: &Path, keep: bool) -> Error {
        tracing::info!(file = %target.name, keep, "download cancelled");
        if keep {
            return Error::Cancelled(format!(
                "download of {} cancelled; {} kept to resume later",
                target.name,
                kept(dir, target).await
            ));
        }
        // The fetch is gone, so its lock is free (unless another process writes the digest
        // here, which cannot be: one share, one peer).
        let freed = match partial::WriteLock::acquire(dir, &target.sha256).await {
            Ok(lock) => {
                let (d, sha256) = (dir.to_path_buf(), target.sha256);
                tokio::task::spawn_blocking(move || sweep::remove_files(&d, &sha256, &lock))
                    .await
                    .unwrap_or(0)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot lock the cancelled download to remove it");
                0
            }
        };
        tracing::info!(file = %target.name, freed, "removed the cancelled download");
        Error::Cancelled(format!(
            "download of {} cancelled; its partial download was removed",
            target.name
        ))
    }
}

/// Runs `work`, sending a progress line at least every [`KEEPALIVE_EVERY`] meanwhile.
async fn with_keepalive<T>(work: impl std::future::Future<Output = T>, p: &EventProgress<'_>) -> T {
    tokio::pin!(work);
    let mut keepalive = tokio::time::interval(KEEPALIVE_EVERY);
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = keepalive.tick() => p.keepalive(),
        }
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
/// The download's [`Tally`] takes every event too (what `GET /api/transfers` shows).
struct EventProgress<'a> {
    size: u64,
    /// Verified bytes.
    have: AtomicU64,
    /// Holders in use, as the engine last said.
    sources: AtomicU64,
    last: Mutex<Instant>,
    meter: DownloadMeter<'a>,
    events: &'a (dyn Fn(Event) + Send + Sync),
    tally: Arc<Mutex<Tally>>,
    /// What each source sent, for the tally's rates per source.
    ledger: &'a Ledger,
}

impl<'a> EventProgress<'a> {
    fn new(
        t: &Target,
        kept: u64,
        daemon: &'a Daemon,
        events: &'a (dyn Fn(Event) + Send + Sync),
    ) -> Self {
        Self {
            size: t.size,
            have: AtomicU64::new(kept),
            sources: AtomicU64::new(0),
            last: Mutex::new(Instant::now()),
            meter: DownloadMeter::new(&daemon.metrics),
            events,
            tally: Arc::new(Mutex::new(Tally::new(t.size, kept, Instant::now()))),
            ledger: &daemon.swarm.net.ledger,
        }
    }

    fn tally(&self, e: &Event) {
        let now = Instant::now();
        let mut t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        t.observe(e, now);
        for a in t.source_addresses() {
            let received = self.ledger.received(&a);
            t.received(&a, received, now);
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
            let line = Event::Progress {
                have: self.have.load(Ordering::Relaxed).min(self.size),
                size: self.size,
                sources: self.sources.load(Ordering::Relaxed),
            };
            self.tally(&line);
            (self.events)(line);
        }
    }

    fn keepalive(&self) {
        self.report(KEEPALIVE_EVERY);
    }
}

impl Report for EventProgress<'_> {
    fn event(&self, e: Event) {
        self.meter.observe(&e);
        // Progress goes to the tally as it goes on the wire (at most every PROGRESS_EVERY).
        if !matches!(e, Event::Progress { .. }) {
            self.tally(&e);
        }
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
