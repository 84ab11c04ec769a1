//! `POST /api/session` and `DELETE /api/session`: the page trades the token for a session
//! ([`super::session`]) and ends it.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::context::LoginRefused;
use crate::http::auth;
use crate::http::error::ApiError;
use crate::http::state::AppState;

#[derive(Deserialize)]
pub(super) struct Login {
    token: String,
}

/// `POST /api/session` `{"token": "..."}`: a session cookie for an accepted token. With
/// authentication off there is nothing to log into: 204.
pub(super) async fn login(
    State(st): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(msg) = auth::cross_site(&Method::POST, &headers) {
        return ApiError::new(StatusCode::FORBIDDEN, msg).into_response();
    }
    let Some(tokens) = &st.tokens else {
        return StatusCode::NO_CONTENT.into_response();
    };
    if let Err(why) = st.web.logins.check(from.ip()) {
        let msg = match why {
            LoginRefused::Address => "too many logins from this address; retry in a minute",
            LoginRefused::InAll => "too many logins to this peer; retry in a minute",
        };
        return ApiError::new(StatusCode::TOO_MANY_REQUESTS, msg).into_response();
    }
    let Ok(login) = serde_json::from_slice::<Login>(&body) else {
        return ApiError::new(StatusCode::BAD_REQUEST, "expected {\"token\": \"...\"}")
            .into_response();
    };
    let bearer = format!("Bearer {}", login.token);
    if !tokens.accepts_header(Some(bearer.as_bytes())) {
        return ApiError::new(StatusCode::UNAUTHORIZED, "that is not this network's token")
            .into_response();
    }
    let Some(id) = st.web.sessions.create(from.ip()) else {
        return ApiError::internal("no randomness for a session id").into_response();
    };
    let cookie = st.web.sessions.set_cookie(&id);
    match HeaderValue::from_str(&cookie) {
        Ok(v) => (StatusCode::NO_CONTENT, [(header::SET_COOKIE, v)]).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// `DELETE /api/session`: ends the session (server and browser).
pub(super) async fn logout(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(msg) = auth::cross_site(&Method::DELETE, &headers) {
        return ApiError::new(StatusCode::FORBIDDEN, msg).into_response();
    }
    st.web.sessions.end(&headers);
    match HeaderValue::from_str(&st.web.sessions.clear_cookie()) {
        Ok(v) => (StatusCode::NO_CONTENT, [(header::SET_COOKIE, v)]).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}
