//! One holder of a file as a download sees it: the wire routes it is asked on (`/blobs/...`,
//! see the README's HTTP table) and what it has shown of itself so far.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use p2p_common::proto::PeerInfo;
use reqwest::StatusCode;
use serde::Deserialize;

use crate::net::Net;
use crate::share::bitfield::Bitfield;
use crate::share::{Digest, Manifest, PieceIndex};
use crate::transfer::limit::Throttle;

/// Why a request to a source failed.
#[derive(Debug)]
pub enum Failure {
    /// The source does not hold what was asked (404): not its fault, not a network problem.
    NotThere(String),
    /// Connection refused or broken, a timeout, an unexpected answer.
    Unreachable(String),
    /// The source sent bytes that contradict what it claims (a bad manifest or bitfield).
    Bad(String),
    /// A complete holder asks for a piece it has sent less often first (see
    /// [`super::seeding`]): not a failure of the source, the piece is asked elsewhere or later.
    Deferred,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotThere(w) | Failure::Unreachable(w) | Failure::Bad(w) => f.write_str(w),
            Failure::Deferred => f.write_str("asks for a less served piece first"),
        }
    }
}

/// The manifest as `GET /blobs/{sha256}/manifest` sends it.
#[derive(Debug, Deserialize)]
struct WireManifest {
    sha256: Digest,
    size: u64,
    piece_size: u64,
    pieces: Vec<Digest>,
    pieces_root: Digest,
}

/// A holder of one file, and how fast it has been.
#[derive(Debug)]
pub struct Source {
    pub peer: PeerInfo,
    /// What it holds; `None` until asked (complete holders are taken to hold everything).
    pub has: Option<Bitfield>,
    pub bitfield_at: Option<Instant>,
    /// Bytes per second over its finished pieces (an exponential average).
    pub rate: Option<f64>,
    pub dropped: bool,
    /// Piece requests running.
    pub requests: usize,
    pub bitfield_pending: bool,
    /// It has been asked for a piece (and the progress told so).
    pub started: bool,
    /// Pieces it asked to be asked for later (it sent them more often than others).
    pub deferred: std::collections::BTreeSet<PieceIndex>,
}

impl Source {
    pub fn new(peer: PeerInfo, pieces: u32) -> Self {
        let has = (!peer.partial).then(|| Bitfield::full(pieces));
        Source {
            peer,
            has,
            bitfield_at: None,
            rate: None,
            dropped: false,
            requests: 0,
            bitfield_pending: false,
            started: false,
            deferred: std::collections::BTreeSet::new(),
        }
    }

    pub fn record_rate(&mut self, bytes: u64, took: Duration) {
        let r = bytes as f64 / took.as_secs_f64().max(1e-3);
        self.rate = Some(match self.rate {
            Some(old) => 0.7 * old + 0.3 * r,
            None => r,
        });
    }
}

fn blob_url(net: &Net, address: &str, sha256: &Digest, rest: &str) -> String {
    net.url(address, &format!("/blobs/{sha256}{rest}"))
}

async fn get(net: &Net, url: String, timeout: Duration) -> Result<reqwest::Response, Failure> {
    send(net.http.get(url), timeout).await
}

