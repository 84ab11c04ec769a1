//! The listener both services share: HTTP/1.1 and HTTP/2 (h2c, or h2 over TLS) on one port,
//! optional TLS, and the limits that keep it serving under abuse: one deadline from accept to
//! the first request (TLS handshake, first byte, protocol detection and headers), idle
//! connections closed, at most as many connections as the open-file limit allows, and graceful
//! shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// How connections are handled.
#[derive(Clone)]
pub struct Options {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Time from accepting a connection to its first request's headers: the TLS handshake,
    /// the first byte, HTTP/1-vs-2 detection and the headers all fit in it. Later HTTP/1
    /// requests get it for their headers too.
    pub header_timeout: Duration,
    /// Time an HTTP/2 connection may stay silent before a ping must be answered.
    pub keepalive: Duration,
    /// A connection with no request in flight for this long is closed (answering pings does
    /// not count as activity).
    pub idle_timeout: Duration,
    /// Connections served at once; further ones wait in the kernel's backlog. None: derived
    /// from the open-file limit (see [`connection_budget`]).
    pub max_connections: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tls: None,
            header_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: None,
        }
    }
}

/// Raises this process's soft open-file limit to its hard limit (a no-op when it already is,
/// or where that is refused) and returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: setrlimit only reads the struct we own. An infinite hard limit is
            // refused (above fs.nr_open): the soft limit then stays as it was.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    }
    #[cfg(not(unix))]
    {
        1024
    }
}

/// Connections a process with `fd_limit` open files can serve while keeping descriptors for
/// what each connection may open besides its socket (a file served or received), for outgoing
/// calls and for the runtime itself.
pub fn connection_budget(fd_limit: u64) -> usize {
    const RESERVED: u64 = 64;
    let budget = fd_limit.saturating_sub(RESERVED) / 2;
    usize::try_from(budget.clamp(8, u64::from(u32::MAX / 2))).unwrap_or(8)
}

/// What one connection is doing, for its first-request deadline and its idle timeout. Atomics,
/// and a wake-up only when the connection turns busy or idle: a watch channel written twice per
/// request woke its waiters every time (a few percent of a tracker Search's CPU).
struct Activity {
    in_flight: AtomicUsize,
    served: AtomicBool,
    born: Instant,
    /// Nanoseconds from `born` to the end of the last request; read only while none is in
    /// flight (it is written before the count drops).
    idle_since_ns: AtomicU64,
    turned: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            born: Instant::now(),
            idle_since_ns: AtomicU64::new(0),
            turned: Notify::new(),
        }
    }

    fn idle_since(&self) -> Instant {
        self.born + Duration::from_nanos(self.idle_since_ns.load(Ordering::SeqCst))
    }
}

/// Counts a request (and its response body, which may stream for long) as in flight.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        if !activity.served.load(Ordering::Relaxed) {
            activity.served.store(true, Ordering::Relaxed);
        }
        if activity.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
            activity.turned.notify_waiters();
        }
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let ns = u64::try_from(a.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
        a.idle_since_ns.store(ns, Ordering::SeqCst);
        if a.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            a.turned.notify_waiters();
        }
    }
}

/// A response body that keeps its request in flight until it is sent or dropped.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Resolves once the connection has had no request in flight for `limit`.
async fn idle(activity: &Activity, limit: Duration) {
    loop {
        // Registered before the state is read, so a turn in between is not missed.
        let turned = activity.turned.notified();
        tokio::pin!(turned);
        turned.as_mut().enable();
        if activity.in_flight.load(Ordering::SeqCst) == 0 {
            let since = activity.idle_since();
            tokio::select! {
                () = tokio::time::sleep_until(since + limit) => {
                    // Still idle since then (no request came and went meanwhile).
                    if activity.in_flight.load(Ordering::SeqCst) == 0
                        && activity.idle_since() == since
                    {
                        return;
                    }
                }
                () = &mut turned => {}
            }
        } else {
            turned.await;
        }
    }
}

/// A plaintext or TLS stream, so that one code path serves both.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

struct Shared {
    router: Router,
    builder: auto::Builder<TokioExecutor>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    header_timeout: Duration,
    idle_timeout: Duration,
}

