//! The tracker's metrics (names fixed by DESIGN.md). Labels are bounded: RPC method names and
//! gRPC code names only.

use std::sync::Arc;
use std::time::Instant;

use p2p_common::metrics::register;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use crate::registry::Registry as PeerRegistry;

/// RPC latencies measured on loopback are 50 µs - 2 ms; the upper buckets catch a slow store.
const RPC_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    rpc_requests: IntCounterVec,
    rpc_duration: HistogramVec,
    pub lease_expirations: IntCounter,
    peers: IntGauge,
    files: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = p2p_common::metrics::registry("tracker");
        let rpc_requests = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "p2p_tracker_rpc_requests_total",
                    "Tracker RPCs by method and gRPC code.",
                ),
                &["method", "code"],
            )
            .expect("static metric definition"),
        );
        let rpc_duration = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new("p2p_tracker_rpc_duration_seconds", "Tracker RPC latency.")
                    .buckets(RPC_BUCKETS.to_vec()),
                &["method"],
            )
            .expect("static metric definition"),
        );
        let lease_expirations = register(
            &registry,
            IntCounter::new(
                "p2p_tracker_lease_expirations_total",
                "Peers forgotten because their lease ran out.",
            )
            .expect("static metric definition"),
        );
        let peers = register(
            &registry,
            IntGauge::new("p2p_tracker_peers", "Live peers.").expect("static metric definition"),
        );
        let files = register(
            &registry,
            IntGauge::new(
                "p2p_tracker_files",
                "Distinct (name, sha256) files held by live peers.",
            )
            .expect("static metric definition"),
        );
        Self {
            registry,
            rpc_requests,
            rpc_duration,
            lease_expirations,
            peers,
            files,
        }
    }

    pub fn observe_rpc(&self, method: &str, code: tonic::Code, started: Instant) {
        self.rpc_duration
            .with_label_values(&[method])
            .observe(started.elapsed().as_secs_f64());
        // "OK" as in the gRPC spec; other codes by their tonic names ("NotFound", ...).
        let code = match code {
            tonic::Code::Ok => "OK".to_owned(),
            other => format!("{other:?}"),
        };
        self.rpc_requests.with_label_values(&[method, &code]).inc();
    }

    /// Text exposition, with the registry gauges read fresh.
    pub async fn render(&self, registry: &Arc<PeerRegistry>) -> String {
        if let Ok((peers, files)) = registry.counts().await {
            self.peers.set(peers as i64);
            self.files.set(files as i64);
        }
        p2p_common::metrics::encode(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
