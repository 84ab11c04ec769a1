//! Bounds on what the tracker holds, in all and per source address (issue 28 point 5): a real
//! tracker server in this process on 127.0.0.1, clients from several loopback addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use p2p_common::proto::tracker_service_client::TrackerServiceClient;
use p2p_common::proto::{AnnounceRequest, FileInfo, LeaveRequest, RegisterRequest};
use p2p_tracker::config::TrackerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

type Client = TrackerServiceClient<Channel>;

async fn client(tracker: SocketAddr, from: u8) -> Client {
    let channel = Endpoint::from_shared(format!("http://{tracker}"))
        .unwrap()
        .local_address(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, from))))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    TrackerServiceClient::new(channel)
}

fn files(prefix: &str, n: usize, name_len: usize) -> Vec<FileInfo> {
    (0..n)
        .map(|i| {
            let tag = format!("{prefix}{i:04}");
            FileInfo {
                name: format!("{tag:x<name_len$}"),
                size: 1,
                sha256: format!("{:064x}", i + 1),
                pieces_root: String::new(),
            }
        })
        .collect()
}

async fn register(c: &mut Client, id: &str, files: Vec<FileInfo>) -> Result<String, tonic::Status> {
    c.register(RegisterRequest {
        peer_id: id.into(),
        address: "127.0.0.1:5000".into(),
        files,
        lease_secret: String::new(),
    })
    .await
    .map(|r| r.into_inner().lease_secret)
}

async fn announce(
    c: &mut Client,
    id: &str,
    secret: &str,
    added: Vec<FileInfo>,
) -> Result<u32, tonic::Status> {
    c.announce(AnnounceRequest {
        peer_id: id.into(),
        lease_secret: secret.into(),
        added,
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().files)
}

fn refused(r: Result<impl std::fmt::Debug, tonic::Status>, key: &str) {
    let s = r.expect_err("refused");
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message().contains(key),
        "{key} not named: {}",
        s.message()
    );
}

/// `GET /metrics` over plain HTTP/1.1.
async fn metrics(tracker: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(tracker).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracker_holds_no_more_than_its_bounds_in_all_and_per_address() {
    let mut cfg = TrackerConfig::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.registry.lease_ttl = Duration::from_secs(4);
    cfg.registry.max_peers = 5;
    cfg.registry.max_files = 100;
    cfg.registry.max_name_bytes = 1_000_000;
    cfg.registry.max_peers_per_address = 3;
    cfg.registry.max_files_per_address = 50;
    cfg.registry.max_name_bytes_per_address = 5000;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let t = p2p_tracker::server::start_on(cfg, listener).await.unwrap();
    let addr = t.local_addr;

    // Peers from one address.
    let mut one = client(addr, 1).await;
    let mut secrets = Vec::new();
    for p in 0..3 {
        secrets.push(register(&mut one, &format!("p{p}"), vec![]).await.unwrap());
    }
    refused(
        register(&mut one, "p3", vec![]).await,
        "registry.max_peers_per_address",
    );
    // Another client taking a live id is refused for the id, not counted as a new peer.
    let taken = register(&mut one, "p0", vec![]).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");

    // Files and name bytes from another address, on Register and on Announce.
    let mut two = client(addr, 2).await;
    let q = register(&mut two, "q0", files("a", 40, 100)).await.unwrap();
    refused(
        announce(&mut two, "q0", &q, files("b", 20, 10)).await,
        "registry.max_files_per_address",
    );
    refused(
        announce(&mut two, "q0", &q, files("c", 8, 200)).await,
        "registry.max_name_bytes_per_address",
    );
    let held = announce(&mut two, "q0", &q, files("d", 5, 100)).await;
    assert_eq!(held.unwrap(), 45);
    refused(
        register(&mut two, "q1", files("e", 10, 100)).await,
        "registry.max_files_per_address",
    );

    // In all: five peers, a hundred files.
    let mut three = client(addr, 3).await;
    register(&mut three, "r0", vec![]).await.unwrap();
    refused(
        register(&mut three, "r1", vec![]).await,
        "registry.max_peers",
    );
    one.leave(LeaveRequest {
        peer_id: "p0".into(),
        lease_secret: secrets[0].clone(),
    })
    .await
    .unwrap();
    refused(
        register(&mut three, "r1", files("f", 60, 10)).await,
        "registry.max_files",
    );
    register(&mut three, "r1", files("f", 50, 10))
        .await
        .unwrap();

    let text = metrics(addr).await;
    let refusals = |reason: &str| {
        series(
            &text,
            &format!("p2p_tracker_refusals_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(refusals("peers_per_address"), 1.0);
    assert_eq!(refusals("files_per_address"), 2.0);
    assert_eq!(refusals("name_bytes_per_address"), 1.0);
    assert_eq!(refusals("peers"), 1.0);
    assert_eq!(refusals("files"), 1.0);
    assert_eq!(refusals("name_bytes"), 0.0);

    // When the leases end, so do the counts: the first address registers again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match register(&mut one, "p9", files("g", 50, 100)).await {
            Ok(_) => break,
            Err(s) => {
                assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                assert!(Instant::now() < deadline, "budget never came back: {s:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    t.shutdown().await.unwrap();
}
