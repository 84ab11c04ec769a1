//! The peer's HTTP API: listing, streamed downloads with ranges, uploads, readiness, leave.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use p2p_common::auth::Tokens;
use tokio::sync::Semaphore;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::range::{self, RangeReply};
use crate::readiness::Readiness;
use crate::store::{self, Published, Store};

/// Room for multipart boundaries and part headers on top of the file itself.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;
const READ_CHUNK: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub max_upload_bytes: u64,
    pub readiness: Arc<Readiness>,
    /// Cancelled to make the peer leave the network and stop.
    pub shutdown: CancellationToken,
    pub metrics: Metrics,
    /// Accepted bearer tokens; None: authentication off.
    pub tokens: Option<Tokens>,
    pub protect_metrics: bool,
    /// One permit per transfer (download served or upload received).
    pub transfers: Arc<Semaphore>,
    pub upload_limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// A stalled upload body is cut after this long.
    pub io_timeout: Duration,
}

/// Per-client upload budget: `per_minute` uploads, refilled evenly.
pub fn upload_limiter(per_minute: u32) -> Arc<DefaultKeyedRateLimiter<IpAddr>> {
    let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::keyed(Quota::per_minute(n)))
}

pub fn router(state: AppState) -> Router {
    let mut protected = Router::new()
        .route("/files", get(list_files))
        .route("/files/{name}", get(get_file))
        .route("/upload", post(upload).layer(DefaultBodyLimit::disable()))
        .route("/leave", post(leave));
    let mut open = Router::new().route("/healthz", get(healthz));
    if state.protect_metrics {
        protected = protected.route("/metrics", get(metrics));
    } else {
        open = open.route("/metrics", get(metrics));
    }
    let protected = protected.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        require_token,
    ));
    // `layer`, not `route_layer`: requests that match no route (404) are counted too.
    protected
        .merge(open)
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

/// 401 unless the request carries an accepted bearer token (when tokens are configured).
async fn require_token(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(tokens) = &st.tokens {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !tokens.accepts_header(presented) {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or invalid bearer token (set auth.token or auth.token_file)",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    next.run(req).await
}

fn busy() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many transfers in progress; retry later",
    )
}

/// An error answer: status and a JSON `{"error": "..."}` body.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self(status, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct FileJson {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

async fn list_files(State(st): State<AppState>) -> Json<Vec<FileJson>> {
    Json(
        st.store
            .list()
            .await
            .into_iter()
            .map(|e| FileJson {
                name: e.name,
                size: e.size,
                sha256: e.sha256,
            })
            .collect(),
    )
}

