//! The share as a JSON array (`GET /files`, `GET /api/share`), written from a snapshot of the
//! index a chunk of entries at a time: a listing of 100k files never holds a copy of the index
//! or its whole JSON (~13 MiB) in memory.

use std::sync::Arc;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::store::{Entry, Index};

const ENTRIES_PER_CHUNK: usize = 1024;

/// Writes one element of the array.
pub(super) type WriteItem = fn(&mut Vec<u8>, &Entry) -> serde_json::Result<()>;

/// A `200 application/json` answer: `[` the entries of `index` in name order, each written by
/// `write`, `]`.
pub(super) fn json_array(index: Arc<Index>, write: WriteItem) -> Response {
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
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}
