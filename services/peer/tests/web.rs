//! The web page's routes and JSON, its sessions and its cross-site rule, against in-process
//! trackers and peers on loopback (the browser itself is driven by scripts/web-test.sh).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use p2p_common::auth::AuthConfig;
use reqwest::header;
use serde_json::Value;

const TOKEN: &str = "web-join-token-0123456789";

async fn tracker(auth: AuthConfig) -> p2p_tracker::server::Running {
    common::start_tracker_with_auth(auth).await
}

async fn peer(
    id: &str,
    tracker: &str,
    share: &Path,
    auth: AuthConfig,
) -> p2p_peer::server::Running {
    std::fs::create_dir_all(share).unwrap();
    let mut cfg = p2p_peer::config::PeerConfig::default();
    cfg.peer.id = id.into();
    cfg.peer.listen = "127.0.0.1:0".parse().unwrap();
    cfg.peer.files_dir = share.to_path_buf();
    cfg.peer.scan_interval = Duration::from_millis(200);
    cfg.tracker.endpoint = tracker.into();
    cfg.tracker.heartbeat_interval = Duration::from_millis(300);
    cfg.auth = auth;
    p2p_peer::server::start(cfg).await.unwrap()
}

fn client() -> reqwest::Client {
    p2p_common::tls::install_provider();
    reqwest::Client::new()
}

