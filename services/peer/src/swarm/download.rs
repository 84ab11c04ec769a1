//! The download loop: holders become sources, each asked for one piece at a time, rarest first;
//! pieces are verified and written off the runtime while the network keeps going; the whole-file
//! digest follows the verified prefix, so at the end only the tail is left to hash.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::task::{AbortHandle, JoinSet};
use tracing::Instrument;

use super::Swarm;
use super::picker::{self, InFlight, SourceId, View};
use super::source::{self, Failure, Meter, Source};
use super::{Report, Target};
use crate::error::{Error, Result};
use crate::share::bitfield::Bitfield;
use crate::share::digest::Sha256;
use crate::share::partial::{self, PartialFile, PartialWriter, Partials, WriteLock};
use crate::share::{Digest, Manifest, PieceIndex, ShareError};
use crate::tracker::Holder;
use crate::transfer::Direction;
use crate::wire::download as wire;

/// How often the loop looks at its requests, saves the bitfield and refreshes what it knows.
const TICK: Duration = Duration::from_millis(250);
/// The persisted bitfield is rewritten at most this often (it only ever lags behind).
const SAVE_EVERY: Duration = Duration::from_millis(250);
/// Holders are asked of the tracker this often while the download runs: peers that started
/// the same file a moment later are partial holders worth using within seconds.
const HOLDERS_EVERY: Duration = Duration::from_secs(2);
/// Partial holders' bitfields are refreshed this often: they grow while we download, and a
/// piece they have is one the complete holders need not send (a few bytes per second each).
const BITFIELD_EVERY: Duration = Duration::from_secs(1);
/// In endgame, at most this many sources fetch one piece.
const ENDGAME_COPIES: usize = 2;
/// Piece requests one source may have running at once.
const PER_SOURCE: usize = 2;
/// Beyond one request per source, no more than this many requests in all.
const REQUEST_BUDGET: usize = 8;

/// A piece's check after its bytes arrived.
enum Check {
    /// Verified and written (`true`), or someone else's copy got there first (`false`).
    Done(bool),
    Bad(String),
    Local(std::io::Error),
}

enum Event {
    Received {
        src: usize,
        piece: PieceIndex,
        took: Duration,
        result: std::result::Result<Vec<u8>, Failure>,
    },
    Checked {
        src: usize,
        piece: PieceIndex,
        check: Check,
    },
    Bitfield {
        src: usize,
        result: std::result::Result<Bitfield, Failure>,
    },
    Holders(Result<Vec<Holder>>),
}

struct Request {
    abort: AbortHandle,
    meter: Arc<Meter>,
    started: Instant,
}

/// What went wrong with the sources, for the final error.
#[derive(Default)]
struct Failures {
    not_there: usize,
    unreachable: usize,
    bad: Vec<String>,
    last: String,
}

impl Failures {
    fn error(&self, name: &str) -> Error {
        let mut summary = format!("could not download {name:?}");
        if !self.bad.is_empty() {
            summary.push_str(&format!(
                "; sources that sent bad data: {}",
                self.bad.join(", ")
            ));
        }
        if !self.last.is_empty() {
            summary.push_str(&format!("; last failure: {}", self.last));
        }
        if !self.bad.is_empty() {
            Error::Integrity(summary)
        } else if self.unreachable == 0 && self.not_there > 0 {
            Error::NotFound(summary)
        } else {
            Error::Unreachable(summary)
        }
    }
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

/// A download that cannot be written here (no space, over a size limit, an I/O error) frees
/// what it wrote: a partial kept on a full disk keeps the disk full, and resuming needs room
/// this attempt did not have. Only failures on the network side keep the partial for a resume.
async fn local_failure(writer: Option<PartialWriter>, path: &Path, e: &std::io::Error) -> Error {
    let removed = match writer {
        Some(w) => match tokio::task::spawn_blocking(move || w.discard()).await {
            Ok(true) => "; removed the partial download",
            _ => "; could not remove the partial download",
        },
        None => "; removed the partial download",
    };
    let why = match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => "no space left to write the download",
        Some(libc::EFBIG) => "the download is larger than this process may write",
        _ => "cannot write the download",
    };
    Error::Other(anyhow::anyhow!("{why}: {}: {e}{removed}", path.display()))
}

