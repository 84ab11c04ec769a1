//! `POST /upload`: a multipart file into the share, hashed while it streams in.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::body::transfer_slot;
use super::error::ApiError;
use super::state::AppState;
use crate::share::pieces;
use crate::store::{self, Published};
use crate::transfer::room;
use crate::wire::Placed;
use crate::wire::upload::Uploaded;

/// Room for multipart boundaries and part headers on top of the file itself.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// What of a refused upload's body is still read (and thrown away) so that its sender gets the
/// answer. Most HTTP clients (reqwest, so the CLI's `put`; Python's requests) read the answer
/// only once the whole body is sent; a peer that closes with unread bytes makes the kernel
/// reset the connection, and such a client reports a broken pipe instead of the 507 or 413.
/// Bounded so that a refused client cannot keep a connection busy: what is not sent within
/// these gets the connection closed as before (curl reads the early answer either way).
const DRAIN_BYTES: u64 = 64 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

pub(super) async fn upload(
    State(st): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    let result = if st.upload_limiter.check_key(&from.ip()).is_err() {
        Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many uploads from this address; retry in a minute",
        ))
    } else {
        receive(&st, from.ip(), headers, &mut multipart).await
    };
    if result.is_err() {
        drain(&mut multipart).await;
    }
    let word = match &result {
        Ok((_, reply)) => reply.word(),
        Err(ApiError(StatusCode::CONFLICT, _)) => "conflict",
        Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, _)) => "too_large",
        Err(ApiError(StatusCode::BAD_REQUEST | StatusCode::REQUEST_TIMEOUT, _)) => "bad_request",
        Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::INSUFFICIENT_STORAGE,
            _,
        )) => "rejected",
        Err(_) => "error",
    };
    st.metrics.uploads.with_label_values(&[word]).inc();
    result
}

async fn receive(
    st: &AppState,
    from: IpAddr,
    headers: HeaderMap,
    multipart: &mut Multipart,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    let _permit = transfer_slot(st, from)?;
    let _active = st.metrics.transfer("download");
    let limit = st.max_upload_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("upload is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit.saturating_add(MULTIPART_OVERHEAD)) {
        return Err(too_large());
    }
    if let Some(n) = declared {
        let (dir, reserve) = (st.store.partial_dir(), st.web.transfer.min_free_space);
        tokio::task::spawn_blocking(move || room::check_upload(&dir, n, reserve))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|msg| ApiError::new(StatusCode::INSUFFICIENT_STORAGE, msg))?;
    }
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("bad multipart body: {e}"))
    };

    let stalled = || {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("upload stalled for {:?}", st.io_timeout),
        )
    };
    // Every wait on the client is bounded, headers of a part included: a stalled upload must
    // give its transfer slot back.
    while let Some(mut field) = tokio::time::timeout(st.io_timeout, multipart.next_field())
        .await
        .map_err(|_| stalled())?
        .map_err(bad)?
    {
        if field.name() != Some("file") {
            continue;
        }
        let name = field
            .file_name()
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "the \"file\" part has no filename (use curl -F file=@PATH)",
                )
            })?
            .to_owned();
        store::check_name(&name)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad file name: {e}")))?;

        let internal = |e: std::io::Error| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) {
                tracing::warn!(error = %e, "upload refused: the disk is full");
                return ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "no space left on this peer's disk for the upload",
                );
            }
            tracing::error!(error = %e, "upload failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the upload")
        };
        // Dropping `tmp_path` deletes the file: an aborted upload leaves nothing behind.
        let (file, tmp_path) = st
            .store
            .temp_file("upload-")
            .await
            .map_err(|e| internal(std::io::Error::other(e.to_string())))?;
        let mut out = BufWriter::with_capacity(256 * 1024, tokio::fs::File::from_std(file));
        let mut size = 0u64;
        while let Some(chunk) = tokio::time::timeout(st.io_timeout, field.chunk())
            .await
            .map_err(|_| stalled())?
            .map_err(bad)?
        {
            size += chunk.len() as u64;
            if size > limit {
                return Err(too_large());
            }
            out.write_all(&chunk).await.map_err(internal)?;
        }
        out.flush().await.map_err(internal)?;
        out.get_ref().sync_all().await.map_err(internal)?;
        drop(out);
        // One read of the written file gives the digest and the piece manifest together, on two
        // threads and off the runtime, instead of a digest inline on the receive loop and a
        // second pass for the pieces.
        let written = tmp_path.to_path_buf();
        let hashed = tokio::task::spawn_blocking(move || pieces::hash_file(&written))
            .await
            .map_err(std::io::Error::other)
            .map_err(internal)?
            .map_err(|e| internal(std::io::Error::other(e.to_string())))?;
        let sha256 = hashed.sha256;

        let outcome = st
            .store
            .publish_hashed(&tmp_path, &name, &hashed)
            .await
            .map_err(|e| match e {
                store::StoreError::BadName(_) | store::StoreError::Reserved(_) => {
                    ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
                }
                store::StoreError::Io { .. } => internal(std::io::Error::other(e.to_string())),
            })?;
        let (status, placed) = match outcome {
            Published::Created => (StatusCode::CREATED, Placed::Created),
            Published::Identical => (StatusCode::OK, Placed::Identical),
            Published::Conflict => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("{name:?} already exists here with other content"),
                ));
            }
            Published::NotAFile => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("{name:?} is taken here by something that is not a shared file"),
                ));
            }
        };
        // No file name: log events become span events, and names stay out of traces.
        tracing::info!(size, %sha256, status = %placed, "upload");
        return Ok((
            status,
            Json(Uploaded {
                name,
                size,
                sha256,
                status: Some(placed),
            }),
        ));
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "no multipart field named \"file\" (use curl -F file=@PATH)",
    ))
}

/// Reads what is left of a refused upload's body, up to [`DRAIN_BYTES`] and [`DRAIN_TIME`],
/// and throws it away. A body that is not multipart ends it at once.
async fn drain(multipart: &mut Multipart) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    let mut read = 0u64;
    let _ = tokio::time::timeout_at(deadline, async {
        while let Ok(Some(mut field)) = multipart.next_field().await {
            while let Ok(Some(chunk)) = field.chunk().await {
                read += chunk.len() as u64;
                if read > DRAIN_BYTES {
                    return;
                }
            }
        }
    })
    .await;
}
