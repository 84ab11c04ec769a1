//! Wiring: one listener for gRPC (tracker API, health) and HTTP/1.1 (`/metrics`), the lease
//! sweeper, health transitions and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use p2p_common::proto::tracker_service_server::TrackerServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;

use crate::config::{StoreKind, TrackerConfig};
use crate::metrics::Metrics;
use crate::registry::{Limits, Registry};
use crate::service::TrackerApi;
use crate::store::{MemoryStore, RedisOptions, RedisStore, Store};

/// A running tracker: its bound address and a way to stop it.
pub struct Running {
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Drains and stops the server; resolves when it has.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await.context("tracker task panicked")?
    }

    /// Resolves when the server stops on its own (it only does on error).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("tracker task panicked")?
    }
}

/// Binds `cfg.server.listen` and serves in the background.
pub async fn start(cfg: TrackerConfig) -> anyhow::Result<Running> {
    let listener = TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
    start_on(cfg, listener).await
}

pub async fn start_on(cfg: TrackerConfig, listener: TcpListener) -> anyhow::Result<Running> {
    let local_addr = listener.local_addr()?;
    let store: Arc<dyn Store> = match cfg.registry.store {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Redis => {
            // rediss:// uses rustls with the process-wide provider.
            p2p_common::tls::install_provider();
            let password = cfg
                .registry
                .redis_password()
                .map_err(|e| anyhow::anyhow!("registry.redis_password_file: {e}"))?;
            Arc::new(RedisStore::new(RedisOptions {
                url: cfg.registry.redis_url.clone(),
                password,
                prefix: cfg.registry.redis_prefix.clone(),
                timeout: cfg.registry.redis_timeout,
            })?)
        }
    };
    let registry = Arc::new(
        Registry::new(
            store,
            cfg.registry.lease_ttl,
            Limits {
                max_page_size: cfg.registry.max_page_size,
                max_files_per_peer: cfg.registry.max_files_per_peer,
                max_files_per_request: cfg.registry.max_files_per_request,
                holders_per_answer: cfg.registry.holders_per_answer,
                holders_per_match: cfg.registry.holders_per_match,
                max_page_bytes: cfg.server.max_message_bytes / 2,
                ..Limits::default()
            },
        )
        .with_quota(cfg.registry.quota()),
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::NotServing).await;

    let metrics = Metrics::new();
    let tokens = cfg.auth.tokens().context("cannot load the auth tokens")?;
    let tls = cfg
        .tls
        .server_config()
        .context("cannot load the TLS files")?;
    let api = TrackerServiceServer::new(TrackerApi::new(registry.clone(), metrics.clone()))
        .max_decoding_message_size(cfg.server.max_message_bytes)
        .max_encoding_message_size(cfg.server.max_message_bytes);
    let api =
        tonic::service::interceptor::InterceptedService::new(api, RequireToken(tokens.clone()));
    let scrape = {
        let (metrics, registry) = (metrics.clone(), registry.clone());
        let guard = tokens.clone().filter(|_| cfg.auth.protect_metrics);
        move |headers: axum::http::HeaderMap| async move {
            use axum::response::IntoResponse;
            let auth = headers
                .get(axum::http::header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            if guard.as_ref().is_some_and(|t| !t.accepts_header(auth)) {
                return axum::http::StatusCode::UNAUTHORIZED.into_response();
            }
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    p2p_common::metrics::CONTENT_TYPE,
                )],
                metrics.render(&registry).await,
            )
                .into_response()
        }
    };
    let router = tonic::service::Routes::new(api)
        .add_service(health_service)
        .into_axum_router()
        .route("/metrics", axum::routing::get(scrape))
        .fallback(unknown_path);

    let (stop, mut stopped) = watch::channel(false);
    let sweeper = tokio::spawn(sweep_loop(
        registry.clone(),
        metrics.lease_expirations.clone(),
        stopped.clone(),
    ));

    let (mut cut, grace) = (stopped.clone(), cfg.server.shutdown_grace);
    let opts = p2p_common::serve::Options {
        tls,
        header_timeout: cfg.server.header_timeout,
        idle_timeout: cfg.server.idle_timeout,
        ..Default::default()
    };
    let readiness = tokio::spawn(readiness_loop(
        registry.clone(),
        health.clone(),
        stopped.clone(),
    ));
    let task = tokio::spawn(async move {
        // Ready at once when the store answers; otherwise the readiness loop says when it does.
        match registry.store().ping().await {
            Ok(()) => set_health(&health, ServingStatus::Serving).await,
            Err(e) => tracing::warn!(error = %e, "store unreachable at start: not ready"),
        }
        tracing::info!(%local_addr, "tracker listening");

        let drain = {
            let health = health.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
                set_health(&health, ServingStatus::NotServing).await;
                tracing::info!("tracker draining");
            }
        };
        p2p_common::serve::warn_if_plaintext(local_addr, opts.tls.is_some());
        let stopping = async move {
            let _ = cut.wait_for(|s| *s).await;
        };
        p2p_common::serve::within_grace(
            p2p_common::serve::serve(listener, router, opts, drain),
            stopping,
            grace,
        )
        .await;
        sweeper.abort();
        readiness.abort();
        Ok(())
    });
    Ok(Running {
        local_addr,
        stop,
        task,
    })
}

