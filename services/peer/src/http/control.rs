//! The peer itself: readiness, metrics, and leaving the network.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;

pub(super) async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, p2p_common::metrics::CONTENT_TYPE)],
        st.metrics.render(&st.store, &st.limits, &st.partials).await,
    )
}

pub(super) async fn healthz(State(st): State<AppState>) -> Response {
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

/// Only a process on this host may tell the peer to leave (`auth::Access::Stop`).
pub(super) async fn leave(State(st): State<AppState>) -> Result<StatusCode, ApiError> {
    tracing::info!("leave requested over HTTP");
    st.shutdown.cancel();
    Ok(StatusCode::ACCEPTED)
}