fn other(what: &Path, e: impl std::fmt::Display) -> Error {
    Error::Other(anyhow::anyhow!("{}: {e}", what.display()))
}

/// The root the download follows: the one most holders announced (the tracker's own choice
/// breaks ties), or, when no holder announced one, the tracker's.
fn choose_root(peers: &[Holder], announced: Option<&Digest>) -> Option<Digest> {
    let mut counts: HashMap<Digest, usize> = HashMap::new();
    for r in peers.iter().filter_map(|p| p.pieces_root) {
        *counts.entry(r).or_default() += 1;
    }
    let announced = announced.copied();
    counts
        .into_iter()
        .max_by_key(|(r, n)| (*n, Some(*r) == announced, *r))
        .map(|(r, _)| r)
        .or(announced)
}

/// Whether a holder may serve this download: it announced the chosen root (holders of other
/// roots would not agree on the pieces), or nobody announced one.
fn fits(peer: &Holder, root: Option<&Digest>) -> bool {
    match root {
        None => true,
        Some(r) => peer.pieces_root.as_ref() == Some(r),
    }
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// A verified copy left by an earlier download that was not placed: checked again (anything may
/// have touched it since), then reused; removed when it is not right.
async fn earlier_copy(path: PathBuf, sha256: Digest, size: u64) -> Option<PathBuf> {
    tokio::task::spawn_blocking(move || {
        let meta = std::fs::symlink_metadata(&path).ok()?;
        let right = meta.is_file()
            && meta.len() == size
            && crate::share::pieces::hash_file(&path).is_ok_and(|h| h.sha256 == sha256);
        if right {
            Some(path)
        } else {
            let _ = std::fs::remove_file(&path);
            None
        }
    })
    .await
    .ok()
    .flatten()
}

/// Follows the verified prefix of the data file and hashes it in order. Ends with the whole-file
/// digest when every piece is in, or `None` when the download ends first (its sender dropped).
fn hash_in_order(
    file: Arc<PartialFile>,
    data: Arc<std::fs::File>,
    wake: mpsc::Receiver<()>,
) -> std::io::Result<Option<Digest>> {
    use std::os::unix::fs::FileExt;
    let manifest = Arc::clone(file.manifest());
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut next = 0u32;
    let mut open = true;
    loop {
        while next < manifest.piece_count() && file.has(PieceIndex(next)) {
            let range = manifest
                .range(PieceIndex(next))
                .ok_or_else(|| std::io::Error::other("piece past the end"))?;
            let mut at = range.start;
            while at < range.end {
                let n = ((range.end - at) as usize).min(buf.len());
                data.read_exact_at(&mut buf[..n], at)?;
                h.update(&buf[..n]);
                at += n as u64;
            }
            next += 1;
        }
        if next == manifest.piece_count() {
            return Ok(Some(h.finish()));
        }
        if !open {
            return Ok(None);
        }
        // Once the sender is gone, one more look: its last pieces may have landed meanwhile.
        open = wake.recv().is_ok();
    }
}

pub(super) async fn run(
    swarm: &Swarm,
    target: &Target,
    dir: &Path,
    report: &dyn Report,
) -> Result<PathBuf> {
    let sha256 = target.sha256;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| other(dir, e))?;
    let lock = WriteLock::acquire(dir, &sha256)
        .await
        .map_err(|e| other(dir, e))?;
    if let Some(done) = earlier_copy(partial::done_path(dir, &sha256), sha256, target.size).await {
        report.event(wire::Event::Verified { size: target.size });
        return Ok(done);
    }

    let mut peers: Vec<Holder> = target
        .holders
        .iter()
        .filter(|p| Some(p.address.as_str()) != swarm.skip.as_deref())
        .cloned()
        .collect();
    if peers.is_empty()
        && let Some(t) = &swarm.tracker
    {
        peers = t
            .peers_by_digest(&target.sha256)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|p| Some(p.address.as_str()) != swarm.skip.as_deref())
            .collect();
    }
    if peers.is_empty() {
        return Err(Error::NotFound(format!(
            "no other live peer holds {:?}",
            target.name
        )));
    }
    // Spread load: holders in a random order.
    let n = peers.len();
    peers.rotate_left(seed() as usize % n);
    let root = choose_root(&peers, target.pieces_root.as_ref());
    peers.retain(|p| fits(p, root.as_ref()));

    let mut failures = Failures::default();
    // Holders that already failed here are not sources (nor re-added by a refresh).
    let mut failed = HashSet::new();
    let (manifest, manifest_from) = if target.size == 0 {
        (Manifest::new(0, Vec::new())?, String::from("(empty file)"))
    } else {
        let mut found = None;
        for p in &peers {
            match source::manifest(
                &swarm.net,
                &p.address,
                &sha256,
                target.size,
                root.as_ref(),
                swarm.io_timeout,
            )
            .await
            {
                Ok(m) => {
                    found = Some((m, format!("{} ({})", p.peer_id, p.address)));
                    break;
                }
                Err(f) => {
                    note_failure(swarm, &mut failures, p, &f, report);
                    failed.insert(p.address.clone());
                }
            }
        }
        match found {
            Some(f) => f,
            None => return Err(failures.error(&target.name)),
        }
    };
    let manifest = Arc::new(manifest);

    let (d, m) = (dir.to_path_buf(), Arc::clone(&manifest));
    let opened = tokio::task::spawn_blocking(move || PartialWriter::open(&d, sha256, m, lock))
        .await
        .map_err(|e| other(dir, e))?;
    let writer = match opened {
        Ok(w) => w,
        Err(ShareError::Io { path, source }) => {
            return Err(local_failure(None, &path, &source).await);
        }
        Err(e) => return Err(e.into()),
    };
    let mut engine = Engine::new(
        swarm, target, sha256, manifest, &writer, root, peers, failed, failures, report,
    );
    let outcome = engine.run().await;
    let Engine {
        registered,
        tasks,
        hasher,
        wake,
        ..
    } = engine;
    drop(tasks); // cancels whatever still runs
    drop(registered);
    match outcome {
        Outcome::Complete => {
            drop(wake);
            let digest = hasher.await.map_err(|e| other(dir, e))?;
            let digest = match digest {
                Ok(Some(d)) => d,
                Ok(None) => return Err(other(dir, "the whole-file hash stopped early")),
                Err(e) => return Err(local_failure(Some(writer), dir, &e).await),
            };
            if digest != sha256 {
                tracing::error!(
                    expected = %sha256,
                    got = %digest,
                    manifest_from = %manifest_from,
                    "every piece matched the manifest but the file does not match its digest: the manifest lied"
                );
                let _ = tokio::task::spawn_blocking(move || writer.discard()).await;
                return Err(Error::Integrity(format!(
                    "{:?}: SHA-256 mismatch: expected {sha256}, got {digest} (the manifest from {manifest_from} does not describe this file); nothing kept",
                    target.name
                )));
            }
            let done = tokio::task::spawn_blocking(move || writer.finish())
                .await
                .map_err(|e| other(dir, e))?;
            match done {
                Ok(p) => {
                    report.event(wire::Event::Verified { size: target.size });
                    Ok(p)
                }
                Err(ShareError::Io { path, source }) => {
                    Err(local_failure(None, &path, &source).await)
                }
                Err(e) => Err(e.into()),
            }
        }
        Outcome::Local(path, e) => Err(local_failure(Some(writer), &path, &e).await),
        Outcome::GaveUp(e) => {
            // Verified pieces stay for a resume, with their record brought up to date; a
            // download that verified nothing leaves nothing behind.
            let _ = tokio::task::spawn_blocking(move || {
                if writer.file().bitfield().count() == 0 {
                    writer.discard();
                } else {
                    if let Err(e) = writer.save() {
                        tracing::warn!(error = %e, "bitfield not saved");
                    }
                    drop(writer);
                }
            })
            .await;
            Err(e)
        }
    }
}

