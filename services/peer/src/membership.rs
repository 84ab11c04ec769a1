//! Keeping this peer known to the tracker: register (with backoff while the tracker is down),
//! heartbeat, announce changes to the share, re-register when the tracker forgot us, leave.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2p_common::proto::{
    AnnounceRequest, FileInfo, HeartbeatRequest, LeaveRequest, RegisterRequest, RegisterResponse,
};
use p2p_common::telemetry::traced;
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::error::Error;
use crate::readiness::Readiness;
use crate::share::Digest;
use crate::share::partial::{PartialFile, Partials};
use crate::store::{Entry, Store};

const LEASE_FILE: &str = "lease.json";

/// What a tracker that states no bounds (0 in `RegisterResponse`) is taken to accept.
const DEFAULT_MAX_FILES_PER_PEER: usize = 100_000;
const DEFAULT_MAX_FILES_PER_REQUEST: usize = 1_000;
/// Every Register and Announce stays this small, well under gRPC's default 4 MiB message limit,
/// whatever count the tracker allows (long names make big entries).
const MAX_REQUEST_BYTES: usize = 1 << 20;

pub struct Membership {
    pub peer_id: String,
    pub address: String,
    pub heartbeat: Duration,
    pub client: p2p_common::TrackerClient,
    pub store: Arc<Store>,
    /// Downloads in progress: announced as partial holdings.
    pub partials: Arc<Partials>,
    pub readiness: Arc<Readiness>,
    pub tracker_errors: prometheus::IntCounter,
    pub unshared_files: prometheus::IntGauge,
    /// Wait for a taken id instead of giving up after one lease TTL.
    pub wait_for_id: bool,
}

/// The lease secret, kept so that a restarted peer can take its id back at once.
#[derive(Serialize, Deserialize)]
struct SavedLease {
    peer_id: String,
    secret: String,
}

fn info(e: &Entry) -> FileInfo {
    FileInfo {
        name: e.name.clone(),
        size: e.size,
        sha256: e.sha256.to_hex(),
        pieces_root: e
            .manifest
            .as_ref()
            .map(|m| m.root().to_hex())
            .unwrap_or_default(),
    }
}

type Snapshot = BTreeMap<String, Entry>;
/// Partial holdings by digest, as announced (name empty: the tracker ignores it).
type PartialSnapshot = BTreeMap<String, FileInfo>;

/// The downloads in progress to announce: not those whose bytes the share already holds
/// complete (the complete file is what counts), and no more than `room` of them, since they
/// count against the tracker's per-peer cap after the shared files.
fn partial_snapshot(
    partials: &[Arc<PartialFile>],
    shared: &Snapshot,
    room: usize,
) -> PartialSnapshot {
    let complete: std::collections::BTreeSet<&Digest> =
        shared.values().map(|e| &e.sha256).collect();
    partials
        .iter()
        .filter(|p| !complete.contains(p.sha256()))
        .map(|p| FileInfo {
            name: String::new(),
            size: p.manifest().size(),
            sha256: p.sha256().to_hex(),
            pieces_root: p.manifest().root().to_hex(),
        })
        .take(room)
        .map(|f| (f.sha256.clone(), f))
        .collect()
}

/// One Announce's worth of changes.
#[derive(Debug, Default, PartialEq)]
struct Changes {
    removed: Vec<String>,
    partial_removed: Vec<String>,
    added: Vec<FileInfo>,
    partial_added: Vec<FileInfo>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.removed.is_empty()
            && self.partial_removed.is_empty()
            && self.added.is_empty()
            && self.partial_added.is_empty()
    }

    /// Splits into requests the tracker accepts (`per_request` entries, `MAX_REQUEST_BYTES`).
    /// Removals go first, so that swapping files within the cap never passes it.
    fn into_batches(self, per_request: usize) -> Vec<Changes> {
        let mut removed = self.removed.into_iter().peekable();
        let mut partial_removed = self.partial_removed.into_iter().peekable();
        let mut added = self.added.into_iter().peekable();
        let mut partial_added = self.partial_added.into_iter().peekable();
        let mut out = Vec::new();
        loop {
            let (mut count, mut bytes) = (per_request, 0);
            let name_len = |n: &String| n.len() + 2;
            let batch = Changes {
                removed: batch(&mut removed, &mut count, &mut bytes, name_len),
                partial_removed: batch(&mut partial_removed, &mut count, &mut bytes, name_len),
                added: batch(&mut added, &mut count, &mut bytes, Message::encoded_len),
                partial_added: batch(
                    &mut partial_added,
                    &mut count,
                    &mut bytes,
                    Message::encoded_len,
                ),
            };
            if batch.is_empty() {
                return out;
            }
            out.push(batch);
        }
    }
}

