//! Several tracker endpoints behind one client: `tracker.endpoint` may list replicas separated
//! by commas. Calls go to one of them; when it cannot be reached or answers UNAVAILABLE (a
//! tracker draining, or one whose store is down), the same call is sent to the next, and later
//! calls stay there. Everything above (the CLI, the peer's membership loop) sees one channel.
//!
//! Tracker calls are unary and small (bounded by `max_files_per_request`), so the request body
//! is buffered to be re-sent. A call is only re-sent after a failure that says the tracker did
//! not act on it (no connection, or UNAVAILABLE); a tracker that dies mid-call may have acted,
//! and the re-sent call is then judged by the next one like any retry (a Register re-sent this
//! way finds its id taken until the lease it just got ends, as after any lost answer).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full};
use tonic::body::Body;
use tonic::transport::Channel;
use tower::{BoxError, ServiceExt};

/// The entries of a comma-separated endpoint list, trimmed, empty ones dropped.
pub fn split_endpoints(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

#[derive(Clone)]
pub struct FailoverChannel {
    channels: Arc<[Channel]>,
    current: Arc<AtomicUsize>,
}

impl FailoverChannel {
    /// None when `channels` is empty.
    pub fn new(channels: Vec<Channel>) -> Option<Self> {
        if channels.is_empty() {
            return None;
        }
        Some(Self {
            channels: channels.into(),
            current: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Index (in the configured list) of the endpoint calls go to now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }
}

/// UNAVAILABLE as a trailers-only answer: the tracker refused before doing anything.
fn unavailable(resp: &http::Response<Body>) -> bool {
    resp.headers()
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"14")
}

type CallFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, BoxError>> + Send + 'static>>;

impl tower::Service<http::Request<Body>> for FailoverChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = CallFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is that of the channel picked in `call`, awaited there.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.map_err(BoxError::from)?.to_bytes();
            let n = this.channels.len();
            let start = this.current();
            let mut last = None;
            for step in 0..n {
                let idx = (start + step) % n;
                let mut attempt = http::Request::new(Body::new(Full::new(bytes.clone())));
                *attempt.method_mut() = parts.method.clone();
                *attempt.uri_mut() = parts.uri.clone();
                *attempt.version_mut() = parts.version;
                *attempt.headers_mut() = parts.headers.clone();
                match this.channels[idx].clone().oneshot(attempt).await {
                    Ok(resp) if !unavailable(&resp) => {
                        this.current.store(idx, Ordering::Relaxed);
                        return Ok(resp);
                    }
                    Ok(resp) => last = Some(Ok(resp)),
                    Err(e) => last = Some(Err(BoxError::from(e))),
                }
            }
            // All failed: start the next call one further on.
            this.current.store((start + 1) % n, Ordering::Relaxed);
            match last {
                Some(result) => result,
                None => Err("no tracker endpoint configured".into()),
            }
        })
    }
}