fn note_failure(
    swarm: &Swarm,
    failures: &mut Failures,
    peer: &Holder,
    f: &Failure,
    report: &dyn Report,
) {
    let name = format!("{} ({})", peer.peer_id, peer.address);
    match f {
        Failure::NotThere(_) => failures.not_there += 1,
        // Not a failure: the piece is asked again.
        Failure::Deferred => return,
        Failure::Unreachable(_) => failures.unreachable += 1,
        Failure::Bad(why) => {
            tracing::warn!(peer = %peer.peer_id, address = %peer.address, "dropping a source that sent bad data: {why}");
            if let Some(m) = &swarm.metrics {
                m.bad_sources.with_label_values(&[&peer.peer_id]).inc();
            }
            failures.bad.push(name.clone());
        }
    }
    failures.last = format!("{name}: {f}");
    report.event(wire::Event::SourceFailed {
        peer: peer.peer_id.clone(),
        address: peer.address.clone(),
        reason: f.to_string(),
        bad: matches!(f, Failure::Bad(_)),
    });
}

enum Outcome {
    Complete,
    Local(PathBuf, std::io::Error),
    GaveUp(Error),
}

struct Engine<'a> {
    swarm: &'a Swarm,
    target: &'a Target,
    report: &'a dyn Report,
    sha256: Digest,
    manifest: Arc<Manifest>,
    file: Arc<PartialFile>,
    data: Arc<std::fs::File>,
    bitfield_path: PathBuf,
    /// The `pieces_root` holders must have announced (`None`: nobody announces roots).
    root: Option<Digest>,
    sources: Vec<Source>,
    known: HashSet<String>,
    in_flight: InFlight,
    requests: HashMap<(usize, PieceIndex), Request>,
    /// Pieces whose bytes are in and being checked: nobody else needs to fetch them now.
    checking: HashSet<PieceIndex>,
    /// Pieces checked at once: one per core.
    check_slots: usize,
    tasks: JoinSet<Event>,
    wake: mpsc::Sender<()>,
    hasher: tokio::task::JoinHandle<std::io::Result<Option<Digest>>>,
    failures: Failures,
    gauge: SourcesGauge,
    registered: Registered,
    seed: u64,
    saved: Bitfield,
    saved_at: Instant,
    holders_at: Option<Instant>,
    holders_pending: bool,
    /// Sources ran out and the tracker was asked since: nothing new means giving up.
    asked_when_out: bool,
    last_progress: Instant,
    /// Bytes of the verified pieces.
    verified_bytes: u64,
}

