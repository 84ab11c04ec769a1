//! Bad and hostile input: what a user sees (status and message), and that nothing is read or
//! written outside the share, and no partial file is ever visible.

mod common;
use common::start_tracker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use common::{bytes, cli, eventually, sha256_hex};
use p2p_common::proto::tracker_service_client::TrackerServiceClient;
use p2p_common::proto::{FileInfo, HeartbeatRequest, LeaveRequest, RegisterRequest, SearchRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

struct Net {
    tracker: p2p_tracker::server::Running,
    peer: p2p_peer::server::Running,
    share: PathBuf,
    root: tempfile::TempDir,
}

impl Net {
    fn tracker_url(&self) -> String {
        format!("http://{}", self.tracker.local_addr)
    }
    fn peer_url(&self) -> String {
        format!("http://{}", self.peer.local_addr)
    }
}

async fn start_peer(
    tracker: SocketAddr,
    id: &str,
    share: &Path,
    limit: u64,
) -> p2p_peer::server::Running {
    let mut cfg = p2p_peer::config::PeerConfig::default();
    cfg.peer.id = id.into();
    cfg.peer.listen = "127.0.0.1:0".parse().unwrap();
    cfg.peer.files_dir = share.to_path_buf();
    cfg.peer.max_upload_bytes = limit;
    cfg.peer.scan_interval = Duration::from_millis(200);
    cfg.tracker.endpoint = format!("http://{tracker}");
    cfg.tracker.heartbeat_interval = Duration::from_millis(500);
    p2p_peer::server::start(cfg).await.unwrap()
}

async fn net() -> Net {
    let root = tempfile::tempdir().unwrap();
    let share = root.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("hello.txt"), b"hello").unwrap();
    std::fs::write(root.path().join("secret.txt"), b"TOPSECRET").unwrap();
    std::os::unix::fs::symlink(root.path().join("secret.txt"), share.join("link")).unwrap();
    let tracker = start_tracker().await;
    let peer = start_peer(tracker.local_addr, "p1", &share, 1000).await;
    Net {
        tracker,
        peer,
        share,
        root,
    }
}

/// Sends `request` as is (no client-side normalisation) and returns (status, body).
async fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

fn visible_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

fn partial_entries(share: &Path) -> usize {
    std::fs::read_dir(share.join(".partial")).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_never_leaves_the_share() {
    let n = net().await;
    let cases: &[(&str, u16, &str)] = &[
        ("/files/../secret.txt", 404, ""),
        ("/files/..%2Fsecret.txt", 400, "must not contain '/'"),
        ("/files/%2e%2e%2fsecret.txt", 400, "must not contain '/'"),
        (
            "/files/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
            400,
            "must not contain '/'",
        ),
        // Double-encoded: decoded once, it is a harmless name that nobody shares.
        ("/files/%252e%252e%252fsecret.txt", 404, "no file named"),
        ("/files/..%5csecret.txt", 400, "must not contain '\\\\'"),
        ("/files/..", 400, "must not be \\\".\\\" or \\\"..\\\""),
        ("/files/%2e%2e", 400, "must not be"),
        ("/files/%00", 400, "must not contain NUL"),
        ("/files/a%0Ab", 400, "control characters"),
        ("/files/.p2pshare", 400, "reserved"),
        ("/files/.partial", 400, "reserved"),
        // A symlink in the share pointing outside it is never indexed.
        ("/files/link", 404, "no file named"),
    ];
    for (path, status, message) in cases {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (got, body) = raw(n.peer.local_addr, &req).await;
        assert_eq!(got, *status, "{path}: {body}");
        assert!(
            body.contains(message),
            "{path}: body {body:?} lacks {message:?}"
        );
        assert!(!body.contains("TOPSECRET"), "{path} leaked the secret");
    }
    let (got, body) = raw(
        n.peer.local_addr,
        "GET /files/hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((got, body.as_str()), (200, "hello"));
}

fn multipart_request(filename: &str, content: &[u8]) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(content.to_vec()).file_name(filename.to_owned()),
    )
}

