//! Control of what a peer does (issue 29 point 4): cancel, pause and resume a download the
//! daemon runs (`DELETE /downloads/{sha256}`, `POST .../pause`, `.../resume`), remove a shared
//! file from the share and the network (`DELETE /files/{name}`), `put --as`; who may ask.
//! Real tracker and peers in this process on loopback, and the CLI binary.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use p2p_common::auth::AuthConfig;
use reqwest::header;
use serde_json::Value;

/// A file of this size at this rate takes about four seconds to serve: long enough to act on.
const SIZE: usize = 8 * 1024 * 1024;
const SEED_RATE: u64 = 2 * 1024 * 1024;

struct Net {
    tracker: p2p_tracker::server::Running,
    seed: p2p_peer::server::Running,
    daemon: p2p_peer::server::Running,
    daemon_dir: PathBuf,
    file: Vec<u8>,
    sha256: String,
}

impl Net {
    fn url(&self) -> String {
        format!("http://{}", self.daemon.local_addr)
    }

    async fn stop(self) {
        self.daemon.shutdown().await.unwrap();
        self.seed.shutdown().await.unwrap();
        self.tracker.shutdown().await.unwrap();
    }
}

/// A seed sharing `big.bin` at [`SEED_RATE`] and a daemon peer with nothing, both registered.
async fn network(root: &Path, auth: AuthConfig) -> Net {
    let tracker = common::start_tracker_with_auth(auth.clone()).await;
    let (seed_dir, daemon_dir) = (root.join("seed"), root.join("daemon"));
    std::fs::create_dir_all(&seed_dir).unwrap();
    std::fs::create_dir_all(&daemon_dir).unwrap();
    let file = common::bytes(SIZE, 29);
    std::fs::write(seed_dir.join("big.bin"), &file).unwrap();
    let a = auth.clone();
    let seed = common::start_peer(tracker.local_addr, "seed", &seed_dir, move |cfg| {
        cfg.transfer.upload_limit = p2p_peer::transfer::ByteRate::per_second(SEED_RATE);
        cfg.auth = a;
    })
    .await;
    let daemon = common::start_peer(tracker.local_addr, "daemon", &daemon_dir, move |cfg| {
        cfg.auth = auth;
    })
    .await;
    let net = Net {
        tracker,
        seed,
        daemon,
        daemon_dir,
        sha256: common::sha256_hex(&file),
        file,
    };
    let c = client(None);
    until("big.bin on the network", || async {
        let (_, v) = json(&c, "GET", &format!("{}/api/search?q=big.bin", net.url())).await;
        (v["matches"].as_array().is_some_and(|m| !m.is_empty())).then_some(())
    })
    .await;
    net
}

fn client(token: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if let Some(t) = token {
        let mut h = header::HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
        b = b.default_headers(h);
    }
    b.build().unwrap()
}

async fn json(c: &reqwest::Client, method: &str, url: &str) -> (u16, Value) {
    let r = c
        .request(method.parse().unwrap(), url)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Starts `POST /downloads` of big.bin; its NDJSON lines arrive on the returned channel.
fn start_download(c: &reqwest::Client, url: &str) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let req = c
        .post(format!("{url}/downloads"))
        .json(&serde_json::json!({"name": "big.bin"}));
    tokio::spawn(async move {
        let mut r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        let mut buf = Vec::new();
        while let Ok(Some(chunk)) = r.chunk().await {
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let _ = tx.send(serde_json::from_slice::<Value>(&line).unwrap());
            }
        }
    });
    rx
}

/// [`start_download`], once some of it is verified.
async fn under_way(c: &reqwest::Client, url: &str) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let lines = start_download(c, url);
    until("some bytes verified", || async {
        have(c, url).await.filter(|h| *h > 0)
    })
    .await;
    lines
}

/// The next line of `rx` that satisfies `f`.
async fn line(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
    f: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        let v = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("a line within 30 s")
            .expect("the stream goes on");
        if f(&v) {
            return v;
        }
    }
}

/// Verified bytes of the daemon's download, as `GET /api/transfers` says.
async fn have(c: &reqwest::Client, url: &str) -> Option<u64> {
    let (_, v) = json(c, "GET", &format!("{url}/api/transfers")).await;
    v["downloads"][0]["have"].as_u64()
}

