//! The JSON the page reads (and scripts may): the peer itself, its share with pieces, a
//! network search with holders, and what is moving now, once or as server-sent events.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use p2p_common::failover::split_endpoints;
use serde::{Deserialize, Serialize};

use crate::daemon::control::Listed;
use crate::http::auth::{self, Access};
use crate::http::body::{held_stream, stream_slot};
use crate::http::error::ApiError;
use crate::http::listing::json_array;
use crate::http::state::AppState;
use crate::share::Digest;
use crate::share::pieces;
use crate::transfer::TransferSection;

/// How often the events stream says what is moving.
const EVENTS_EVERY: Duration = Duration::from_secs(1);

#[derive(Serialize)]
pub(crate) struct Status {
    peer_id: String,
    version: &'static str,
    /// The address other peers dial.
    address: String,
    trackers: Vec<String>,
    ready: bool,
    /// Why not, in words (empty when ready).
    not_ready: Vec<&'static str>,
    /// The share's file system: bytes free (for an unprivileged writer) and in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    disk: Option<DiskSpace>,
    /// `auth.token` is set: the API wants the token or a session.
    auth: bool,
    limits: Limits,
    /// Whether this client may make the peer download (`POST /downloads`), and why not.
    fetch: Allowed,
    files: usize,
}

#[derive(Serialize)]
struct DiskSpace {
    free: u64,
    total: u64,
}

#[derive(Serialize)]
struct Limits {
    #[serde(flatten)]
    transfer: TransferSection,
    max_upload_bytes: u64,
    max_concurrent_transfers: usize,
}

#[derive(Serialize)]
struct Allowed {
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

/// `GET /api/status`. Whoever reaches it passed the share's rule, so with auth on the client
/// is authenticated; the answer to "may I fetch" is then the loopback rule alone.
pub(super) async fn status(
    State(st): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
) -> Json<Status> {
    let w = &st.web;
    let authenticated = st.tokens.as_ref().map(|_| true);
    let fetch = match auth::admit_checked(authenticated, Some(from.ip()), Access::Act) {
        Ok(()) => Allowed {
            allowed: true,
            reason: None,
        },
        Err((_, reason)) => Allowed {
            allowed: false,
            reason: Some(reason),
        },
    };
    Json(Status {
        peer_id: w.peer_id.clone(),
        version: env!("CARGO_PKG_VERSION"),
        address: w.advertised.clone(),
        trackers: split_endpoints(&w.tracker_endpoint)
            .into_iter()
            .map(str::to_owned)
            .collect(),
        ready: st.readiness.is_ready(),
        not_ready: st.readiness.why_not(),
        disk: {
            let dir = st.store.dir().to_path_buf();
            tokio::task::spawn_blocking(move || crate::transfer::room::Disk::of(&dir).ok())
                .await
                .ok()
                .flatten()
                .map(|d| DiskSpace {
                    free: d.free,
                    total: d.total,
                })
        },
        auth: st.tokens.is_some(),
        limits: Limits {
            transfer: w.transfer.clone(),
            max_upload_bytes: st.max_upload_bytes,
            max_concurrent_transfers: w.max_concurrent_transfers,
        },
        fetch,
        files: st.store.snapshot().len(),
    })
}

/// One shared file with its pieces.
#[derive(Serialize)]
pub(crate) struct SharedFile<'a> {
    name: &'a str,
    size: u64,
    sha256: &'a Digest,
    pieces: u64,
    /// Pieces held here: all of them, for a file in the share.
    pieces_held: u64,
}

/// `GET /api/share`: the share in name order.
pub(super) async fn share(
    State(st): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    json_array(&st, from.ip(), |out, e| {
        let n = pieces::piece_count(e.size, pieces::piece_size(e.size));
        serde_json::to_writer(
            out,
            &SharedFile {
                name: &e.name,
                size: e.size,
                sha256: &e.sha256,
                pieces: n,
                pieces_held: n,
            },
        )
    })
}

#[derive(Deserialize)]
pub(super) struct SearchQuery {
    #[serde(default)]
    q: String,
}

#[derive(Serialize)]
pub(crate) struct Found {
    query: String,
    matches: Vec<FoundFile>,
}

#[derive(Serialize)]
struct FoundFile {
    name: String,
    size: u64,
    sha256: Digest,
    piece_size: u64,
    pieces: u64,
    /// This peer shares these bytes (under `here_as`): download with `/files/{here_as}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    here_as: Option<String>,
    /// A sample of the live holders when many hold the file.
    holders: Vec<FoundHolder>,
    /// Live holders in all.
    holder_count: usize,
}

#[derive(Serialize)]
struct FoundHolder {
    peer_id: String,
    address: String,
    /// Still downloading: it serves the pieces it verified.
    partial: bool,
}

