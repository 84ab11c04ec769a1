//! The tracker's metrics (names fixed by DESIGN.md). Labels are bounded: RPC method names and
//! gRPC code names only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use p2p_common::metrics::{LATENCY_BUCKETS, register};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use crate::quota::Refusal;
use crate::registry::Registry as PeerRegistry;

/// The RPCs of `TrackerService`: the `method` label values, and where each one's series sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Register,
    Heartbeat,
    Announce,
    Leave,
    Search,
    ListFiles,
    GetPeersByDigest,
    ListPeers,
}

impl Method {
    const ALL: [Method; 8] = [
        Method::Register,
        Method::Heartbeat,
        Method::Announce,
        Method::Leave,
        Method::Search,
        Method::ListFiles,
        Method::GetPeersByDigest,
        Method::ListPeers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Register => "Register",
            Method::Heartbeat => "Heartbeat",
            Method::Announce => "Announce",
            Method::Leave => "Leave",
            Method::Search => "Search",
            Method::ListFiles => "ListFiles",
            Method::GetPeersByDigest => "GetPeersByDigest",
            Method::ListPeers => "ListPeers",
        }
    }

    /// The span name OpenTelemetry shows (`otel.name`), spelled out so no call formats it.
    pub fn otel_name(self) -> &'static str {
        match self {
            Method::Register => "TrackerService/Register",
            Method::Heartbeat => "TrackerService/Heartbeat",
            Method::Announce => "TrackerService/Announce",
            Method::Leave => "TrackerService/Leave",
            Method::Search => "TrackerService/Search",
            Method::ListFiles => "TrackerService/ListFiles",
            Method::GetPeersByDigest => "TrackerService/GetPeersByDigest",
            Method::ListPeers => "TrackerService/ListPeers",
        }
    }
}