/// How much the tracker accepts from this peer; learnt from each `RegisterResponse`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Limits {
    per_peer: usize,
    per_request: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_peer: DEFAULT_MAX_FILES_PER_PEER,
            per_request: DEFAULT_MAX_FILES_PER_REQUEST,
        }
    }
}

impl Limits {
    fn from_response(r: &RegisterResponse) -> Self {
        let or = |v: u32, default: usize| match v {
            0 => default,
            v => usize::try_from(v).unwrap_or(default),
        };
        Self {
            per_peer: or(r.max_files_per_peer, DEFAULT_MAX_FILES_PER_PEER),
            per_request: or(r.max_files_per_request, DEFAULT_MAX_FILES_PER_REQUEST).max(1),
        }
    }
}

/// What this peer offers the tracker: the first `per_peer` files in name order (a stable
/// choice), and whether it already said that some are left out.
#[derive(Default)]
struct Cap {
    limits: Limits,
    over: bool,
}

/// Takes entries from the front of `items` while a request has room: at most `count` of them
/// and `MAX_REQUEST_BYTES` in all (always at least one, so that progress is made).
fn batch<T>(
    items: &mut std::iter::Peekable<impl Iterator<Item = T>>,
    count: &mut usize,
    bytes: &mut usize,
    size: impl Fn(&T) -> usize,
) -> Vec<T> {
    let mut out = Vec::new();
    while *count > 0 {
        let Some(item) = items.next_if(|i| *bytes == 0 || *bytes + size(i) <= MAX_REQUEST_BYTES)
        else {
            break;
        };
        *bytes += size(&item);
        *count -= 1;
        out.push(item);
    }
    out
}

/// The state directory holds the lease secret: owner-only, fixed at start-up for files written
/// by older versions with the default umask.
#[cfg(unix)]
pub fn protect_state(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [(dir.to_path_buf(), 0o700), (dir.join(LEASE_FILE), 0o600)] {
        match std::fs::metadata(&path) {
            Ok(m) if m.permissions().mode() & 0o777 != mode => {
                if let Err(e) =
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                {
                    tracing::warn!(path = %path.display(), error = %e, "cannot restrict permissions");
                }
            }
            _ => {}
        }
    }
}

#[cfg(not(unix))]
pub fn protect_state(_: &Path) {}

/// Writes the lease file owner-only from the first byte (a temporary file renamed into place).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

