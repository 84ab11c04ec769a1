//! What the page needs that the rest of the API does not: who this peer is, its sessions, its
//! downloads in progress and the rates of its byte counters.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::live::{LiveDownloads, Rate};
use super::session::Sessions;
use crate::config::PeerConfig;
use crate::transfer::TransferSection;

/// What the page needs that the rest of the API does not: who this peer is, its sessions and
/// its downloads in progress.
pub(crate) struct Web {
    pub peer_id: String,
    pub advertised: String,
    pub tracker_endpoint: String,
    pub transfer: TransferSection,
    pub max_concurrent_transfers: usize,
    /// The peer serves TLS: session cookies are `Secure`.
    pub tls: bool,
    pub sessions: Arc<Sessions>,
    pub live: LiveDownloads,
    /// Token guesses per client address.
    pub logins: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    pub(super) served: Rate,
    pub(super) received: Rate,
}

impl Web {
    pub(crate) fn new(cfg: &PeerConfig, advertised: &str) -> Self {
        Self {
            peer_id: cfg.peer.id.clone(),
            advertised: advertised.to_owned(),
            tracker_endpoint: cfg.tracker.endpoint.clone(),
            transfer: cfg.transfer.clone(),
            max_concurrent_transfers: cfg.peer.max_concurrent_transfers,
            tls: cfg.tls.serves(),
            sessions: Arc::default(),
            live: LiveDownloads::default(),
            logins: Arc::new(RateLimiter::keyed(Quota::per_minute(LOGINS_PER_MINUTE))),
            served: Rate::default(),
            received: Rate::default(),
        }
    }
}

const LOGINS_PER_MINUTE: NonZeroU32 = NonZeroU32::new(10).unwrap();
