//! Health transitions seen by a real gRPC health client and by the `health` subcommands.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn check(addr: &str, service: &str) -> Option<ServingStatus> {
    rt().block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .ok()?
            .connect()
            .await
            .ok()?;
        let mut c = HealthClient::new(ch);
        let r = c
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .ok()?;
        ServingStatus::try_from(r.into_inner().status).ok()
    })
}

fn health_cmd(bin: std::path::PathBuf, addr: &str) -> i32 {
    std::process::Command::new(bin)
        .args(["health", "--addr", addr])
        .output()
        .unwrap()
        .status
        .code()
        .unwrap_or(-1)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Opens a Watch stream and returns the statuses it reports, in order, on a channel.
fn watch(addr: String) -> std::sync::mpsc::Receiver<ServingStatus> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        rt().block_on(async move {
            let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            else {
                return;
            };
            let Ok(ch) = endpoint.connect().await else {
                return;
            };
            let mut c = HealthClient::new(ch);
            let Ok(stream) = c
                .watch(HealthCheckRequest {
                    service: String::new(),
                })
                .await
            else {
                return;
            };
            let mut stream = stream.into_inner();
            while let Ok(Some(msg)) = stream.message().await {
                if let Ok(s) = ServingStatus::try_from(msg.status)
                    && tx.send(s).is_err()
                {
                    return;
                }
            }
        })
    });
    rx
}

#[test]
fn peer_health_follows_registration_storage_and_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let big = bytes(8 * 1024 * 1024, 5);
    std::fs::write(share.join("big.bin"), &big).unwrap();

    // The tracker is not up yet: the peer serves files but is not ready.
    let port = free_port();
    let turl = format!("http://127.0.0.1:{port}");
    let mut peer = spawn_peer(
        tmp.path(),
        PeerOpts {
            id: "hp",
            files_dir: &share,
            tracker: &turl,
            heartbeat: "500ms",
            env: vec![("P2P_PEER__SHUTDOWN_GRACE", "3s".into())],
        },
    );
    let addr = peer.addr.to_string();
    assert_eq!(check(&addr, ""), Some(ServingStatus::NotServing));
    assert_eq!(health_cmd(peer_bin(), &addr), 1);
    assert_eq!(http_get(&format!("{}/healthz", peer.url())).unwrap().0, 503);

    // Tracker up: registered, SERVING.
    let _tracker = spawn_tracker(tmp.path(), port, "5s");
    eventually(Duration::from_secs(10), "peer SERVING", || {
        (check(&addr, "") == Some(ServingStatus::Serving)).then_some(())
    });
    assert_eq!(health_cmd(peer_bin(), &addr), 0);
    assert_eq!(http_get(&format!("{}/healthz", peer.url())).unwrap().0, 200);

    // The share directory disappears: NOT_SERVING; it comes back: SERVING.
    let moved = tmp.path().join("moved");
    std::fs::rename(&share, &moved).unwrap();
    eventually(
        Duration::from_secs(10),
        "peer NOT_SERVING without its directory",
        || (check(&addr, "") == Some(ServingStatus::NotServing)).then_some(()),
    );
    assert_eq!(health_cmd(peer_bin(), &addr), 1);
    std::fs::rename(&moved, &share).unwrap();
    eventually(Duration::from_secs(10), "peer SERVING again", || {
        (check(&addr, "") == Some(ServingStatus::Serving)).then_some(())
    });

    // Shutdown with a transfer in flight: NOT_SERVING at once, the transfer still completes,
    // the peer leaves the network and exits 0.
    let statuses = watch(addr.clone());
    assert_eq!(
        statuses.recv_timeout(Duration::from_secs(5)).unwrap(),
        ServingStatus::Serving
    );
    let mut conn = std::net::TcpStream::connect(peer.addr).unwrap();
    conn.write_all(b"GET /files/big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut first = vec![0u8; 4096];
    conn.read_exact(&mut first).unwrap();
    peer.sigterm();
    assert_eq!(
        statuses.recv_timeout(Duration::from_secs(5)).unwrap(),
        ServingStatus::NotServing
    );
    eventually(Duration::from_secs(5), "peer gone from the tracker", || {
        holders(&turl, "big.bin").is_empty().then_some(())
    });
    drop(statuses);
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).unwrap();
    let mut response = first;
    response.extend(rest);
    let body_at = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        sha256_hex(&response[body_at..]),
        sha256_hex(&big),
        "in-flight transfer cut"
    );
    let status = peer.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit status {status}");
}

#[test]
fn tracker_health_serving_then_not_serving_when_draining() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tracker =
        spawn_tracker_with(tmp.path(), 0, "5s", &[("P2P_SERVER__SHUTDOWN_GRACE", "1s")]);
    let addr = tracker.addr.to_string();
    assert_eq!(check(&addr, ""), Some(ServingStatus::Serving));
    assert_eq!(
        check(&addr, "p2pshare.tracker.v1.TrackerService"),
        Some(ServingStatus::Serving)
    );
    assert_eq!(health_cmd(tracker_bin(), &addr), 0);
    // Through the env override, as the Docker HEALTHCHECK uses it.
    let code = std::process::Command::new(tracker_bin())
        .arg("health")
        .env("P2P_HEALTHCHECK_ADDR", &addr)
        .output()
        .unwrap()
        .status
        .code();
    assert_eq!(code, Some(0));

    let statuses = watch(addr.clone());
    assert_eq!(
        statuses.recv_timeout(Duration::from_secs(5)).unwrap(),
        ServingStatus::Serving
    );
    tracker.sigterm();
    assert_eq!(
        statuses.recv_timeout(Duration::from_secs(5)).unwrap(),
        ServingStatus::NotServing
    );
    drop(statuses);
    let status = tracker.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
    assert_eq!(health_cmd(tracker_bin(), &addr), 1);
}
