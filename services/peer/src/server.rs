//! Wiring of a peer: the share index, the HTTP listener, the tracker membership, the rescan
//! timer, and the order of shutdown (leave the network first, then drain transfers).

use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::PeerConfig;
use crate::daemon::Daemon;
use crate::http::{self, AppState};
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::share::partial::Partials;
use crate::store::Store;
use crate::transfer::Limits;
use crate::transfer::shares::Shares;
use crate::transfer::slots::UploadSlots;

pub struct Running {
    pub local_addr: SocketAddr,
    pub metrics: Metrics,
    pub advertised: String,
    pub store: Arc<Store>,
    /// Downloads in progress in this share: a download registers here to be served and
    /// announced as a partial holder.
    pub partials: Arc<Partials>,
    /// The process's transfer rate limits, shared by what it serves and what it downloads.
    pub limits: Limits,
    pub shutdown: CancellationToken,
    /// Downloads into this peer's share (`POST /downloads`, the serving menu).
    pub daemon: Daemon,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Leaves the network, drains, and stops.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Resolves when the peer stops (after a leave request or an error).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("peer task panicked")?
    }
}

/// The address other peers dial: configured, else the listen address when it is specific,
/// else `POD_IP`, else the local address this host uses to reach the tracker.
pub(crate) fn advertised_address(cfg: &PeerConfig, bound: SocketAddr) -> String {
    if !cfg.peer.advertise_addr.is_empty() {
        return cfg.peer.advertise_addr.clone();
    }
    let port = bound.port();
    let fmt = |ip: std::net::IpAddr| SocketAddr::new(ip, port).to_string();
    if !bound.ip().is_unspecified() {
        return fmt(bound.ip());
    }
    if let Some(ip) = std::env::var("POD_IP")
        .ok()
        .and_then(|s| s.parse::<std::net::IpAddr>().ok())
    {
        return fmt(ip);
    }
    route_to_tracker(&cfg.tracker.endpoint)
        .map(fmt)
        .unwrap_or_else(|| fmt(std::net::Ipv4Addr::LOCALHOST.into()))
}

/// The source address the kernel would pick to reach the tracker (a UDP connect sends nothing).
fn route_to_tracker(endpoint: &str) -> Option<std::net::IpAddr> {
    let authority = endpoint.split("://").nth(1)?.split('/').next()?;
    let target = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .ok()?
        .next()?;
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let sock = UdpSocket::bind(bind).ok()?;
    sock.connect(target).ok()?;
    Some(sock.local_addr().ok()?.ip())
}

