//! Asking one holder of a file for its manifest, bitfield and pieces: the wire routes of
//! `/blobs/...` (see the README's HTTP table) from the downloading side.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;

use super::plan::Meter;
use crate::net::Net;
use crate::share::bitfield::Bitfield;
use crate::share::{Digest, Manifest, PieceIndex, ShareError};
use crate::transfer::limit::Throttle;
use crate::wire::blobs::{self as wire, ManifestJson};

/// Why a request to a source failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// The source does not hold what was asked (404): not its fault, not a network problem.
    NotThere(String),
    /// Connection refused or broken, a timeout, an unexpected answer.
    Unreachable(String),
    /// The source sent bytes that contradict what it claims (a bad manifest or bitfield).
    Bad(String),
    /// A complete holder asks for a piece it has sent less often first (see
    /// `http::seeding`): not a failure of the source, the piece is asked elsewhere or later.
    Deferred,
    /// The holder's upload queue is full: asked again a little later.
    Busy,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotThere(w) | Failure::Unreachable(w) | Failure::Bad(w) => f.write_str(w),
            Failure::Deferred => f.write_str("asks for a less served piece first"),
            Failure::Busy => f.write_str("busy: every upload slot taken, the queue full"),
        }
    }
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
        .map_err(|e| {
            Failure::Unreachable(format!(
                "cannot connect: {}",
                p2p_common::tls::error_chain(&e)
            ))
        })?;
    match resp.status() {
        StatusCode::OK | StatusCode::PARTIAL_CONTENT => Ok(resp),
        StatusCode::NOT_FOUND => Err(Failure::NotThere("not held there".into())),
        StatusCode::SERVICE_UNAVAILABLE
            if resp.headers().contains_key(wire::LEAST_SERVED_HEADER) =>
        {
            Err(Failure::Deferred)
        }
        StatusCode::SERVICE_UNAVAILABLE if resp.headers().contains_key(wire::BUSY_HEADER) => {
            Err(Failure::Busy)
        }
        s if s.is_redirection() => Err(Failure::Unreachable(format!(
            "answered HTTP {s} (a redirect{}); peers are asked only at their advertised address, redirects are not followed",
            resp.headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| format!(" to {:?}", l.chars().take(200).collect::<String>()))
                .unwrap_or_default()
        ))),
        s => Err(Failure::Unreachable(format!("HTTP {s}"))),
    }
}