/// Polls `f` every 50 ms until it gives a value, for at most 15 s.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn json(c: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = c.get(url).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_its_json_and_the_cross_site_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tracker(AuthConfig::default()).await;
    let turl = format!("http://{}", t.local_addr);
    std::fs::create_dir_all(tmp.path().join("a")).unwrap();
    std::fs::write(tmp.path().join("a/a.txt"), b"alpha").unwrap();
    std::fs::create_dir_all(tmp.path().join("b")).unwrap();
    let b_bytes = common::bytes(300_000, 7);
    std::fs::write(tmp.path().join("b/b.bin"), &b_bytes).unwrap();
    let a = peer("web-a", &turl, &tmp.path().join("a"), AuthConfig::default()).await;
    let b = peer("web-b", &turl, &tmp.path().join("b"), AuthConfig::default()).await;
    let (aurl, burl) = (
        format!("http://{}", a.local_addr),
        format!("http://{}", b.local_addr),
    );
    let c = client();

    // The page and its assets: embedded, under a CSP that allows this origin only.
    let r = c.get(format!("{aurl}/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("http"),
        "{csp}"
    );
    assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"src="/ui/app.js""#), "{html}");
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline script or style"
    );
    for (asset, kind) in [("app.js", "text/javascript"), ("style.css", "text/css")] {
        let r = c.get(format!("{aurl}/ui/{asset}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    }
    for bad in [
        "/ui/index.html",
        "/ui/..%2f..%2fCargo.toml",
        "/ui/app.js.map",
    ] {
        let s = c.get(format!("{aurl}{bad}")).send().await.unwrap().status();
        assert_eq!(s, 404, "{bad}");
    }

    // Status: who, what version, which tracker, ready; this loopback client may fetch.
    let status = until("peer a ready", || async {
        let (_, v) = json(&c, &format!("{aurl}/api/status")).await;
        (v["ready"] == true).then_some(v)
    })
    .await;
    assert_eq!(status["peer_id"], "web-a");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["trackers"][0], turl.as_str());
    assert_eq!(status["auth"], false);
    assert_eq!(status["fetch"]["allowed"], true);
    assert_eq!(status["limits"]["upload_limit"], "0");

    // The share, with pieces.
    let share = until("a.txt indexed", || async {
        let (_, v) = json(&c, &format!("{aurl}/api/share")).await;
        (v.as_array().is_some_and(|a| !a.is_empty())).then_some(v)
    })
    .await;
    assert_eq!(share[0]["name"], "a.txt");
    assert_eq!(share[0]["sha256"], common::sha256_hex(b"alpha"));
    assert_eq!(
        (
            share[0]["pieces"].as_u64(),
            share[0]["pieces_held"].as_u64()
        ),
        (Some(1), Some(1))
    );

    // A search from a's page finds b's file with b as its holder, not held here.
    let found = until("b.bin on the network", || async {
        let (s, v) = json(&c, &format!("{aurl}/api/search?q=B.BI")).await;
        (s == 200 && v["matches"].as_array().is_some_and(|m| !m.is_empty())).then_some(v)
    })
    .await;
    let m = &found["matches"][0];
    assert_eq!(m["name"], "b.bin");
    assert_eq!(m["sha256"], common::sha256_hex(&b_bytes));
    assert_eq!(m["holders"][0]["peer_id"], "web-b");
    assert_eq!(m["holders"][0]["address"], b.advertised.as_str());
    assert_eq!(m["holders"][0]["partial"], false);
    assert!(m.get("here_as").is_none(), "{m}");
    // 300,000 bytes in pieces of 256 KiB.
    assert_eq!(m["pieces"], 2);
    let (_, all) = json(&c, &format!("{aurl}/api/search?q=")).await;
    assert_eq!(all["matches"].as_array().map(Vec::len), Some(2), "{all}");
    let (s, _) = json(&c, &format!("{aurl}/api/search?q={}", "x".repeat(300))).await;
    assert_eq!(s, 400);

    // State-changing requests from another site are refused whatever the route; what is no
    // browser (no Origin, no Sec-Fetch-Site) and the page itself are not affected.
    let body = r#"{"name":"b.bin"}"#;
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        for path in ["/downloads", "/upload", "/api/session"] {
            let r = c
                .post(format!("{aurl}{path}"))
                .header(name, value)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{path} with {name}: {value}");
            let e: Value = r.json().await.unwrap();
            assert!(e["error"].as_str().unwrap().contains("cross-site"), "{e}");
        }
    }
    assert!(
        json(&c, &format!("{aurl}/api/share"))
            .await
            .1
            .as_array()
            .unwrap()
            .len()
            == 1
    );
    let r = c
        .post(format!("{aurl}/downloads"))
        .header("origin", &aurl)
        .header("sec-fetch-site", "same-origin")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stream = r.text().await.unwrap();
    assert!(
        stream.lines().last().unwrap().contains(r#""event":"done""#),
        "{stream}"
    );
    let share = until("b.bin in a's share", || async {
        let (_, v) = json(&c, &format!("{aurl}/api/share")).await;
        (v.as_array().is_some_and(|a| a.len() == 2)).then_some(v)
    })
    .await;
    assert_eq!(share[1]["name"], "b.bin");
    // Now a holds it: the search says so, for a download link.
    let (_, found) = json(&c, &format!("{aurl}/api/search?q=b.bin")).await;
    assert_eq!(found["matches"][0]["here_as"], "b.bin", "{found}");

    // What moved: b served the file; the events stream says the same, live.
    let moved = until("b's serving total", || async {
        let (_, v) = json(&c, &format!("{burl}/api/transfers")).await;
        (v["serving"]["total"].as_u64() >= Some(b_bytes.len() as u64)).then_some(v)
    })
    .await;
    assert!(moved["downloads"].as_array().unwrap().is_empty(), "{moved}");
    let mut r = c.get(format!("{burl}/api/events")).send().await.unwrap();
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
    let chunk = tokio::time::timeout(Duration::from_secs(5), r.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.starts_with("event: transfers\ndata: {"), "{text}");
    assert!(text.contains(r#""serving":{"active""#), "{text}");
    drop(r);

    // Without a token there is no session to open.
    let r = c
        .post(format!("{aurl}/api/session"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(!r.headers().contains_key(header::SET_COOKIE));

    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    t.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_page_wants_a_session() {
    let tmp = tempfile::tempdir().unwrap();
    let auth = || AuthConfig {
        token: TOKEN.into(),
        ..Default::default()
    };
    let t = tracker(auth()).await;
    let turl = format!("http://{}", t.local_addr);
    std::fs::create_dir_all(tmp.path().join("s")).unwrap();
    std::fs::write(tmp.path().join("s/a.txt"), b"alpha").unwrap();
    let p = peer("web-auth", &turl, &tmp.path().join("s"), auth()).await;
    let url = format!("http://{}", p.local_addr);
    let c = client();

    // The page itself is open: it asks for the token. Its JSON is not.
    assert_eq!(c.get(format!("{url}/")).send().await.unwrap().status(), 200);
    assert_eq!(
        c.get(format!("{url}/ui/app.js"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for path in [
        "/api/status",
        "/api/share",
        "/api/search?q=a",
        "/api/transfers",
        "/api/events",
    ] {
        let s = c.get(format!("{url}{path}")).send().await.unwrap().status();
        assert_eq!(s, 401, "{path}");
    }

    let login = |token: &str| {
        c.post(format!("{url}/api/session"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(serde_json::json!({ "token": token }).to_string())
            .send()
    };
    let r = login("wrong-token").await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(!r.headers().contains_key(header::SET_COOKIE));
    let r = login(TOKEN).await.unwrap();
    assert_eq!(r.status(), 204);
    let set = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Max-Age=43200", "Path=/"] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    // Named by the peer's port: two peers on one host keep a session each.
    let name = format!("p2p_session_{}", p.local_addr.port());
    let id = cookie.strip_prefix(&format!("{name}=")).unwrap();
    assert_eq!(id.len(), 64, "{cookie}");
    assert!(!cookie.contains(TOKEN));

    let with = |path: &str, cookie: &str| {
        c.get(format!("{url}{path}"))
            .header(header::COOKIE, cookie)
            .send()
    };
    let status: Value = with("/api/status", &cookie)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["auth"], true);
    assert_eq!(status["fetch"]["allowed"], true);
    // A plain link carries the session: "save as" works.
    let r = with("/files/a.txt", &cookie).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"alpha");
    // Another id, the token itself as a cookie: refused.
    let forged = format!("{name}={}", "0".repeat(64));
    assert_eq!(with("/api/status", &forged).await.unwrap().status(), 401);
    let token_cookie = format!("{name}={TOKEN}");
    assert_eq!(
        with("/api/status", &token_cookie).await.unwrap().status(),
        401
    );

    // A session is no way around the cross-site rule.
    let r = c
        .post(format!("{url}/downloads"))
        .header(header::COOKIE, &cookie)
        .header("origin", "http://evil.example")
        .body(r#"{"name":"a.txt"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(format!("{url}/downloads"))
        .header(header::COOKIE, &cookie)
        .header("origin", &url)
        .body(r#"{"name":"a.txt"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "same origin with the session");
    assert!(r.text().await.unwrap().contains(r#""status":"identical""#));

    // Logging out ends the session on the server, whatever the browser keeps.
    let r = c
        .delete(format!("{url}/api/session"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(with("/api/status", &cookie).await.unwrap().status(), 401);

    p.shutdown().await.unwrap();
    t.shutdown().await.unwrap();
}