async fn upload(url: &str, form: reqwest::multipart::Form) -> (u16, serde_json::Value) {
    let r = {
        p2p_common::tls::install_provider();
        reqwest::Client::new()
    }
    .post(format!("{url}/upload"))
    .multipart(form)
    .send()
    .await
    .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_rules() {
    let n = net().await;
    let url = n.peer_url();

    let (s, b) = upload(&url, multipart_request("new.txt", b"new")).await;
    assert_eq!((s, b["status"].as_str()), (201, Some("created")));
    assert_eq!(b["sha256"], sha256_hex(b"new"));
    let (s, b) = upload(&url, multipart_request("new.txt", b"new")).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("identical")));
    let (s, b) = upload(&url, multipart_request("new.txt", b"other")).await;
    assert_eq!(s, 409);
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("already exists here with other content")
    );
    assert_eq!(std::fs::read(n.share.join("new.txt")).unwrap(), b"new");

    // Over the limit, with a Content-Length: refused before the body is read.
    let (s, b) = upload(&url, multipart_request("big.bin", &bytes(1500, 1))).await;
    assert_eq!(s, 413);
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("larger than the limit of 1000 bytes")
    );
    // Over the limit, chunked (no Content-Length): refused while streaming.
    let stream = futures::stream::iter((0..6).map(|i| Ok::<_, std::io::Error>(bytes(300, i))));
    let part =
        reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stream)).file_name("big2.bin");
    let (s, _) = upload(&url, reqwest::multipart::Form::new().part("file", part)).await;
    assert_eq!(s, 413);

    for (name, message) in [
        ("../evil.txt", "must not contain '/'"),
        ("..\\evil.txt", "must not contain '\\'"),
        ("..", "must not be"),
        (".partial", "reserved"),
    ] {
        let (s, b) = upload(&url, multipart_request(name, b"evil")).await;
        assert_eq!(s, 400, "{name:?}: {b}");
        let msg = b["error"].as_str().unwrap_or_default();
        assert!(
            msg.starts_with("bad file name") && msg.contains(message),
            "{name:?}: {msg}"
        );
    }
    // A control character cannot even be carried in a multipart header.
    let (s, b) = upload(&url, multipart_request("a\u{1}b", b"evil")).await;
    assert_eq!(s, 400);
    assert!(
        b["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("bad multipart body"),
        "{b}"
    );
    let form = reqwest::multipart::Form::new().text("other", "x");
    let (s, b) = upload(&url, form).await;
    assert_eq!(s, 400);
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("no multipart field named \"file\"")
    );

    assert_eq!(visible_files(&n.share), ["hello.txt", "link", "new.txt"]);
    assert!(!n.root.path().join("evil.txt").exists());
    assert_eq!(
        partial_entries(&n.share),
        0,
        "temporary upload files left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_upload_leaves_nothing() {
    let n = net().await;
    let boundary = "XyZ";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"half.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    let mut s = tokio::net::TcpStream::connect(n.peer.local_addr)
        .await
        .unwrap();
    let req = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 900\r\n\r\n{head}"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(&[7u8; 300]).await.unwrap();
    s.flush().await.unwrap();
    // The upload is in progress: its temporary file exists, hidden in .partial/.
    let share = n.share.clone();
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(5), "temporary upload file", || {
            (partial_entries(&share) == 1).then_some(())
        })
    })
    .await
    .unwrap();
    assert_eq!(visible_files(&n.share), ["hello.txt", "link"]);
    drop(s);
    let share = n.share.clone();
    tokio::task::spawn_blocking(move || {
        eventually(
            Duration::from_secs(5),
            "temporary upload file removed",
            || (partial_entries(&share) == 0).then_some(()),
        )
    })
    .await
    .unwrap();
    assert_eq!(visible_files(&n.share), ["hello.txt", "link"]);
}

