//! The share as a JSON array (`GET /files`, `GET /api/share`), written from a snapshot of the
//! index a chunk of entries at a time: a listing of 100k files never holds a copy of the index
//! or its whole JSON (~13 MiB) in memory. A listing holds a stream slot of its client's and is
//! cut when its client stops reading (`body::held_stream`), so slow readers hold neither
//! snapshots nor chunks for long, nor more than their share of listings.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::body::{held_stream, stream_slot};
use super::error::ApiError;
use super::state::AppState;
use crate::store::{Entry, Index};

const ENTRIES_PER_CHUNK: usize = 1024;

/// Writes one element of the array.
pub(super) type WriteItem = fn(&mut Vec<u8>, &Entry) -> serde_json::Result<()>;

/// A `200 application/json` answer for a client at `from`: `[` the entries of the share in
/// name order, each written by `write`, `]`; or why it is refused.
pub(super) fn json_array(
    st: &AppState,
    from: IpAddr,
    write: WriteItem,
) -> Result<Response, ApiError> {
    let slot = stream_slot(st, from)?;
    let body = array_body(st.store.snapshot(), write);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        held_stream(slot, body, st.io_timeout),
    )
        .into_response())
}

/// `[` the entries of `index` in name order, each written by `write`, `]`, a chunk at a time.
fn array_body(index: Arc<Index>, write: WriteItem) -> Body {
    let chunks = index.len().div_ceil(ENTRIES_PER_CHUNK).max(1);
    let body = futures::stream::iter(0..chunks).map(move |c| {
        let entries = index.entries();
        let from = (c * ENTRIES_PER_CHUNK).min(entries.len());
        let to = (from + ENTRIES_PER_CHUNK).min(entries.len());
        let mut out = Vec::with_capacity(128 * (to - from) + 2);
        if c == 0 {
            out.push(b'[');
        }
        for (i, e) in entries[from..to].iter().enumerate() {
            if from + i > 0 {
                out.push(b',');
            }
            write(&mut out, e)?;
        }
        if c + 1 == chunks {
            out.push(b']');
        }
        Ok::<_, serde_json::Error>(bytes::Bytes::from(out))
    });
    Body::from_stream(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn listed(n: usize) -> serde_json::Value {
        let digest = crate::share::digest::sha256(b"x");
        let entries = (0..n)
            .map(|i| Entry::with_manifest(&format!("f{i:05}"), 1, digest, 0, None))
            .collect();
        let index = Arc::new(Index::new(entries));
        let body = array_body(index, |out, e| serde_json::to_writer(out, &*e.name));
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn chunks_join_into_one_array_in_name_order() {
        assert_eq!(listed(0).await, serde_json::json!([]));
        assert_eq!(listed(1).await, serde_json::json!(["f00000"]));
        for n in [
            ENTRIES_PER_CHUNK,
            ENTRIES_PER_CHUNK + 1,
            2 * ENTRIES_PER_CHUNK + 7,
        ] {
            let got = listed(n).await;
            let want: Vec<String> = (0..n).map(|i| format!("f{i:05}")).collect();
            assert_eq!(got, serde_json::json!(want), "{n} entries");
        }
    }
}
