//! The one way a body is sent (`/files`, `/blobs`, pieces): transfer slot, stall deadline,
//! upload rate limit.

use axum::body::Body;
use axum::http::StatusCode;
use futures::StreamExt;
use prometheus::IntCounter;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::io::ReaderStream;

use super::error::ApiError;
use super::state::AppState;
use crate::transfer::Direction;
use crate::transfer::slots::UploadSlot;

const READ_CHUNK: usize = 64 * 1024;

/// What a piece body holds besides its transfer slot: its upload slot (`transfer::slots`) and
/// the counter of bytes served to its requester's class.
pub(super) struct PieceSlot {
    pub slot: UploadSlot,
    pub bytes: IntCounter,
}

/// A transfer slot, or 503: every body sent or received holds one.
pub(super) fn transfer_slot(st: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
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
pub(super) fn send_body(
    st: &AppState,
    slot: OwnedSemaphorePermit,
    file: tokio::fs::File,
    len: u64,
    piece: Option<PieceSlot>,
) -> Body {
    let (mut upload_slot, class_bytes) = match piece {
        Some(p) => (Some(p.slot), Some(p.bytes)),
        None => (None, None),
    };
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
            // The buckets' waits are ours, not the client's: not part of the stall deadline.
            if let Some(s) = &mut upload_slot {
                s.pace(n).await;
            }
            throttle.take(n).await;
            match tokio::time::timeout(io_timeout, tx.send(chunk)).await {
                Ok(Ok(())) => {
                    served.inc_by(n);
                    if let Some(c) = &class_bytes {
                        c.inc_by(n);
                    }
                }
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
