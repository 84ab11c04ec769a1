//! `POST /downloads`: this peer downloads a file into its share and streams how it goes
//! ([`crate::wire::download`]).

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;
use crate::error::Error;
use crate::wire::download::{self as wire, DownloadRequest, Event};

/// Who may ask is `auth::Access::Act`'s rule, checked before this runs.
pub(super) async fn post_downloads(State(st): State<AppState>, body: Bytes) -> Response {
    let d = st.daemon;
    let req: DownloadRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"name\": \"...\", \"sha256\": \"...\" (optional)}}: {e}"),
            )
            .into_response();
        }
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    // The page's transfers panel lists it until its last line.
    let web = st.web.clone();
    let live = web.live.begin(&req.name);
    // The download belongs to the peer, not to the connection: a client that goes away does
    // not cancel it (its pieces are already being served to others).
    tokio::spawn(async move {
        let listed = web.clone();
        let sink = move |e: Event| {
            web.live.observe(live, &e);
            let _ = tx.send(e);
        };
        let last = match d.download(&req.name, req.sha256.as_ref(), &sink).await {
            Ok(done) => Event::Done {
                name: done.name,
                sha256: done.sha256,
                size: done.size,
                status: done.status,
            },
            Err(e) => {
                tracing::warn!(file = %req.name, error = %e, "requested download failed");
                Event::Error {
                    kind: e.kind().to_owned(),
                    message: e.to_string(),
                }
            }
        };
        sink(last);
        listed.live.end(live);
    });
    // The first event decides the status: a download refused by the process's bounds before it
    // started is 507 (the message names the key); anything else streams.
    let mut rx = rx;
    let first = rx.recv().await;
    if let Some(Event::Error { kind, message }) = &first
        && kind == Error::NoRoom(String::new()).kind()
    {
        return ApiError::new(StatusCode::INSUFFICIENT_STORAGE, message.clone()).into_response();
    }
    let lines = futures::stream::unfold((first, rx), |(first, mut rx)| async move {
        let event = match first {
            Some(e) => e,
            None => rx.recv().await?,
        };
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from(event.to_line())),
            (None, rx),
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, wire::CONTENT_TYPE)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(lines))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