/// A small body (manifest, bitfield), bounded so a hostile holder cannot make us buffer much.
async fn small_body(
    resp: reqwest::Response,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, Failure> {
    // Refused on its word, before a byte of it is read.
    if let Some(n) = resp.content_length().filter(|&n| n > limit as u64) {
        return Err(Failure::Bad(format!(
            "answer announced as {n} bytes, more than the {limit} expected"
        )));
    }
    let read = async {
        let mut out = Vec::new();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| Failure::Unreachable(format!("transfer interrupted: {e}")))?;
            if out.len() + chunk.len() > limit {
                return Err(Failure::Bad(format!(
                    "answer longer than the {limit} bytes expected"
                )));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| Failure::Unreachable(format!("answer not complete within {timeout:?}")))?
}

/// The manifest of `sha256` from `address`, checked against itself and (when the holder
/// announced one) the `pieces_root` it announced. Its size is the holder's claim: the size the
/// tracker returned is someone's announcement too, so it bounds nothing here; the read is
/// bounded by the largest manifest any file can have.
pub(super) async fn manifest(
    net: &Net,
    address: &str,
    sha256: &Digest,
    root: Option<&Digest>,
    timeout: Duration,
) -> Result<Manifest, Failure> {
    let resp = get(net, net.url(address, &wire::manifest_path(sha256)), timeout).await?;
    let body = small_body(resp, wire::MANIFEST_LIMIT, timeout).await?;
    let answer: ManifestJson = serde_json::from_slice(&body)
        .map_err(|e| Failure::Bad(format!("unreadable manifest: {e}")))?;
    answer.check(sha256, root).map_err(|e| match e {
        // Another version's pieces: the holder is not lying, this peer cannot use it.
        ShareError::OtherPieceHash(_) => Failure::NotThere(e.to_string()),
        e => Failure::Bad(e.to_string()),
    })
}

/// What a holder answered to a bitfield request.
pub(super) struct Holding {
    pub has: Bitfield,
    /// It takes `?after=N` ([`wire::HAVE_WAIT_HEADER`]): ask it so from now on.
    pub waits: bool,
}

/// What `address` holds of `sha256` (a file of `pieces` pieces). With `after`, the holder
/// answers once it holds more than `after` pieces, or after at most [`wire::HAVE_WAIT`].
pub(super) async fn bitfield(
    net: &Net,
    address: &str,
    sha256: &Digest,
    pieces: u32,
    after: Option<u32>,
    timeout: Duration,
) -> Result<Holding, Failure> {
    let (path, timeout) = match after {
        Some(n) => (
            wire::bitfield_after_path(sha256, n),
            timeout + wire::HAVE_WAIT,
        ),
        None => (wire::bitfield_path(sha256), timeout),
    };
    let resp = get(net, net.url(address, &path), timeout).await?;
    let declared = resp
        .headers()
        .get(wire::PIECES_HEADER)
        .and_then(|v| v.to_str().ok());
    wire::check_declared_pieces(declared, pieces).map_err(Failure::Bad)?;
    let waits = resp.headers().contains_key(wire::HAVE_WAIT_HEADER);
    let body = small_body(resp, wire::bitfield_limit(pieces), timeout).await?;
    let has = Bitfield::from_bytes(pieces, &body).map_err(|e| Failure::Bad(e.to_string()))?;
    Ok(Holding { has, waits })
}

/// The bytes `block` (a range within piece `index`, of `piece_len` bytes) from `address`:
/// exactly those or a failure. Each chunk is paced by the download bucket and must come within
/// `timeout` of the previous one. `insist`: the holder may not defer it (see `http::seeding`).
/// A holder that ignores the range (an older peer) answers 200 with the whole piece; the
/// block is cut out of it, so such a holder still serves, at the cost of the rest of the piece.
#[allow(clippy::too_many_arguments)]
pub(super) async fn block(
    net: &Net,
    address: &str,
    sha256: &Digest,
    index: PieceIndex,
    block: Range<u64>,
    piece_len: u64,
    timeout: Duration,
    mut throttle: Throttle,
    meter: Arc<Meter>,
    insist: bool,
) -> Result<Vec<u8>, Failure> {
    let want = block.end - block.start;
    let mut req = net
        .http
        .get(net.url(address, &wire::piece_path(sha256, index)))
        .header(
            reqwest::header::RANGE,
            format!("bytes={}-{}", block.start, block.end.saturating_sub(1)),
        );
    if insist {
        req = req.header(wire::INSIST_HEADER, "1");
    }
    let resp = send(req, timeout).await?;
    let whole = resp.status() == StatusCode::OK;
    let len = if whole { piece_len } else { want };
    let credit = net
        .ledger
        .source(address, resp.remote_addr().map(|a| a.ip()));
    if resp.content_length().is_some_and(|n| n != len) {
        return Err(Failure::Bad(format!(
            "{} of piece {index} announced as {:?} bytes, expected {len}",
            if whole { "all" } else { "a block" },
            resp.content_length()
        )));
    }
    // What the holder claims is not reserved up front: only what it sends is held.
    let mut out = Vec::with_capacity(want as usize);
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
                "block of piece {index} longer than {len} bytes"
            )));
        }
        throttle.take(chunk.len() as u64).await;
        out.extend_from_slice(&chunk);
        meter.add(chunk.len() as u64);
        credit.add(chunk.len() as u64);
    }
    if out.len() as u64 != len {
        return Err(Failure::Unreachable(format!(
            "connection closed after {} of {len} bytes of a block of piece {index}",
            out.len()
        )));
    }
    if whole && want != len {
        out.truncate(block.end as usize);
        out.drain(..block.start as usize);
    }
    Ok(out)
}