pub async fn start(cfg: PeerConfig) -> anyhow::Result<Running> {
    let store = Store::open(&cfg.peer.files_dir).await.with_context(|| {
        format!(
            "cannot use share directory {}",
            cfg.peer.files_dir.display()
        )
    })?;
    store
        .rescan()
        .await
        .context("cannot index the share directory")?;
    let metrics = Metrics::new();
    // Downloads abandoned by a process that died go before anything else starts.
    let ttl = cfg.transfer.partial_ttl;
    sweep_partials(&store.partial_dir(), ttl, &metrics).await;
    let listener = TcpListener::bind(cfg.peer.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.peer.listen))?;
    let local_addr = listener.local_addr()?;
    let advertised = advertised_address(&cfg, local_addr);
    let tls = cfg
        .tls
        .server_config()
        .context("cannot load the TLS files")?;
    p2p_common::serve::warn_if_plaintext(local_addr, tls.is_some());
    let tokens = crate::net::tokens(&cfg)?;
    // One tracker client for the process: membership, the daemon's searches and its swarm.
    let tracker = crate::tracker::Tracker::connect(&cfg)?;
    let shutdown = CancellationToken::new();
    let partials = Partials::new();
    let limits = cfg.transfer.limits();
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let readiness = Arc::new(Readiness::new(reporter).await);

    let membership = Membership {
        peer_id: cfg.peer.id.clone(),
        address: advertised.clone(),
        heartbeat: cfg.tracker.heartbeat_interval,
        client: tracker.grpc(),
        store: store.clone(),
        partials: partials.clone(),
        readiness: readiness.clone(),
        tracker_errors: metrics.tracker_errors.clone(),
        unshared_files: metrics.unshared_files.clone(),
        wait_for_id: cfg.peer.wait_for_id,
    };
    // A peer that cannot hold its id stops (the error is this process's exit code).
    let membership = tokio::spawn({
        let stop = shutdown.clone();
        async move {
            let r = membership.run(stop.clone()).await;
            if r.is_err() {
                stop.cancel();
            }
            r
        }
    });
    let scanner = tokio::spawn(scan_loop(
        store.clone(),
        readiness.clone(),
        cfg.peer.scan_interval,
        shutdown.clone(),
    ));

    let sweeper = tokio::spawn(sweep_loop(
        store.partial_dir(),
        ttl,
        metrics.clone(),
        shutdown.clone(),
    ));

    let daemon = Daemon {
        store: store.clone(),
        swarm: crate::client::swarm(
            &cfg,
            Some(tracker.clone()),
            limits.clone(),
            Some(partials.clone()),
            Some(metrics.clone()),
            Some(advertised.clone()),
        )?,
        tracker,
        metrics: metrics.clone(),
        controls: Arc::default(),
        stopping: shutdown.clone(),
    };
    let app = http::router(AppState {
        store: store.clone(),
        partials: partials.clone(),
        limits: limits.clone(),
        seeding: Arc::default(),
        max_upload_bytes: cfg.peer.max_upload_bytes,
        readiness: readiness.clone(),
        shutdown: shutdown.clone(),
        metrics: metrics.clone(),
        tokens,
        protect_metrics: cfg.auth.protect_metrics,
        transfers: Shares::lending(
            cfg.peer.max_concurrent_transfers,
            cfg.peer.max_transfers_per_client,
        ),
        streams: Shares::strict(cfg.peer.max_streams, cfg.peer.max_streams_per_client),
        upload_limiter: http::upload_limiter(cfg.peer.uploads_per_minute),
        io_timeout: cfg.peer.io_timeout,
        daemon: daemon.clone(),
        web: Arc::new(http::Web::new(&cfg, &advertised, local_addr.port())),
        // A waiting piece request is answered well before a downloader's answer deadline would
        // drop this peer as a source.
        upload_slots: UploadSlots::new(
            cfg.transfer.upload_slots,
            crate::transfer::choker::QUEUE_WAIT.min(cfg.peer.io_timeout / 2),
            cfg.transfer.upload_limit,
        ),
    })
    // grpc.health.v1 on the same port (h2c), for orchestrators. Routed by path so that other
    // unknown paths keep their plain HTTP 404 (tonic's own fallback answers 200 + grpc-status).
    .route_service("/grpc.health.v1.Health/{*method}", health_service);
    tracing::info!(%local_addr, %advertised, peer = %cfg.peer.id, "peer listening");

    let stop = shutdown.clone();
    let cut = shutdown.clone();
    let grace = cfg.peer.shutdown_grace;
    let opts = p2p_common::serve::Options {
        tls,
        header_timeout: cfg.peer.header_timeout,
        idle_timeout: cfg.peer.idle_timeout,
        ..Default::default()
    };
    let task = tokio::spawn(async move {
        let membership_result = Arc::new(std::sync::Mutex::new(Ok(())));
        let outcome = membership_result.clone();
        let left = async move {
            stop.cancelled().await;
            readiness.set_draining().await;
            // Leave before draining so nobody is sent here while we stop.
            let r = membership
                .await
                .unwrap_or_else(|e| Err(crate::error::Error::Other(e.into())));
            if let Ok(mut slot) = outcome.lock() {
                *slot = r;
            }
            tracing::info!(?grace, "draining transfers");
        };
        p2p_common::serve::within_grace(
            p2p_common::serve::serve(listener, app, opts, left),
            cut.cancelled(),
            grace,
        )
        .await;
        scanner.abort();
        sweeper.abort();
        let r = match membership_result.lock() {
            Ok(mut slot) => std::mem::replace(&mut *slot, Ok(())),
            Err(_) => Ok(()),
        };
        r.map_err(anyhow::Error::from)
    });
    Ok(Running {
        local_addr,
        metrics,
        advertised,
        store,
        partials,
        limits,
        shutdown,
        daemon,
        task,
    })
}

async fn scan_loop(
    store: Arc<Store>,
    readiness: Arc<Readiness>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ok = match store.rescan().await {
            Ok(_) => store.usable().await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot rescan the share directory");
                false
            }
        };
        readiness.set_store_ok(ok).await;
    }
}

/// Removes the partial downloads in `dir` untouched for `ttl` (none a writer holds), counting
/// what went.
async fn sweep_partials(dir: &Path, ttl: Duration, metrics: &Metrics) {
    let d = dir.to_path_buf();
    let swept = tokio::task::spawn_blocking(move || {
        crate::share::sweep::sweep(&d, ttl, std::time::SystemTime::now())
    })
    .await;
    match swept {
        Ok(Ok(s)) if s.downloads > 0 => {
            tracing::info!(
                downloads = s.downloads,
                bytes = s.bytes,
                "freed {} bytes of stale partial downloads",
                s.bytes
            );
            metrics.partials_swept.inc_by(s.downloads);
            metrics.partials_swept_bytes.inc_by(s.bytes);
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot sweep stale partial downloads")
        }
        Err(e) => tracing::warn!(error = %e, "partial sweep failed"),
    }
}

/// Sweeps every half TTL, between once a second and once an hour: a partial goes at most that
/// long after it turned stale, for a listing of `.partial/` each time.
async fn sweep_loop(dir: PathBuf, ttl: Duration, metrics: Metrics, stop: CancellationToken) {
    let every = (ttl / 2).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        sweep_partials(&dir, ttl, &metrics).await;
    }
}

/// Serves until `signal` resolves (or a leave request), then leaves and drains.
pub async fn run(cfg: PeerConfig, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
    let running = start(cfg).await?;
    let token = running.shutdown.clone();
    let stopper = async move {
        signal.await;
        token.cancel();
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = stopper => unreachable!("pending never resolves"),
        r = running.wait() => r,
    }
}