/// One method's OK counter and latency histogram, looked up once: a label lookup hashes the
/// label values and takes the vector's lock, per call (measured in the Search profile).
#[derive(Clone)]
struct MethodSeries {
    ok: IntCounter,
    duration: Histogram,
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    rpc_requests: IntCounterVec,
    /// By `Method as usize`.
    series: Arc<[MethodSeries]>,
    pub lease_expirations: IntCounter,
    peers: IntGauge,
    files: IntGauge,
    partial_holders: IntGauge,
    /// Register and Announce calls refused by a bound on what the tracker holds, by bound.
    refusals: IntCounterVec,
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
                    .buckets(LATENCY_BUCKETS.to_vec()),
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
        let partial_holders = register(
            &registry,
            IntGauge::new(
                "p2p_tracker_partial_holders",
                "(peer, sha256) pairs held in part: downloads in progress that serve pieces.",
            )
            .expect("static metric definition"),
        );
        let refusals = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "p2p_tracker_refusals_total",
                    "Register and Announce calls refused (RESOURCE_EXHAUSTED) because the \
                     tracker holds what a bound allows, by bound (registry.max_*).",
                ),
                &["reason"],
            )
            .expect("static metric definition"),
        );
        for r in Refusal::ALL {
            refusals.with_label_values(&[r.label()]);
        }
        // Every method has its OK and latency series from the start, so rates and error ratios
        // read 0 on a quiet tracker instead of "No data".
        let series = Method::ALL
            .iter()
            .map(|m| MethodSeries {
                ok: rpc_requests.with_label_values(&[m.name(), "OK"]),
                duration: rpc_duration.with_label_values(&[m.name()]),
            })
            .collect();
        Self {
            registry,
            rpc_requests,
            series,
            lease_expirations,
            peers,
            files,
            partial_holders,
            refusals,
        }
    }

    pub fn refused(&self, refusal: Refusal) {
        self.refusals.with_label_values(&[refusal.label()]).inc();
    }

    pub fn observe_rpc(&self, method: Method, code: tonic::Code, started: Instant) {
        self.record_rpc(method, code, started.elapsed());
    }

    fn record_rpc(&self, method: Method, code: tonic::Code, took: Duration) {
        let series = &self.series[method as usize];
        series.duration.observe(took.as_secs_f64());
        match code {
            // "OK" as in the gRPC spec; other codes by their tonic names ("NotFound", ...).
            tonic::Code::Ok => series.ok.inc(),
            other => self
                .rpc_requests
                .with_label_values(&[method.name(), &format!("{other:?}")])
                .inc(),
        }
    }

    /// Text exposition, with the registry gauges read fresh.
    pub async fn render(&self, registry: &Arc<PeerRegistry>) -> String {
        if let Ok(c) = registry.counts().await {
            self.peers.set(c.peers as i64);
            self.files.set(c.files as i64);
            self.partial_holders.set(c.partial_holders as i64);
        }
        p2p_common::metrics::encode(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket_count(text: &str, series_prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn a_40_microsecond_rpc_lands_below_a_tenth_of_a_millisecond() {
        let m = Metrics::new();
        m.record_rpc(Method::Search, tonic::Code::Ok, Duration::from_micros(40));
        let text = p2p_common::metrics::encode(&m.registry);
        let bucket = |le: &str| {
            bucket_count(
                &text,
                &format!(
                    "p2p_tracker_rpc_duration_seconds_bucket{{method=\"Search\",le=\"{le}\"}}"
                ),
            )
        };
        assert_eq!(bucket("0.000025"), Some(0.0), "{text}");
        assert_eq!(bucket("0.00005"), Some(1.0), "{text}");
        assert_eq!(bucket("10"), Some(1.0), "{text}");
    }

    #[tokio::test]
    async fn partial_holders_gauge_is_zero_from_start_and_follows_the_registry() {
        use crate::registry::Limits;
        use crate::store::MemoryStore;
        use crate::store::conformance::{partial, partials_change};

        let m = Metrics::new();
        let text = p2p_common::metrics::encode(&m.registry);
        assert!(
            text.lines().any(|l| l == "p2p_tracker_partial_holders 0"),
            "{text}"
        );
        let r = Arc::new(PeerRegistry::new(
            Arc::new(MemoryStore::new()),
            Duration::from_secs(60),
            Limits::default(),
        ));
        let s = r.register("p1", "h:1", vec![], "").await.unwrap();
        r.announce(
            "p1",
            &s,
            partials_change(vec![partial(1), partial(2)], vec![]),
        )
        .await
        .unwrap();
        let text = m.render(&r).await;
        assert!(
            text.lines().any(|l| l == "p2p_tracker_partial_holders 2"),
            "{text}"
        );
    }

    #[test]
    fn calls_count_under_their_method_and_code() {
        let m = Metrics::new();
        m.record_rpc(Method::Search, tonic::Code::Ok, Duration::from_micros(40));
        m.record_rpc(Method::Search, tonic::Code::Ok, Duration::from_micros(40));
        m.record_rpc(
            Method::Heartbeat,
            tonic::Code::NotFound,
            Duration::from_micros(40),
        );
        let text = p2p_common::metrics::encode(&m.registry);
        for series in [
            "p2p_tracker_rpc_requests_total{code=\"OK\",method=\"Search\"} 2",
            "p2p_tracker_rpc_requests_total{code=\"OK\",method=\"Heartbeat\"} 0",
            "p2p_tracker_rpc_requests_total{code=\"NotFound\",method=\"Heartbeat\"} 1",
            "p2p_tracker_rpc_duration_seconds_count{method=\"Search\"} 2",
            "p2p_tracker_rpc_duration_seconds_count{method=\"Heartbeat\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == series),
                "{series} missing:\n{text}"
            );
        }
    }

    #[test]
    fn every_method_has_a_zero_ok_series_before_any_call() {
        let text = p2p_common::metrics::encode(&Metrics::new().registry);
        for method in Method::ALL.map(Method::name) {
            let series =
                format!("p2p_tracker_rpc_requests_total{{code=\"OK\",method=\"{method}\"}} 0");
            assert!(
                text.lines().any(|l| l == series),
                "{series} missing:\n{text}"
            );
        }
    }
}
