//! The web page every peer serves at `/`: a page and its assets, embedded in the binary (no
//! build step, nothing loaded from outside the peer, a Content-Security-Policy that says so),
//! and the JSON it reads under `/api/` (`api`), sessions for it when authentication is on
//! (`session`), and what is moving now (`live`).

mod api;
pub(super) mod context;
mod live;
mod login;
pub(super) mod session;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub(crate) use context::Web;

use super::state::AppState;
use crate::wire::route;

/// Nothing from anywhere but this peer; no inline script or style; no framing.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// The page and its assets: open to anyone (the page asks for the token itself).
pub(crate) fn open_routes() -> Router<AppState> {
    Router::new()
        .route(route::PAGE, get(page))
        .route(route::ASSET, get(asset))
        .route(route::SESSION, post(login::login).delete(login::logout))
}

/// The page's JSON: behind the share's access rule.
pub(crate) fn share_routes() -> Router<AppState> {
    Router::new()
        .route(route::STATUS, get(api::status))
        .route(route::SHARE, get(api::share))
        .route(route::SEARCH, get(api::search))
        .route(route::TRANSFERS, get(api::transfers))
        .route(route::EVENTS, get(api::events))
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
];

/// Headers every page answer carries.
fn guarded(content_type: &'static str, body: &'static str, cache: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

async fn page() -> Response {
    guarded("text/html; charset=utf-8", INDEX_HTML, "no-cache")
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => guarded(content_type, body, "no-cache"),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
