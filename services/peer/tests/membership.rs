//! Membership end-to-end, with the real binaries: a share larger than the tracker's per-peer cap,
//! readiness that follows the tracker, a peer id held by another live peer, and the lease file's
//! permissions.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn grpc_status(addr: std::net::SocketAddr) -> Option<ServingStatus> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .ok()?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .ok()?;
        let r = HealthClient::new(ch)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()?;
        ServingStatus::try_from(r.into_inner().status).ok()
    })
}

fn healthz(peer: &Proc) -> Option<u16> {
    http_get(&format!("{}/healthz", peer.url())).map(|(s, _)| s)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tiny_files(dir: &Path, n: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let name = format!("f{i:05}.txt");
            std::fs::write(dir.join(&name), name.as_bytes()).unwrap();
            name
        })
        .collect()
}

/// Names the network lists (every page).
fn listed(tracker: &str) -> Vec<String> {
    let (code, out, err) = cli(tracker, &["--json", "ls"]);
    assert_eq!(code, 0, "ls failed: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let mut names: Vec<String> = v["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

fn log_count(p: &Proc, needle: &str) -> usize {
    std::fs::read_to_string(&p.log)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// A share over the cap registers anyway, shares the first files in name order, says so once,
/// and stays ready. `cap` below 1000 makes the first Register (1000 files) too big for the
/// tracker; above it, the rest follows in Announce batches.
fn over_cap(files: usize, cap: usize) {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    let names = tiny_files(&share, files);
    let cap_s = cap.to_string();
    let tracker = spawn_tracker_with(
        dir.path(),
        0,
        "30s",
        &[("P2P_REGISTRY__MAX_FILES_PER_PEER", cap_s.as_str())],
    );
    let peer = spawn_peer(
        dir.path(),
        PeerOpts {
            id: "big",
            files_dir: &share,
            tracker: &tracker.url(),
            heartbeat: "1s",
            env: vec![],
        },
    );
    wait_ready(&peer);
    let wanted: Vec<String> = names[..cap].to_vec();
    eventually(
        Duration::from_secs(60),
        "the tracker lists the first files",
        || (listed(&tracker.url()) == wanted).then_some(()),
    );
    assert_eq!(
        metric(&peer.url(), "p2p_peer_unshared_files"),
        (files - cap) as f64
    );
    // Several rescans later: still ready, and the cap was reported once, not per scan.
    let scans = Instant::now();
    eventually(Duration::from_secs(30), "a few rescans", || {
        (scans.elapsed() > Duration::from_secs(2)).then_some(())
    });
    assert_eq!(healthz(&peer), Some(200));
    assert_eq!(
        log_count(&peer, "are not shared"),
        1,
        "log {}",
        peer.log.display()
    );
    assert_eq!(listed(&tracker.url()), wanted);
}

#[test]
fn a_share_over_the_cap_registers_in_batches_and_shares_the_first_files() {
    over_cap(3000, 1200);
}

#[test]
fn a_cap_below_the_first_register_batch_still_registers() {
    over_cap(900, 300);
}

#[test]
fn readiness_follows_the_tracker_but_files_stay_served() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("a.txt"), b"still here").unwrap();
    let port = free_port();
    let mut tracker = spawn_tracker(dir.path(), port, "30s");
    // The README's bound: one heartbeat interval plus one request timeout.
    let (heartbeat, timeout) = (Duration::from_secs(1), Duration::from_secs(2));
    let peer = spawn_peer(
        dir.path(),
        PeerOpts {
            id: "p1",
            files_dir: &share,
            tracker: &tracker.url(),
            heartbeat: "1s",
            env: vec![("P2P_TRACKER__REQUEST_TIMEOUT", "2s".into())],
        },
    );
    wait_ready(&peer);
    assert_eq!(grpc_status(peer.addr), Some(ServingStatus::Serving));

    tracker.kill9();
    // Slack for a loaded CI machine; the bound itself is heartbeat + timeout.
    let limit = heartbeat + timeout + Duration::from_secs(10);
    eventually(limit, "/healthz 503 after the tracker died", || {
        (healthz(&peer) == Some(503)).then_some(())
    });
    eventually(limit, "gRPC NOT_SERVING after the tracker died", || {
        (grpc_status(peer.addr) == Some(ServingStatus::NotServing)).then_some(())
    });
    // Liveness is independent: the process still serves its files.
    let (status, body) = http_get(&format!("{}/files/a.txt", peer.url())).expect("GET");
    assert_eq!((status, body.as_slice()), (200, &b"still here"[..]));

    let _tracker = spawn_tracker(dir.path(), port, "30s");
    eventually(Duration::from_secs(30), "ready again", || {
        (healthz(&peer) == Some(200)).then_some(())
    });
}

fn twin<'a>(share: &'a Path, tracker: &'a str, env: Vec<(&'a str, String)>) -> PeerOpts<'a> {
    PeerOpts {
        id: "twin",
        files_dir: share,
        tracker,
        heartbeat: "1s",
        env,
    }
}

