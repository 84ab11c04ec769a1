//! Fake holders for tests: small axum servers on 127.0.0.1 that register with a real tracker
//! over gRPC like a peer and answer the swarm routes (`/blobs/{sha256}/...`) the way a test
//! wants, counting what they were asked and what they sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use p2p_common::proto::tracker_service_client::TrackerServiceClient;
use p2p_common::proto::{AnnounceRequest, FileInfo, RegisterRequest};
use p2p_peer::share::{Digest, Manifest};
use p2p_peer::wire::blobs::ManifestJson;

use super::{bytes, sha256_hex};

/// A file as holders describe it.
#[derive(Clone)]
pub struct File {
    pub name: String,
    pub content: Vec<u8>,
    pub sha: String,
    pub root: String,
    pub manifest: serde_json::Value,
}

pub fn file(name: &str, len: usize, seed: u64) -> File {
    let content = bytes(len, seed);
    let m = manifest_of(&content);
    let sha = sha256_hex(&content);
    File {
        name: name.into(),
        root: m.root().to_hex(),
        manifest: manifest_answer(&sha, &m),
        content,
        sha,
    }
}

/// The manifest of `content` as every peer computes it.
pub fn manifest_of(content: &[u8]) -> Manifest {
    p2p_peer::share::pieces::hash_bytes(content).manifest
}

/// A manifest of `size` bytes whose chain is `fill` at every piece's end but the last, where it
/// ends at the digest `sha` (hex) as every manifest a downloader accepts must: consistent with
/// itself, describing no real file (no bytes can pass its last piece).
pub fn made_up_manifest(size: u64, fill: u8, sha: &str) -> Manifest {
    let ps = p2p_peer::share::pieces::piece_size(size);
    let count = p2p_peer::share::pieces::piece_count(size, ps) as usize;
    let mut values = vec![Digest([fill; 32]); count];
    if let Some(last) = values.last_mut() {
        *last = sha.parse().unwrap();
    }
    Manifest::new(size, values).unwrap()
}

/// What a peer answers `GET /blobs/{sha}/manifest` with for `m`: the wire type itself, so the
/// fakes follow its form.
pub fn manifest_answer(sha: &str, m: &Manifest) -> serde_json::Value {
    let sha: Digest = sha.parse().unwrap();
    serde_json::to_value(ManifestJson::new(sha, m)).unwrap()
}

/// Counts what a fake was asked and what it sent.
#[derive(Clone, Default)]
pub struct Seen {
    pub requests: Arc<AtomicU64>,
    pub body_bytes: Arc<AtomicU64>,
}

impl Seen {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Ordering::SeqCst)
    }
}

/// A body of `first` then filler, up to 1 GiB, counting what was actually produced: a reader
/// that stops early stops it.
pub fn endless(seen: &Seen, first: &[u8], filler: u8) -> Body {
    let seen = seen.clone();
    let first = bytes::Bytes::copy_from_slice(first);
    let chunks = futures::stream::unfold(0u64, move |n| {
        let (seen, first) = (seen.clone(), first.clone());
        async move {
            if n >= 1 << 30 {
                return None;
            }
            let chunk = if n == 0 {
                first
            } else {
                bytes::Bytes::from(vec![filler; 64 << 10])
            };
            seen.body_bytes
                .fetch_add(chunk.len() as u64, Ordering::SeqCst);
            let next = n + chunk.len() as u64;
            Some((Ok::<_, std::io::Error>(chunk), next))
        }
    });
    Body::from_stream(chunks)
}

