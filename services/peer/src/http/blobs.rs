//! `/blobs/{sha256}...`: bytes by digest for swarm downloads ([`crate::wire::blobs`]). Served
//! from complete files in the share and from the verified pieces of downloads in progress.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::body::{PieceSlot, send_body, transfer_slot};
use super::error::ApiError;
use super::files::serve_whole;
use super::state::AppState;
use crate::range::RangeReply;
use crate::share::bitfield::Bitfield;
use crate::share::partial::PartialFile;
use crate::share::{Digest, Manifest, PieceIndex};
use crate::store::Entry;
use crate::transfer::choker::Class;
use crate::transfer::ledger::Standing;
use crate::transfer::slots::Got;
use crate::wire::blobs::{self as wire, ManifestJson};

/// What this peer holds of a digest.
enum Held {
    Complete(Entry, Arc<Manifest>),
    Partial(Arc<PartialFile>),
}

impl Held {
    fn manifest(&self) -> &Arc<Manifest> {
        match self {
            Held::Complete(_, m) => m,
            Held::Partial(p) => p.manifest(),
        }
    }
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse().map_err(|e: crate::share::digest::BadDigest| {
        ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
    })
}

fn not_here(sha256: &Digest) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no file with sha256 {sha256} here"),
    )
}

/// A complete file wins over a download in progress of the same bytes.
async fn held(st: &AppState, sha256: &Digest) -> Option<Held> {
    if let Some(entry) = st.store.by_digest(sha256).await {
        match st.store.manifest(&entry).await {
            Ok(m) => return Some(Held::Complete(entry, m)),
            // Changed on disk since it was indexed: the next scan sorts it out.
            Err(e) => {
                tracing::warn!(file = %entry.name, error = %e, "no manifest for a shared file")
            }
        }
    }
    st.partials.get(sha256).map(Held::Partial)
}

pub(super) async fn get_blob(
    State(st): State<AppState>,
    Path(sha256): Path<String>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let digest = parse_digest(&sha256)?;
    let entry = st
        .store
        .by_digest(&digest)
        .await
        .ok_or_else(|| not_here(&digest))?;
    serve_whole(&st, &entry, from.ip(), &headers, || not_here(&digest)).await
}

pub(super) async fn get_manifest(
    State(st): State<AppState>,
    Path(sha256): Path<String>,
) -> Result<Json<ManifestJson>, ApiError> {
    let digest = parse_digest(&sha256)?;
    let held = held(&st, &digest).await.ok_or_else(|| not_here(&digest))?;
    Ok(Json(ManifestJson::new(digest, held.manifest())))
}

/// What this peer holds of a file. With `?after=N`, a download in progress that holds N
/// pieces or fewer answers when it verifies another one (or after [`wire::HAVE_WAIT`]): a
/// downloader learns of each piece as it lands instead of polling, and nothing is sent while
/// nothing changes. Such waits are bounded in number (`Partials::have_waiter`); past that, and
/// for complete files, the answer comes at once.
pub(super) async fn get_bitfield(
    State(st): State<AppState>,
    Path(sha256): Path<String>,
    Query(query): Query<wire::BitfieldQuery>,
) -> Result<Response, ApiError> {
    let digest = parse_digest(&sha256)?;
    let mut held = held(&st, &digest).await.ok_or_else(|| not_here(&digest))?;
    let mut waits = false;
    let partial = match &held {
        Held::Partial(p) => Some(Arc::clone(p)),
        Held::Complete(..) => None,
    };
    if let Some(p) = partial
        && let Some(waiter) = st.partials.have_waiter()
    {
        waits = true;
        if let Some(after) = query.after {
            let mut count = p.held();
            tokio::select! {
                _ = count.wait_for(|&n| n > after) => {}
                _ = tokio::time::sleep(wire::HAVE_WAIT) => {}
                _ = st.shutdown.cancelled() => {}
            }
            drop(waiter);
            // It may have become a complete file meanwhile.
            held = self::held(&st, &digest)
                .await
                .ok_or_else(|| not_here(&digest))?;
        }
    }
    let bits = match &held {
        Held::Complete(_, m) => Bitfield::full(m.piece_count()),
        Held::Partial(p) => p.bitfield(),
    };
    let [(ct, ct_value), (pieces, count)] = wire::bitfield_headers(&bits);
    let mut resp = (
        [
            (header::HeaderName::from_static(ct), ct_value),
            (header::HeaderName::from_static(pieces), count),
        ],
        bits.as_bytes().to_vec(),
    )
        .into_response();
    if waits {
        resp.headers_mut().insert(
            header::HeaderName::from_static(wire::HAVE_WAIT_HEADER),
            header::HeaderValue::from(wire::HAVE_WAIT.as_secs()),
        );
    }
    Ok(resp)
}

