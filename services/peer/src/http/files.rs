//! `GET /files` and `GET /files/{name}`: the share by name, with single ranges.

use axum::body::Body;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::body::{send_body, transfer_slot};
use super::error::ApiError;
use super::listing::json_array;
use super::state::AppState;
use crate::range::{self, RangeReply};
use crate::store::{self, Entry};
use crate::wire::files::FileJson;

pub(super) async fn list_files(
    State(st): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    json_array(&st, from.ip(), |out, e| {
        serde_json::to_writer(
            out,
            &FileJson {
                name: &e.name,
                size: e.size,
                sha256: &e.sha256,
            },
        )
    })
}

pub(super) async fn get_file(
    State(st): State<AppState>,
    Path(name): Path<String>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    store::check_name(&name).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no file named {name:?}"));
    let entry = st.store.get(&name).await.ok_or_else(not_found)?;
    serve_whole(&st, &entry, from.ip(), &headers, not_found).await
}

/// A shared file's bytes with `ETag`, `Range` and `If-Range`: `/files/{name}` and
/// `/blobs/{sha256}` answer the same way.
pub(super) async fn serve_whole(
    st: &AppState,
    entry: &Entry,
    from: IpAddr,
    headers: &HeaderMap,
    not_found: impl FnOnce() -> ApiError,
) -> Result<Response, ApiError> {
    let slot = transfer_slot(st, from)?;
    let file = st.store.open_file(entry).await.map_err(|e| {
        tracing::warn!(file = %entry.name, error = %e, "cannot open indexed file");
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
    let body = send_body(st, slot, file, start, len, None);
    resp.status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .body(body)
        .map_err(ApiError::internal)
}

/// `DELETE /files/{name}`: the file leaves the share and, at membership's next diff, the
/// tracker's listing of this peer. 200 `{name, sha256, size, status: "removed"}`; 404 when no
/// shared file has that name. Who may ask is `auth::Access::Act`'s rule.
pub(super) async fn delete_file(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    store::check_name(&name).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    match st.store.remove(&name).await {
        Ok(Some(e)) => {
            tracing::info!(sha256 = %e.sha256, "shared file removed on request");
            Ok(axum::Json(serde_json::json!({
                "name": &*e.name, "sha256": e.sha256, "size": e.size, "status": "removed",
            })))
        }
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no shared file named {name:?}"),
        )),
        Err(e) => Err(ApiError::internal(e)),
    }
}
