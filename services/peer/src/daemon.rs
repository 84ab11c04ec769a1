//! Downloads the running peer makes on request: `POST /downloads` (what `p2p-peer get --via`
//! calls) and the serving menu's get. Both go through [`Daemon::download`]: into this peer's
//! share, with its partials registry so that verified pieces are served while it downloads.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use p2p_common::auth::Tokens;

use crate::client::{self, Destination, Placed};
use crate::error::{Error, Result};
use crate::metrics::{DownloadMeter, Metrics};
use crate::share::Digest;
use crate::store::Store;
use crate::swarm::{Report, Swarm, Target};
use crate::tracker::Tracker;
use crate::wire::download::{self as wire, DownloadRequest, Downloaded, Event};

/// Progress lines are sent at most this often...
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// ...and at least this often, so that a quiet download (waiting for a lock, a slow source)
/// does not look like a dead connection to the client.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);

/// What the peer downloads with. Built once by the server, shared by the route and the menu.
#[derive(Clone)]
pub struct Daemon {
    pub store: Arc<Store>,
    pub swarm: Swarm,
    pub tracker: Tracker,
    pub metrics: Metrics,
    /// Accepted bearer tokens; None: authentication off.
    pub tokens: Option<Tokens>,
}

/// Who may make this peer download: a client with an accepted token or, when authentication
/// is off, a client on this host. Anyone else could fill the disk with whatever the network
/// holds. `Err` is the status and message to answer.
pub fn admit(
    tokens: Option<&Tokens>,
    authorization: Option<&[u8]>,
    from: IpAddr,
) -> Result<(), (StatusCode, &'static str)> {
    match tokens {
        Some(t) if t.accepts_header(authorization) => Ok(()),
        Some(_) => Err((
            StatusCode::UNAUTHORIZED,
            "missing or invalid bearer token (set auth.token or auth.token_file)",
        )),
        None if from.to_canonical().is_loopback() => Ok(()),
        None => Err((
            StatusCode::FORBIDDEN,
            "downloads may be requested only from this host while authentication is off (set auth.token to allow other hosts with a token)",
        )),
    }
}

impl Daemon {
    /// Downloads `name` (the copy with `sha256`, when given) into this peer's share and
    /// publishes it, telling `events` how it goes. Already shared: done at once, "identical".
    pub async fn download(
        &self,
        name: &str,
        sha256: Option<&Digest>,
        events: &(dyn Fn(Event) + Send + Sync),
    ) -> Result<Downloaded> {
        let target = client::resolve(&self.tracker, name, sha256).await?;
        let done = |status: Placed| Downloaded {
            name: target.name.clone(),
            sha256: target.sha256,
            size: target.size,
            status,
        };
        if let Some(entry) = self.store.get(&target.name).await {
            if entry.sha256 != target.sha256 {
                return Err(Error::Refused(format!(
                    "a different file named {} is already shared here; kept it",
                    target.name
                )));
            }
            events(start(&target, target.size));
            return Ok(done(Placed::Identical));
        }
        let progress = EventProgress::new(&target, &self.metrics, events);
        events(start(&target, 0));
        let _active = self.metrics.transfer("download");
        let dest = Destination::Share(&self.store);
        let fetch = client::get(&self.swarm, &target, &dest, &progress);
        tokio::pin!(fetch);
        let mut keepalive = tokio::time::interval(KEEPALIVE_EVERY);
        let result = loop {
            tokio::select! {
                r = &mut fetch => break r,
                _ = keepalive.tick() => progress.keepalive(),
            }
        };
        let label = match &result {
            Ok(_) => "ok",
            Err(Error::Integrity(_)) => "integrity_failure",
            Err(_) => "error",
        };
        self.metrics.downloads.with_label_values(&[label]).inc();
        result.map(done)
    }

    /// `POST /downloads`, ready to merge into the peer's router.
    pub fn routes(self) -> Router {
        let metrics = self.metrics.clone();
        Router::new()
            .route("/downloads", post(post_downloads))
            .layer(axum::middleware::from_fn_with_state(
                metrics,
                crate::metrics::track,
            ))
            .with_state(self)
    }
}

fn start(t: &Target, have: u64) -> Event {
    Event::Start {
        name: t.name.clone(),
        sha256: t.sha256,
        size: t.size,
        have,
    }
}

