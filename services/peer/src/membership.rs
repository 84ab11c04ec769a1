//! Keeping this peer known to the tracker: register (with backoff while the tracker is down),
//! heartbeat, announce changes to the share, re-register when the tracker forgot us, leave.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use p2p_common::proto::{
    AnnounceRequest, FileInfo, HeartbeatRequest, LeaveRequest, RegisterRequest,
};
use p2p_common::telemetry::traced;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::readiness::Readiness;
use crate::store::{Entry, Store};

const LEASE_FILE: &str = "lease.json";

pub struct Membership {
    pub peer_id: String,
    pub address: String,
    pub heartbeat: Duration,
    pub client: p2p_common::TrackerClient,
    pub store: Arc<Store>,
    pub readiness: Arc<Readiness>,
    pub tracker_errors: prometheus::IntCounter,
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
        sha256: e.sha256.clone(),
    }
}

type Snapshot = BTreeMap<String, Entry>;

impl Membership {
    async fn load_secret(&self) -> String {
        let path = self.store.state_dir().join(LEASE_FILE);
        match tokio::fs::read(&path).await {
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
        let result = async {
            let bytes = serde_json::to_vec(&lease).map_err(std::io::Error::other)?;
            tokio::fs::write(&path, bytes).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot save lease");
        }
    }

    async fn snapshot(&self) -> Snapshot {
        self.store
            .list()
            .await
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect()
    }

    async fn register(&mut self, previous: &str) -> Result<(String, Snapshot), tonic::Status> {
        let files = self.snapshot().await;
        let resp = self
            .client
            .register(RegisterRequest {
                peer_id: self.peer_id.clone(),
                address: self.address.clone(),
                files: files.values().map(info).collect(),
                lease_secret: previous.to_owned(),
            })
            .await?
            .into_inner();
        Ok((resp.lease_secret, files))
    }

    /// Sends what changed since `announced`; returns the new announced state.
    async fn announce(
        &mut self,
        secret: &str,
        announced: &Snapshot,
    ) -> Result<Option<Snapshot>, tonic::Status> {
        let now = self.snapshot().await;
        let added: Vec<FileInfo> = now
            .values()
            .filter(|e| announced.get(&e.name) != Some(e))
            .map(info)
            .collect();
        let removed: Vec<String> = announced
            .keys()
            .filter(|k| !now.contains_key(*k))
            .cloned()
            .collect();
        if added.is_empty() && removed.is_empty() {
            return Ok(None);
        }
        tracing::info!(
            added = added.len(),
            removed = removed.len(),
            "announcing changes"
        );
        let req = AnnounceRequest {
            peer_id: self.peer_id.clone(),
            lease_secret: secret.to_owned(),
            added,
            removed,
        };
        traced(tracing::info_span!("announce"), self.client.announce(req)).await?;
        Ok(Some(now))
    }

    /// Runs until `stop` is cancelled, then leaves the network.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut changes = self.store.subscribe();
        let mut secret = self.load_secret().await;
        let mut lease: Option<String> = None;
        let mut announced = Snapshot::new();
        let mut dirty = false;
        let floor = Duration::from_millis(200);
        let mut backoff = floor;
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();

        loop {
            if lease.is_none() {
                match traced(tracing::info_span!("register"), self.register(&secret)).await {
                    Ok((s, files)) => {
                        tracing::info!(peer = %self.peer_id, address = %self.address, files = files.len(), "registered with the tracker");
                        self.save_secret(&s).await;
                        secret = s.clone();
                        lease = Some(s);
                        announced = files;
                        dirty = false;
                        backoff = floor;
                        self.readiness.set_registered(true).await;
                        tick.reset();
                        // Changes made while registering are compared against `announced`.
                        changes.mark_changed();
                    }
                    Err(status) => {
                        self.tracker_errors.inc();
                        if status.code() == Code::AlreadyExists {
                            tracing::error!(peer = %self.peer_id, "{}", status.message());
                        } else {
                            tracing::warn!(code = ?status.code(), "cannot register with the tracker: {}; retrying in {backoff:?}", status.message());
                        }
                        // Capped at one heartbeat so a returning tracker sees us within one.
                        let wait = backoff;
                        backoff = (backoff * 2).min(self.heartbeat);
                        tokio::select! {
                            () = stop.cancelled() => return,
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
                    return;
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
                        Ok(()) if dirty => self.announce(&current, &announced).await.map(|s| {
                            if let Some(s) = s { announced = s; }
                            dirty = false;
                        }),
                        other => other,
                    }
                }
                r = changes.changed() => {
                    if r.is_err() {
                        return;
                    }
                    match self.announce(&current, &announced).await {
                        Ok(Some(s)) => { announced = s; dirty = false; Ok(()) }
                        Ok(None) => Ok(()),
                        Err(e) => { dirty = true; Err(e) }
                    }
                }
            };
            if result.is_ok() {
                backoff = floor;
            }
            if let Err(status) = result {
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
                        // Retry soon rather than a whole interval later: a restarted tracker
                        // must see us again quickly.
                        tick.reset_after(backoff);
                        backoff = (backoff * 2).min(self.heartbeat);
                    }
                }
            }
        }
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
