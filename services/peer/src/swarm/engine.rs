//! The download's event loop: it does what the plan (`plan`) decides (fetch a piece, ask a
//! bitfield, ask the tracker), checks and writes pieces off the runtime while the network keeps
//! going, and tells the plan what came back. Everything it knows of sources and requests is the
//! plan's; what it holds itself is I/O: tasks, the files, the tick.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::{AbortHandle, JoinSet};
use tracing::Instrument;

use super::holders::{self, Failures, Start};
use super::picker::SourceId;
use super::plan::{Ask, Checked, Fetched, Geometry, Meter, Next, Plan, Tuning};
use super::source::{self, Failure};
use super::target::{Report, Swarm, Target};
use crate::error::Error;
use crate::share::bitfield::Bitfield;
use crate::share::partial::{PartialFile, PartialWriter, Partials};
use crate::share::{Digest, Manifest, PieceIndex, ShareError};
use crate::tracker::Holder;
use crate::transfer::Direction;
use crate::wire::download::Event as Progress;

/// How often the loop looks at its requests, saves the bitfield and refreshes what it knows.
pub const TICK: Duration = Duration::from_millis(250);
/// The persisted bitfield is rewritten at most this often (it only ever lags behind).
const SAVE_EVERY: Duration = Duration::from_millis(250);
/// Bytes asked of a source at once: a piece (4 MiB or more) comes in blocks from several
/// sources, so it is complete and offered to others in a fraction of the time one source
/// would take. Measured with `scripts/bench-swarm.sh` (README): 256 KiB kept the distribution
/// closest to its bound.
pub const BLOCK: u64 = 256 << 10;
/// Holders are asked of the tracker this often while the download runs: peers that started
/// the same file a moment later are partial holders worth using within seconds.
pub const HOLDERS_EVERY: Duration = Duration::from_secs(2);
/// In the first [`EARLY`] of a download, holders are asked for this often: peers that start
/// the same file together become partial holders within a second, and until a download knows
/// them every block comes from the seed.
pub const HOLDERS_EARLY_EVERY: Duration = Duration::from_millis(500);
pub const EARLY: Duration = Duration::from_secs(4);

/// How the loop ended.
pub(super) enum Outcome {
    Complete,
    /// Writing here failed: nothing of this download is worth keeping.
    Local(PathBuf, std::io::Error),
    /// The sources let it down: verified pieces are kept for a resume.
    GaveUp(Error),
}

/// A piece's check after its blocks arrived.
enum Check {
    /// Verified and written (`true`), or verified before (`false`); the digests of its blocks
    /// when asked for.
    Done(bool, Option<Vec<Digest>>),
    /// Not what the manifest says; the digests of its blocks as they came.
    Bad(String, Vec<Digest>),
    Local(std::io::Error),
}

/// What a task of the loop ends with.
enum Event {
    Received {
        ask: Ask,
        result: std::result::Result<Vec<u8>, Failure>,
    },
    Checked {
        piece: PieceIndex,
        check: Check,
    },
    Bitfield {
        src: SourceId,
        result: std::result::Result<source::Holding, Failure>,
    },
    Holders(crate::error::Result<Vec<Holder>>),
}

/// Keeps `p2p_peer_download_sources` at the number of sources this download uses.
struct SourcesGauge {
    gauge: Option<prometheus::IntGauge>,
    n: i64,
}

impl SourcesGauge {
    fn set(&mut self, n: i64) {
        if let Some(g) = &self.gauge {
            g.add(n - self.n);
        }
        self.n = n;
    }
}

impl Drop for SourcesGauge {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// Serves a download in progress from the daemon's registry while it lives.
struct Registered(Option<(Arc<Partials>, Digest)>);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some((partials, d)) = self.0.take() {
            partials.remove(&d);
        }
    }
}

