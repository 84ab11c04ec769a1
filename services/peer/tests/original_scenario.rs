//! The original system's scenario, end to end: a tracker and three peers as real processes on
//! loopback, driven through the CLI.

mod common;

use std::time::{Duration, Instant};

use common::*;

const TTL: Duration = Duration::from_secs(3);
const HEARTBEAT: Duration = Duration::from_secs(1);

#[test]
fn original_scenario() {
    let tmp = tempfile::tempdir().unwrap();
    scenario(tmp.path(), Sec::plain());
}

#[test]
fn original_scenario_with_tls_and_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    scenario(tmp.path(), Sec::secure(tmp.path()));
}

fn scenario(root: &std::path::Path, sec: Sec) {
    let dirs: Vec<_> = (1..=3)
        .map(|i| root.join(format!("peer{i}_files")))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let alpha = b"alpha from peer 1\n".to_vec();
    let beta = bytes(3 * 1024 * 1024 + 17, 2);
    let gamma = bytes(4096, 3);
    std::fs::write(dirs[0].join("alpha.txt"), &alpha).unwrap();
    std::fs::write(dirs[1].join("beta.bin"), &beta).unwrap();
    std::fs::write(dirs[2].join("gamma.dat"), &gamma).unwrap();

    let mut tracker = spawn_tracker_with(root, 0, "3s", &sec.env_refs());
    let turl = tracker.url_in(&sec);
    let mut peers: Vec<Proc> = (0..3)
        .map(|i| {
            spawn_peer(
                root,
                PeerOpts {
                    id: &format!("peer_{}", i + 1),
                    files_dir: &dirs[i],
                    tracker: &turl,
                    heartbeat: "1s",
                    env: sec
                        .env
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.clone()))
                        .collect(),
                },
            )
        })
        .collect();
    peers.iter().for_each(|p| sec.wait_ready(p));
    let addrs: Vec<String> = peers.iter().map(|p| p.addr.to_string()).collect();
    let addr = |i: usize| addrs[i].clone();

    // 1. Every peer's files are searchable, with the peer's address.
    assert_eq!(
        sec.holders(&turl, "alpha.txt"),
        [("peer_1".into(), addr(0))]
    );
    assert_eq!(sec.holders(&turl, "beta.bin"), [("peer_2".into(), addr(1))]);
    assert_eq!(
        sec.holders(&turl, "gamma.dat"),
        [("peer_3".into(), addr(2))]
    );
    let (code, out, _) = sec.cli(&turl, &["search", "ALPHA"]);
    assert_eq!(code, 0);
    assert!(out.contains("alpha.txt") && out.contains(&addr(0)), "{out}");
    let (code, _, err) = sec.cli(&turl, &["search", "no-such-file"]);
    assert_eq!(code, 3, "not found must exit 3: {err}");
    assert_eq!(sec.metric(&turl, "p2p_tracker_peers"), 3.0);
    assert_eq!(sec.metric(&turl, "p2p_tracker_files"), 3.0);
    assert_eq!(
        sec.metric(
            &turl,
            r#"p2p_tracker_rpc_requests_total{code="OK",method="Register"}"#
        ),
        3.0
    );
    assert_eq!(
        sec.metric(
            &turl,
            r#"p2p_build_info{service="tracker",version="0.1.0"}"#
        ),
        1.0
    );
    assert_eq!(
        sec.metric(&peers[1].url_in(&sec), "p2p_peer_shared_bytes"),
        beta.len() as f64
    );

    // 2. get fetches the bytes from another peer and they match; here into peer 3's share.
    let dest = dirs[2].join("beta.bin");
    let (code, out, err) = sec.cli(
        &turl,
        &["--json", "get", "beta.bin", "-o", dest.to_str().unwrap()],
    );
    assert_eq!(code, 0, "get failed: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["sha256"], sha256_hex(&beta));
    assert_eq!(std::fs::read(&dest).unwrap(), beta);
    assert!(
        std::fs::read_dir(dirs[2].join(".partial")).map_or(true, |mut d| d.next().is_none()),
        "partial file left behind"
    );
    assert_eq!(
        sec.metric(&peers[1].url_in(&sec), "p2p_peer_served_bytes_total"),
        beta.len() as f64
    );
    assert_eq!(
        sec.metric(
            &peers[1].url_in(&sec),
            r#"p2p_peer_http_requests_total{route="/blobs/{sha256}/pieces/{index}",status="206"}"#
        ),
        // A 3 MiB (and 17 bytes) file is 13 pieces of one block each (256 KiB, the last one 17
        // bytes): the swarm download fetched each block once.
        beta.len().div_ceil(256 << 10) as f64
    );
    assert_eq!(
        sec.metric(
            &peers[1].url_in(&sec),
            r#"p2p_peer_active_transfers{direction="upload"}"#
        ),
        0.0
    );

    // 3. The downloaded file is served by its new holder.
    eventually(Duration::from_secs(5), "peer_3 announces beta.bin", || {
        (sec.holders(&turl, "beta.bin").len() == 2).then_some(())
    });
    let (status, body) = sec
        .get(&format!("{}/files/beta.bin", peers[2].url_in(&sec)))
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&body), sha256_hex(&beta));

    // 4. put uploads through /upload and the file is searchable right after.
    let upload = root.join("delta.txt");
    std::fs::write(&upload, b"delta, uploaded\n").unwrap();
    let (code, out, err) = sec.cli(
        &turl,
        &["put", upload.to_str().unwrap(), "--peer", &addr(0)],
    );
    assert_eq!(code, 0, "put failed: {err}");
    assert!(out.starts_with("created"), "{out}");
    let t = Instant::now();
    eventually(Duration::from_secs(2), "delta.txt searchable", || {
        (sec.holders(&turl, "delta.txt") == [("peer_1".into(), addr(0))]).then_some(())
    });
    eprintln!("upload searchable after {:?}", t.elapsed());
    assert_eq!(
        std::fs::read(dirs[0].join("delta.txt")).unwrap(),
        b"delta, uploaded\n"
    );

    // 5. leave removes the peer (and it stops cleanly).
    let (code, _, err) = sec.cli(&turl, &["leave", "--peer", &addr(1)]);
    assert_eq!(code, 0, "leave failed: {err}");
    let status = peers[1].wait_exit(Duration::from_secs(10));
    assert!(status.success(), "peer_2 exit status {status}");
    assert_eq!(sec.holders(&turl, "beta.bin"), [("peer_3".into(), addr(2))]);
    // Only peer 3 holds beta.bin now: get must come from it.
    let again = root.join("beta-again.bin");
    let (code, _, err) = sec.cli(&turl, &["get", "beta.bin", "-o", again.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&again).unwrap(), beta);
    // peer_3 served beta.bin twice: to the direct GET above and to this get.
    assert_eq!(
        sec.metric(&peers[2].url_in(&sec), "p2p_peer_served_bytes_total"),
        2.0 * beta.len() as f64
    );
    assert_eq!(
        sec.metric(
            &turl,
            r#"p2p_tracker_rpc_requests_total{code="OK",method="Leave"}"#
        ),
        1.0
    );

    // 6. A peer killed with SIGKILL vanishes from search within its TTL.
    peers[0].kill9();
    let killed = Instant::now();
    eventually(
        TTL + Duration::from_secs(2),
        "killed peer_1 to vanish",
        || sec.holders(&turl, "alpha.txt").is_empty().then_some(()),
    );
    let gone = killed.elapsed();
    eprintln!("SIGKILLed peer vanished after {gone:?} (TTL {TTL:?})");
    assert!(gone <= TTL + Duration::from_millis(500), "took {gone:?}");

    // 7. After a tracker restart every live peer is back within one heartbeat interval.
    let port = tracker.addr.port();
    let probe = |addr: &str| {
        std::process::Command::new(tracker_bin())
            .args(["health", "--addr", addr])
            .envs(sec.env_refs())
            .output()
            .unwrap()
            .status
            .code()
    };
    let taddr = tracker.addr.to_string();
    assert_eq!(probe(&taddr), Some(0), "health of a serving tracker");
    tracker.kill9();
    assert_eq!(probe(&taddr), Some(1), "health of a dead tracker");
    let _tracker = spawn_tracker_with(root, port, "3s", &sec.env_refs());
    let restarted = Instant::now();
    eventually(HEARTBEAT * 3, "peer_3 back after tracker restart", || {
        (sec.holders(&turl, "gamma.dat") == [("peer_3".into(), addr(2))]).then_some(())
    });
    let back = restarted.elapsed();
    eprintln!("peer back {back:?} after the tracker restart (heartbeat {HEARTBEAT:?})");
    assert!(
        back <= HEARTBEAT + Duration::from_millis(500),
        "took {back:?}"
    );
    assert_eq!(sec.holders(&turl, "beta.bin"), [("peer_3".into(), addr(2))]);

    // SIGTERM: the peer leaves the network and exits 0.
    peers[2].sigterm();
    let status = peers[2].wait_exit(Duration::from_secs(10));
    assert!(status.success(), "peer_3 exit status {status}");
    assert!(sec.holders(&turl, "gamma.dat").is_empty());
}
