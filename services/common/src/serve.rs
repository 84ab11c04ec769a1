//! The listener both services share: HTTP/1.1 and HTTP/2 (h2c, or h2 over TLS) on one port,
//! optional TLS, a deadline on request headers and TLS handshakes (a slow client cannot hold a
//! connection open by trickling bytes), and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How connections are handled.
#[derive(Clone)]
pub struct Options {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Time a client has to send a request's headers (and to finish a TLS handshake).
    pub header_timeout: Duration,
    /// Time an HTTP/2 connection may stay silent before a ping must be answered.
    pub keepalive: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tls: None,
            header_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(30),
        }
    }
}

/// Serves `router` until `shutdown` resolves, then stops accepting and waits for open
/// connections to finish (callers bound that wait). Handlers see `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    opts: Options,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
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
    let builder = Arc::new(builder);
    let acceptor = opts.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);

    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(remote));
                req
            })
            .map_err(|e: Infallible| match e {});
        let service = TowerToHyperService::new(service);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let handshake = opts.header_timeout;
        tokio::spawn(async move {
            match acceptor {
                None => {
                    // hyper's header deadline starts with the first byte: a client that connects
                    // and sends nothing is cut here instead.
                    let mut first = [0u8; 1];
                    match tokio::time::timeout(handshake, stream.peek(&mut first)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => {
                            tracing::debug!(%remote, "connection idle before its first request");
                            return;
                        }
                    }
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
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
