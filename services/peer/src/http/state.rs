//! What every route of the peer's HTTP API shares.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use p2p_common::auth::Tokens;
use tokio_util::sync::CancellationToken;

use super::seeding::Seeding;
use super::web::context::Web;
use crate::daemon::Daemon;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::share::partial::Partials;
use crate::store::Store;
use crate::transfer::Limits;
use crate::transfer::shares::Shares;
use crate::transfer::slots::UploadSlots;

#[derive(Clone)]
pub(crate) struct AppState {
    pub store: Arc<Store>,
    /// Downloads in progress in this share: their verified pieces are served too.
    pub partials: Arc<Partials>,
    /// The process's rate limits; every served body is paced by the upload bucket.
    pub limits: Limits,
    /// Which pieces of complete files went out how often (least served first).
    pub seeding: Arc<Seeding>,
    pub max_upload_bytes: u64,
    pub readiness: Arc<Readiness>,
    /// Cancelled to make the peer leave the network and stop.
    pub shutdown: CancellationToken,
    pub metrics: Metrics,
    /// Accepted bearer tokens; None: authentication off.
    pub tokens: Option<Tokens>,
    pub protect_metrics: bool,
    /// One slot per transfer (download served or upload received), shared between client
    /// addresses.
    pub transfers: Arc<Shares>,
    /// One slot per event stream or listing, shared between client addresses.
    pub streams: Arc<Shares>,
    pub upload_limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// A stalled body (an upload received, a download, a stream or listing sent) is cut after
    /// this long.
    pub io_timeout: Duration,
    /// Downloads into this share (`POST /downloads`).
    pub daemon: Daemon,
    /// The web page's own state: who this peer is, sessions, downloads in progress.
    pub web: Arc<Web>,
    /// Piece bodies sent at once, and who waits for them first (`transfer::choker`).
    pub upload_slots: Arc<UploadSlots>,
}

/// Per-client upload budget: `per_minute` uploads, refilled evenly.
pub(crate) fn upload_limiter(per_minute: u32) -> Arc<DefaultKeyedRateLimiter<IpAddr>> {
    let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::keyed(Quota::per_minute(n)))
}