/// A peer that claims to hold `content` but sends only its first half, then drops the
/// connection (`corrupt`: sends the right length of wrong bytes).
/// A holder that speaks the swarm routes with the right manifest but sends its one piece wrong:
/// zeros (`corrupt`), or half of it before the connection breaks.
async fn bad_peer(content: Vec<u8>, corrupt: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let m = common::fake::manifest_of(&content);
    assert_eq!(m.piece_count(), 1, "bad_peer serves one-piece files");
    let manifest = common::fake::manifest_answer(&sha256_hex(&content), &m);
    let app = axum::Router::new()
        .route(
            "/blobs/{sha256}/manifest",
            axum::routing::get(move || {
                let m = manifest.clone();
                async move { axum::Json(m) }
            }),
        )
        .route(
            "/blobs/{sha256}/pieces/{index}",
            axum::routing::get(move || {
                let content = content.clone();
                async move {
                    let len = content.len();
                    let body = if corrupt {
                        Body::from(vec![0u8; len])
                    } else {
                        let half = content[..len / 2].to_vec();
                        // The half goes out first; the failure comes a little later.
                        let chunks = futures::stream::unfold(0, move |step| {
                            let half = half.clone();
                            async move {
                                match step {
                                    0 => Some((Ok(bytes::Bytes::from(half)), 1)),
                                    1 => {
                                        tokio::time::sleep(Duration::from_millis(200)).await;
                                        Some((Err(std::io::Error::other("peer died")), 2))
                                    }
                                    _ => None,
                                }
                            }
                        });
                        Body::from_stream(chunks)
                    };
                    axum::response::Response::builder()
                        .header("content-length", len)
                        .body(body)
                        .unwrap()
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn tracker_client(n: &Net) -> TrackerServiceClient<tonic::transport::Channel> {
    TrackerServiceClient::connect(n.tracker_url())
        .await
        .unwrap()
}

async fn register_fake(n: &Net, id: &str, addr: SocketAddr, name: &str, content: &[u8]) -> String {
    tracker_client(n)
        .await
        .register(RegisterRequest {
            peer_id: id.into(),
            address: addr.to_string(),
            files: vec![FileInfo {
                name: name.into(),
                size: content.len() as u64,
                sha256: sha256_hex(content),
                ..Default::default()
            }],
            lease_secret: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .lease_secret
}

async fn run_cli(tracker: String, args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&tracker, &a)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_downloads_leave_nothing_visible_and_resume() {
    let n = net().await;
    // One piece (the smallest piece size), as bad_peer serves.
    let content = bytes(200 * 1024, 9);
    let out_dir = n.root.path().join("downloads");
    std::fs::create_dir_all(&out_dir).unwrap();
    let dest = out_dir.join("data.bin");
    let args = vec![
        "get".to_string(),
        "data.bin".into(),
        "-o".into(),
        dest.display().to_string(),
    ];

    // A peer sending wrong bytes: integrity failure naming it, exit 5, nothing kept.
    let corrupt = bad_peer(content.clone(), true).await;
    let secret = register_fake(&n, "liar", corrupt, "data.bin", &content).await;
    let (code, _, err) = run_cli(n.tracker_url(), args.clone()).await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("sent bad data: liar"), "{err}");
    assert!(!dest.exists());
    assert_eq!(visible_files(&out_dir), Vec::<String>::new());
    assert_eq!(partial_entries(&out_dir), 0);
    tracker_client(&n)
        .await
        .leave(LeaveRequest {
            peer_id: "liar".into(),
            lease_secret: secret,
        })
        .await
        .unwrap();

    // A peer dying half-way through the piece: exit 4, and the unverified half is not kept as
    // a resume point (issue 9: a liar's bytes once poisoned the next, honest download).
    let dying = bad_peer(content.clone(), false).await;
    let secret = register_fake(&n, "dying", dying, "data.bin", &content).await;
    let (code, _, err) = run_cli(n.tracker_url(), args.clone()).await;
    assert_eq!(code, 4, "{err}");
    assert!(!dest.exists());
    assert_eq!(visible_files(&out_dir), Vec::<String>::new());
    assert_eq!(partial_entries(&out_dir), 0);
    tracker_client(&n)
        .await
        .leave(LeaveRequest {
            peer_id: "dying".into(),
            lease_secret: secret,
        })
        .await
        .unwrap();

    // An honest peer: the download verifies.
    std::fs::write(n.share.join("data.bin"), &content).unwrap();
    let turl = n.tracker_url();
    let t2 = turl.clone();
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(5), "data.bin announced", || {
            (!common::holders(&t2, "data.bin").is_empty()).then_some(())
        })
    })
    .await
    .unwrap();
    let (code, _, err) = run_cli(turl, args).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), content);
    assert_eq!(partial_entries(&out_dir), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracker_answers_bad_requests_with_status_codes() {
    let n = net().await;
    let mut c = tracker_client(&n).await;
    let digest = sha256_hex(b"x");
    let reg = |id: &str, addr: &str, name: &str, sha: &str| RegisterRequest {
        peer_id: id.into(),
        address: addr.into(),
        files: vec![FileInfo {
            name: name.into(),
            size: 1,
            sha256: sha.into(),
            ..Default::default()
        }],
        lease_secret: String::new(),
    };
    let cases = [
        (reg("../x", "h:1", "a", &digest), "peer id"),
        (reg(&"x".repeat(65), "h:1", "a", &digest), "at most 64"),
        (reg("ok", "nohost", "a", &digest), "address"),
        (reg("ok", "h:1", "../a", &digest), "file name"),
        (reg("ok", "h:1", "a\0b", &digest), "NUL"),
        (reg("ok", "h:1", "a", "NOTHEX"), "sha256"),
    ];
    for (req, message) in cases {
        let e = c.register(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(
            e.message().contains(message),
            "{} lacks {message}",
            e.message()
        );
    }
    for (query, token) in [("", ""), ("a\nb", ""), ("a", "zz")] {
        let e = c
            .search(SearchRequest {
                query: query.into(),
                exact: false,
                page_size: 0,
                page_token: token.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    }
    let e = c
        .heartbeat(HeartbeatRequest {
            peer_id: "ghost".into(),
            lease_secret: "s".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("register again"));

    // p1 (the real peer) is live: its id cannot be taken nor its lease used by another.
    let e = c
        .register(reg("p1", "h:1", "a", &digest))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{}", e.message());
    let e = c
        .leave(LeaveRequest {
            peer_id: "p1".into(),
            lease_secret: "guess".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // An oversized message is refused, and the tracker keeps serving.
    let many: Vec<FileInfo> = (0..60_000)
        .map(|i| FileInfo {
            name: format!("file-{i:08}-{}", "x".repeat(40)),
            size: 1,
            sha256: digest.clone(),
            ..Default::default()
        })
        .collect();
    let e = c
        .register(RegisterRequest {
            peer_id: "big".into(),
            address: "h:1".into(),
            files: many,
            lease_secret: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{}", e.message());
    c.search(SearchRequest {
        query: "hello".into(),
        exact: true,
        page_size: 0,
        page_token: String::new(),
    })
    .await
    .unwrap();
}

#[test]
fn config_errors_name_the_key_and_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(common::peer_bin());
        cmd.args(args).env_remove("P2P_CONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["ls"], &[("P2P_PEER__LISTN", "1")]);
    assert_eq!(code, Some(78));
    assert!(
        err.contains("environment variable P2P_PEER__LISTN") && err.contains("unknown field"),
        "{err}"
    );

    let file = dir.path().join("peer.toml");
    std::fs::write(&file, "[peer]\nid = \"bad/id\"\n").unwrap();
    let (code, err) = run(&["--config", file.to_str().unwrap(), "ls"], &[]);
    assert_eq!(code, Some(78));
    assert!(
        err.contains("\"peer.id\"") && err.contains(file.to_str().unwrap()),
        "{err}"
    );

    std::fs::write(&file, "[peer]\nfiles_dri = \"x\"\n").unwrap();
    let (code, err) = run(&["ls"], &[("P2P_CONFIG", file.to_str().unwrap())]);
    assert_eq!(code, Some(78));
    assert!(
        err.contains("files_dri") && err.contains("TOML file"),
        "{err}"
    );

    let (code, err) = run(&["ls"], &[("P2P_TRACKER__HEARTBEAT_INTERVAL", "soon")]);
    assert_eq!(code, Some(78));
    assert!(err.contains("P2P_TRACKER__HEARTBEAT_INTERVAL"), "{err}");

    // Sections of the other service are left alone.
    let (code, err) = run(
        &["--tracker", "http://127.0.0.1:1", "ls"],
        &[("P2P_SERVER__LISTEN", "x")],
    );
    assert_eq!(code, Some(4), "{err}");
}