/// The fake holder's answer to every request it gets.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A fake holder: `manifest`, `pieces` and `bitfield` answer those routes (absent: 404), and
/// every request is counted.
pub fn holder_app(
    seen: &Seen,
    manifest: impl Fn() -> Response + Clone + Send + Sync + 'static,
    piece: impl Fn() -> Response + Clone + Send + Sync + 'static,
    bitfield: impl Fn() -> Response + Clone + Send + Sync + 'static,
) -> Router {
    let counted = seen.clone();
    Router::new()
        .route(
            "/blobs/{sha}/manifest",
            get(move || {
                let m = manifest.clone();
                async move { m() }
            }),
        )
        .route(
            "/blobs/{sha}/pieces/{index}",
            get(move || {
                let p = piece.clone();
                async move { p() }
            }),
        )
        .route(
            "/blobs/{sha}/bitfield",
            get(move || {
                let b = bitfield.clone();
                async move { b() }
            }),
        )
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                counted.requests.fetch_add(1, Ordering::SeqCst);
                next.run(req)
            },
        ))
}

pub fn json_answer(v: &serde_json::Value) -> Response {
    axum::Json(v.clone()).into_response()
}

pub fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

pub fn bytes_answer(b: &[u8]) -> Response {
    Response::new(Body::from(b.to_vec()))
}

pub async fn tracker_client(
    tracker: SocketAddr,
) -> TrackerServiceClient<tonic::transport::Channel> {
    TrackerServiceClient::connect(format!("http://{tracker}"))
        .await
        .unwrap()
}

/// Registers `id` at `addr` as a complete holder of `f`, claiming `size` bytes.
pub async fn register(tracker: SocketAddr, id: &str, addr: SocketAddr, f: &File, size: u64) {
    tracker_client(tracker)
        .await
        .register(RegisterRequest {
            peer_id: id.into(),
            address: addr.to_string(),
            files: vec![FileInfo {
                name: f.name.clone(),
                size,
                sha256: f.sha.clone(),
                pieces_root: f.root.clone(),
            }],
            lease_secret: String::new(),
        })
        .await
        .unwrap();
}

/// Registers `id` at `addr` holding nothing complete, then announces a partial copy of `f`.
pub async fn register_partial(tracker: SocketAddr, id: &str, addr: SocketAddr, f: &File) {
    let mut c = tracker_client(tracker).await;
    let secret = c
        .register(RegisterRequest {
            peer_id: id.into(),
            address: addr.to_string(),
            files: vec![],
            lease_secret: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .lease_secret;
    c.announce(AnnounceRequest {
        peer_id: id.into(),
        lease_secret: secret,
        partial_added: vec![FileInfo {
            name: f.name.clone(),
            size: f.content.len() as u64,
            sha256: f.sha.clone(),
            pieces_root: f.root.clone(),
        }],
        ..Default::default()
    })
    .await
    .unwrap();
}

/// A holder of `f` whose piece answers wait for `release` (up to 20 s): a download that stays
/// running while the test looks.
pub fn slow_holder(seen: &Seen, files: Vec<File>, release: Arc<tokio::sync::Notify>) -> Router {
    let by_sha: Arc<Vec<File>> = Arc::new(files);
    let (m, p) = (Arc::clone(&by_sha), Arc::clone(&by_sha));
    let counted = seen.clone();
    Router::new()
        .route(
            "/blobs/{sha}/manifest",
            get(
                move |axum::extract::Path(sha): axum::extract::Path<String>| {
                    let m = Arc::clone(&m);
                    async move {
                        match m.iter().find(|f| f.sha == sha) {
                            Some(f) => json_answer(&f.manifest),
                            None => not_found(),
                        }
                    }
                },
            ),
        )
        .route(
            "/blobs/{sha}/pieces/{index}",
            get(
                move |axum::extract::Path((sha, _)): axum::extract::Path<(String, u32)>| {
                    let (p, release) = (Arc::clone(&p), Arc::clone(&release));
                    async move {
                        let _ =
                            tokio::time::timeout(Duration::from_secs(20), release.notified()).await;
                        match p.iter().find(|f| f.sha == sha) {
                            Some(f) => bytes_answer(&f.content),
                            None => not_found(),
                        }
                    }
                },
            ),
        )
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                counted.requests.fetch_add(1, Ordering::SeqCst);
                next.run(req)
            },
        ))
}