async fn send(
    mut req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<reqwest::Response, Failure> {
    for (k, v) in p2p_common::telemetry::inject_http() {
        req = req.header(k, v);
    }
    let resp = tokio::time::timeout(timeout, req.send())
        .await
        .map_err(|_| Failure::Unreachable(format!("no answer within {timeout:?}")))?
        .map_err(|e| Failure::Unreachable(format!("cannot connect: {e}")))?;
    match resp.status() {
        StatusCode::OK => Ok(resp),
        StatusCode::NOT_FOUND => Err(Failure::NotThere("not held there".into())),
        StatusCode::SERVICE_UNAVAILABLE
            if resp
                .headers()
                .contains_key(super::seeding::LEAST_SERVED_HEADER) =>
        {
            Err(Failure::Deferred)
        }
        s => Err(Failure::Unreachable(format!("HTTP {s}"))),
    }
}

/// A small body (manifest, bitfield), bounded so a hostile holder cannot make us buffer much.
async fn small_body(
    resp: reqwest::Response,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, Failure> {
    let read = async {
        let mut out = Vec::new();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| Failure::Unreachable(format!("transfer interrupted: {e}")))?;
            if out.len() + chunk.len() > limit {
                return Err(Failure::Bad(format!("answer longer than {limit} bytes")));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| Failure::Unreachable(format!("answer not complete within {timeout:?}")))?
}

/// The manifest of `sha256` from `address`, checked against itself, the file's size and (when
/// known) the `pieces_root` the download settled on.
pub async fn manifest(
    net: &Net,
    address: &str,
    sha256: &Digest,
    size: u64,
    root: Option<&Digest>,
    timeout: Duration,
) -> Result<Manifest, Failure> {
    let resp = get(net, blob_url(net, address, sha256, "/manifest"), timeout).await?;
    // 2,048 pieces of 64 hex digits and then some; a bigger file has bigger pieces, not more.
    let body = small_body(resp, 4 << 20, timeout).await?;
    let wire: WireManifest = serde_json::from_slice(&body)
        .map_err(|e| Failure::Bad(format!("unreadable manifest: {e}")))?;
    if &wire.sha256 != sha256 || wire.size != size {
        return Err(Failure::Bad(format!(
            "manifest is for {} ({} bytes), asked for {sha256} ({size} bytes)",
            wire.sha256, wire.size
        )));
    }
    let m = Manifest::new(wire.size, wire.pieces).map_err(|e| Failure::Bad(e.to_string()))?;
    if m.piece_size() != wire.piece_size || m.root() != wire.pieces_root {
        return Err(Failure::Bad(
            "manifest contradicts its own piece size or pieces_root".into(),
        ));
    }
    m.validate(root).map_err(|e| Failure::Bad(e.to_string()))?;
    Ok(m)
}

/// What `address` holds of `sha256` (a file of `pieces` pieces).
pub async fn bitfield(
    net: &Net,
    address: &str,
    sha256: &Digest,
    pieces: u32,
    timeout: Duration,
) -> Result<Bitfield, Failure> {
    let resp = get(net, blob_url(net, address, sha256, "/bitfield"), timeout).await?;
    let declared = resp
        .headers()
        .get("x-p2p-pieces")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    if declared.is_some_and(|n| n != pieces) {
        return Err(Failure::Bad(format!(
            "bitfield of {declared:?} pieces, the file has {pieces}"
        )));
    }
    let body = small_body(resp, (pieces as usize).div_ceil(8) + 1, timeout).await?;
    Bitfield::from_bytes(pieces, &body).map_err(|e| Failure::Bad(e.to_string()))
}

/// Bytes received so far by a piece request, for the download loop to watch.
#[derive(Debug, Default)]
pub struct Meter {
    bytes: AtomicU64,
    /// Milliseconds since the request started at which the last bytes arrived.
    last_ms: AtomicU64,
}

impl Meter {
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn last_ms(&self) -> u64 {
        self.last_ms.load(Ordering::Relaxed)
    }
}

/// The bytes of one piece from `address`: exactly `len` of them or a failure. Each chunk is
/// paced by the download bucket and must come within `timeout` of the previous one. `insist`:
/// the holder may not defer it (see [`super::seeding`]).
#[allow(clippy::too_many_arguments)]
pub async fn piece(
    net: &Net,
    address: &str,
    sha256: &Digest,
    index: PieceIndex,
    len: u64,
    timeout: Duration,
    mut throttle: Throttle,
    meter: Arc<Meter>,
    insist: bool,
) -> Result<Vec<u8>, Failure> {
    let started = Instant::now();
    let mut req = net
        .http
        .get(blob_url(net, address, sha256, &format!("/pieces/{index}")));
    if insist {
        req = req.header(super::seeding::INSIST_HEADER, "1");
    }
    let resp = send(req, timeout).await?;
    if resp.content_length().is_some_and(|n| n != len) {
        return Err(Failure::Bad(format!(
            "piece {index} announced as {:?} bytes, expected {len}",
            resp.content_length()
        )));
    }
    let mut out = Vec::with_capacity(len as usize);
    let mut body = resp.bytes_stream();
    loop {
        let next = tokio::time::timeout(timeout, body.next())
            .await
            .map_err(|_| Failure::Unreachable(format!("no bytes for {timeout:?}")))?;
        let Some(chunk) = next else { break };
        let chunk =
            chunk.map_err(|e| Failure::Unreachable(format!("transfer interrupted: {e}")))?;
        if out.len() as u64 + chunk.len() as u64 > len {
            return Err(Failure::Bad(format!(
                "piece {index} longer than {len} bytes"
            )));
        }
        throttle.take(chunk.len() as u64).await;
        out.extend_from_slice(&chunk);
        meter.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        meter
            .last_ms
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    if out.len() as u64 != len {
        return Err(Failure::Unreachable(format!(
            "connection closed after {} of {len} bytes of piece {index}",
            out.len()
        )));
    }
    Ok(out)
}