/// An upload slot for a piece request from `from`: at once while slots are free, else when the
/// choker picks it (peers that sent this one bytes lately first). The one place pieces wait.
/// An upload slot for a piece body; `Err`: the holder is busy (the answer to send).
async fn piece_slot(
    st: &AppState,
    headers: &HeaderMap,
    from: IpAddr,
) -> Result<PieceSlot, Response> {
    let claimed = headers
        .get(wire::PEER_ADDR_HEADER)
        .and_then(|v| v.to_str().ok());
    let standing = st.daemon.swarm.net.ledger.standing(claimed, from);
    if standing == Standing::Mismatch {
        st.metrics.claim_mismatches.inc();
        tracing::debug!(?claimed, %from, "piece request claims another host's address");
    }
    let class = Class::of(standing);
    let label = class.label();
    let got = st.upload_slots.acquire(class).await;
    st.metrics
        .upload_slots
        .with_label_values(&[label, Got::label(got.as_ref().map(|g| g.1))])
        .inc();
    let Some((slot, _)) = got else {
        return Err(refused(
            wire::BUSY_HEADER,
            "every upload slot is taken and the queue is full; ask again a little later",
        ));
    };
    Ok(PieceSlot {
        slot,
        bytes: st.metrics.served_class_bytes.with_label_values(&[label]),
    })
}

/// A piece request refused for now (503), marked by `header` so the downloader knows why.
fn refused(header: &'static str, msg: impl Into<String>) -> Response {
    let mut resp = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg).into_response();
    resp.headers_mut().insert(
        header::HeaderName::from_static(header),
        header::HeaderValue::from_static("1"),
    );
    resp
}

pub(super) async fn get_piece(
    State(st): State<AppState>,
    Path((sha256, index)): Path<(String, String)>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let digest = parse_digest(&sha256)?;
    let index = index.parse::<u32>().map(PieceIndex).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("bad piece index {:?}: expected a whole number", index),
        )
    })?;
    let held = held(&st, &digest).await.ok_or_else(|| not_here(&digest))?;
    let manifest = held.manifest();
    let range = manifest.range(index).ok_or_else(|| {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!(
                "piece {index} is past the last piece (the file has {})",
                manifest.piece_count()
            ),
        )
    })?;
    // A block of the piece (`Range`, relative to the piece): swarm downloads ask for blocks
    // smaller than pieces so one piece comes from several holders at once.
    let piece_len = range.end - range.start;
    let (status, within) = match crate::range::parse(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        piece_len,
    ) {
        RangeReply::Full => (StatusCode::OK, 0..piece_len),
        RangeReply::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start..end + 1),
        RangeReply::Unsatisfiable => {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("range outside piece {index} ({piece_len} bytes)"),
            ));
        }
    };
    let missing = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("piece {index} of {digest} is not verified here"),
        )
    };
    let (piece, slot, file) = match &held {
        Held::Complete(entry, _) => {
            // A copy this peer downloaded through the swarm serves whatever is asked: its
            // fellow downloaders hold what "least served first" would steer them to (finished
            // peers idled, deferring every piece, while the others still downloaded).
            let insist =
                headers.contains_key(wire::INSIST_HEADER) || st.partials.downloaded_here(&digest);
            let len = within.end - within.start;
            if !st.seeding.admit(&digest, manifest, index, len, insist) {
                return Ok(refused(
                    wire::LEAST_SERVED_HEADER,
                    format!(
                        "piece {index} went out more often than others; ask for a less served piece first (or send {}: 1)",
                        wire::INSIST_HEADER
                    ),
                ));
            }
            let piece = match piece_slot(&st, &headers, from.ip()).await {
                Ok(piece) => piece,
                Err(busy) => {
                    st.seeding.unsent(&digest, index, len);
                    return Ok(busy);
                }
            };
            let slot = transfer_slot(&st, from.ip())?;
            let file = st.store.open_file(entry).await.map_err(|e| {
                tracing::warn!(file = %entry.name, error = %e, "cannot open indexed file");
                not_here(&digest)
            })?;
            (piece, slot, file)
        }
        Held::Partial(p) => {
            if !p.has(index) {
                return Err(missing());
            }
            let piece = match piece_slot(&st, &headers, from.ip()).await {
                Ok(piece) => piece,
                Err(busy) => return Ok(busy),
            };
            let slot = transfer_slot(&st, from.ip())?;
            let path = p.data_path().to_path_buf();
            let file = tokio::task::spawn_blocking(move || crate::store::open_regular(&path))
                .await
                .map_err(ApiError::internal)?
                .map_err(|e| {
                    // Finished and moved away, or given up, since the lookup.
                    tracing::debug!(error = %e, "cannot open a partial download's data");
                    missing()
                })?;
            (piece, slot, file.0)
        }
    };
    let len = within.end - within.start;
    let holding = match &held {
        Held::Complete(..) => "complete",
        Held::Partial(_) => "partial",
    };
    st.metrics
        .piece_bytes_served
        .with_label_values(&[holding])
        .inc_by(len);
    let body = send_body(
        &st,
        slot,
        file,
        range.start + within.start,
        len,
        Some(piece),
    );
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len);
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{piece_len}", within.start, within.end - 1),
        );
    }
    resp.body(body).map_err(ApiError::internal)
}
