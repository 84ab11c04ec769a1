//! The one way a body is sent (`/files`, `/blobs`, pieces): transfer slot, stall deadline,
//! upload rate limit; and the one way a long-lived answer that is not a file (event streams,
//! listings) is: stream slot and stall deadline. Both kinds of slot are shared between client
//! addresses (`transfer::shares`).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use futures::StreamExt;
use prometheus::IntCounter;
use prometheus::IntCounterVec;

use super::error::ApiError;
use super::state::AppState;
use crate::buffers::Buffers;
use crate::transfer::Direction;
use crate::transfer::shares::{Refusal, Share, Shares};
use crate::transfer::slots::UploadSlot;

/// What one read of a served file takes (a swarm block is one read), and the slices it is
/// paced and handed to hyper in.
const READ_AHEAD: usize = 256 * 1024;
const SEND_CHUNK: usize = 64 * 1024;

/// What a piece body holds besides its transfer slot: its upload slot (`transfer::slots`) and
/// the counter of bytes served to its requester's class.
pub(super) struct PieceSlot {
    pub slot: UploadSlot,
    pub bytes: IntCounter,
}

/// A transfer slot for a client at `from`: every body sent or received holds one. 503 when
/// all are held, 429 when this client holds its share (`peer.max_transfers_per_client`).
pub(super) fn transfer_slot(st: &AppState, from: IpAddr) -> Result<Share, ApiError> {
    share_of(
        &st.transfers,
        from,
        &st.metrics.transfers_refused,
        ["max_concurrent_transfers", "max_transfers_per_client"],
        "transfers",
    )
}

/// A stream slot for a client at `from`: every event stream and listing holds one. 503 when
/// all are held, 429 when this client holds its share (`peer.max_streams_per_client`).
pub(super) fn stream_slot(st: &AppState, from: IpAddr) -> Result<Share, ApiError> {
    share_of(
        &st.streams,
        from,
        &st.metrics.streams_refused,
        ["max_streams", "max_streams_per_client"],
        "event streams and listings",
    )
}

/// `keys`: the config keys of the bound in all and per client, the refusal's metric label.
fn share_of(
    shares: &Arc<Shares>,
    from: IpAddr,
    refused: &IntCounterVec,
    keys: [&str; 2],
    what: &str,
) -> Result<Share, ApiError> {
    shares.take(from).map_err(|r| {
        let (status, key, msg) = match r {
            Refusal::Full => (
                StatusCode::SERVICE_UNAVAILABLE,
                keys[0],
                format!("too many {what} in progress; retry later"),
            ),
            Refusal::ClientShare => (
                StatusCode::TOO_MANY_REQUESTS,
                keys[1],
                format!("too many {what} from this address; retry when one ends"),
            ),
        };
        refused.with_label_values(&[key]).inc();
        ApiError::new(status, format!("{msg} ({key})"))
    })
}

/// A long-lived answer that is not a file (an event stream, a listing), held by `slot` until
/// hyper lets go of it, and cut when its client takes nothing for `io_timeout`: hyper stops
/// polling a body while the client's socket is full, so a task feeds the body through a
/// one-chunk channel and stops (dropping what it would send next, and the snapshot it reads
/// from) when a chunk is not taken in time. A cut body ends in an error, never in what looks
/// like a complete answer.
pub(super) fn held_stream(slot: Share, body: Body, io_timeout: Duration) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, axum::Error>>(1);
    let finished = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&finished);
    tokio::spawn(async move {
        let mut frames = body.into_data_stream();
        while let Some(chunk) = frames.next().await {
            match tokio::time::timeout(io_timeout, tx.send(chunk)).await {
                Ok(Ok(())) => {}
                // The client went away.
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::debug!(?io_timeout, "client stopped reading: stream cut");
                    return;
                }
            }
        }
        done.store(true, Ordering::SeqCst);
    });
    let stream = futures::stream::unfold((rx, Some(slot)), move |(mut rx, slot)| {
        let finished = Arc::clone(&finished);
        async move {
            slot.as_ref()?;
            match rx.recv().await {
                Some(c) => Some((c, (rx, slot))),
                None if finished.load(Ordering::SeqCst) => None,
                None => Some((
                    Err(axum::Error::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "client stopped reading; cut",
                    ))),
                    (rx, None),
                )),
            }
        }
    });
    Body::from_stream(stream)
}

