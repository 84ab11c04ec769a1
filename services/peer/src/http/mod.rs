//! The peer's HTTP API: the router, its authentication, and the one way a body is sent (transfer
//! slot, stall deadline, upload rate limit). Routes live in rooms of their own: `files` (listing
//! and named downloads), `blobs` (bytes and pieces by digest, for swarm downloads), `upload`.

mod blobs;
mod files;
mod seeding;
mod upload;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use p2p_common::auth::Tokens;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::share::partial::Partials;
use crate::store::Store;
use crate::transfer::{Direction, Limits};

const READ_CHUNK: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    /// Downloads in progress in this share: their verified pieces are served too.
    pub partials: Arc<Partials>,
    /// The process's rate limits; every served body is paced by the upload bucket.
    pub limits: Limits,
    /// Which pieces of complete files went out how often (least served first).
    pub seeding: Arc<seeding::Seeding>,
    pub max_upload_bytes: u64,
    pub readiness: Arc<Readiness>,
    /// Cancelled to make the peer leave the network and stop.
    pub shutdown: CancellationToken,
    pub metrics: Metrics,
    /// Accepted bearer tokens; None: authentication off.
    pub tokens: Option<Tokens>,
    pub protect_metrics: bool,
    /// One permit per transfer (download served or upload received).
    pub transfers: Arc<Semaphore>,
    pub upload_limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// A stalled upload body is cut after this long.
    pub io_timeout: Duration,
}

/// Per-client upload budget: `per_minute` uploads, refilled evenly.
pub fn upload_limiter(per_minute: u32) -> Arc<DefaultKeyedRateLimiter<IpAddr>> {
    let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::keyed(Quota::per_minute(n)))
}

pub fn router(state: AppState) -> Router {
    let mut protected = Router::new()
        .route("/files", get(files::list_files))
        .route("/files/{name}", get(files::get_file))
        .route("/blobs/{sha256}", get(blobs::get_blob))
        .route("/blobs/{sha256}/manifest", get(blobs::get_manifest))
        .route("/blobs/{sha256}/bitfield", get(blobs::get_bitfield))
        .route("/blobs/{sha256}/pieces/{index}", get(blobs::get_piece))
        .route(
            "/upload",
            post(upload::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/leave", post(leave));
    let mut open = Router::new().route("/healthz", get(healthz));
    if state.protect_metrics {
        protected = protected.route("/metrics", get(metrics));
    } else {
        open = open.route("/metrics", get(metrics));
    }
    let protected = protected.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        require_token,
    ));
    // `layer`, not `route_layer`: requests that match no route (404) are counted too.
    protected
        .merge(open)
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

/// 401 unless the request carries an accepted bearer token (when tokens are configured).
async fn require_token(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(tokens) = &st.tokens {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !tokens.accepts_header(presented) {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or invalid bearer token (set auth.token or auth.token_file)",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    next.run(req).await
}

/// An error answer: status and a JSON `{"error": "..."}` body.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self(status, msg.into())
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// A transfer slot, or 503: every body sent or received holds one.
fn transfer_slot(st: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    st.transfers.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many transfers in progress; retry later",
        )
    })
}

/// The body of every download this peer serves (`/files`, `/blobs`, pieces): `len` bytes of
/// `file` from its current position, paced by the process's upload bucket, holding `slot` and
/// the active-transfer gauge until it ends. A reader that takes nothing for `io_timeout` is
/// cut: hyper stops polling a body while the client's socket is full, so the deadline cannot
/// live in the body stream itself; a task feeds the body through a one-chunk channel and gives
/// up when a chunk is not taken in time.
fn send_body(st: &AppState, slot: OwnedSemaphorePermit, file: tokio::fs::File, len: u64) -> Body {
    let hold = (slot, st.metrics.transfer("upload"));
    let served = st.metrics.served_bytes.clone();
    let mut throttle = st.limits.throttle(Direction::Upload);
    let io_timeout = st.io_timeout;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(1);
    tokio::spawn(async move {
        let _hold = hold;
        let mut chunks =
            ReaderStream::with_capacity(tokio::io::AsyncReadExt::take(file, len), READ_CHUNK);
        while let Some(chunk) = chunks.next().await {
            let n = chunk.as_ref().map_or(0, |c| c.len() as u64);
            // The bucket's wait is ours, not the client's: it is not part of the stall deadline.
            throttle.take(n).await;
            match tokio::time::timeout(io_timeout, tx.send(chunk)).await {
                Ok(Ok(())) => served.inc_by(n),
                // The client went away.
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::warn!(?io_timeout, "client stopped reading: download cut");
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold((rx, 0u64), move |(mut rx, sent)| async move {
        match rx.recv().await {
            Some(Ok(c)) => {
                let sent = sent + c.len() as u64;
                Some((Ok(c), (rx, sent)))
            }
            Some(Err(e)) => Some((Err(e), (rx, len))),
            // Ended early: the feeder gave up. An error, not a short body that looks complete.
            None if sent < len => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "download stalled; cut",
                )),
                (rx, len),
            )),
            None => None,
        }
    });
    Body::from_stream(stream)
}

async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, p2p_common::metrics::CONTENT_TYPE)],
        st.metrics.render(&st.store, &st.limits, &st.partials).await,
    )
}

async fn healthz(State(st): State<AppState>) -> Response {
    if st.readiness.is_ready() {
        (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "not ready" })),
        )
            .into_response()
    }
}

/// Only a process on this host may tell the peer to leave.
async fn leave(
    State(st): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
) -> Result<StatusCode, ApiError> {
    if !from.ip().is_loopback() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "leave is only accepted from this host",
        ));
    }
    tracing::info!("leave requested over HTTP");
    st.shutdown.cancel();
    Ok(StatusCode::ACCEPTED)
}