fn partial(net: &Net, ext: &str) -> PathBuf {
    net.daemon_dir
        .join(".partial")
        .join(format!("{}.{ext}", net.sha256))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_pauses_resumes_and_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let net = network(tmp.path(), AuthConfig::default()).await;
    let (c, url) = (client(None), net.url());

    // Nothing runs yet: 404 for each control; a digest that is not one: 400.
    for (m, path) in [
        ("DELETE", format!("/downloads/{}", net.sha256)),
        ("POST", format!("/downloads/{}/pause", net.sha256)),
        ("POST", format!("/downloads/{}/resume", net.sha256)),
    ] {
        let (s, v) = json(&c, m, &format!("{url}{path}")).await;
        assert_eq!(s, 404, "{m} {path}: {v}");
        assert!(v["error"].as_str().unwrap().contains("no download"), "{v}");
    }
    let (s, _) = json(&c, "POST", &format!("{url}/downloads/ABC/pause")).await;
    assert_eq!(s, 400);

    let mut lines = start_download(&c, &url);
    let start = line(&mut lines, |v| v["event"] == "start").await;
    assert_eq!(start["have"], 0, "{start}");
    until("some bytes verified", || async {
        have(&c, &url).await.filter(|h| *h > 0)
    })
    .await;

    let (s, v) = json(&c, "POST", &format!("{url}/downloads/{}/pause", net.sha256)).await;
    assert_eq!((s, v["state"].as_str()), (200, Some("paused")), "{v}");
    let (_, t) = json(&c, "GET", &format!("{url}/api/transfers")).await;
    assert_eq!(t["downloads"][0]["state"], "paused", "{t}");
    // Paused: nothing more arrives (what was in flight is reported by the next keep-alive
    // line, within a second).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = have(&c, &url).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        have(&c, &url).await,
        Some(before),
        "paused, yet bytes arrived"
    );
    assert!(
        before < SIZE as u64,
        "finished before the pause could be seen"
    );
    assert!(!net.daemon_dir.join("big.bin").exists());

    let (s, v) = json(
        &c,
        "POST",
        &format!("{url}/downloads/{}/resume", net.sha256),
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("running")), "{v}");
    let done = line(&mut lines, |v| {
        v["event"] == "done" || v["event"] == "error"
    })
    .await;
    assert_eq!(done["event"], "done", "{done}");
    assert_eq!(
        std::fs::read(net.daemon_dir.join("big.bin")).unwrap(),
        net.file
    );
    // Over: the controls answer 404 again.
    let (s, _) = json(&c, "POST", &format!("{url}/downloads/{}/pause", net.sha256)).await;
    assert_eq!(s, 404);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_download_keeps_its_pieces_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let net = network(tmp.path(), AuthConfig::default()).await;
    let (c, url) = (client(None), net.url());

    // Cancel, keeping: the stream ends with `error` of kind cancelled; the partial stays.
    let mut lines = under_way(&c, &url).await;
    let (s, v) = json(
        &c,
        "DELETE",
        &format!("{url}/downloads/{}?keep=true", net.sha256),
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("cancelled")), "{v}");
    let end = line(&mut lines, |v| v["event"] == "error").await;
    assert_eq!(end["kind"], "cancelled", "{end}");
    assert!(end["message"].as_str().unwrap().contains("kept"), "{end}");
    assert!(partial(&net, "data").exists());
    assert!(partial(&net, "bitfield").exists());
    let (_, t) = json(&c, "GET", &format!("{url}/api/transfers")).await;
    assert!(t["downloads"].as_array().unwrap().is_empty(), "{t}");

    // Asked again, it resumes: `start` says what was kept (issue 28 point 10).
    let mut lines = start_download(&c, &url);
    let start = line(&mut lines, |v| v["event"] == "start").await;
    let kept = start["have"].as_u64().unwrap();
    assert!(kept > 0 && kept < SIZE as u64, "{start}");

    // Cancelled without keep, through the CLI's own stream (`get --via`, exit 8): the partial
    // goes.
    drop(lines);
    let via = net.daemon.local_addr.to_string();
    let turl = format!("http://{}", net.tracker.local_addr);
    let cli =
        tokio::task::spawn_blocking(move || common::cli(&turl, &["get", "big.bin", "--via", &via]));
    until("the CLI's download registered", || async {
        let (_, t) = json(&c, "GET", &format!("{url}/api/transfers")).await;
        (t["downloads"].as_array().map_or(0, Vec::len) == 2).then_some(())
    })
    .await;
    let (s, v) = json(&c, "DELETE", &format!("{url}/downloads/{}", net.sha256)).await;
    assert_eq!((s, v["kept"].as_bool()), (200, Some(false)), "{v}");
    assert!(!partial(&net, "data").exists(), "the partial is removed");
    assert!(!partial(&net, "bitfield").exists());
    let (code, out, err) = cli.await.unwrap();
    assert_eq!(code, 8, "stdout {out}\nstderr {err}");
    assert!(err.contains("cancelled"), "{err}");
    assert!(!net.daemon_dir.join("big.bin").exists());
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_peer_stops_its_downloads_and_keeps_their_pieces() {
    let tmp = tempfile::tempdir().unwrap();
    let net = network(tmp.path(), AuthConfig::default()).await;
    let (c, url) = (client(None), net.url());
    let mut lines = under_way(&c, &url).await;
    let data = partial(&net, "data");
    // The peer stops (SIGTERM does this): it has left the tracker, so it stops taking the
    // swarm's upload at once instead of downloading on for its shutdown grace.
    let Net {
        tracker,
        seed,
        daemon,
        daemon_dir,
        ..
    } = net;
    let stopping = tokio::spawn(daemon.shutdown());
    let end = line(&mut lines, |v| {
        v["event"] == "done" || v["event"] == "error"
    })
    .await;
    assert_eq!(end["event"], "error", "the download went on: {end}");
    assert_eq!(end["kind"], "cancelled", "{end}");
    let message = end["message"].as_str().unwrap();
    assert!(
        message.contains("stopping") && message.contains("kept"),
        "{end}"
    );
    stopping.await.unwrap().unwrap();
    assert!(!daemon_dir.join("big.bin").exists());
    assert!(data.exists(), "the verified pieces are kept to resume");
    seed.shutdown().await.unwrap();
    tracker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_file_leaves_the_share_and_the_network() {
    let tmp = tempfile::tempdir().unwrap();
    let net = network(tmp.path(), AuthConfig::default()).await;
    let c = client(None);
    let seed = format!("http://{}", net.seed.local_addr);
    let holders = || async {
        let (_, v) = json(&c, "GET", &format!("{seed}/api/search?q=big.bin")).await;
        v["matches"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(holders().await, 1);

    let (s, v) = json(&c, "DELETE", &format!("{seed}/files/big.bin")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "removed");
    assert_eq!(v["sha256"], net.sha256.as_str());
    assert!(!tmp.path().join("seed/big.bin").exists());
    let (s, _) = json(&c, "GET", &format!("{seed}/files/big.bin")).await;
    assert_eq!(s, 404);
    until("the tracker forgets the seed's big.bin", || async {
        (holders().await == 0).then_some(())
    })
    .await;
    // And a later rescan does not bring it back.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, share) = json(&c, "GET", &format!("{seed}/api/share")).await;
    assert!(share.as_array().unwrap().is_empty(), "{share}");

    let (s, v) = json(&c, "DELETE", &format!("{seed}/files/big.bin")).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = json(&c, "DELETE", &format!("{seed}/files/a%2Fb")).await;
    assert_eq!(s, 400, "{v}");
    net.stop().await;
}

const TOKEN: &str = "control-join-token-0123456789";

/// The same rule as `POST /downloads`: the token or a session with auth on (loopback is no way
/// around it), never from another site's page or under a name that is not the peer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controls_follow_the_rule_of_downloads() {
    let tmp = tempfile::tempdir().unwrap();
    let auth = AuthConfig {
        token: TOKEN.into(),
        ..Default::default()
    };
    let net = network_with_token(tmp.path(), auth).await;
    let url = net.url();
    let zero = "0".repeat(64);
    let routes = [
        ("DELETE", format!("/downloads/{zero}")),
        ("POST", format!("/downloads/{zero}/pause")),
        ("POST", format!("/downloads/{zero}/resume")),
        ("DELETE", "/files/nothing.bin".to_owned()),
    ];
    let anonymous = client(None);
    let holder = client(Some(TOKEN));
    // A session from the page counts as the token.
    let r = anonymous
        .post(format!("{url}/api/session"))
        .json(&serde_json::json!({ "token": TOKEN }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let cookie = r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    for (m, path) in &routes {
        let (s, _) = json(&anonymous, m, &format!("{url}{path}")).await;
        assert_eq!(s, 401, "{m} {path} without a token");
        let (s, _) = json(&holder, m, &format!("{url}{path}")).await;
        assert_eq!(s, 404, "{m} {path} with the token");
        let r = anonymous
            .request(m.parse().unwrap(), format!("{url}{path}"))
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{m} {path} with the session");
        // From another site's page, whatever it carries.
        let r = holder
            .request(m.parse().unwrap(), format!("{url}{path}"))
            .header(header::ORIGIN, "http://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{m} {path} cross-site");
        // Under a name that is not the peer's (DNS rebinding), from a browser.
        let port = net.daemon.local_addr.port();
        let r = holder
            .request(m.parse().unwrap(), format!("{url}{path}"))
            .header(header::HOST, format!("rebind.attacker.test:{port}"))
            .header(
                header::ORIGIN,
                format!("http://rebind.attacker.test:{port}"),
            )
            .header("sec-fetch-site", "same-origin")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{m} {path} under another name");
    }
    // The seed's file stays: nobody without the token removed it.
    let seed = format!("http://{}", net.seed.local_addr);
    let (s, _) = json(&anonymous, "DELETE", &format!("{seed}/files/big.bin")).await;
    assert_eq!(s, 401);
    assert!(tmp.path().join("seed/big.bin").exists());
    net.stop().await;
}

/// [`network`] with a token: the search that waits for the seed needs it too.
async fn network_with_token(root: &Path, auth: AuthConfig) -> Net {
    let tracker = common::start_tracker_with_auth(auth.clone()).await;
    let (seed_dir, daemon_dir) = (root.join("seed"), root.join("daemon"));
    std::fs::create_dir_all(&seed_dir).unwrap();
    std::fs::create_dir_all(&daemon_dir).unwrap();
    let file = b"small\n".to_vec();
    std::fs::write(seed_dir.join("big.bin"), &file).unwrap();
    let a = auth.clone();
    let seed = common::start_peer(tracker.local_addr, "seed", &seed_dir, move |cfg| {
        cfg.auth = a
    })
    .await;
    let daemon = common::start_peer(tracker.local_addr, "daemon", &daemon_dir, move |cfg| {
        cfg.auth = auth
    })
    .await;
    Net {
        tracker,
        seed,
        daemon,
        daemon_dir,
        sha256: common::sha256_hex(&file),
        file,
    }
}

/// `put FILE --as NAME`: a 409 (the name taken by other bytes) is solved without renaming the
/// local file; a bad name is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_as_stores_under_another_name() {
    let tmp = tempfile::tempdir().unwrap();
    let t = common::start_tracker().await;
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("notes.txt"), b"theirs\n").unwrap();
    let p = common::start_peer(t.local_addr, "target", &share, |_| {}).await;
    let local = tmp.path().join("notes.txt");
    std::fs::write(&local, b"mine\n").unwrap();
    let (addr, turl) = (p.local_addr.to_string(), format!("http://{}", t.local_addr));
    let run = |args: Vec<String>| {
        let turl = turl.clone();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            common::cli(&turl, &refs)
        })
    };
    let file = local.to_str().unwrap().to_owned();
    let (code, _, err) = run(vec![
        "put".into(),
        file.clone(),
        "--peer".into(),
        addr.clone(),
    ])
    .await
    .unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("409"), "{err}");
    let (code, out, err) = run(vec![
        "put".into(),
        file.clone(),
        "--peer".into(),
        addr.clone(),
        "--as".into(),
        "notes-mine.txt".into(),
    ])
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("created: notes-mine.txt"), "{out}");
    assert_eq!(
        std::fs::read(share.join("notes-mine.txt")).unwrap(),
        b"mine\n"
    );
    assert_eq!(std::fs::read(share.join("notes.txt")).unwrap(), b"theirs\n");
    let (code, _, err) = run(vec![
        "put".into(),
        file,
        "--peer".into(),
        addr,
        "--as".into(),
        "a/b".into(),
    ])
    .await
    .unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("bad file name"), "{err}");
    p.shutdown().await.unwrap();
    t.shutdown().await.unwrap();
}