pub(super) struct Engine<'a> {
    swarm: &'a Swarm,
    target: &'a Target,
    report: &'a dyn Report,
    manifest: Arc<Manifest>,
    file: Arc<PartialFile>,
    data: Arc<std::fs::File>,
    bitfield_path: PathBuf,
    root: Option<Digest>,
    plan: Plan<AbortHandle>,
    /// The pieces being put together: each block's buffer as it came (in block order), until
    /// the piece is checked. Kept apart, not copied into one piece-sized buffer: hashing and
    /// writing go over the blocks where they lie.
    assembly: HashMap<PieceIndex, Vec<Vec<u8>>>,
    tasks: JoinSet<Event>,
    failures: Failures,
    gauge: SourcesGauge,
    _registered: Registered,
    saved: Bitfield,
    saved_at: Instant,
    holders_at: Option<Instant>,
    /// When the download's loop was set up.
    started: Instant,
    holders_pending: bool,
    /// Sources ran out and the tracker was asked since: nothing new means giving up.
    asked_when_out: bool,
    /// Bytes of the verified pieces.
    verified_bytes: u64,
}

impl<'a> Engine<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        swarm: &'a Swarm,
        target: &'a Target,
        manifest: Arc<Manifest>,
        writer: &PartialWriter,
        start: Start,
        failed: impl IntoIterator<Item = String>,
        failures: Failures,
        report: &'a dyn Report,
    ) -> Self {
        let file = Arc::clone(writer.file());
        let registered = Registered(swarm.partials.as_ref().map(|p| {
            p.insert(Arc::clone(&file));
            (Arc::clone(p), target.sha256)
        }));
        let tuning = Tuning {
            max_sources: swarm.max_sources,
            io_timeout: swarm.io_timeout,
            check_slots: std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            seed: holders::seed(),
        };
        let geometry = Geometry::new(manifest.size(), manifest.piece_size(), BLOCK);
        let mut plan = Plan::new(geometry, manifest.piece_count(), tuning, Instant::now());
        // Holders that already failed here are not sources (nor re-added by a refresh).
        plan.exclude(failed);
        plan.exclude(swarm.skip.clone());
        plan.add_holders(start.holders);
        let saved = file.bitfield();
        let verified_bytes = saved
            .ones()
            .filter_map(|i| manifest.range(i))
            .map(|r| r.end - r.start)
            .sum();
        Engine {
            swarm,
            target,
            report,
            manifest,
            data: writer.data(),
            file,
            bitfield_path: writer.bitfield_path().to_path_buf(),
            root: start.root,
            plan,
            assembly: HashMap::new(),
            tasks: JoinSet::new(),
            failures,
            gauge: SourcesGauge {
                gauge: swarm.metrics.as_ref().map(|m| m.download_sources.clone()),
                n: 0,
            },
            _registered: registered,
            saved,
            saved_at: Instant::now(),
            holders_at: None,
            started: Instant::now(),
            holders_pending: false,
            asked_when_out: false,
            verified_bytes,
        }
    }

    /// What went wrong with sources so far, for the next claim or the final error.
    pub(super) fn take_failures(&mut self) -> Failures {
        std::mem::take(&mut self.failures)
    }

    fn report_progress(&self, sources: usize) {
        self.report.event(Progress::Progress {
            have: self.verified_bytes,
            size: self.target.size,
            sources: sources as u64,
        });
    }

    /// Runs until every piece is verified, writing fails, or no source is left. Whatever still
    /// runs is cancelled when the engine is dropped.
    pub(super) async fn run(&mut self) -> Outcome {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Pieces are marked verified by their check before its event arrives here: wait for
            // the events too, so that each piece is counted and reported.
            if self.file.bitfield().is_complete() && !self.plan.is_checking() {
                if let Some(p) = &self.swarm.partials {
                    p.mark_downloaded(&self.target.sha256);
                }
                return Outcome::Complete;
            }
            if let Err(e) = self.schedule() {
                return Outcome::GaveUp(e);
            }
            tokio::select! {
                Some(joined) = self.tasks.join_next() => {
                    let Ok(event) = joined else { continue }; // cancelled
                    if let Some(out) = self.handle(event) {
                        return out;
                    }
                }
                _ = tick.tick() => {
                    if let Some(out) = self.on_tick().await {
                        return out;
                    }
                }
            }
        }
    }

    /// Gives every idle source work, asks for bitfields and holders when due. An error when
    /// there is nobody left to ask.
    fn schedule(&mut self) -> crate::error::Result<()> {
        let verified = self.file.bitfield();
        let now = Instant::now();
        let active = self.plan.active(&verified, now);
        if active.len() as i64 != self.gauge.n {
            self.gauge.set(active.len() as i64);
            self.report_progress(active.len());
        }
        if active.is_empty() {
            match &self.swarm.tracker {
                Some(_) if self.holders_pending => {}
                Some(_) if !self.asked_when_out => {
                    self.asked_when_out = true;
                    self.ask_holders();
                }
                _ => return Err(self.failures.error(&self.target.name)),
            }
            return Ok(());
        }
        let now = Instant::now();
        for src in self.plan.bitfields_due(now) {
            self.ask_bitfield(src);
        }
        let plan_geometry = *self.plan.geometry();
        let Engine {
            swarm,
            target,
            report,
            manifest,
            plan,
            tasks,
            verified_bytes,
            ..
        } = self;
        plan.assign(&active, &verified, now, |peer, ask, meter| {
            if ask.first {
                report.event(Progress::Source {
                    peer: peer.peer_id.clone(),
                    address: peer.address.clone(),
                    size: target.size,
                    have: *verified_bytes,
                });
            }
            manifest.range(ask.piece)?;
            Some(fetch_block(
                swarm,
                tasks,
                peer,
                ask,
                &plan_geometry,
                target.sha256,
                meter,
            ))
        });
        Ok(())
    }

    fn ask_bitfield(&mut self, src: SourceId) {
        let s = self.plan.source(src);
        let (net, address, sha256, count, after, timeout) = (
            self.swarm.net.clone(),
            s.peer.address.clone(),
            self.target.sha256,
            self.manifest.piece_count(),
            s.have_after(),
            self.swarm.io_timeout,
        );
        self.tasks.spawn(async move {
            let result = source::bitfield(&net, &address, &sha256, count, after, timeout).await;
            Event::Bitfield { src, result }
        });
    }

    fn ask_holders(&mut self) {
        let Some(tracker) = self.swarm.tracker.clone() else {
            return;
        };
        self.holders_pending = true;
        self.holders_at = Some(Instant::now());
        let sha = self.target.sha256;
        self.tasks
            .spawn(async move { Event::Holders(tracker.peers_by_digest(&sha).await) });
    }

    fn count_piece(&self, result: &str) {
        if let Some(m) = &self.swarm.metrics {
            m.pieces.with_label_values(&[result]).inc();
        }
    }

    /// Cancels what the plan lets go of and reports a dropped source.
    fn follow(&mut self, src: SourceId, next: Next<AbortHandle>, why: Option<&Failure>) {
        match next {
            Next::Stale | Next::Continue | Next::Blame(_) => {}
            Next::Block(others) | Next::Check(others) => {
                for h in others {
                    h.abort();
                    self.count_piece("cancelled");
                }
            }
            Next::Dropped(requests) => {
                for h in requests {
                    h.abort();
                }
                // A source is only dropped for a failure, which comes with it.
                if let Some(f) = why {
                    let peer = self.plan.source(src).peer.clone();
                    self.failures.note(self.swarm, &peer, f, self.report);
                }
            }
        }
    }

    fn handle(&mut self, event: Event) -> Option<Outcome> {
        let now = Instant::now();
        match event {
            Event::Received { ask, result } => {
                let Ask {
                    source: src,
                    piece,
                    block,
                    ..
                } = ask;
                let what = match &result {
                    Ok(bytes) => Fetched::Bytes {
                        len: bytes.len() as u64,
                    },
                    Err(Failure::Deferred) => Fetched::Deferred,
                    Err(Failure::Busy) => Fetched::Busy,
                    Err(Failure::NotThere(why)) => {
                        tracing::debug!(peer = %self.plan.source(src).peer.peer_id, "piece {piece}: {why}");
                        Fetched::NotHeld
                    }
                    Err(_) => Fetched::Failed,
                };
                let next = self.plan.fetched(src, piece, block, what, now);
                let complete = matches!(next, Next::Check(_));
                let (bytes, failure) = match result {
                    Ok(bytes) => (Some(bytes), None),
                    Err(f) => (None, Some(f)),
                };
                if let (Next::Block(_) | Next::Check(_), Some(bytes)) = (&next, bytes) {
                    self.take_block(piece, block, bytes);
                }
                self.follow(src, next, failure.as_ref());
                if complete {
                    self.check(piece);
                }
            }
            Event::Checked { piece, check } => {
                let (what, why) = match check {
                    Check::Done(true, digests) => {
                        self.count_piece("ok");
                        if let (Some(m), Some(at)) = (&self.swarm.metrics, self.plan.opened(piece))
                        {
                            m.piece_seconds
                                .observe(now.saturating_duration_since(at).as_secs_f64());
                        }
                        if let Some(r) = self.manifest.range(piece) {
                            self.verified_bytes += r.end - r.start;
                            self.report_progress(self.gauge.n as usize);
                        }
                        (Checked::Verified(digests), None)
                    }
                    Check::Done(false, _) => (Checked::AlreadyHad, None),
                    Check::Bad(why, digests) => {
                        self.count_piece("bad");
                        (
                            Checked::Bad(digests),
                            Some(Failure::Bad(format!("piece {piece}: {why}"))),
                        )
                    }
                    Check::Local(e) => {
                        return Some(Outcome::Local(self.file.data_path().to_path_buf(), e));
                    }
                };
                if let Next::Blame(liars) = self.plan.checked(piece, what, now) {
                    // The piece's own failure when one source sent it all; otherwise the blocks
                    // that differ from the verified copy.
                    let why = why.unwrap_or_else(|| {
                        Failure::Bad(format!(
                            "sent a block of piece {piece} that differs from its verified copy"
                        ))
                    });
                    for liar in liars {
                        let next = self.plan.blame(liar);
                        self.follow(liar, next, Some(&why));
                    }
                }
            }
            Event::Bitfield { src, result } => {
                let (has, why) = match result {
                    Ok(h) => (Some((h.has, h.waits)), None),
                    // Holds nothing of it now: between its last piece and the file in its
                    // share a partial holder answers 404 for a moment. Kept, with nothing,
                    // and asked again (dropped, a late joiner lost every peer that finished
                    // before it and fetched from the seed alone).
                    Err(Failure::NotThere(_)) => (
                        Some((Bitfield::new(self.manifest.piece_count()), false)),
                        None,
                    ),
                    Err(f) => (None, Some(f)),
                };
                let next = self.plan.bitfield(src, has, now);
                self.follow(src, next, why.as_ref());
            }
            Event::Holders(result) => {
                self.holders_pending = false;
                match result {
                    Ok(peers) => {
                        let fitting = peers
                            .into_iter()
                            .filter(|p| holders::fits(p, self.root.as_ref()));
                        if self.plan.add_holders(fitting) > 0 {
                            self.asked_when_out = false;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "holders not refreshed"),
                }
            }
        }
        None
    }

    /// Keeps a block that the plan took with its piece (moved, not copied).
    fn take_block(&mut self, piece: PieceIndex, block: u32, bytes: Vec<u8>) {
        let geometry = *self.plan.geometry();
        let range = geometry.block_range(piece, block);
        let blocks = geometry.blocks(piece) as usize;
        let parts = self
            .assembly
            .entry(piece)
            .or_insert_with(|| vec![Vec::new(); blocks]);
        if let Some(slot) = parts.get_mut(block as usize)
            && (range.end - range.start) == bytes.len() as u64
        {
            *slot = bytes;
        }
    }

    /// Checks and writes a piece whose blocks are all in, off the runtime.
    fn check(&mut self, piece: PieceIndex) {
        let Some(bytes) = self.assembly.remove(&piece) else {
            return;
        };
        let (file, data) = (Arc::clone(&self.file), Arc::clone(&self.data));
        let digests = self.plan.wants_block_digests(piece);
        self.tasks.spawn(async move {
            let check = tokio::task::spawn_blocking(move || {
                check_and_write(&file, &data, piece, &bytes, digests)
            })
            .await
            .unwrap_or_else(|e| Check::Local(std::io::Error::other(e)));
            Event::Checked { piece, check }
        });
    }

    fn holders_every(&self) -> Duration {
        if self.started.elapsed() < EARLY {
            HOLDERS_EARLY_EVERY
        } else {
            HOLDERS_EVERY
        }
    }

    async fn on_tick(&mut self) -> Option<Outcome> {
        let field = self.file.bitfield();
        if field != self.saved && self.saved_at.elapsed() >= SAVE_EVERY {
            let (path, sha, f) = (
                self.bitfield_path.clone(),
                *self.file.record_key(),
                field.clone(),
            );
            let (data, data_path) = (Arc::clone(&self.data), self.file.data_path().to_path_buf());
            let saved = tokio::task::spawn_blocking(move || {
                crate::share::partial::save_synced(&data, &data_path, &path, &sha, &f)
            })
            .await;
            match saved {
                Ok(Ok(())) => {
                    self.saved = field;
                    self.saved_at = Instant::now();
                }
                Ok(Err(ShareError::Io { path, source })) => {
                    return Some(Outcome::Local(path, source));
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "bitfield not saved"),
                Err(e) => tracing::warn!(error = %e, "bitfield not saved"),
            }
        }
        if !self.holders_pending
            && self
                .holders_at
                .is_none_or(|at| at.elapsed() >= self.holders_every())
        {
            self.ask_holders();
        }
        let stall = (self.swarm.io_timeout * 4).max(Duration::from_secs(30));
        if self.plan.stalled(Instant::now(), stall) {
            self.failures.stalled(stall);
            return Some(Outcome::GaveUp(self.failures.error(&self.target.name)));
        }
        None
    }
}