impl<'a> Engine<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        swarm: &'a Swarm,
        target: &'a Target,
        sha256: Digest,
        manifest: Arc<Manifest>,
        writer: &PartialWriter,
        root: Option<Digest>,
        peers: Vec<Holder>,
        failed: HashSet<String>,
        failures: Failures,
        report: &'a dyn Report,
    ) -> Self {
        let file = Arc::clone(writer.file());
        let data = writer.data();
        let (wake, woken) = mpsc::channel();
        let (f, d) = (Arc::clone(&file), Arc::clone(&data));
        let hasher = tokio::task::spawn_blocking(move || hash_in_order(f, d, woken));
        let registered = Registered(swarm.partials.as_ref().map(|p| {
            p.insert(Arc::clone(&file));
            (Arc::clone(p), sha256)
        }));
        let saved = file.bitfield();
        let mut engine = Engine {
            swarm,
            target,
            report,
            sha256,
            manifest,
            file,
            data,
            bitfield_path: writer.bitfield_path().to_path_buf(),
            root,
            sources: Vec::new(),
            known: HashSet::new(),
            in_flight: InFlight::new(),
            requests: HashMap::new(),
            checking: HashSet::new(),
            check_slots: std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            tasks: JoinSet::new(),
            wake,
            hasher,
            failures,
            gauge: SourcesGauge {
                gauge: swarm.metrics.as_ref().map(|m| m.download_sources.clone()),
                n: 0,
            },
            registered,
            seed: seed(),
            saved,
            saved_at: Instant::now(),
            holders_at: None,
            holders_pending: false,
            asked_when_out: false,
            last_progress: Instant::now(),
            verified_bytes: 0,
        };
        engine.verified_bytes = engine.have_bytes();
        engine.known.extend(failed);
        engine.add_holders(peers);
        engine
    }

    fn add_holders(&mut self, peers: Vec<Holder>) {
        let count = self.manifest.piece_count();
        for p in peers {
            if Some(p.address.as_str()) == self.swarm.skip.as_deref()
                || self.known.contains(&p.address)
            {
                continue;
            }
            self.known.insert(p.address.clone());
            self.sources.push(Source::new(p, count));
            self.asked_when_out = false;
        }
    }

    fn have_bytes(&self) -> u64 {
        let b = self.file.bitfield();
        b.ones()
            .filter_map(|i| self.manifest.range(i))
            .map(|r| r.end - r.start)
            .sum()
    }

    fn report_progress(&self, sources: usize) {
        self.report.event(wire::Event::Progress {
            have: self.verified_bytes,
            size: self.target.size,
            sources: sources as u64,
        });
    }

    /// Sources in use, at most `max_sources`: those fetching now, then those holding a piece
    /// still missing, then those whose pieces are not known yet; holders with nothing useful
    /// wait (their bitfields are still refreshed, so they come in when they have something).
    fn active(&self) -> Vec<usize> {
        let verified = self.file.bitfield();
        let rank = |s: &Source| match &s.has {
            _ if s.requests > 0 => 0,
            Some(h) if h.ones().any(|i| !verified.get(i)) => 1,
            None => 2,
            Some(_) => 3,
        };
        let mut live: Vec<usize> = (0..self.sources.len())
            .filter(|&i| !self.sources[i].dropped)
            .collect();
        // Stable: holders of one rank keep their (random) order.
        live.sort_by_key(|&i| rank(&self.sources[i]));
        live.truncate(self.swarm.max_sources.max(1));
        live
    }

    async fn run(&mut self) -> Outcome {
        let _ = self.wake.send(());
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Pieces are marked verified by their check before its event arrives here: wait for
            // the events too, so that each piece is counted and reported.
            if self.file.bitfield().is_complete() && self.checking.is_empty() {
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
    fn schedule(&mut self) -> Result<()> {
        let active = self.active();
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
        let count = self.manifest.piece_count();
        let mut wanted = self.file.bitfield();
        for &p in &self.checking {
            wanted.set(p);
        }
        let avail = picker::availability(
            count,
            self.sources
                .iter()
                .filter(|s| !s.dropped)
                .filter_map(|s| s.has.as_ref()),
        );
        // What complete holders are asked for: only pieces no partial holder has. Complete
        // holders (a seed, above all) are the scarce upload when many peers fetch one file; a
        // piece a partial holder has comes from there, and the seed's bytes go to pieces
        // nobody else can send.
        let partials: Vec<&Bitfield> = self
            .sources
            .iter()
            .filter(|s| !s.dropped && s.peer.partial)
            .filter_map(|s| s.has.as_ref())
            .collect();
        let only_complete = (!partials.is_empty()).then(|| {
            let held = picker::availability(count, partials.iter().copied());
            let mut b = Bitfield::new(count);
            for (i, n) in held.iter().enumerate() {
                if *n == 0 {
                    b.set(PieceIndex(i as u32));
                }
            }
            b
        });
        for src in 0..self.sources.len() {
            let s = &self.sources[src];
            let stale = s
                .bitfield_at
                .is_none_or(|at| at.elapsed() >= BITFIELD_EVERY);
            if s.peer.partial && !s.dropped && !s.bitfield_pending && stale {
                self.ask_bitfield(src);
            }
        }
        // Every source gets one request first; a second one each (so that a source never waits
        // a round trip between pieces) only while few pieces are on the way, since each sits in
        // memory until checked.
        let mut active = active;
        // Partial holders first: complete holders fill in what they leave.
        active.sort_by_key(|&i| !self.sources[i].peer.partial);
        for depth in 1..=PER_SOURCE {
            for &src in &active {
                let s = &self.sources[src];
                // While the checks lag behind the network, no new piece is asked for.
                if s.requests >= depth || self.checking.len() >= self.check_slots {
                    continue;
                }
                if depth > 1 && self.requests.len() >= REQUEST_BUDGET {
                    break;
                }
                // A complete holder that partial holders relieve is asked for one piece at a
                // time, and only for pieces no partial holder has: its upload is what every
                // downloader of the file competes for. It is never left idle, though: it hands
                // out its least-sent pieces first (`http::seeding`), so what it sends is new
                // to the swarm, and a seed kept busy is what the bound max(F/U, NF/((N+1)U))
                // assumes.
                if only_complete.is_some() && !s.peer.partial && depth > 1 {
                    continue;
                }
                let Some(has) = &s.has else { continue };
                let view = View {
                    verified: &wanted,
                    availability: &avail,
                    in_flight: &self.in_flight,
                    endgame_copies: ENDGAME_COPIES,
                };
                let offer = match &only_complete {
                    Some(only) if !s.peer.partial => only,
                    _ => has,
                };
                // Pieces this holder deferred are asked for last, and then with `insist`.
                let trimmed;
                let offer = if s.deferred.is_empty() {
                    offer
                } else {
                    let mut b = Bitfield::new(count);
                    for p in offer.ones().filter(|p| !s.deferred.contains(p)) {
                        b.set(p);
                    }
                    trimmed = b;
                    &trimmed
                };
                let mut piece = picker::pick(&view, SourceId(src as u32), offer, self.seed)
                    .map(|p| (p.piece(), false));
                if piece.is_none() && s.requests == 0 {
                    piece = s
                        .deferred
                        .iter()
                        .copied()
                        .filter(|p| {
                            !wanted.get(*p)
                                && !self.in_flight.is_requested_from(*p, SourceId(src as u32))
                        })
                        .min()
                        .map(|p| (p, true));
                }
                if piece.is_none() && s.requests == 0 {
                    piece = self.rescue(src, has).map(|p| (p, false));
                }
                if let Some((piece, insist)) = piece {
                    if insist {
                        self.sources[src].deferred.remove(&piece);
                    }
                    self.request(src, piece, insist);
                }
            }
        }
        Ok(())
    }

    /// A piece stuck at a source far slower than `src`, which is idle and holds it: fetched
    /// here too (whichever copy verifies first wins), so one slow holder cannot hold it back.
    fn rescue(&self, src: usize, has: &Bitfield) -> Option<PieceIndex> {
        let mine = self.sources[src].rate;
        self.requests
            .iter()
            .filter(|((s, p), _)| {
                *s != src
                    && has.get(*p)
                    && !self.checking.contains(p)
                    && self.in_flight.requests(*p) < ENDGAME_COPIES
                    && !self.in_flight.is_requested_from(*p, SourceId(src as u32))
            })
            .filter_map(|((_, p), r)| {
                let age = r.started.elapsed();
                if age < self.swarm.io_timeout {
                    return None;
                }
                let rate = r.meter.bytes() as f64 / age.as_secs_f64();
                mine.is_none_or(|m| rate * 4.0 < m).then_some((*p, rate))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(p, _)| p)
    }

    fn request(&mut self, src: usize, piece: PieceIndex, insist: bool) {
        let Some(range) = self.manifest.range(piece) else {
            return;
        };
        if !self.in_flight.add(piece, SourceId(src as u32)) {
            return;
        }
        let s = &mut self.sources[src];
        s.requests += 1;
        if !s.started {
            s.started = true;
            let s = &self.sources[src];
            self.report.event(wire::Event::Source {
                peer: s.peer.peer_id.clone(),
                address: s.peer.address.clone(),
                size: self.target.size,
                have: self.verified_bytes,
            });
        }
        let s = &self.sources[src];
        let meter = Arc::new(Meter::default());
        let (net, address, sha256, timeout) = (
            self.swarm.net.clone(),
            s.peer.address.clone(),
            self.sha256,
            self.swarm.io_timeout,
        );
        let throttle = self.swarm.limits.throttle(Direction::Download);
        let m = Arc::clone(&meter);
        let span = tracing::info_span!(
            "piece",
            otel.name = "fetch piece",
            otel.kind = "client",
            peer = %s.peer.peer_id,
            address = %s.peer.address,
            piece = piece.0,
        );
        let abort = self.tasks.spawn(
            async move {
                let started = Instant::now();
                let result = source::piece(
                    &net,
                    &address,
                    &sha256,
                    piece,
                    range.end - range.start,
                    timeout,
                    throttle,
                    m,
                    insist,
                )
                .await;
                Event::Received {
                    src,
                    piece,
                    took: started.elapsed(),
                    result,
                }
            }
            .instrument(span),
        );
        self.requests.insert(
            (src, piece),
            Request {
                abort,
                meter,
                started: Instant::now(),
            },
        );
    }

    fn ask_bitfield(&mut self, src: usize) {
        let s = &mut self.sources[src];
        s.bitfield_pending = true;
        let (net, address, sha256, count, timeout) = (
            self.swarm.net.clone(),
            s.peer.address.clone(),
            self.sha256,
            self.manifest.piece_count(),
            self.swarm.io_timeout,
        );
        self.tasks.spawn(async move {
            let result = source::bitfield(&net, &address, &sha256, count, timeout).await;
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

    /// Ends a source's part in this download.
    fn drop_source(&mut self, src: usize, f: &Failure) {
        let s = &mut self.sources[src];
        if s.dropped {
            return;
        }
        s.dropped = true;
        s.requests = 0;
        for piece in self.in_flight.remove_source(SourceId(src as u32)) {
            if let Some(r) = self.requests.remove(&(src, piece)) {
                r.abort.abort();
            }
        }
        let peer = self.sources[src].peer.clone();
        note_failure(self.swarm, &mut self.failures, &peer, f, self.report);
    }

    fn count_piece(&self, result: &str) {
        if let Some(m) = &self.swarm.metrics {
            m.pieces.with_label_values(&[result]).inc();
        }
    }

    fn handle(&mut self, event: Event) -> Option<Outcome> {
        match event {
            Event::Received {
                src,
                piece,
                took,
                result,
            } => {
                // None: cancelled (the piece came from elsewhere, or the source was dropped)
                // after it had already finished.
                self.requests.remove(&(src, piece))?;
                let s = &mut self.sources[src];
                s.requests = s.requests.saturating_sub(1);
                match result {
                    Ok(bytes) => {
                        self.sources[src].record_rate(bytes.len() as u64, took);
                        self.checking.insert(piece);
                        let (file, data) = (Arc::clone(&self.file), Arc::clone(&self.data));
                        self.tasks.spawn(async move {
                            let check = tokio::task::spawn_blocking(move || {
                                check_and_write(&file, &data, piece, &bytes)
                            })
                            .await
                            .unwrap_or_else(|e| Check::Local(std::io::Error::other(e)));
                            Event::Checked { src, piece, check }
                        });
                    }
                    Err(Failure::Deferred) => {
                        // Asked again later with `insist` if nothing else is to be had there.
                        self.in_flight.remove(piece, SourceId(src as u32));
                        self.sources[src].deferred.insert(piece);
                    }
                    Err(Failure::NotThere(why)) if self.sources[src].peer.partial => {
                        // It holds less than its bitfield said: ask again before asking it
                        // for pieces.
                        tracing::debug!(peer = %self.sources[src].peer.peer_id, "piece {piece}: {why}");
                        self.in_flight.remove(piece, SourceId(src as u32));
                        self.sources[src].has = None;
                    }
                    Err(f) => {
                        self.in_flight.remove(piece, SourceId(src as u32));
                        self.drop_source(src, &f);
                    }
                }
            }
            Event::Checked { src, piece, check } => {
                self.checking.remove(&piece);
                match check {
                    Check::Done(true) => {
                        self.count_piece("ok");
                        self.last_progress = Instant::now();
                        if let Some(r) = self.manifest.range(piece) {
                            self.verified_bytes += r.end - r.start;
                            self.report_progress(self.gauge.n as usize);
                        }
                        for other in self.in_flight.finish(piece) {
                            if other.0 as usize == src {
                                continue;
                            }
                            if let Some(r) = self.requests.remove(&(other.0 as usize, piece)) {
                                r.abort.abort();
                                let s = &mut self.sources[other.0 as usize];
                                s.requests = s.requests.saturating_sub(1);
                                self.count_piece("cancelled");
                            }
                        }
                        let _ = self.wake.send(());
                    }
                    Check::Done(false) => {
                        self.in_flight.remove(piece, SourceId(src as u32));
                        self.count_piece("cancelled");
                    }
                    Check::Bad(why) => {
                        self.count_piece("bad");
                        self.in_flight.remove(piece, SourceId(src as u32));
                        self.drop_source(src, &Failure::Bad(format!("piece {piece}: {why}")));
                    }
                    Check::Local(e) => {
                        return Some(Outcome::Local(self.file.data_path().to_path_buf(), e));
                    }
                }
            }
            Event::Bitfield { src, result } => {
                let s = &mut self.sources[src];
                s.bitfield_pending = false;
                s.bitfield_at = Some(Instant::now());
                match result {
                    Ok(b) => {
                        if s.has.as_ref() != Some(&b) {
                            s.has = Some(b);
                            self.last_progress = Instant::now();
                        }
                    }
                    Err(f) => self.drop_source(src, &f),
                }
            }
            Event::Holders(result) => {
                self.holders_pending = false;
                match result {
                    Ok(peers) => {
                        let peers = peers
                            .into_iter()
                            .filter(|p| fits(p, self.root.as_ref()))
                            .collect();
                        self.add_holders(peers);
                    }
                    Err(e) => tracing::debug!(error = %e, "holders not refreshed"),
                }
            }
        }
        None
    }

    async fn on_tick(&mut self) -> Option<Outcome> {
        let field = self.file.bitfield();
        if field != self.saved && self.saved_at.elapsed() >= SAVE_EVERY {
            let (path, sha, f) = (self.bitfield_path.clone(), self.sha256, field.clone());
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
                .is_none_or(|at| at.elapsed() >= HOLDERS_EVERY)
        {
            self.ask_holders();
        }
        // Live holders but none with a missing piece, and nothing moving: they are not going to
        // get it in time either.
        let stall = (self.swarm.io_timeout * 4).max(Duration::from_secs(30));
        if self.requests.is_empty()
            && self.checking.is_empty()
            && self.last_progress.elapsed() >= stall
        {
            self.failures.last = format!(
                "no live holder has the missing pieces (waited {}s)",
                stall.as_secs()
            );
            self.failures.unreachable += 1;
            return Some(Outcome::GaveUp(self.failures.error(&self.target.name)));
        }
        None
    }
}

/// Verifies a received piece and writes it. Blocking (hashing and disk, off the runtime).
fn check_and_write(
    file: &PartialFile,
    data: &std::fs::File,
    piece: PieceIndex,
    bytes: &[u8],
) -> Check {
    if file.has(piece) {
        return Check::Done(false);
    }
    if let Err(e) = file.manifest().verify_piece(piece, bytes) {
        return Check::Bad(e.to_string());
    }
    match PartialWriter::write_piece(file, data, piece, bytes) {
        Ok(()) => Check::Done(true),
        Err(e) => Check::Local(e),
    }
}
