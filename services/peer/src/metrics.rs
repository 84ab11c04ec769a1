//! The peer's metrics (names fixed by DESIGN.md). Labels are bounded: route templates, status
//! codes, fixed result words and directions; never file names or peer ids.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use p2p_common::metrics::register;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use tracing::Instrument;

use crate::share::partial::Partials;
use crate::store::Store;
use crate::transfer::{Direction, Limits};
use crate::wire::download::Event;
use crate::wire::route;

/// Until the response head: tens of microseconds for a listing, minutes for a large upload
/// (answered once its body is in).
fn http_buckets() -> Vec<f64> {
    let mut b = p2p_common::metrics::LATENCY_BUCKETS.to_vec();
    b.extend([30.0, 60.0, 300.0]);
    b
}

fn counter(reg: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        reg,
        IntCounter::new(name, help).expect("static metric definition"),
    )
}

fn counter_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        reg,
        IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition"),
    )
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    pub served_bytes: IntCounter,
    pub downloaded_bytes: IntCounter,
    pub downloads: IntCounterVec,
    pub uploads: IntCounterVec,
    pub integrity_failures: IntCounter,
    pub active_transfers: IntGaugeVec,
    pub tracker_errors: IntCounter,
    // Swarm downloads (issue 9): pieces fetched by result, sources in use, sources dropped.
    pub pieces: IntCounterVec,
    pub download_sources: IntGauge,
    pub bad_sources: IntCounterVec,
    /// From a piece's first block asked to the piece verified.
    pub piece_seconds: prometheus::Histogram,
    /// Bytes of pieces answered, by what this peer holds of the file (`complete`, `partial`).
    pub piece_bytes_served: IntCounterVec,
    pub unshared_files: IntGauge,
    shared_files: IntGauge,
    shared_bytes: IntGauge,
    // Serving side of the swarm (issue 9).
    rate_limited_bytes: IntCounterVec,
    partial_files: IntGauge,
    // Bounds on downloads (issue 19): refusals by key, stale partials swept.
    pub downloads_refused: IntCounterVec,
    pub partials_swept: IntCounter,
    pub partials_swept_bytes: IntCounter,
    // Who is served first (issue 16): piece bytes and upload slots by the requester's class.
    pub served_class_bytes: IntCounterVec,
    pub upload_slots: IntCounterVec,
    pub claim_mismatches: IntCounter,
    // Shares of one client address (issue 28): transfers and streams refused, by key.
    pub transfers_refused: IntCounterVec,
    pub streams_refused: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let reg = p2p_common::metrics::registry("peer");
        let http_duration = register(
            &reg,
            HistogramVec::new(
                HistogramOpts::new(
                    "p2p_peer_http_request_duration_seconds",
                    "HTTP request latency (until the response head; bodies stream on).",
                )
                .buckets(http_buckets()),
                &["route"],
            )
            .expect("static metric definition"),
        );
        let active_transfers = register(
            &reg,
            IntGaugeVec::new(
                Opts::new(
                    "p2p_peer_active_transfers",
                    "Transfers in progress by direction.",
                ),
                &["direction"],
            )
            .expect("static metric definition"),
        );
        for d in ["upload", "download"] {
            active_transfers.with_label_values(&[d]).set(0);
        }
        let downloads = counter_vec(
            &reg,
            "p2p_peer_downloads_total",
            "Downloads made by this peer, by result.",
            &["result"],
        );
        for r in ["ok", "integrity_failure", "error"] {
            downloads.with_label_values(&[r]);
        }
        let uploads = counter_vec(
            &reg,
            "p2p_peer_uploads_total",
            "Uploads received on POST /upload, by result.",
            &["result"],
        );
        for r in [
            "created",
            "identical",
            "conflict",
            "too_large",
            "bad_request",
            "rejected",
            "error",
        ] {
            uploads.with_label_values(&[r]);
        }
        let pieces = counter_vec(
            &reg,
            "p2p_peer_pieces_total",
            "Pieces this peer fetched, by result (ok, bad: failed verification, cancelled: an endgame copy not needed).",
            &["result"],
        );
        for r in ["ok", "bad", "cancelled"] {
            pieces.with_label_values(&[r]);
        }
        let download_sources = register(
            &reg,
            IntGauge::new(
                "p2p_peer_download_sources",
                "Sources in use by this peer's running downloads.",
            )
            .expect("static metric definition"),
        );
        let bad_sources = counter_vec(
            &reg,
            "p2p_peer_bad_sources_total",
            "Sources dropped from a download for sending a bad piece, by peer id.",
            &["peer"],
        );
        let piece_seconds = register(
            &reg,
            prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "p2p_peer_piece_seconds",
                    "Time from a piece's first block asked to the piece verified.",
                )
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0,
                ]),
            )
            .expect("static metric definition"),
        );
        let piece_bytes_served = counter_vec(
            &reg,
            "p2p_peer_piece_bytes_by_holding_total",
            "Bytes of pieces this peer answered to swarm downloads, by what it holds of the file (complete: a seed; partial: a downloader passing verified pieces on).",
            &["holding"],
        );
        for h in ["complete", "partial"] {
            piece_bytes_served.with_label_values(&[h]);
        }
        let rate_limited_bytes = counter_vec(
            &reg,
            "p2p_peer_rate_limited_bytes_total",
            "Bytes that waited for this process's transfer rate limit, by direction.",
            &["direction"],
        );
        for d in ["upload", "download"] {
            rate_limited_bytes.with_label_values(&[d]);
        }
        let downloads_refused = counter_vec(
            &reg,
            "p2p_peer_downloads_refused_total",
            "Downloads refused before they started or grew, by the key that refused them (max_concurrent_downloads, min_free_space).",
            &["reason"],
        );
        for r in ["max_concurrent_downloads", "min_free_space"] {
            downloads_refused.with_label_values(&[r]);
        }
        let served_class_bytes = counter_vec(
            &reg,
            "p2p_peer_served_piece_bytes_total",
            "Piece bytes sent, by the requester's class (reciprocating: it sent this peer bytes lately; newcomer: nothing that can be tied to it; unnamed: a newcomer that names no address, a client that serves nothing).",
            &["class"],
        );
        let upload_slots = counter_vec(
            &reg,
            "p2p_peer_upload_slots_total",
            "Piece requests by the requester's class and how they got an upload slot (at_once, queued) or none (busy: the queue was full, or the wait ran out; answered 503 with x-p2p-busy).",
            &["class", "got"],
        );
        for class in ["reciprocating", "newcomer", "unnamed"] {
            served_class_bytes.with_label_values(&[class]);
            for got in ["at_once", "queued", "busy"] {
                upload_slots.with_label_values(&[class, got]);
            }
        }
        let transfers_refused = counter_vec(
            &reg,
            "p2p_peer_transfers_refused_total",
            "Transfers (bodies served, uploads received) refused, by the key that refused them (max_concurrent_transfers, max_transfers_per_client).",
            &["reason"],
        );
        for r in ["max_concurrent_transfers", "max_transfers_per_client"] {
            transfers_refused.with_label_values(&[r]);
        }
        let streams_refused = counter_vec(
            &reg,
            "p2p_peer_streams_refused_total",
            "Event streams and share listings refused, by the key that refused them (max_streams, max_streams_per_client).",
            &["reason"],
        );
        for r in ["max_streams", "max_streams_per_client"] {
            streams_refused.with_label_values(&[r]);
        }
        Self {
            downloads_refused,
            transfers_refused,
            streams_refused,
            partials_swept: counter(
                &reg,
                "p2p_peer_partials_swept_total",
                "Partial downloads removed for being untouched for transfer.partial_ttl.",
            ),
            partials_swept_bytes: counter(
                &reg,
                "p2p_peer_partials_swept_bytes_total",
                "Disk bytes freed by removing stale partial downloads.",
            ),
            served_class_bytes,
            upload_slots,
            claim_mismatches: counter(
                &reg,
                "p2p_peer_claim_mismatches_total",
                "Piece requests naming the address of a peer that sent us bytes, from another IP than those bytes came from (served as newcomers).",
            ),
            pieces,
            download_sources,
            bad_sources,
            piece_seconds,
            piece_bytes_served,
            http_requests: counter_vec(
                &reg,
                "p2p_peer_http_requests_total",
                "HTTP requests by route and status.",
                &["route", "status"],
            ),
            http_duration,
            served_bytes: counter(
                &reg,
                "p2p_peer_served_bytes_total",
                "File bytes sent to others.",
            ),
            downloaded_bytes: counter(
                &reg,
                "p2p_peer_downloaded_bytes_total",
                "File bytes received by this peer's downloads.",
            ),
            downloads,
            uploads,
            integrity_failures: counter(
                &reg,
                "p2p_peer_integrity_failures_total",
                "Downloaded bytes that did not match their SHA-256.",
            ),
            active_transfers,
            tracker_errors: counter(
                &reg,
                "p2p_peer_tracker_errors_total",
                "Failed calls to the tracker.",
            ),
            unshared_files: register(
                &reg,
                IntGauge::new(
                    "p2p_peer_unshared_files",
                    "Files in the share that the tracker does not index (over its per-peer cap).",
                )
                .expect("static metric definition"),
            ),
            shared_files: register(
                &reg,
                IntGauge::new("p2p_peer_shared_files", "Files shared.")
                    .expect("static metric definition"),
            ),
            shared_bytes: register(
                &reg,
                IntGauge::new("p2p_peer_shared_bytes", "Bytes shared.")
                    .expect("static metric definition"),
            ),
            rate_limited_bytes,
            partial_files: register(
                &reg,
                IntGauge::new(
                    "p2p_peer_partial_files",
                    "Downloads in progress whose verified pieces this peer serves.",
                )
                .expect("static metric definition"),
            ),
            registry: reg,
        }
    }

    pub(crate) async fn render(
        &self,
        store: &Store,
        limits: &Limits,
        partials: &Partials,
    ) -> String {
        // The buckets count the bytes that waited; the counters catch up at each scrape.
        for (direction, word) in [
            (Direction::Upload, "upload"),
            (Direction::Download, "download"),
        ] {
            let counter = self.rate_limited_bytes.with_label_values(&[word]);
            let delayed = limits.bucket(direction).delayed_bytes();
            counter.inc_by(delayed.saturating_sub(counter.get()));
        }
        self.partial_files
            .set(i64::try_from(partials.list().len()).unwrap_or(i64::MAX));
        let files = store.snapshot();
        self.shared_files.set(files.len() as i64);
        self.shared_bytes.set(
            files
                .entries()
                .iter()
                .map(|f| f.size)
                .sum::<u64>()
                .min(i64::MAX as u64) as i64,
        );
        p2p_common::metrics::encode(&self.registry)
    }

    /// Holds `active_transfers{direction}` up while alive.
    pub fn transfer(&self, direction: &'static str) -> TransferGuard {
        let g = self.active_transfers.with_label_values(&[direction]);
        g.inc();
        TransferGuard(g)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub struct TransferGuard(IntGauge);

impl Drop for TransferGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Route label of a request: its route template, never the raw path (unbounded, and it may
/// hold file names).
fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    match matched.map(MatchedPath::as_str) {
        // No route matched: the router's fallback answers (404).
        None => "unmatched",
        Some(path) => route::ALL
            .iter()
            .find(|r| **r == path)
            .copied()
            .unwrap_or("other"),
    }
}

/// Counts and traces every request, matched or not, by its route label. The latency metric
/// stops at the response head; the span lasts until the body has been sent (or abandoned).
pub(crate) async fn track(State(m): State<Metrics>, req: Request, next: Next) -> Response {
    let route = route_label(req.extensions().get::<MatchedPath>());
    let span = tracing::info_span!(
        "http",
        otel.name = %format!("{} {route}", req.method()),
        otel.kind = "server",
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    );
    p2p_common::telemetry::set_remote_parent(&span, req.headers());
    let started = Instant::now();
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status();
    span.record("http.response.status_code", status.as_u16());
    // Server spans: 5xx is the server's failure; 4xx is the client's and stays unset.
    if status.is_server_error() {
        p2p_common::telemetry::mark_error(&span, status.as_str().to_owned());
    }
    m.http_duration
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
    m.http_requests
        .with_label_values(&[route, status.as_str()])
        .inc();
    resp.map(|body| Body::new(SpannedBody { inner: body, span }))
}

/// A response body that keeps its request's span open until the body ends or is dropped, and
/// marks the span failed when the body breaks off.
struct SpannedBody {
    inner: Body,
    span: tracing::Span,
}

impl HttpBody for SpannedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        // Entered while sending: the span's end is its last exit, so it covers the body.
        let _entered = this.span.enter();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &polled {
            p2p_common::telemetry::mark_error(&this.span, "response body failed");
            tracing::warn!(error = %e, "response body failed");
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Counts the bytes and failures of one of this peer's own downloads from its events.
pub(crate) struct DownloadMeter<'a> {
    metrics: &'a Metrics,
    /// Verified bytes at the last event; `None` before the first (a resumed download starts
    /// with bytes that were not downloaded now).
    have: std::sync::Mutex<Option<u64>>,
}

impl<'a> DownloadMeter<'a> {
    pub(crate) fn new(metrics: &'a Metrics) -> Self {
        Self {
            metrics,
            have: std::sync::Mutex::new(None),
        }
    }

    pub(crate) fn observe(&self, e: &Event) {
        match e {
            Event::Source { have, .. } | Event::Progress { have, .. } => {
                if let Ok(mut last) = self.have.lock() {
                    if let Some(before) = *last
                        && *have > before
                    {
                        self.metrics.downloaded_bytes.inc_by(have - before);
                    }
                    *last = Some(last.map_or(*have, |b| b.max(*have)));
                }
            }
            Event::SourceFailed {
                peer, reason, bad, ..
            } => {
                if *bad {
                    self.metrics.integrity_failures.inc();
                }
                tracing::warn!(%peer, "{}", Event::source_fate(reason, *bad));
            }
            _ => {}
        }
    }
}
