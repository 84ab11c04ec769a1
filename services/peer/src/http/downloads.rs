//! `POST /downloads`: this peer downloads a file into its share and streams how it goes
//! ([`crate::wire::download`]); `DELETE /downloads/{sha256}`, `.../pause` and `.../resume`
//! control one that runs (`daemon::control`).

use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::state::AppState;
use crate::daemon::control::Command;
use crate::error::Error;
use crate::share::Digest;
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
    // The download belongs to the peer, not to the connection: a client that goes away does
    // not cancel it (its pieces are already being served to others).
    tokio::spawn(async move {
        let sink = move |e: Event| {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CancelQuery {
    /// Keep the verified pieces for a later `POST /downloads` of the same file.
    #[serde(default)]
    keep: bool,
}

/// What a control route did: the download's state after it.
#[derive(Serialize)]
pub(super) struct Controlled {
    sha256: Digest,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kept: Option<bool>,
}

/// How long `DELETE /downloads/{sha256}` waits for the download to stop before it answers
/// 202 instead of 200.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

fn digest_of(raw: &str) -> Result<Digest, ApiError> {
    raw.parse::<Digest>()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad sha256 {raw:?}: {e}")))
}

fn not_running(sha256: &Digest) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no download of sha256 {sha256} is running on this peer"),
    )
}

/// `DELETE /downloads/{sha256}[?keep=true]`: stops the download; 200 once it stopped (its
/// partial removed unless `keep`), 202 if it is still stopping after [`CANCEL_WAIT`].
pub(super) async fn cancel(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    Query(q): Query<CancelQuery>,
) -> Result<(StatusCode, Json<Controlled>), ApiError> {
    let sha256 = digest_of(&raw)?;
    let controls = &st.daemon.controls;
    controls
        .send(&sha256, Command::Cancel { keep: q.keep })
        .map_err(|_| not_running(&sha256))?;
    let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
    let status = loop {
        if controls.state(&sha256).is_none() {
            break StatusCode::OK;
        }
        if tokio::time::Instant::now() >= deadline {
            break StatusCode::ACCEPTED;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Ok((
        status,
        Json(Controlled {
            sha256,
            state: if status == StatusCode::OK {
                "cancelled"
            } else {
                "cancelling"
            },
            kept: Some(q.keep),
        }),
    ))
}

/// `POST /downloads/{sha256}/pause`: stops fetching, keeps what is verified (the progress
/// stream stays open and says nothing new until a resume or a cancel).
pub(super) async fn pause(
    State(st): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Controlled>, ApiError> {
    command(&st, &raw, Command::Pause)
}

/// `POST /downloads/{sha256}/resume`: a paused download fetches again from what it kept.
pub(super) async fn resume(
    State(st): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Controlled>, ApiError> {
    command(&st, &raw, Command::Run)
}

fn command(st: &AppState, raw: &str, c: Command) -> Result<Json<Controlled>, ApiError> {
    let sha256 = digest_of(raw)?;
    let state = st
        .daemon
        .controls
        .send(&sha256, c)
        .map_err(|_| not_running(&sha256))?;
    Ok(Json(Controlled {
        sha256,
        state: state.word(),
        kept: None,
    }))
}