#[test]
fn a_taken_peer_id_exits_with_code_6_after_one_lease_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = spawn_tracker(dir.path(), 0, "3s");
    let first = spawn_peer(
        dir.path(),
        twin(&dir.path().join("a"), &tracker.url(), vec![]),
    );
    wait_ready(&first);
    let mut second = spawn_peer(
        dir.path(),
        twin(&dir.path().join("b"), &tracker.url(), vec![]),
    );
    let status = second.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(6), "log {}", second.log.display());
    let log = std::fs::read_to_string(&second.log).unwrap();
    assert!(log.contains("held by a live peer for another"), "{log}");
    assert!(log.contains("--wait-for-id"), "{log}");
    // The refusal is said once while waiting, not every retry.
    assert_eq!(log.matches("giving up in").count(), 1, "{log}");
    assert_eq!(healthz(&first), Some(200));
}

#[test]
fn wait_for_id_waits_until_the_id_frees() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = spawn_tracker(dir.path(), 0, "3s");
    let mut first = spawn_peer(
        dir.path(),
        twin(&dir.path().join("a"), &tracker.url(), vec![]),
    );
    wait_ready(&first);
    let second = spawn_peer(
        dir.path(),
        twin(
            &dir.path().join("b"),
            &tracker.url(),
            vec![("P2P_PEER__WAIT_FOR_ID", "true".into())],
        ),
    );
    eventually(Duration::from_secs(20), "the refusal in the log", || {
        (log_count(&second, "waiting for it") == 1).then_some(())
    });
    // Past the point where a peer without --wait-for-id gives up (4 heartbeats).
    let refused = Instant::now();
    eventually(Duration::from_secs(30), "past one lease TTL", || {
        (refused.elapsed() > Duration::from_secs(6)).then_some(())
    });
    assert_eq!(healthz(&second), Some(503));
    first.kill9();
    eventually(
        Duration::from_secs(30),
        "the waiting peer takes the id",
        || (healthz(&second) == Some(200)).then_some(()),
    );
}

#[cfg(unix)]
#[test]
fn the_lease_file_is_owner_only_and_fixed_at_start_up() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let tracker = spawn_tracker(dir.path(), 0, "30s");

    // An old share: state directory and lease file readable by all.
    let old = dir.path().join("old");
    let state = old.join(".p2pshare");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("lease.json"),
        br#"{"peer_id":"old","secret":"s"}"#,
    )
    .unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        state.join("lease.json"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let fresh = dir.path().join("fresh");
    for (id, share) in [("old", &old), ("fresh", &fresh)] {
        let peer = spawn_peer(
            dir.path(),
            PeerOpts {
                id,
                files_dir: share,
                tracker: &tracker.url(),
                heartbeat: "1s",
                env: vec![],
            },
        );
        wait_ready(&peer);
        let state = share.join(".p2pshare");
        assert_eq!(mode(&state), 0o700, "{id}");
        assert_eq!(mode(&state.join("lease.json")), 0o600, "{id}");
    }
}
