//! Authentication, authorization, TLS and abuse limits, against in-process servers on loopback.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{bytes, sha256_hex};
use p2p_common::auth::AuthConfig;
use p2p_common::proto::tracker_service_client::TrackerServiceClient;
use p2p_common::proto::*;
use p2p_common::tls::TlsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

const TOKEN: &str = "join-token-current";
const OLD_TOKEN: &str = "join-token-previous";

fn auth(dir: &Path) -> AuthConfig {
    // Rotation: the new token first (sent), the old one still accepted.
    let file = dir.join("tokens");
    std::fs::write(&file, format!("{TOKEN}\n{OLD_TOKEN}\n")).unwrap();
    AuthConfig {
        token_file: file,
        ..Default::default()
    }
}

async fn tracker(auth: AuthConfig, tls: TlsConfig) -> p2p_tracker::server::Running {
    let mut cfg = p2p_tracker::config::TrackerConfig::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.auth = auth;
    cfg.tls = tls;
    p2p_tracker::server::start(cfg).await.unwrap()
}

fn peer_cfg(
    tracker: &str,
    share: &Path,
    auth: AuthConfig,
    tls: TlsConfig,
) -> p2p_peer::config::PeerConfig {
    let mut cfg = p2p_peer::config::PeerConfig::default();
    cfg.peer.id = "secure-peer".into();
    cfg.peer.listen = "127.0.0.1:0".parse().unwrap();
    cfg.peer.files_dir = share.to_path_buf();
    cfg.peer.scan_interval = Duration::from_millis(200);
    cfg.tracker.endpoint = tracker.into();
    cfg.tracker.heartbeat_interval = Duration::from_millis(500);
    cfg.auth = auth;
    cfg.tls = tls;
    cfg
}