fn json_error(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": msg.into() })),
    )
        .into_response()
}

async fn post_downloads(
    State(d): State<Daemon>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if let Err((status, msg)) = admit(d.tokens.as_ref(), auth, from.ip()) {
        let mut resp = json_error(status, msg);
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        return resp;
    }
    let req: DownloadRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"name\": \"...\", \"sha256\": \"...\" (optional)}}: {e}"),
            );
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
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from(event.to_line())),
            rx,
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, wire::CONTENT_TYPE)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(lines))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Streams a download's events (progress lines at most every [`PROGRESS_EVERY`], in their
/// wire form) and counts them in the peer's download metrics.
struct EventProgress<'a> {
    size: u64,
    /// Verified bytes.
    have: AtomicU64,
    /// Holders in use, as the engine last said.
    sources: AtomicU64,
    last: Mutex<Instant>,
    meter: DownloadMeter<'a>,
    events: &'a (dyn Fn(Event) + Send + Sync),
}

impl<'a> EventProgress<'a> {
    fn new(t: &Target, metrics: &'a Metrics, events: &'a (dyn Fn(Event) + Send + Sync)) -> Self {
        Self {
            size: t.size,
            have: AtomicU64::new(0),
            sources: AtomicU64::new(0),
            last: Mutex::new(Instant::now()),
            meter: DownloadMeter::new(metrics),
            events,
        }
    }

    /// Sends a progress line if none went out for `every`.
    fn report(&self, every: Duration) {
        let due = match self.last.lock() {
            Ok(mut last) if last.elapsed() >= every => {
                *last = Instant::now();
                true
            }
            _ => false,
        };
        if due {
            (self.events)(Event::Progress {
                have: self.have.load(Ordering::Relaxed).min(self.size),
                size: self.size,
                sources: self.sources.load(Ordering::Relaxed),
            });
        }
    }

    fn keepalive(&self) {
        self.report(KEEPALIVE_EVERY);
    }
}

impl Report for EventProgress<'_> {
    fn event(&self, e: Event) {
        self.meter.observe(&e);
        match e {
            // The bytes verified when a source starts (a resume, at first).
            Event::Source { have, .. } => {
                self.have.fetch_max(have, Ordering::Relaxed);
                self.report(PROGRESS_EVERY);
            }
            Event::Progress { have, sources, .. } => {
                self.have.fetch_max(have, Ordering::Relaxed);
                self.sources.store(sources, Ordering::Relaxed);
                self.report(PROGRESS_EVERY);
            }
            Event::Verified { size } => {
                self.sources.store(0, Ordering::Relaxed);
                self.have.store(size, Ordering::Relaxed);
                if let Some(line) = (Event::Verified { size }).on_wire() {
                    (self.events)(line);
                }
            }
            other => {
                if let Some(line) = other.on_wire() {
                    (self.events)(line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        let auth = p2p_common::auth::AuthConfig {
            token: "right-token-0123456789".into(),
            ..Default::default()
        };
        auth.tokens().unwrap().unwrap()
    }

    #[test]
    fn without_auth_only_this_host_may_ask() {
        for ip in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(admit(None, None, ip.parse().unwrap()), Ok(()), "{ip}");
        }
        for ip in ["10.0.0.5", "192.168.1.2", "::ffff:10.0.0.5", "2001:db8::1"] {
            let (status, msg) = admit(None, None, ip.parse().unwrap()).unwrap_err();
            assert_eq!(status, StatusCode::FORBIDDEN, "{ip}");
            assert!(msg.contains("only from this host"), "{msg}");
        }
    }

    #[test]
    fn with_auth_the_token_decides_wherever_the_client_is() {
        let t = tokens();
        for ip in ["10.0.0.5", "127.0.0.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                admit(Some(&t), Some(b"Bearer right-token-0123456789"), ip),
                Ok(())
            );
            assert_eq!(
                admit(Some(&t), Some(b"Bearer wrong-token"), ip)
                    .unwrap_err()
                    .0,
                StatusCode::UNAUTHORIZED
            );
            // Loopback is no way around a configured token.
            assert_eq!(
                admit(Some(&t), None, ip).unwrap_err().0,
                StatusCode::UNAUTHORIZED
            );
        }
    }
}