/// The body of every download this peer serves (`/files`, `/blobs`, pieces): `len` bytes of
/// `file` from `offset`, paced by the process's upload bucket, holding `slot` and the
/// active-transfer gauge until it ends. A reader that takes nothing for `io_timeout` is cut:
/// hyper stops polling a body while the client's socket is full, so the deadline cannot live
/// in the body stream itself; a task feeds the body through a one-chunk channel and gives up
/// when a chunk is not taken in time.
///
/// The file is read [`READ_AHEAD`] bytes at a time with one positioned read on a blocking
/// thread, and sent in [`SEND_CHUNK`] slices of that buffer (no copy): a 256 KiB block costs
/// one trip to a blocking thread, where `tokio::fs` reads cost one per 64 KiB plus one for the
/// seek, and those thread switches were a third of the serving peer's CPU (`perf`, issue 27).
pub(super) fn send_body(
    st: &AppState,
    slot: Share,
    file: std::fs::File,
    offset: u64,
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
        let file = Arc::new(file);
        let end = offset.saturating_add(len);
        let mut at = offset;
        while at < end {
            let want = usize::try_from((end - at).min(READ_AHEAD as u64)).unwrap_or(READ_AHEAD);
            let f = Arc::clone(&file);
            let read = tokio::task::spawn_blocking(move || read_at(&f, at, want))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            let mut buf = match read {
                Ok(buf) => buf,
                Err(e) => {
                    // Cut with an error, never a short body that looks complete.
                    let _ = tokio::time::timeout(io_timeout, tx.send(Err(e))).await;
                    return;
                }
            };
            at += buf.len() as u64;
            while !buf.is_empty() {
                let chunk = buf.split_to(buf.len().min(SEND_CHUNK));
                let n = chunk.len() as u64;
                // The buckets' waits are ours, not the client's: not part of the stall deadline.
                if let Some(s) = &mut upload_slot {
                    s.pace(n).await;
                }
                throttle.take(n).await;
                match tokio::time::timeout(io_timeout, tx.send(Ok(chunk))).await {
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

/// Exactly `len` (at most [`READ_AHEAD`]) bytes of `file` at `offset`; a file that became
/// shorter is an error. The buffer comes from [`READS`] and goes back there once hyper has
/// sent the last slice of it. Blocking.
fn read_at(file: &std::fs::File, offset: u64, len: usize) -> std::io::Result<bytes::Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = READS
        .take()
        .filter(|b| b.len() == READ_AHEAD)
        .unwrap_or_else(|| vec![0u8; READ_AHEAD]);
    let len = len.min(READ_AHEAD);
    file.read_exact_at(&mut buf[..len], offset)?;
    Ok(bytes::Bytes::from_owner(Pooled { buf, len }))
}

/// Read buffers of served files (of [`READ_AHEAD`] bytes), kept for the next read.
static READS: Buffers = Buffers::new(16, READ_AHEAD);

/// The first `len` bytes of a buffer from [`READS`], which it goes back to when dropped.
struct Pooled {
    buf: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        READS.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event stream never ends by itself: one whose client stops taking chunks is cut
    /// after `io_timeout`, ends in an error, and gives its slot back.
    #[tokio::test(start_paused = true)]
    async fn a_stream_nobody_reads_is_cut_and_frees_its_slot() {
        let shares = Shares::strict(1, 1);
        let slot = shares.take(IpAddr::from([127, 0, 0, 1])).unwrap();
        let endless = futures::stream::repeat_with(|| {
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"data: x\n\n"))
        });
        let body = held_stream(slot, Body::from_stream(endless), Duration::from_secs(1));
        let mut frames = body.into_data_stream();
        assert!(frames.next().await.unwrap().is_ok());
        assert_eq!(shares.counts(), (1, 1));
        // The client stops reading for longer than io_timeout.
        tokio::time::sleep(Duration::from_secs(3)).await;
        // What was handed over before the cut, then the cut.
        let mut results = Vec::new();
        while let Some(r) = frames.next().await {
            results.push(r.is_ok());
        }
        assert_eq!(
            results.last(),
            Some(&false),
            "the stream ended without an error"
        );
        assert!(results.len() <= 2, "{} chunks after the cut", results.len());
        assert_eq!(shares.counts(), (0, 0), "the slot was not given back");
    }
}
