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
    let mut cfg = p2p_tracker::config::TrackerConfig::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.auth = auth;
    p2p_tracker::server::start(cfg).await.unwrap()
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
