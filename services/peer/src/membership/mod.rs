//! Keeping this peer known to the tracker: register (with backoff while the tracker is down),
//! heartbeat, announce changes to the share, re-register when the tracker forgot us, leave.
//!
//! The run loop and the tracker calls are here; `announce` holds what is announced and how it
//! is split into requests, `lease` the lease secret on disk.

mod announce;
mod lease;

use std::sync::Arc;
use std::time::{Duration, Instant};

use p2p_common::proto::{AnnounceRequest, HeartbeatRequest, LeaveRequest, RegisterRequest};
use p2p_common::telemetry::traced;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::error::Error;
use crate::readiness::Readiness;
use crate::share::partial::Partials;
use crate::store::Store;

use announce::{
    Cap, Changes, Limits, PartialSnapshot, Snapshot, batch, diff, info, partial_snapshot,
};
use lease::{load_secret, save_secret};

pub(crate) struct Membership {
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

impl Membership {
    /// The files this peer shares: all of the share up to the tracker's per-peer cap.
    async fn snapshot(&self, cap: &mut Cap) -> Snapshot {
        let all = self.store.snapshot();
        let total = all.len();
        let shared = Snapshot::new(all, cap.limits.per_peer);
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
        let first = batch(
            &mut shared.entries().iter().peekable(),
            &mut count,
            &mut bytes,
            |e| info(e).encoded_len(),
        )
        .len();
        let first = shared.prefix(first);
        drop(shared);
        let request = |files: &Snapshot| RegisterRequest {
            peer_id: self.peer_id.clone(),
            address: self.address.clone(),
            files: files.entries().iter().map(info).collect(),
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
                let empty = Snapshot::default();
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
        let (added, removed) = diff(announced, &now);
        let changes = Changes {
            added,
            removed,
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
            // The same files, maybe in a newer index: hold that one, so the older can go.
            *announced = now;
            return Ok(false);
        }
        tracing::info!(
            added = changes.added.len(),
            removed = changes.removed.len(),
            partial_added = changes.partial_added.len(),
            partial_removed = changes.partial_removed.len(),
            "announcing changes"
        );
        let (mut removed, mut added) = (0, 0);
        for b in changes.batches(cap.limits.per_request) {
            let req = AnnounceRequest {
                peer_id: self.peer_id.clone(),
                lease_secret: secret.to_owned(),
                added: b.added,
                removed: b.removed,
                partial_added: b.partial_added.clone(),
                partial_removed: b.partial_removed.clone(),
            };
            let sent = traced(tracing::info_span!("announce"), self.client.announce(req)).await;
            if let Err(status) = sent {
                // What got through stays announced.
                *announced = announced.applied(&changes, removed, added);
                return Err(status);
            }
            (removed, added) = (b.removed_upto, b.added_upto);
            for sha in b.partial_removed {
                partial.remove(&sha);
            }
            for f in b.partial_added {
                partial.insert(f.sha256.clone(), f);
            }
        }
        drop(changes);
        *announced = now;
        Ok(true)
    }

    /// Runs until `stop` is cancelled, then leaves the network. Ends early with
    /// `Error::IdTaken` when another live peer keeps this id (unless told to wait).
    pub(crate) async fn run(mut self, stop: CancellationToken) -> Result<(), Error> {
        let mut changes = self.store.subscribe();
        let mut downloads = self.partials.subscribe();
        let mut secret = load_secret(self.store.state_dir(), &self.peer_id).await;
        let mut lease: Option<String> = None;
        let mut announced = Snapshot::default();
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
                        save_secret(&self.store.state_dir(), &self.peer_id, &s).await;
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