fn with_token(
    token: Option<&str>,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    let v = token.map(|t| {
        format!("Bearer {t}")
            .parse::<tonic::metadata::MetadataValue<_>>()
            .unwrap()
    });
    move |mut req: tonic::Request<()>| {
        if let Some(v) = &v {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

async fn channel(url: String) -> Channel {
    Endpoint::from_shared(url).unwrap().connect().await.unwrap()
}

/// Every tracker RPC's status code with this client.
async fn rpc_codes(ch: Channel, token: Option<&str>) -> Vec<(&'static str, Code)> {
    let mut c = TrackerServiceClient::with_interceptor(ch, with_token(token));
    fn code<T>(r: Result<T, tonic::Status>) -> Code {
        r.map_or_else(|s| s.code(), |_| Code::Ok)
    }
    let d = sha256_hex(b"x");
    vec![
        (
            "Register",
            code(
                c.register(RegisterRequest {
                    peer_id: "intruder".into(),
                    address: "h:1".into(),
                    files: vec![],
                    lease_secret: String::new(),
                })
                .await,
            ),
        ),
        (
            "Heartbeat",
            code(
                c.heartbeat(HeartbeatRequest {
                    peer_id: "secure-peer".into(),
                    lease_secret: "x".into(),
                })
                .await,
            ),
        ),
        (
            "Announce",
            code(
                c.announce(AnnounceRequest {
                    peer_id: "secure-peer".into(),
                    lease_secret: "x".into(),
                    added: vec![],
                    removed: vec![],
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            "Leave",
            code(
                c.leave(LeaveRequest {
                    peer_id: "secure-peer".into(),
                    lease_secret: "x".into(),
                })
                .await,
            ),
        ),
        (
            "Search",
            code(
                c.search(SearchRequest {
                    query: "a".into(),
                    exact: false,
                    page_size: 0,
                    page_token: String::new(),
                })
                .await,
            ),
        ),
        (
            "ListFiles",
            code(
                c.list_files(ListFilesRequest {
                    page_size: 0,
                    page_token: String::new(),
                })
                .await,
            ),
        ),
        (
            "GetPeersByDigest",
            code(
                c.get_peers_by_digest(GetPeersByDigestRequest { sha256: d })
                    .await,
            ),
        ),
        (
            "ListPeers",
            code(c.list_peers(ListPeersRequest::default()).await),
        ),
    ]
}

async fn http_status(url: &str, method: reqwest::Method, token: Option<&str>) -> u16 {
    p2p_common::tls::install_provider();
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_everywhere_but_health() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("a.txt"), b"a").unwrap();
    let t = tracker(auth(tmp.path()), TlsConfig::default()).await;
    let turl = format!("http://{}", t.local_addr);
    let p = p2p_peer::server::start(peer_cfg(
        &turl,
        &share,
        auth(tmp.path()),
        TlsConfig::default(),
    ))
    .await
    .unwrap();
    let purl = format!("http://{}", p.local_addr);
    // The peer itself got in with the token (it registered and is ready).
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_status(&format!("{purl}/healthz"), reqwest::Method::GET, None).await != 200 {
        assert!(Instant::now() < deadline, "peer never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for token in [None, Some("wrong-token")] {
        for (rpc, code) in rpc_codes(channel(turl.clone()).await, token).await {
            assert_eq!(code, Code::Unauthenticated, "{rpc} with {token:?}");
        }
        for (method, path) in [
            (reqwest::Method::GET, "/files"),
            (reqwest::Method::GET, "/files/a.txt"),
            (reqwest::Method::POST, "/upload"),
            (reqwest::Method::POST, "/leave"),
        ] {
            let s = http_status(&format!("{purl}{path}"), method, token).await;
            assert_eq!(s, 401, "{path} with {token:?}");
        }
    }
    // Both tokens of a rotation are accepted.
    for token in [TOKEN, OLD_TOKEN] {
        for (rpc, code) in rpc_codes(channel(turl.clone()).await, Some(token)).await {
            assert_ne!(code, Code::Unauthenticated, "{rpc} refused {token}");
        }
        assert_eq!(
            http_status(
                &format!("{purl}/files/a.txt"),
                reqwest::Method::GET,
                Some(token)
            )
            .await,
            200
        );
    }
    // Health and metrics stay open.
    assert_eq!(
        http_status(&format!("{purl}/healthz"), reqwest::Method::GET, None).await,
        200
    );
    assert_eq!(
        http_status(&format!("{purl}/metrics"), reqwest::Method::GET, None).await,
        200
    );
    assert_eq!(
        http_status(&format!("{turl}/metrics"), reqwest::Method::GET, None).await,
        200
    );
    let mut h = tonic_health::pb::health_client::HealthClient::new(channel(turl.clone()).await);
    let r = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        r.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // With the token, one peer still cannot act for another: its lease secret is needed.
    let codes = rpc_codes(channel(turl.clone()).await, Some(TOKEN)).await;
    for rpc in ["Heartbeat", "Announce", "Leave"] {
        let code = codes.iter().find(|(r, _)| *r == rpc).unwrap().1;
        assert_eq!(
            code,
            Code::PermissionDenied,
            "{rpc} with a forged lease secret"
        );
    }
    let mut c = TrackerServiceClient::with_interceptor(
        channel(turl.clone()).await,
        with_token(Some(TOKEN)),
    );
    let e = c
        .register(RegisterRequest {
            peer_id: "secure-peer".into(),
            address: "evil:1".into(),
            files: vec![],
            lease_secret: "guess".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    p.shutdown().await.unwrap();
    t.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_rejects_wrong_ca_plaintext_and_missing_client_certs() {
    let tmp = tempfile::tempdir().unwrap();
    let names = ["localhost".to_string(), "127.0.0.1".to_string()];
    p2p_common::tls::generate_dev_certs(&tmp.path().join("a"), &names).unwrap();
    p2p_common::tls::generate_dev_certs(&tmp.path().join("b"), &names).unwrap();
    let set = |d: &str, client_ca: bool| TlsConfig {
        cert: tmp.path().join(d).join("cert.pem"),
        key: tmp.path().join(d).join("key.pem"),
        ca: tmp.path().join(d).join("ca.pem"),
        client_ca: if client_ca {
            tmp.path().join(d).join("ca.pem")
        } else {
            Default::default()
        },
    };
    let t = tracker(AuthConfig::default(), set("a", false)).await;
    let https = format!("https://127.0.0.1:{}", t.local_addr.port());

    let dial = |tls: TlsConfig, url: String| async move {
        let mut ep = Endpoint::from_shared(url)
            .unwrap()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(3));
        if let Some(c) = tls.tonic_client().unwrap() {
            ep = ep.tls_config(c).unwrap();
        }
        match ep.connect().await {
            Err(e) => Err(e.to_string()),
            Ok(ch) => TrackerServiceClient::new(ch)
                .list_files(ListFilesRequest::default())
                .await
                .map(|_| ())
                .map_err(|s| s.to_string()),
        }
    };
    dial(
        TlsConfig {
            ca: set("a", false).ca,
            ..Default::default()
        },
        https.clone(),
    )
    .await
    .expect("right CA");
    let wrong = dial(
        TlsConfig {
            ca: set("b", false).ca,
            ..Default::default()
        },
        https.clone(),
    )
    .await;
    assert!(wrong.is_err(), "a client trusting another CA got through");
    let plain = dial(TlsConfig::default(), format!("http://{}", t.local_addr)).await;
    assert!(plain.is_err(), "a plaintext client got through");

    // Peer HTTP over TLS with client certificates required (mutual TLS).
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("f.txt"), b"f").unwrap();
    let p = p2p_peer::server::start(peer_cfg(
        &https,
        &share,
        AuthConfig::default(),
        set("a", true),
    ))
    .await
    .unwrap();
    let url = format!("https://127.0.0.1:{}/files/f.txt", p.local_addr.port());
    let fetch = |tls: TlsConfig| {
        let url = url.clone();
        async move {
            p2p_common::tls::install_provider();
            let mut b = reqwest::Client::builder().timeout(Duration::from_secs(3));
            if let Some(c) = tls.client_config().unwrap() {
                b = b.tls_backend_preconfigured(c);
            }
            b.build()
                .unwrap()
                .get(url)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    assert_eq!(
        fetch(set("a", false)).await.unwrap(),
        200,
        "client with a certificate"
    );
    assert!(
        fetch(TlsConfig {
            ca: set("a", false).ca,
            ..Default::default()
        })
        .await
        .is_err(),
        "no client certificate"
    );
    assert!(fetch(set("b", false)).await.is_err(), "wrong CA");
    assert!(
        fetch(TlsConfig::default()).await.is_err(),
        "https URL without trust"
    );
    let plain = format!("http://{}/files/f.txt", p.local_addr);
    p2p_common::tls::install_provider();
    assert!(
        reqwest::Client::new().get(plain).send().await.is_err(),
        "plaintext against TLS"
    );
    p.shutdown().await.unwrap();
    t.shutdown().await.unwrap();
}

async fn open_peer(
    tmp: &Path,
    tune: impl FnOnce(&mut p2p_peer::config::PeerConfig),
) -> (p2p_tracker::server::Running, p2p_peer::server::Running) {
    let t = tracker(AuthConfig::default(), TlsConfig::default()).await;
    let share = tmp.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let mut cfg = peer_cfg(
        &format!("http://{}", t.local_addr),
        &share,
        AuthConfig::default(),
        TlsConfig::default(),
    );
    tune(&mut cfg);
    let p = p2p_peer::server::start(cfg).await.unwrap();
    (t, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_loris_is_cut_off_while_downloads_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let content = bytes(2 * 1024 * 1024, 4);
    std::fs::create_dir_all(tmp.path().join("share")).unwrap();
    std::fs::write(tmp.path().join("share/big.bin"), &content).unwrap();
    let (_t, p) = open_peer(tmp.path(), |c| {
        c.peer.header_timeout = Duration::from_secs(1)
    })
    .await;
    let addr: SocketAddr = p.local_addr;

    // The slow client trickles its request line a byte at a time.
    let slow = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        for b in b"GET /files/big.bin HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            let mut buf = [0u8; 512];
            match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => break, // the server answered (408) and will close
                Err(_) => {}
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "slow client never cut off"
            );
        }
        started.elapsed()
    });
    // Meanwhile a normal client downloads, twice.
    for _ in 0..2 {
        let (s, body) = tokio::task::spawn_blocking({
            let url = format!("http://{addr}/files/big.bin");
            move || common::http_get(&url).unwrap()
        })
        .await
        .unwrap();
        assert_eq!(s, 200);
        assert_eq!(body.len(), content.len());
    }
    let held = slow.await.unwrap();
    assert!(
        held < Duration::from_secs(3),
        "slow client held its connection {held:?}"
    );

    // A client that connects and sends nothing is cut as well.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("idle connection still open after 5 s")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "idle for {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_rate_limited_and_transfers_capped() {
    let tmp = tempfile::tempdir().unwrap();
    let (_t, p) = open_peer(tmp.path(), |c| {
        c.peer.uploads_per_minute = 2;
        c.peer.max_concurrent_transfers = 1;
    })
    .await;
    let url = format!("http://{}", p.local_addr);
    p2p_common::tls::install_provider();
    let client = reqwest::Client::new();
    let up = |name: &'static str| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(name.as_bytes().to_vec()).file_name(name),
        );
        client.post(format!("{url}/upload")).multipart(form).send()
    };
    assert_eq!(up("one").await.unwrap().status(), 201);
    assert_eq!(up("two").await.unwrap().status(), 201);
    let r = up("three").await.unwrap();
    assert_eq!(r.status(), 429);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("too many uploads"));

    // One transfer at a time: a second concurrent download gets 503 while the first is open.
    std::fs::write(tmp.path().join("share/big.bin"), bytes(8 * 1024 * 1024, 1)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let first = loop {
        let r = client
            .get(format!("{url}/files/big.bin"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break r;
        }
        assert!(Instant::now() < deadline, "big.bin never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let second = client
        .get(format!("{url}/files/big.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 503);
    let all = first.bytes().await.unwrap();
    assert_eq!(all.len(), 8 * 1024 * 1024);
    // The permit is back once the first body is done.
    let third = client
        .get(format!("{url}/files/big.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 200);
}