impl Membership {
    async fn load_secret(&self) -> String {
        let dir = self.store.state_dir();
        let _ = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || protect_state(&dir)
        })
        .await;
        match tokio::fs::read(dir.join(LEASE_FILE)).await {
            Ok(bytes) => serde_json::from_slice::<SavedLease>(&bytes)
                .ok()
                .filter(|l| l.peer_id == self.peer_id)
                .map(|l| l.secret)
                .unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    async fn save_secret(&self, secret: &str) {
        let path = self.store.state_dir().join(LEASE_FILE);
        let lease = SavedLease {
            peer_id: self.peer_id.clone(),
            secret: secret.to_owned(),
        };
        let result = match serde_json::to_vec(&lease) {
            Ok(bytes) => {
                let p = path.clone();
                tokio::task::spawn_blocking(move || write_private(&p, &bytes))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            }
            Err(e) => Err(std::io::Error::other(e)),
        };
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot save lease");
        }
    }

    /// The files this peer shares: all of the share up to the tracker's per-peer cap.
    async fn snapshot(&self, cap: &mut Cap) -> Snapshot {
        let all: Vec<Entry> = self.store.list().await;
        let total = all.len();
        let shared: Snapshot = all
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .take(cap.limits.per_peer)
            .collect();
        let unshared = total - shared.len();
        self.unshared_files
            .set(i64::try_from(unshared).unwrap_or(i64::MAX));
        if (unshared > 0) != cap.over {
            cap.over = unshared > 0;
            if cap.over {
                tracing::warn!(
                    files = total,
                    shared = shared.len(),
                    unshared,
                    "the share holds {total} files but the tracker indexes at most {} per peer: \
                     sharing the first {} in name order, {unshared} are not shared",
                    cap.limits.per_peer,
                    shared.len()
                );
            } else {
                tracing::info!(files = total, "every file in the share is shared again");
            }
        }
        shared
    }

    /// Joins with the first files of the share (the rest follow in Announce batches); returns
    /// the secret and what the tracker now holds for us.
    async fn register(
        &mut self,
        previous: &str,
        cap: &mut Cap,
    ) -> Result<(String, Snapshot), tonic::Status> {
        let shared = self.snapshot(cap).await;
        let (mut count, mut bytes) = (cap.limits.per_request, 0);
        let first: Snapshot = batch(
            &mut shared.into_iter().peekable(),
            &mut count,
            &mut bytes,
            |(_, e)| info(e).encoded_len(),
        )
        .into_iter()
        .collect();
        let request = |files: &Snapshot| RegisterRequest {
            peer_id: self.peer_id.clone(),
            address: self.address.clone(),
            files: files.values().map(info).collect(),
            lease_secret: previous.to_owned(),
        };
        let (resp, sent) = match self.client.register(request(&first)).await {
            Ok(r) => (r.into_inner(), first),
            // A tracker that takes fewer files per request than we guessed: join empty, learn
            // its bounds from the answer, and announce in batches it accepts.
            Err(s)
                if !first.is_empty()
                    && matches!(s.code(), Code::ResourceExhausted | Code::InvalidArgument) =>
            {
                tracing::info!(
                    files = first.len(),
                    "tracker refused the first files ({}); registering without files",
                    s.message()
                );
                let empty = Snapshot::new();
                let r = self.client.register(request(&empty)).await?.into_inner();
                (r, empty)
            }
            Err(s) => return Err(s),
        };
        let limits = Limits::from_response(&resp);
        if limits != cap.limits {
            tracing::debug!(?limits, "tracker bounds");
            cap.limits = limits;
        }
        Ok((resp.lease_secret, sent))
    }

    /// Sends what changed since `announced` and `partial` (shared files and downloads in
    /// progress), in batches the tracker accepts; both follow each batch that got through.
    /// Returns whether anything was sent.
    async fn announce(
        &mut self,
        secret: &str,
        announced: &mut Snapshot,
        partial: &mut PartialSnapshot,
        cap: &mut Cap,
    ) -> Result<bool, tonic::Status> {
        let now = self.snapshot(cap).await;
        let room = cap.limits.per_peer.saturating_sub(now.len());
        let partial_now = partial_snapshot(&self.partials.list(), &now, room);
        let changes = Changes {
            added: now
                .values()
                .filter(|e| announced.get(&e.name) != Some(e))
                .map(info)
                .collect(),
            removed: announced
                .keys()
                .filter(|k| !now.contains_key(*k))
                .cloned()
                .collect(),
            partial_added: partial_now
                .values()
                .filter(|f| partial.get(&f.sha256) != Some(f))
                .cloned()
                .collect(),
            partial_removed: partial
                .keys()
                .filter(|k| !partial_now.contains_key(*k))
                .cloned()
                .collect(),
        };
        if changes.is_empty() {
            return Ok(false);
        }
        tracing::info!(
            added = changes.added.len(),
            removed = changes.removed.len(),
            partial_added = changes.partial_added.len(),
            partial_removed = changes.partial_removed.len(),
            "announcing changes"
        );
        for b in changes.into_batches(cap.limits.per_request) {
            let req = AnnounceRequest {
                peer_id: self.peer_id.clone(),
                lease_secret: secret.to_owned(),
                added: b.added.clone(),
                removed: b.removed.clone(),
                partial_added: b.partial_added.clone(),
                partial_removed: b.partial_removed.clone(),
            };
            traced(tracing::info_span!("announce"), self.client.announce(req)).await?;
            for name in b.removed {
                announced.remove(&name);
            }
            for f in b.added {
                if let Some(e) = now.get(&f.name) {
                    announced.insert(f.name, e.clone());
                }
            }
            for sha in b.partial_removed {
                partial.remove(&sha);
            }
            for f in b.partial_added {
                partial.insert(f.sha256.clone(), f);
            }
        }
        Ok(true)
    }

    /// Runs until `stop` is cancelled, then leaves the network. Ends early with
    /// `Error::IdTaken` when another live peer keeps this id (unless told to wait).
    pub async fn run(mut self, stop: CancellationToken) -> Result<(), Error> {
        let mut changes = self.store.subscribe();
        let mut downloads = self.partials.subscribe();
        let mut secret = self.load_secret().await;
        let mut lease: Option<String> = None;
        let mut announced = Snapshot::new();
        let mut partial = PartialSnapshot::new();
        let mut cap = Cap::default();
        let mut dirty = false;
        // Whether the tracker answered our last call; readiness follows it.
        let mut answering = true;
        let mut taken: Option<(Instant, Instant)> = None;
        let floor = Duration::from_millis(200);
        let mut backoff = floor;
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();

        loop {
            if lease.is_none() {
                match traced(
                    tracing::info_span!("register"),
                    self.register(&secret, &mut cap),
                )
                .await
                {
                    Ok((s, files)) => {
                        tracing::info!(peer = %self.peer_id, address = %self.address, files = files.len(), "registered with the tracker");
                        self.save_secret(&s).await;
                        secret = s.clone();
                        lease = Some(s);
                        announced = files;
                        partial.clear();
                        dirty = false;
                        answering = true;
                        taken = None;
                        backoff = floor;
                        self.readiness.set_registered(true).await;
                        tick.reset();
                        // The rest of the share, and changes made while registering, are
                        // announced against `announced`.
                        changes.mark_changed();
                    }
                    Err(status) => {
                        self.tracker_errors.inc();
                        match status.code() {
                            Code::AlreadyExists => self.id_taken(&status, &mut taken)?,
                            Code::Unimplemented => tracing::warn!(
                                "tracker.endpoint does not answer as a tracker (is it a peer's address?): {}; retrying in {backoff:?}",
                                status.message()
                            ),
                            code => tracing::warn!(
                                ?code,
                                "cannot register with the tracker: {}; retrying in {backoff:?}",
                                status.message()
                            ),
                        }
                        // Capped at one heartbeat so a returning tracker sees us within one.
                        let wait = backoff;
                        backoff = (backoff * 2).min(self.heartbeat);
                        tokio::select! {
                            () = stop.cancelled() => return Ok(()),
                            () = tokio::time::sleep(wait) => continue,
                        }
                    }
                }
            }
            let Some(current) = lease.clone() else {
                continue;
            };

            let result = tokio::select! {
                () = stop.cancelled() => {
                    self.leave(&current).await;
                    return Ok(());
                }
                _ = tick.tick() => {
                    let req = HeartbeatRequest {
                        peer_id: self.peer_id.clone(),
                        lease_secret: current.clone(),
                    };
                    // The daemon's own calls are traces of their own, not orphans.
                    let hb = traced(tracing::info_span!("heartbeat"), self.client.heartbeat(req))
                        .await
                        .map(|_| ());
                    match hb {
                        Ok(()) if dirty => self
                            .announce(&current, &mut announced, &mut partial, &mut cap)
                            .await
                            .map(|_| dirty = false),
                        other => other,
                    }
                }
                // A change to the share or to the downloads in progress.
                r = async {
                    tokio::select! {
                        r = changes.changed() => r,
                        r = downloads.changed() => r,
                    }
                } => {
                    if r.is_err() {
                        return Ok(());
                    }
                    match self.announce(&current, &mut announced, &mut partial, &mut cap).await {
                        Ok(_) => { dirty = false; Ok(()) }
                        Err(e) => { dirty = true; Err(e) }
                    }
                }
            };
            match result {
                Ok(()) => {
                    backoff = floor;
                    if !answering {
                        answering = true;
                        tracing::info!("the tracker answers again: ready");
                        self.readiness.set_registered(true).await;
                    }
                }
                Err(status) => {
                    self.tracker_errors.inc();
                    match status.code() {
                        // The tracker restarted or our lease ran out: join again now.
                        Code::NotFound | Code::PermissionDenied => {
                            tracing::warn!(
                                "tracker no longer knows this peer ({}); registering again",
                                status.message()
                            );
                            lease = None;
                            self.readiness.set_registered(false).await;
                        }
                        code => {
                            tracing::warn!(
                                ?code,
                                "tracker call failed: {}; retrying in {backoff:?}",
                                status.message()
                            );
                            // Nobody finds us through a tracker that does not answer: not ready
                            // (one heartbeat interval plus one request timeout after it died),
                            // though files are still served to those who come.
                            if answering {
                                answering = false;
                                tracing::warn!("tracker unreachable: NOT_SERVING until it answers");
                                self.readiness.set_registered(false).await;
                            }
                            // Retry soon rather than a whole interval later: a restarted tracker
                            // must see us again quickly.
                            tick.reset_after(backoff);
                            backoff = (backoff * 2).min(self.heartbeat);
                        }
                    }
                }
            }
        }
    }

    /// Another live peer holds our id. Says how long the tracker holds it, rarely repeats
    /// itself, and gives up once the id stayed taken for a lease TTL (about three heartbeat
    /// intervals, plus one for slack) unless told to wait.
    fn id_taken(
        &self,
        status: &tonic::Status,
        taken: &mut Option<(Instant, Instant)>,
    ) -> Result<(), Error> {
        let now = Instant::now();
        let patience = self.heartbeat * 4;
        let (since, logged) = taken.get_or_insert((now, now));
        if *since == now {
            tracing::error!(
                peer = %self.peer_id,
                "{}{}",
                status.message(),
                if self.wait_for_id {
                    "; waiting for it (--wait-for-id)".to_owned()
                } else {
                    format!("; giving up in {patience:?} unless it frees (or pass --wait-for-id)")
                }
            );
        } else if now.duration_since(*logged) >= Duration::from_secs(60) {
            *logged = now;
            tracing::warn!(peer = %self.peer_id, "still waiting for the id: {}", status.message());
        }
        if !self.wait_for_id && now.duration_since(*since) >= patience {
            return Err(Error::IdTaken(format!(
                "peer id {:?} stayed taken for {:?}: {}. Stop the other peer, pick another id, or pass --wait-for-id",
                self.peer_id,
                now.duration_since(*since),
                status.message()
            )));
        }
        Ok(())
    }

    async fn leave(&mut self, secret: &str) {
        self.readiness.set_registered(false).await;
        let req = LeaveRequest {
            peer_id: self.peer_id.clone(),
            lease_secret: secret.to_owned(),
        };
        match tokio::time::timeout(
            Duration::from_secs(3),
            traced(tracing::info_span!("leave"), self.client.leave(req)),
        )
        .await
        {
            Ok(Ok(_)) => tracing::info!(peer = %self.peer_id, "left the network"),
            Ok(Err(s)) => tracing::warn!("leave failed: {}", s.message()),
            Err(_) => tracing::warn!("leave timed out; the lease will expire on its own"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unstated_bounds_are_the_documented_defaults() {
        let l = Limits::from_response(&RegisterResponse::default());
        assert_eq!((l.per_peer, l.per_request), (100_000, 1_000));
        let l = Limits::from_response(&RegisterResponse {
            max_files_per_peer: 7,
            max_files_per_request: 3,
            ..Default::default()
        });
        assert_eq!((l.per_peer, l.per_request), (7, 3));
    }

    fn partial(bytes: &[u8]) -> Arc<PartialFile> {
        use crate::share::pieces::Manifest;
        let sha = crate::share::digest::sha256(bytes);
        let m = Manifest::new(bytes.len() as u64, vec![sha]).unwrap();
        Arc::new(PartialFile::new(
            sha,
            Arc::new(m),
            std::path::PathBuf::from("unused"),
            crate::share::bitfield::Bitfield::new(1),
        ))
    }

    #[test]
    fn downloads_in_progress_are_announced_with_size_and_root_within_the_cap() {
        let (a, b, c) = (partial(b"a"), partial(b"b"), partial(b"c"));
        let mut shared = Snapshot::new();
        let done = Entry {
            name: "b.txt".into(),
            size: 1,
            sha256: *b.sha256(),
            mtime_ns: 0,
            manifest: Some(b.manifest().clone()),
        };
        assert_eq!(info(&done).pieces_root, b.manifest().root().to_hex());
        shared.insert(done.name.clone(), done);
        let all = [a.clone(), b.clone(), c.clone()];
        let got = partial_snapshot(&all, &shared, 10);
        // b is held complete: announced as a file, not in part.
        let digests: Vec<&String> = got.keys().collect();
        let mut want = [a.sha256().to_hex(), c.sha256().to_hex()];
        want.sort();
        assert_eq!(digests, want.iter().collect::<Vec<_>>());
        let fa = &got[&a.sha256().to_hex()];
        assert_eq!(fa.size, 1);
        assert_eq!(fa.pieces_root, a.manifest().root().to_hex());
        assert!(fa.name.is_empty());
        // Partial holdings take what the shared files leave of the per-peer cap.
        assert_eq!(partial_snapshot(&all, &shared, 1).len(), 1);
        assert!(partial_snapshot(&all, &shared, 0).is_empty());
    }

    #[test]
    fn announce_batches_send_removals_first_and_respect_the_count() {
        let f = |n: &str| FileInfo {
            name: n.into(),
            sha256: n.repeat(64),
            ..Default::default()
        };
        let changes = Changes {
            removed: vec!["r1".into(), "r2".into()],
            partial_removed: vec!["p1".into()],
            added: vec![f("a"), f("b")],
            partial_added: vec![f("c")],
        };
        let batches = changes.into_batches(2);
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[0].removed, ["r1", "r2"]);
        assert!(batches[0].added.is_empty() && batches[0].partial_removed.is_empty());
        assert_eq!(batches[1].partial_removed, ["p1"]);
        assert_eq!(batches[1].added, [f("a")]);
        assert_eq!(batches[2].added, [f("b")]);
        assert_eq!(batches[2].partial_added, [f("c")]);
        assert!(Changes::default().into_batches(5).is_empty());
    }

    #[test]
    fn batches_stop_at_the_count_and_at_the_byte_budget() {
        let mut it = (0..10).peekable();
        let (mut count, mut bytes) = (4, 0);
        assert_eq!(
            batch(&mut it, &mut count, &mut bytes, |_| 1),
            vec![0, 1, 2, 3]
        );
        assert_eq!(it.peek(), Some(&4));
        let big = MAX_REQUEST_BYTES / 2 + 1;
        let (mut count, mut bytes) = (1000, 0);
        assert_eq!(batch(&mut it, &mut count, &mut bytes, |_| big), vec![4]);
        // The budget is shared by removals and additions in one request.
        let (mut count, mut bytes) = (3, 0);
        let mut a = ["x", "y"].into_iter().peekable();
        let mut b = [1, 2].into_iter().peekable();
        assert_eq!(batch(&mut a, &mut count, &mut bytes, |_| 1).len(), 2);
        assert_eq!(batch(&mut b, &mut count, &mut bytes, |_| 1), vec![1]);
    }
}
