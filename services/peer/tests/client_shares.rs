//! What one client address may hold of a peer (issue 28 points 3 and 4): event streams and
//! listings, bounded per address and in all and cut when their client stops reading; transfer
//! slots, shared between addresses. Real tracker and peer servers in this process, on
//! loopback; distinct client addresses from 127.0.0.0/8.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A client whose connections come from `from`.
fn client_from(from: IpAddr) -> reqwest::Client {
    p2p_common::tls::install_provider();
    reqwest::Client::builder()
        .local_address(from)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn peer(
    tracker: &p2p_tracker::server::Running,
    share: &Path,
    tweak: impl FnOnce(&mut p2p_peer::config::PeerConfig),
) -> p2p_peer::server::Running {
    let p = common::start_peer(tracker.local_addr, "shared", share, tweak).await;
    let url = format!("http://{}/healthz", p.local_addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client_from(addr(1))
        .get(&url)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "peer not healthy in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p
}

/// A raw HTTP/1.1 request from `from` whose client reads nothing until told: a receive buffer
/// as small as the kernel allows, so the server's sends stall soon.
async fn stalled_request(from: IpAddr, to: SocketAddr, path: &str) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    let mut s = sock.connect(to).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// The status of the answer on `s`, reading no more than its first bytes.
async fn status_of(s: &mut TcpStream) -> u16 {
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut head))
        .await
        .expect("an answer within 20 s")
        .unwrap();
    let line = String::from_utf8_lossy(&head);
    line[9..12]
        .parse()
        .unwrap_or_else(|_| panic!("status line {line:?}"))
}

async fn metric(base: SocketAddr, series: &str) -> f64 {
    let text = client_from(addr(1))
        .get(format!("http://{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not in /metrics"))
}