/// Unknown paths: gRPC calls get UNIMPLEMENTED as gRPC clients expect, anything else an HTTP
/// 404 (a plain 200 with `grpc-status: 12` reads as success to HTTP clients). The 404 waits
/// for a small request body first: answering and closing while a client still writes (a
/// `put` aimed at the tracker's port) cuts its upload with a broken pipe before it can read
/// the answer, and it would report that instead of the 404.
async fn unknown_path(request: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    const DRAIN_BYTES: usize = 1 << 20;
    const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);
    let grpc = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if grpc {
        let (parts, ()) = tonic::Status::unimplemented("")
            .into_http::<()>()
            .into_parts();
        axum::response::Response::from_parts(parts, axum::body::Body::empty())
    } else {
        let drain = axum::body::to_bytes(request.into_body(), DRAIN_BYTES);
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        (axum::http::StatusCode::NOT_FOUND, "not found\n").into_response()
    }
}

/// Rejects tracker calls without an accepted bearer token (when tokens are configured).
/// Health is a separate service and stays open.
#[derive(Clone)]
struct RequireToken(Option<p2p_common::auth::Tokens>);

impl tonic::service::Interceptor for RequireToken {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        match &self.0 {
            Some(tokens)
                if !tokens
                    .accepts_header(req.metadata().get("authorization").map(|v| v.as_bytes())) =>
            {
                Err(tonic::Status::unauthenticated(
                    "missing or invalid bearer token (set auth.token or auth.token_file)",
                ))
            }
            _ => Ok(req),
        }
    }
}

/// The same status for the whole server ("") and the tracker service.
async fn set_health(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    health
        .set_service_status(
            <TrackerServiceServer<TrackerApi> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
    health.set_service_status("", status).await;
}

/// Ready while the store answers: a tracker whose Redis is gone leaves the Service's endpoints
/// (and comes back when Redis does) instead of failing every RPC it is sent.
async fn readiness_loop(
    registry: Arc<Registry>,
    health: tonic_health::server::HealthReporter,
    mut stopped: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ready = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let ok = match registry.store().ping().await {
            Ok(()) => true,
            Err(e) => {
                if ready != Some(false) {
                    tracing::warn!(error = %e, "store unreachable: not ready");
                }
                false
            }
        };
        if ready != Some(ok) {
            if ok && ready.is_some() {
                tracing::info!("store reachable again: ready");
            }
            let status = if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            // Draining wins: a stopping tracker stays NOT_SERVING.
            if !*stopped.borrow() {
                set_health(&health, status).await;
            }
            ready = Some(ok);
        }
    }
}

async fn sweep_loop(
    registry: Arc<Registry>,
    expirations: prometheus::IntCounter,
    mut stopped: watch::Receiver<bool>,
) {
    let every = (registry.ttl() / 2).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Entries (peers, files, partial holdings) at most since memory was last given back.
    let mut high = 0usize;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        match registry.sweep().await {
            Ok(0) => {}
            Ok(n) => {
                expirations.inc_by(n as u64);
                tracing::info!(expired = n, "swept expired peers");
            }
            Err(e) => tracing::warn!(error = %e, "lease sweep failed"),
        }
        if let Ok(c) = registry.counts().await {
            let now = c.peers + c.files + c.partial_holders;
            high = high.max(now);
            // A tenth of what was held went (leases ended, peers left): hand the freed pages
            // back to the system, which glibc's allocator otherwise keeps.
            if high >= TRIM_AFTER && now <= high - high / 10 {
                high = now;
                let _ = tokio::task::spawn_blocking(release_memory).await;
            }
        }
    }
}

/// Entries that must have been freed before the allocator is asked to return memory.
const TRIM_AFTER: usize = 10_000;

/// Returns the allocator's free pages to the system (glibc keeps them in its arenas).
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; no pointer is passed.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Serves until `signal` resolves, then drains.
pub async fn run(cfg: TrackerConfig, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
    let Running { stop, mut task, .. } = start(cfg).await?;
    tokio::select! {
        () = signal => {
            let _ = stop.send(true);
            task.await.context("tracker task panicked")?
        }
        r = &mut task => r.context("tracker task panicked")?,
    }
}