async fn get_file(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    store::check_name(&name).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no file named {name:?}"));
    let entry = st.store.get(&name).await.ok_or_else(not_found)?;
    let permit = st
        .transfers
        .clone()
        .try_acquire_owned()
        .map_err(|_| busy())?;
    let mut file = st.store.open_file(&entry).await.map_err(|e| {
        tracing::warn!(file = %name, error = %e, "cannot open indexed file");
        not_found()
    })?;

    let etag = format!("\"{}\"", entry.sha256);
    // If-Range with another validator: the client's partial copy is stale, send everything.
    let stale = headers
        .get(header::IF_RANGE)
        .is_some_and(|v| v.as_bytes() != etag.as_bytes());
    let range_header = if stale {
        None
    } else {
        headers.get(header::RANGE).and_then(|v| v.to_str().ok())
    };

    let mut resp = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &etag);
    let (status, start, len) = match range::parse(range_header, entry.size) {
        RangeReply::Full => (StatusCode::OK, 0, entry.size),
        RangeReply::Partial { start, end } => {
            resp = resp.header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{}", entry.size),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeReply::Unsatisfiable => {
            return Ok(Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{}", entry.size))
                .body(Body::empty())
                .unwrap_or_default());
        }
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    let body = deadline_body(
        file,
        len,
        st.io_timeout,
        (permit, st.metrics.transfer("upload")),
        st.metrics.served_bytes.clone(),
    );
    resp.status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .body(body)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// The body of a download: `len` bytes of `file`. A reader that takes nothing for `io_timeout`
/// is cut, and `hold` (the transfer slot, the active-transfer gauge) released: hyper stops
/// polling a body while the client's socket is full, so the deadline cannot live in the body
/// stream itself; a task feeds the body through a one-chunk channel and gives up when a chunk
/// is not taken in time.
fn deadline_body(
    file: tokio::fs::File,
    len: u64,
    io_timeout: Duration,
    hold: impl Send + 'static,
    served: prometheus::IntCounter,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(1);
    tokio::spawn(async move {
        let _hold = hold;
        let mut chunks =
            ReaderStream::with_capacity(tokio::io::AsyncReadExt::take(file, len), READ_CHUNK);
        while let Some(chunk) = chunks.next().await {
            let n = chunk.as_ref().map_or(0, |c| c.len() as u64);
            match tokio::time::timeout(io_timeout, tx.send(chunk)).await {
                Ok(Ok(())) => served.inc_by(n),
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

#[derive(Debug, Serialize)]
struct UploadReply {
    name: String,
    size: u64,
    sha256: String,
    status: &'static str,
}

async fn upload(
    State(st): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    multipart: Multipart,
) -> Result<(StatusCode, Json<UploadReply>), ApiError> {
    let result = if st.upload_limiter.check_key(&from.ip()).is_err() {
        Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many uploads from this address; retry in a minute",
        ))
    } else {
        receive(&st, headers, multipart).await
    };
    let word = match &result {
        Ok((_, reply)) => reply.status,
        Err(ApiError(StatusCode::CONFLICT, _)) => "conflict",
        Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, _)) => "too_large",
        Err(ApiError(StatusCode::BAD_REQUEST | StatusCode::REQUEST_TIMEOUT, _)) => "bad_request",
        Err(ApiError(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE, _)) => {
            "rejected"
        }
        Err(_) => "error",
    };
    st.metrics.uploads.with_label_values(&[word]).inc();
    result
}

async fn receive(
    st: &AppState,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Result<(StatusCode, Json<UploadReply>), ApiError> {
    let _permit = st
        .transfers
        .clone()
        .try_acquire_owned()
        .map_err(|_| busy())?;
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
        let mut hasher = Sha256::new();
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
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(internal)?;
        }
        out.flush().await.map_err(internal)?;
        out.get_ref().sync_all().await.map_err(internal)?;
        drop(out);
        let sha256 = hex::encode(hasher.finalize());

        let outcome = st
            .store
            .publish(&tmp_path, &name, size, &sha256)
            .await
            .map_err(|e| match e {
                store::StoreError::BadName(_) | store::StoreError::Reserved(_) => {
                    ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
                }
                store::StoreError::Io { .. } => internal(std::io::Error::other(e.to_string())),
            })?;
        let (status, word) = match outcome {
            Published::Created => (StatusCode::CREATED, "created"),
            Published::Identical => (StatusCode::OK, "identical"),
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
        tracing::info!(size, %sha256, status = word, "upload");
        return Ok((
            status,
            Json(UploadReply {
                name,
                size,
                sha256,
                status: word,
            }),
        ));
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "no multipart field named \"file\" (use curl -F file=@PATH)",
    ))
}

async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, p2p_common::metrics::CONTENT_TYPE)],
        st.metrics.render(&st.store).await,
    )
}

async fn healthz(State(st): State<AppState>) -> Response {
    if st.readiness.is_ready() {
        (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "not ready" })),
        )
            .into_response()
    }
}

/// Only a process on this host may tell the peer to leave.
async fn leave(
    State(st): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
) -> Result<StatusCode, ApiError> {
    if !from.ip().is_loopback() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "leave is only accepted from this host",
        ));
    }
    tracing::info!("leave requested over HTTP");
    st.shutdown.cancel();
    Ok(StatusCode::ACCEPTED)
}