/// Starts fetching one block; its end comes back as an [`Event::Received`].
fn fetch_block(
    swarm: &Swarm,
    tasks: &mut JoinSet<Event>,
    peer: &Holder,
    ask: Ask,
    geometry: &Geometry,
    sha256: Digest,
    meter: &Arc<Meter>,
) -> AbortHandle {
    let block = geometry.block_range(ask.piece, ask.block);
    let piece_len = geometry.piece_len(ask.piece);
    let (net, address, timeout) = (swarm.net.clone(), peer.address.clone(), swarm.io_timeout);
    let throttle = swarm.limits.throttle(Direction::Download);
    let m = Arc::clone(meter);
    let span = tracing::info_span!(
        "piece",
        otel.name = "fetch piece",
        otel.kind = "client",
        peer = %peer.peer_id,
        address = %peer.address,
        piece = ask.piece.0,
        block = ask.block,
    );
    tasks.spawn(
        async move {
            let result = source::block(
                &net, &address, &sha256, ask.piece, block, piece_len, timeout, throttle, m,
                ask.insist,
            )
            .await;
            Event::Received { ask, result }
        }
        .instrument(span),
    )
}

/// Fingerprints of each block of a piece: what tells which source sent a bad block (compared
/// only with each other, so the fastest hash serves).
fn block_digests(blocks: &[Vec<u8>]) -> Vec<Digest> {
    blocks
        .iter()
        .map(|b| crate::share::digest::fingerprint(b))
        .collect()
}

/// Verifies a piece from its blocks (in order) and writes it. Blocking (hashing and disk, off
/// the runtime).
fn check_and_write(
    file: &PartialFile,
    data: &std::fs::File,
    piece: PieceIndex,
    blocks: &[Vec<u8>],
    want_digests: bool,
) -> Check {
    if file.has(piece) {
        return Check::Done(false, None);
    }
    if let Err(e) = file.manifest().verify_parts(piece, blocks) {
        return Check::Bad(e.to_string(), block_digests(blocks));
    }
    let digests = want_digests.then(|| block_digests(blocks));
    match PartialWriter::write_piece(file, data, piece, blocks) {
        Ok(()) => Check::Done(true, digests),
        Err(e) => Check::Local(e),
    }
}