/// Issue 28 point 3: 9,968 open `/api/events` streams from one address were all accepted (they
/// took the connection budget and `/healthz` timed out). With the defaults, one address holds 8
/// streams and listings, all addresses 64; file serving and health answer meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_and_listings_are_bounded_per_address_and_in_all() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("s");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("small.txt"), b"served whatever the page does").unwrap();
    let t = common::start_tracker().await;
    let p = peer(&t, &share, |_| {}).await;
    let base = p.local_addr;
    let events = format!("http://{base}/api/events");
    let mut held = Vec::new();
    // One address: its share, then 429, for event streams and listings alike.
    let first = client_from(addr(1));
    for i in 0..8 {
        let r = first.get(&events).send().await.unwrap();
        assert_eq!(r.status(), 200, "stream {i} from one address");
        held.push(r);
    }
    let r = first.get(&events).send().await.unwrap();
    assert_eq!(r.status(), 429, "a ninth stream from one address");
    let r = first
        .get(format!("http://{base}/files"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "a listing past the address's share");
    // Seven more addresses fill the bound in all; an address holding nothing then gets 503.
    for a in 2..=8 {
        let c = client_from(addr(a));
        for _ in 0..8 {
            let r = c.get(&events).send().await.unwrap();
            assert_eq!(r.status(), 200, "a stream from 127.0.0.{a}");
            held.push(r);
        }
    }
    let other = client_from(addr(9));
    let r = other.get(&events).send().await.unwrap();
    assert_eq!(r.status(), 503, "a stream past the bound in all");
    // Health and files are not streams.
    let r = other
        .get(format!("http://{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = other
        .get(format!("http://{base}/files/small.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        &r.bytes().await.unwrap()[..],
        b"served whatever the page does"
    );
    assert_eq!(
        metric(
            base,
            r#"p2p_peer_streams_refused_total{reason="max_streams_per_client"}"#
        )
        .await,
        2.0
    );
    assert_eq!(
        metric(
            base,
            r#"p2p_peer_streams_refused_total{reason="max_streams"}"#
        )
        .await,
        1.0
    );
    // A stream whose client goes away gives its slot back.
    held.truncate(held.len() - 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = other.get(&events).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "no slot came back in 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    p.shutdown().await.unwrap();
    t.shutdown().await.unwrap();
}

/// Issue 28 point 3: a `/files` listing of a large share whose client stopped reading was never
/// cut (`io_timeout` cut only file bodies): each such client held the listing open with what
/// it had buffered. Now a listing that cannot send for `io_timeout` is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_whose_client_stops_reading_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("s");
    std::fs::create_dir_all(&share).unwrap();
    // ~300 bytes of JSON per file: a listing of ~9 MB, more than the socket buffers hold.
    let long = "n".repeat(200);
    for i in 0..30_000 {
        std::fs::write(share.join(format!("{long}{i:05}")), i.to_string()).unwrap();
    }
    let t = common::start_tracker().await;
    let p = peer(&t, &share, |cfg| {
        cfg.peer.io_timeout = Duration::from_secs(1);
    })
    .await;
    let mut s = stalled_request(addr(1), p.local_addr, "/files").await;
    assert_eq!(status_of(&mut s).await, 200);
    // The client reads nothing for three io_timeouts...
    tokio::time::sleep(Duration::from_secs(3)).await;
    // ... during which the peer answers others ...
    let r = client_from(addr(2))
        .get(format!("http://{}/healthz", p.local_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // ... and then reads what is left: the listing was cut, so it never ends as a whole
    // chunked body does.
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the listing neither ended nor was cut in 60 s"
    );
    // What the socket buffers and the connection held when the listing stopped: some of it.
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
    eprintln!("read {} bytes of a cut listing", got.len());
    assert!(got.len() > head_end + 4, "no listing bytes at all");
    assert!(
        !got.ends_with(b"\r\n0\r\n\r\n"),
        "the whole listing ({} bytes) reached a client that stopped reading for 3 io_timeouts",
        got.len()
    );
    // The slot it held is back: the same address lists the share.
    let r = client_from(addr(1))
        .get(format!("http://{}/files", p.local_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let files: Vec<serde_json::Value> = r.json().await.unwrap();
    assert_eq!(files.len(), 30_000);
    p.shutdown().await.unwrap();
    t.shutdown().await.unwrap();
}

/// Issue 28 point 4: 64 slow readers from one address held every transfer slot (`/files` 503,
/// a `get` dropped the seed). Now one address holds slots until half of them are held (16 each
/// past that, the default `max_transfers_per_client`), and others are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_a_share_of_the_transfer_slots() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("s");
    std::fs::create_dir_all(&share).unwrap();
    let big = common::bytes(16 << 20, 28);
    std::fs::write(share.join("big.bin"), &big).unwrap();
    let t = common::start_tracker().await;
    let p = peer(&t, &share, |_| {}).await;
    let mut readers = Vec::new();
    let (mut served, mut refused) = (0, 0);
    for _ in 0..64 {
        let mut s = stalled_request(addr(1), p.local_addr, "/files/big.bin").await;
        match status_of(&mut s).await {
            200 => served += 1,
            429 => refused += 1,
            other => panic!("status {other} for a slow reader"),
        }
        readers.push(s);
    }
    assert_eq!(
        (served, refused),
        (32, 32),
        "one address's slow readers held {served} of the 64 transfer slots"
    );
    assert_eq!(
        metric(
            p.local_addr,
            r#"p2p_peer_transfers_refused_total{reason="max_transfers_per_client"}"#
        )
        .await,
        32.0
    );
    // Other addresses are served meanwhile: files by name and by digest, and the listing.
    let digest = common::sha256_hex(&big);
    for a in 2..=4 {
        let c = client_from(addr(a));
        for path in ["/files/big.bin".to_string(), format!("/blobs/{digest}")] {
            let r = c
                .get(format!("http://{}{path}", p.local_addr))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path} from 127.0.0.{a}");
            assert_eq!(r.bytes().await.unwrap().len(), big.len());
        }
        let r = c
            .get(format!("http://{}/files", p.local_addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    drop(readers);
    p.shutdown().await.unwrap();
    t.shutdown().await.unwrap();
}
