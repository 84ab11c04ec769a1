//! What the dashboard reads, checked over live scrapes of a real tracker and peer: CPU time with
//! its fraction, latency buckets fine enough for loopback RPCs, zero-valued series that exist
//! before anything happened, and requests to unknown paths counted under one fixed label.

mod common;

use std::time::Duration;

use common::*;

fn scrape(base: &str) -> String {
    let (status, body) = http_get(&format!("{base}/metrics")).expect("scrape /metrics");
    assert_eq!(status, 200, "{base}/metrics");
    String::from_utf8(body).expect("metrics are UTF-8")
}

/// The value of the series `series` (exactly as exposed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The `le` bounds of one histogram series, in exposition order.
fn bucket_bounds(text: &str, prefix: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| rest.split("le=\"").nth(1)?.split('"').next())
        .filter_map(|le| le.parse().ok())
        .collect()
}

struct Net {
    _tmp: tempfile::TempDir,
    tracker: Proc,
    peer: Proc,
}

fn start() -> Net {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("burn.bin"), bytes(4 << 20, 7)).unwrap();
    let tracker = spawn_tracker(tmp.path(), 0, "10s");
    let turl = tracker.url();
    let peer = spawn_peer(
        tmp.path(),
        PeerOpts {
            id: "scraped",
            files_dir: &share,
            tracker: &turl,
            heartbeat: "1s",
            env: vec![],
        },
    );
    wait_ready(&peer);
    Net {
        _tmp: tmp,
        tracker,
        peer,
    }
}

#[test]
fn cpu_seconds_keep_their_fraction() {
    let net = start();
    for base in [net.peer.url(), net.tracker.url()] {
        // Clock ticks are 10 ms: a busy process shows a fraction at almost every scrape, the
        // crate's whole-second counter never does. Each round makes the peer send 4 MiB.
        let seen = eventually(Duration::from_secs(60), "a fractional CPU time", || {
            let _ = http_get(&format!("{}/files/burn.bin", net.peer.url()));
            let cpu = value(&scrape(&base), "process_cpu_seconds_total")?;
            (cpu.fract() != 0.0).then_some(cpu)
        });
        assert!(seen > 0.0, "{base}: {seen}");
    }
}

#[test]
fn latency_buckets_resolve_tens_of_microseconds_and_a_slow_tail() {
    let net = start();
    let _ = http_get(&format!("{}/files", net.peer.url()));
    let peer = scrape(&net.peer.url());
    let tracker = scrape(&net.tracker.url());
    for (text, prefix) in [
        (
            &peer,
            "p2p_peer_http_request_duration_seconds_bucket{route=\"/files\",",
        ),
        (
            &tracker,
            "p2p_tracker_rpc_duration_seconds_bucket{method=\"Register\",",
        ),
    ] {
        let bounds = bucket_bounds(text, prefix);
        // A 40 µs observation must land below 0.1 ms, and not in the first bucket.
        let first = bounds.iter().copied().find(|&b| b >= 40e-6);
        assert!(first.is_some_and(|b| b < 1e-4), "{prefix}: {bounds:?}");
        assert!(bounds.iter().any(|&b| b < 40e-6), "{prefix}: {bounds:?}");
        assert!(bounds.iter().any(|&b| b >= 10.0), "{prefix}: {bounds:?}");
    }
}

#[test]
fn healthy_services_export_zero_valued_series() {
    let net = start();
    let tracker = scrape(&net.tracker.url());
    // Never called, yet present at 0: rates and ratios read 0, not "No data".
    for series in [
        "p2p_tracker_rpc_requests_total{code=\"OK\",method=\"ListFiles\"}",
        "p2p_tracker_rpc_requests_total{code=\"OK\",method=\"GetPeersByDigest\"}",
        "p2p_tracker_rpc_requests_total{code=\"OK\",method=\"ListPeers\"}",
        "p2p_tracker_lease_expirations_total",
    ] {
        assert_eq!(value(&tracker, series), Some(0.0), "{series}:\n{tracker}");
    }
    let peer = scrape(&net.peer.url());
    for series in [
        "p2p_peer_downloads_total{result=\"error\"}",
        "p2p_peer_uploads_total{result=\"error\"}",
        "p2p_peer_integrity_failures_total",
        "p2p_peer_active_transfers{direction=\"upload\"}",
    ] {
        assert_eq!(value(&peer, series), Some(0.0), "{series}:\n{peer}");
    }
}

#[test]
fn unknown_paths_are_counted_under_one_label() {
    let net = start();
    let base = net.peer.url();
    for path in ["/nope", "/files/a/b", "/secret-name.txt"] {
        let (status, _) = http_get(&format!("{base}{path}")).expect("peer answers");
        assert_eq!(status, 404, "{path}");
    }
    let text = scrape(&base);
    let unmatched = "p2p_peer_http_requests_total{route=\"unmatched\",status=\"404\"}";
    assert_eq!(value(&text, unmatched), Some(3.0), "{text}");
    assert!(
        text.contains("p2p_peer_http_request_duration_seconds_count{route=\"unmatched\"} 3"),
        "{text}"
    );
    // The raw paths never become labels.
    assert!(
        !text.contains("nope") && !text.contains("secret-name"),
        "{text}"
    );
}
