//! What many fake peers can do to the network's listings (issue 28): real tracker and peer
//! processes on 127.0.0.1, Sybils registered straight over gRPC.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{PeerOpts, cli, eventually, http_get, spawn_peer, spawn_tracker_with, wait_ready};
use p2p_common::proto::tracker_service_client::TrackerServiceClient;
use p2p_common::proto::{FileInfo, RegisterRequest};

/// Registers `sybils` peers with the longest ids and addresses the tracker takes, each sharing
/// the same `files` junk files with the longest names: every match has `sybils` holders.
async fn sybils(tracker: SocketAddr, sybils: usize, files: usize) {
    let client = TrackerServiceClient::connect(format!("http://{tracker}"))
        .await
        .expect("connect to the tracker");
    let junk: Vec<FileInfo> = (0..files)
        .map(|i| FileInfo {
            name: format!("{:x<250}{i:05}", "junk-"),
            size: 1 << 30,
            sha256: format!("{i:064x}"),
            pieces_root: format!("{:064x}", i + 1),
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..sybils {
        let mut c = client.clone();
        let files = junk.clone();
        tasks.spawn(async move {
            c.register(RegisterRequest {
                peer_id: format!("{:s<60}{s:04}", "sybil-"),
                address: format!("{:h<240}.example:{}", "host-", 1000 + s),
                files,
                lease_secret: String::new(),
            })
            .await
            .map(|_| ())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("register task").expect("register");
    }
}

/// Issue 28 point 6: 400 Sybils x 100 junk files made every ListFiles page pass the 4 MiB
/// message limit, so `p2p-peer ls` failed and the page's "all files" search answered 502.
#[test]
fn four_hundred_sybils_do_not_break_listings() {
    let dir = tempfile::tempdir().unwrap();
    // Every Sybil registers from 127.0.0.1: the bound on peers per address is lifted here.
    let tracker = spawn_tracker_with(
        dir.path(),
        0,
        "120s",
        &[("P2P_REGISTRY__MAX_PEERS_PER_ADDRESS", "0")],
    );
    let turl = format!("http://{}", tracker.addr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(sybils(tracker.addr, 400, 100));

    let (code, out, err) = cli(&turl, &["--json", "ls"]);
    assert_eq!(code, 0, "ls failed: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("ls --json");
    let files = v["files"].as_array().expect("files");
    assert_eq!(files.len(), 100, "every junk file listed once");
    for f in files {
        assert_eq!(f["peer_count"], 400, "{f}");
        let listed = f["peers"].as_array().expect("peers").len();
        assert!((1..=20).contains(&listed), "{listed} holders listed");
    }
    let (code, out, err) = cli(&turl, &["ls"]);
    assert_eq!(code, 0, "ls failed: {err}");
    assert!(out.contains("400 holders in all"), "{out}");

    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let peer = spawn_peer(
        dir.path(),
        PeerOpts {
            id: "honest",
            files_dir: &share,
            tracker: &turl,
            heartbeat: "1s",
            env: vec![],
        },
    );
    wait_ready(&peer);
    let found: serde_json::Value = eventually(Duration::from_secs(20), "search 200", || {
        let (status, body) = http_get(&format!("{}/api/search?q=", peer.url()))?;
        assert_eq!(status, 200, "the page's all-files search");
        serde_json::from_slice(&body).ok()
    });
    let matches = found["matches"].as_array().expect("matches");
    assert_eq!(matches.len(), 100);
    assert!(matches.iter().all(|m| m["holder_count"] == 400));
    let (code, _, err) = cli(&turl, &["search", "junk"]);
    assert_eq!(code, 0, "search failed: {err}");
}
