//! The peer's HTTP API: the router. Routes live in rooms of their own: `files` (listing and
//! named downloads), `blobs` (bytes and pieces by digest, for swarm downloads, with the upload
//! policy of `seeding`), `upload`, `downloads` (this peer downloads on request), `control`
//! (readiness, metrics, leave), `web` (the page and its JSON); `listing` writes the share as
//! JSON for `files` and `web`; who may call which is `auth`'s
//! one rule; every body goes out through `body`. The paths are [`crate::wire::route`]'s.

mod auth;
mod blobs;
mod body;
mod control;
mod downloads;
mod error;
mod files;
pub(crate) mod host;
mod listing;
pub(crate) mod seeding;
mod state;
mod upload;
mod web;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};

pub(crate) use state::{AppState, upload_limiter};
pub(crate) use web::Web;

use crate::wire::route;
use auth::Access;

pub(crate) fn router(state: AppState) -> Router {
    let guard = |access: Access| {
        axum::middleware::from_fn_with_state(
            (state.tokens.clone(), state.web.sessions.clone(), access),
            auth::require,
        )
    };
    let mut share = Router::new()
        .route(route::FILES, get(files::list_files))
        .route(route::FILE, get(files::get_file))
        .route(route::BLOB, get(blobs::get_blob))
        .route(route::MANIFEST, get(blobs::get_manifest))
        .route(route::BITFIELD, get(blobs::get_bitfield))
        .route(route::PIECE, get(blobs::get_piece))
        .route(
            route::UPLOAD,
            post(upload::upload).layer(DefaultBodyLimit::disable()),
        )
        .merge(web::share_routes());
    let mut open = Router::new()
        .route(route::HEALTHZ, get(control::healthz))
        .merge(web::open_routes());
    if state.protect_metrics {
        share = share.route(route::METRICS, get(control::metrics));
    } else {
        open = open.route(route::METRICS, get(control::metrics));
    }
    let act = Router::new()
        .route(route::DOWNLOADS, post(downloads::post_downloads))
        .route(route::DOWNLOAD, delete(downloads::cancel))
        .route(route::DOWNLOAD_PAUSE, post(downloads::pause))
        .route(route::DOWNLOAD_RESUME, post(downloads::resume))
        // Same path as `GET /files/{name}` (the share's rule); removing is acting.
        .route(route::FILE, delete(files::delete_file))
        .route_layer(guard(Access::Act));
    let stop = Router::new()
        .route(route::LEAVE, post(control::leave))
        .route_layer(guard(Access::Stop));
    // `layer`, not `route_layer`: requests that match no route (404) are counted too.
    share
        .route_layer(guard(Access::Share))
        .merge(act)
        .merge(stop)
        .merge(open)
        .layer(axum::middleware::from_fn_with_state(
            state.web.hosts.clone(),
            host::check,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}
