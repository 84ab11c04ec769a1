//! The original interactive menu (1 search, 2 get, 3 put, 4 leave) and the original command
//! form `p2p-peer <PEER_ID> <HTTP_PORT> <FILES_DIR>`.

mod common;

use std::time::Duration;

use common::*;

async fn tracker() -> p2p_tracker::server::Running {
    let mut cfg = p2p_tracker::config::TrackerConfig::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    p2p_tracker::server::start(cfg).await.unwrap()
}

fn peer_cfg(
    id: &str,
    tracker: std::net::SocketAddr,
    dir: &std::path::Path,
) -> p2p_peer::config::PeerConfig {
    let mut cfg = p2p_peer::config::PeerConfig::default();
    cfg.peer.id = id.into();
    cfg.peer.listen = "127.0.0.1:0".parse().unwrap();
    cfg.peer.files_dir = dir.to_path_buf();
    cfg.peer.scan_interval = Duration::from_millis(200);
    cfg.tracker.endpoint = format!("http://{tracker}");
    cfg.tracker.heartbeat_interval = Duration::from_millis(500);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn menu_search_get_put_leave() {
    let tmp = tempfile::tempdir().unwrap();
    let (d1, d2) = (tmp.path().join("one"), tmp.path().join("two"));
    std::fs::create_dir_all(&d1).unwrap();
    std::fs::write(d1.join("hello.txt"), b"hello from one\n").unwrap();
    let upload = tmp.path().join("mine.txt");
    std::fs::write(&upload, b"put through the menu\n").unwrap();

    let t = tracker().await;
    let one = p2p_peer::server::start(peer_cfg("one", t.local_addr, &d1))
        .await
        .unwrap();
    let cfg2 = peer_cfg("two", t.local_addr, &d2);
    let two = p2p_peer::server::start(cfg2.clone()).await.unwrap();
    let turl = format!("http://{}", t.local_addr);
    let t2 = turl.clone();
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(10), "hello.txt registered", || {
            (!holders(&t2, "hello.txt").is_empty()).then_some(())
        })
    })
    .await
    .unwrap();

    let script = format!("1\nhello\n2\nhello.txt\n3\n{}\n\n9\n4\n", upload.display());
    let mut out = Vec::new();
    let ctx = p2p_peer::menu::Context::serving(&cfg2, &two);
    p2p_peer::menu::run(ctx, script.as_bytes(), &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();

    // 1: the search lists the file with its holder's address.
    assert!(
        out.contains("hello.txt") && out.contains(&one.local_addr.to_string()),
        "{out}"
    );
    // 2: get downloads into this peer's own share, verified, and serves it.
    assert!(
        out.contains("Downloaded hello.txt (15 bytes, sha256 verified); now sharing it."),
        "{out}"
    );
    assert_eq!(
        std::fs::read(d2.join("hello.txt")).unwrap(),
        b"hello from one\n"
    );
    // 3: put uploads to this peer by default.
    assert!(
        out.contains(&format!("created mine.txt on {}", two.advertised)),
        "{out}"
    );
    assert_eq!(
        std::fs::read(d2.join("mine.txt")).unwrap(),
        b"put through the menu\n"
    );
    assert!(out.contains("Unknown choice \"9\""), "{out}");
    // 4: leave stops the peer and takes it off the network.
    assert!(out.trim_end().ends_with("Leaving the network."), "{out}");
    two.wait().await.unwrap();
    let t3 = turl.clone();
    let left = tokio::task::spawn_blocking(move || holders(&t3, "mine.txt"))
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    drop(one);
}

#[test]
fn the_original_command_form_serves_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = spawn_tracker(tmp.path(), 0, "5s");
    let dir = tmp.path().join("peer1_files");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("legacy.txt"), b"legacy").unwrap();
    let mut cmd = std::process::Command::new(peer_bin());
    cmd.args(["--tracker", &tracker.url(), "peer_1", "0"])
        .arg(&dir);
    let peer = spawn_cmd(cmd, tmp.path().join("legacy.log"), "peer listening");
    // The bind address is 0.0.0.0: the peer advertises the address that reaches the tracker.
    let hs = eventually(Duration::from_secs(10), "legacy.txt registered", || {
        Some(holders(&tracker.url(), "legacy.txt")).filter(|h| !h.is_empty())
    });
    assert_eq!(
        hs,
        [(
            "peer_1".to_string(),
            format!("127.0.0.1:{}", peer.addr.port())
        )]
    );
    let (code, _, err) = cli(
        &tracker.url(),
        &[
            "get",
            "legacy.txt",
            "-o",
            tmp.path().join("x").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
}
