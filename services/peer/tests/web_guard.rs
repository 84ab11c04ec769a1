//! What a browser-side attacker or a token guesser can do to a peer's web routes (issue 28):
//! real tracker and peer servers in this process, on loopback, clients from several loopback
//! addresses.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use p2p_common::auth::AuthConfig;
use reqwest::header;

const TOKEN: &str = "guard-join-token-0123456789";

fn auth() -> AuthConfig {
    AuthConfig {
        token: TOKEN.into(),
        ..Default::default()
    }
}

async fn tracker(auth: AuthConfig) -> p2p_tracker::server::Running {
    common::start_tracker_with_auth(auth).await
}

async fn peer(
    tracker: &p2p_tracker::server::Running,
    share: &Path,
    auth: AuthConfig,
) -> p2p_peer::server::Running {
    std::fs::create_dir_all(share).unwrap();
    common::start_peer(tracker.local_addr, "guarded", share, |cfg| cfg.auth = auth).await
}

/// A client whose connections come from `from`.
fn client_from(from: IpAddr) -> reqwest::Client {
    p2p_common::tls::install_provider();
    reqwest::Client::builder()
        .local_address(from)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Issue 28 point 9: 3,000 wrong tokens from 300 loopback addresses all got 401, never 429 (the
/// only limit was per address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guesses_from_many_addresses_meet_a_limit_in_all() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tracker(auth()).await;
    let p = peer(&t, &tmp.path().join("s"), auth()).await;
    let url = format!("http://{}/api/session", p.local_addr);
    let (mut unauthorized, mut limited) = (0, 0);
    for i in 0..300u32 {
        let from = IpAddr::V4(Ipv4Addr::from(0x7f00_0100 + i));
        let c = client_from(from);
        for _ in 0..10 {
            let r = c
                .post(&url)
                .header(header::CONTENT_TYPE, "application/json")
                .body(r#"{"token":"wrong"}"#)
                .send()
                .await
                .unwrap();
            match r.status().as_u16() {
                401 => unauthorized += 1,
                429 => limited += 1,
                s => panic!("status {s}"),
            }
        }
    }
    assert!(
        unauthorized <= 300,
        "{unauthorized} guesses were tried ({limited} refused)"
    );
    assert_eq!(unauthorized + limited, 3000);
    p.shutdown().await.unwrap();
    t.shutdown().await.unwrap();
}

/// Issue 28 point 10: a search text with a control character is the client's mistake (400),
/// not a failure of the tracker behind the peer (it answered 502).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_with_a_control_character_is_a_bad_request() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tracker(AuthConfig::default()).await;
    let p = peer(&t, &tmp.path().join("s"), AuthConfig::default()).await;
    let c = client_from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    for q in ["%00a", "a%0Ab", "%7F"] {
        let r = c
            .get(format!("http://{}/api/search?q={q}", p.local_addr))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            400,
            "q={q}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    let r = c
        .get(format!("http://{}/api/search?q=abc", p.local_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    p.shutdown().await.unwrap();
    t.shutdown().await.unwrap();
}

/// One HTTP/1.1 request over a fresh connection with the given `Host` and extra headers;
/// the status code.
async fn raw(
    peer: std::net::SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(peer).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text}"))
}

/// Issue 28 point 7: a page on `rebind.attacker.test:PORT` whose name later resolves to
/// 127.0.0.1 sends its own name in `Host` (and `Origin`, `Sec-Fetch-Site: same-origin`): the
/// peer answered the page, `/api/*`, `/upload` 201 and `/downloads` 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_browser_actions_answer_only_under_the_peers_own_names() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tracker(AuthConfig::default()).await;
    std::fs::create_dir_all(tmp.path().join("s")).unwrap();
    let p = common::start_peer(t.local_addr, "rebound", &tmp.path().join("s"), |cfg| {
        cfg.peer.allowed_hosts = vec!["peer.example".into()];
    })
    .await;
    let port = p.local_addr.port();
    let boundary = "XbOuNdArY";
    let upload = |name: &str| {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\nhello {name}\r\n--{boundary}--\r\n"
        )
        .into_bytes()
    };
    let multipart = format!("multipart/form-data; boundary={boundary}");
    let downloads = br#"{"name":"nobody-has-this.bin"}"#;

    let evil = format!("rebind.attacker.test:{port}");
    let evil_origin = format!("http://{evil}");
    let browser = |origin: &str| {
        vec![
            ("Origin", origin.to_owned()),
            ("Sec-Fetch-Site", "same-origin".to_owned()),
        ]
    };
    let with = |v: &Vec<(&'static str, String)>, more: &[(&'static str, &str)]| {
        let mut all: Vec<(&str, String)> = v.clone();
        all.extend(more.iter().map(|(k, v)| (*k, (*v).to_owned())));
        all
    };
    let call = |method: &'static str,
                path: &'static str,
                host: String,
                h: Vec<(&'static str, String)>,
                body: Vec<u8>| async move {
        let refs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        raw(p.local_addr, method, path, &host, &refs, &body).await
    };

    // Under the attacker's name: nothing.
    for path in ["/", "/ui/app.js", "/api/status", "/api/share"] {
        assert_eq!(
            call("GET", path, evil.clone(), vec![], vec![]).await,
            403,
            "{path}"
        );
    }
    let h = with(&browser(&evil_origin), &[("Content-Type", &multipart)]);
    assert_eq!(
        call("POST", "/upload", evil.clone(), h, upload("evil.txt")).await,
        403
    );
    let h = with(
        &browser(&evil_origin),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(
        call("POST", "/downloads", evil.clone(), h, downloads.to_vec()).await,
        403
    );
    assert!(!tmp.path().join("s/evil.txt").exists());

    // Under its own names: answered.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("peer.example:{port}"),
    ] {
        assert_eq!(
            call("GET", "/", host.clone(), vec![], vec![]).await,
            200,
            "{host}"
        );
        assert_eq!(
            call("GET", "/api/status", host.clone(), vec![], vec![]).await,
            200,
            "{host}"
        );
        let origin = format!("http://{host}");
        let h = with(&browser(&origin), &[("Content-Type", &multipart)]);
        let name = format!("ok-{}.txt", host.split(':').next().unwrap_or("x"));
        assert_eq!(
            call("POST", "/upload", host.clone(), h, upload(&name)).await,
            201,
            "{host}"
        );
    }
    // A client that is no browser (no Origin) may use any name for the routes it uses.
    let h = vec![("Content-Type", multipart.clone())];
    assert_eq!(
        call("POST", "/upload", evil.clone(), h, upload("cli.txt")).await,
        201
    );
    assert_eq!(
        call("GET", "/files", evil.clone(), vec![], vec![]).await,
        200
    );

    p.shutdown().await.unwrap();
    t.shutdown().await.unwrap();
}

/// Logs in to `peer` from `from`; the `name=value` of the session cookie it sets.
async fn login(peer: std::net::SocketAddr, from: IpAddr) -> String {
    let r = client_from(from)
        .post(format!("http://{peer}/api/session"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(serde_json::json!({ "token": TOKEN }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let set = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    set.split(';').next().unwrap().to_owned()
}

/// Issue 28 point 8: browsers send a host's cookies to every port. Two peers on one host
/// overwrote each other's `p2p_session`, and another server on the host that received it
/// could replay it to the peer and read its private `/files`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cookie_is_this_peers_and_useless_replayed_from_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tracker(auth()).await;
    let a = peer(&t, &tmp.path().join("a"), auth()).await;
    let b = common::start_peer(t.local_addr, "guarded-b", &tmp.path().join("b"), |cfg| {
        cfg.auth = auth();
    })
    .await;
    let home = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (ca, cb) = (
        login(a.local_addr, home).await,
        login(b.local_addr, home).await,
    );
    let name = |c: &str| c.split('=').next().unwrap_or_default().to_owned();
    assert_ne!(name(&ca), name(&cb), "one browser keeps both sessions");

    let files = |peer: std::net::SocketAddr, from: IpAddr, cookie: String| async move {
        client_from(from)
            .get(format!("http://{peer}/files"))
            .header(header::COOKIE, cookie)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // Both cookies in one Cookie header, as the browser sends them to either port.
    let both = format!("{ca}; {cb}");
    assert_eq!(files(a.local_addr, home, both.clone()).await, 200);
    assert_eq!(files(b.local_addr, home, both.clone()).await, 200);
    // A's cookie is nothing to B, and nothing from another address.
    assert_eq!(files(b.local_addr, home, ca.clone()).await, 401);
    let elsewhere = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));
    assert_eq!(files(a.local_addr, elsewhere, ca.clone()).await, 401);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    t.shutdown().await.unwrap();
}