/// The longest search text taken (the tracker has its own bound too).
const MAX_QUERY: usize = 256;

/// `GET /api/search?q=TEXT`: names containing TEXT (case-insensitive) on the whole network,
/// as the CLI's `search`; an empty TEXT lists every file.
pub(super) async fn search(
    State(st): State<AppState>,
    Query(q): Query<SearchQuery>,
) -> Result<Json<Found>, ApiError> {
    let query = q.q.trim().to_owned();
    if query.len() > MAX_QUERY {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("search text longer than {MAX_QUERY} bytes"),
        ));
    }
    // The tracker refuses these (INVALID_ARGUMENT): the client's mistake, not a bad gateway.
    if query.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "search text must not contain control characters",
        ));
    }
    let tracker = &st.daemon.tracker;
    let found = if query.is_empty() {
        tracker.list().await
    } else {
        tracker.search(&query, false).await
    }
    .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
    let mut matches = Vec::with_capacity(found.len());
    for m in found {
        let piece_size = pieces::piece_size(m.size);
        matches.push(FoundFile {
            here_as: st
                .store
                .by_digest(&m.sha256)
                .await
                .map(|e| e.name.to_string()),
            piece_size,
            pieces: pieces::piece_count(m.size, piece_size),
            name: m.name,
            size: m.size,
            sha256: m.sha256,
            holder_count: m.holder_count,
            holders: m
                .holders
                .into_iter()
                .map(|h| FoundHolder {
                    peer_id: h.peer_id,
                    address: h.address,
                    partial: h.partial,
                })
                .collect(),
        });
    }
    Ok(Json(Found { query, matches }))
}

#[derive(Serialize)]
pub(crate) struct Transfers {
    ready: bool,
    /// Why not, in words (empty when ready).
    not_ready: Vec<&'static str>,
    /// Downloads the daemon runs now (`POST /downloads`, the menu), each as its tally says.
    downloads: Vec<Listed>,
    /// Every file being downloaded into the share (those above, and the menu's), by digest.
    partials: Vec<Partial>,
    serving: Direction,
    receiving: Direction,
}

#[derive(Serialize)]
struct Partial {
    sha256: Digest,
    size: u64,
    pieces: u32,
    pieces_held: u32,
}

#[derive(Serialize)]
struct Direction {
    /// Transfers in progress (bodies served; uploads and downloads received).
    active: i64,
    /// Bytes per second over the last second or so.
    rate: u64,
    /// Bytes since the peer started.
    total: u64,
}

fn snapshot(st: &AppState) -> Transfers {
    let m = &st.metrics;
    let served = m.served_bytes.get();
    let received = m.downloaded_bytes.get();
    let active = |d: &str| m.active_transfers.with_label_values(&[d]).get();
    Transfers {
        ready: st.readiness.is_ready(),
        not_ready: st.readiness.why_not(),
        downloads: st.daemon.controls.list(),
        partials: st
            .partials
            .list()
            .into_iter()
            .map(|p| Partial {
                sha256: *p.sha256(),
                size: p.manifest().size(),
                pieces: p.manifest().piece_count(),
                pieces_held: p.bitfield().count(),
            })
            .collect(),
        serving: Direction {
            active: active("upload"),
            rate: st.web.served.update(served),
            total: served,
        },
        receiving: Direction {
            active: active("download"),
            rate: st.web.received.update(received),
            total: received,
        },
    }
}

/// `GET /api/transfers`: what is moving now.
pub(super) async fn transfers(State(st): State<AppState>) -> Json<Transfers> {
    Json(snapshot(&st))
}

/// `GET /api/events`: the same as server-sent events (`event: transfers`) every second, until
/// the client goes away, stops reading (`body::held_stream`) or the peer stops. Each holds a
/// stream slot of its client's.
pub(super) async fn events(
    State(st): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    let slot = stream_slot(&st, from.ip())?;
    let io_timeout = st.io_timeout;
    let stop = st.shutdown.clone();
    let ticks = futures::stream::unfold(
        (st, tokio::time::interval(EVENTS_EVERY)),
        |(st, mut every)| async move {
            every.tick().await;
            let data = serde_json::to_string(&snapshot(&st)).unwrap_or_default();
            let event = SseEvent::default().event("transfers").data(data);
            Some((Ok::<_, Infallible>(event), (st, every)))
        },
    );
    let until_stop =
        futures::StreamExt::take_until(ticks, async move { stop.cancelled_owned().await });
    let sse = Sse::new(until_stop)
        .keep_alive(KeepAlive::default())
        .into_response();
    Ok(sse.map(|body| held_stream(slot, body, io_timeout)))
}