/// Serves one connection until it ends, is cut by a deadline, idles out or shutdown drains it.
async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    remote: SocketAddr,
    mut stopping: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let watched = activity.clone();
    let router = shared.router.clone();
    let service = tower::service_fn(move |mut req: http::Request<Incoming>| {
        let in_flight = InFlight::start(&activity);
        req.extensions_mut().insert(ConnectInfo(remote));
        let router = router.clone();
        async move {
            let resp = router.oneshot(req).await?;
            Ok::<_, Infallible>(resp.map(|body| {
                Body::new(Tracked {
                    body,
                    _in_flight: in_flight,
                })
            }))
        }
    });
    let service = TowerToHyperService::new(service);

    let serve = async {
        let io: Box<dyn Stream> = match &shared.acceptor {
            None => Box::new(stream),
            Some(acceptor) => match acceptor.accept(stream).await {
                Ok(tls) => Box::new(tls),
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
            },
        };
        let conn = shared
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        // Set once the connection is closing because it idled: it gets header_timeout to say
        // goodbye (an HTTP/2 GOAWAY and its ping), then it is dropped.
        let mut cut_at: Option<Instant> = None;
        let mut draining = false;
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stopping.wait_for(|s| *s), if !draining => {
                    draining = true;
                    if cut_at.is_none() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
                () = idle(&watched, shared.idle_timeout), if !draining && cut_at.is_none() => {
                    tracing::debug!(%remote, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    cut_at = Some(Instant::now() + shared.header_timeout);
                }
                () = async {
                    match cut_at {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => return,
            }
        }
    };
    tokio::pin!(serve);
    // One deadline from accept to the first request. hyper's own header timeout starts only
    // once bytes arrive and knows nothing of TLS or of the HTTP/2 preface, so a client that
    // sends nothing, or stops inside the handshake or the preface, is cut here.
    tokio::select! {
        biased;
        () = &mut serve => return,
        () = tokio::time::sleep(shared.header_timeout) => {}
    }
    if !watched.served.load(Ordering::Relaxed) {
        tracing::debug!(%remote, "no request within header_timeout: closing");
        return;
    }
    serve.await;
}

/// Serves `router` until `shutdown` resolves, then stops accepting and waits for open
/// connections to finish (callers bound that wait). Handlers see `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    opts: Options,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(opts.keepalive)
        .keep_alive_timeout(opts.header_timeout);
    let limit = opts.max_connections.unwrap_or_else(|| {
        let fds = raise_fd_limit();
        let limit = connection_budget(fds);
        tracing::info!(
            open_files = fds,
            max_connections = limit,
            "connection limit from the open-file limit"
        );
        limit
    });
    let limit = limit.clamp(1, (u32::MAX / 2) as usize);
    let shared = Arc::new(Shared {
        router,
        builder,
        acceptor: opts.tls.clone().map(tokio_rustls::TlsAcceptor::from),
        header_timeout: opts.header_timeout,
        idle_timeout: opts.idle_timeout,
    });
    // Each connection holds a slot; shutdown waits until it holds them all again.
    let slots = Arc::new(Semaphore::new(limit));
    let (stop, stopping) = watch::channel(false);
    let mut backoff = Duration::from_millis(10);
    let mut full = false;
    tokio::pin!(shutdown);

    loop {
        if slots.available_permits() == 0 && !full {
            tracing::warn!(
                max_connections = limit,
                "connection limit reached: new connections wait"
            );
        }
        full = slots.available_permits() == 0;
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff = Duration::from_millis(10);
                    a
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, retry_in = ?backoff, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (shared, stopping) = (shared.clone(), stopping.clone());
        tokio::spawn(async move {
            connection(shared, stream, remote, stopping).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let _ = slots.acquire_many(limit as u32).await;
}

/// Runs `serve` to its end, but at most `grace` after `stopping` resolves: a client that holds
/// a connection open (a slow transfer, a health Watch) must not hold the process forever.
pub async fn within_grace(
    serve: impl Future<Output = ()>,
    stopping: impl Future<Output = ()>,
    grace: Duration,
) {
    let deadline = async {
        stopping.await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        () = serve => {}
        () = deadline => tracing::warn!(?grace, "shutdown grace elapsed: cutting the connections still open"),
    }
}

/// Logs the warning DESIGN asks for when plaintext is served beyond this host.
pub fn warn_if_plaintext(addr: SocketAddr, tls: bool) {
    if !tls && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "serving without TLS on a non-loopback address; see the README's Security section");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_budget_leaves_descriptors_for_files() {
        assert_eq!(connection_budget(1024), 480);
        assert_eq!(connection_budget(128), 32);
        // Tiny limits still serve a few; huge ones stay countable by the semaphore.
        assert_eq!(connection_budget(10), 8);
        assert!(connection_budget(u64::MAX) <= (u32::MAX / 2) as usize);
    }
}
