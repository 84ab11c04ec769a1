//! The swarm fields over gRPC, against a real tracker on loopback: pieces_root and partial
//! holders travel in both directions, and malformed ones are INVALID_ARGUMENT; ListPeers names
//! the peers a swarm can be grown onto.

use std::time::Duration;

use p2p_common::failover::FailoverChannel;
use p2p_common::proto::{
    AnnounceRequest, FileInfo, GetPeersByDigestRequest, ListFilesRequest, ListPeersRequest,
    RegisterRequest, SearchRequest,
};
use p2p_tracker::config::TrackerConfig;
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::Endpoint;

type Client = p2p_common::TrackerClient;

async fn tracker() -> (p2p_tracker::server::Running, Client) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = p2p_tracker::server::start_on(TrackerConfig::default(), listener)
        .await
        .unwrap();
    let channel = Endpoint::from_shared(format!("http://{}", running.local_addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .connect_lazy();
    let client = p2p_common::tracker_client(FailoverChannel::new(vec![channel]).unwrap(), None);
    (running, client)
}

fn hex32(byte: u8) -> String {
    format!("{byte:02x}").repeat(32)
}

fn info(name: &str, byte: u8, root: &str) -> FileInfo {
    FileInfo {
        name: name.into(),
        size: 4096,
        sha256: hex32(byte),
        pieces_root: root.into(),
    }
}

async fn register(c: &mut Client, id: &str, files: Vec<FileInfo>) -> String {
    c.register(RegisterRequest {
        peer_id: id.into(),
        address: format!("127.0.0.1:{}", 5000 + id.len()),
        files,
        lease_secret: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
    .lease_secret
}

#[tokio::test]
async fn roots_and_partial_holders_travel_over_grpc() {
    let (_tracker, mut c) = tracker().await;
    let root = hex32(0xab);
    register(&mut c, "seed", vec![info("movie.mkv", 1, &root)]).await;
    let secret = register(&mut c, "leech", vec![]).await;
    let n = c
        .announce(AnnounceRequest {
            peer_id: "leech".into(),
            lease_secret: secret.clone(),
            // The name of a partial holding is ignored: it never shows up in Search.
            partial_added: vec![info("other-name.mkv", 1, &root), info("", 2, &root)],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.files, 2);

    let found = c
        .search(SearchRequest {
            query: "mkv".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.matches.len(), 1);
    let m = &found.matches[0];
    let file = m.file.as_ref().unwrap();
    assert_eq!(
        (file.name.as_str(), file.pieces_root.as_str()),
        ("movie.mkv", root.as_str())
    );
    assert_eq!(m.peers.len(), 1);
    assert_eq!(m.peers[0].peer_id, "seed");
    assert_eq!(m.peers[0].pieces_root, root);
    assert!(!m.peers[0].partial);
    let listed = c
        .list_files(ListFilesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.files.len(), 1, "partial holdings are not files");

    let by_digest = c
        .get_peers_by_digest(GetPeersByDigestRequest { sha256: hex32(1) })
        .await
        .unwrap()
        .into_inner();
    let peers: Vec<(&str, bool, &str)> = by_digest
        .peers
        .iter()
        .map(|p| (p.peer_id.as_str(), p.partial, p.pieces_root.as_str()))
        .collect();
    assert_eq!(
        peers,
        [
            ("seed", false, root.as_str()),
            ("leech", true, root.as_str())
        ]
    );
    let only_partial = c
        .get_peers_by_digest(GetPeersByDigestRequest { sha256: hex32(2) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(only_partial.size, 4096);
    assert_eq!(only_partial.peers.len(), 1);
    assert!(only_partial.peers[0].partial);

    // Finished: announced complete, given up on the other.
    c.announce(AnnounceRequest {
        peer_id: "leech".into(),
        lease_secret: secret,
        added: vec![info("movie.mkv", 1, &root)],
        partial_removed: vec![hex32(2)],
        ..Default::default()
    })
    .await
    .unwrap();
    let by_digest = c
        .get_peers_by_digest(GetPeersByDigestRequest { sha256: hex32(1) })
        .await
        .unwrap()
        .into_inner();
    assert!(by_digest.peers.iter().all(|p| !p.partial));
    assert_eq!(by_digest.peers.len(), 2);
    let gone = c
        .get_peers_by_digest(GetPeersByDigestRequest { sha256: hex32(2) })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn malformed_roots_and_partial_holdings_are_invalid_argument() {
    let (_tracker, mut c) = tracker().await;
    let err = c
        .register(RegisterRequest {
            peer_id: "p".into(),
            address: "127.0.0.1:5000".into(),
            files: vec![info("a", 1, &hex32(0xab).to_uppercase())],
            lease_secret: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("pieces_root"), "{}", err.message());

    let secret = register(&mut c, "p", vec![]).await;
    let bad = [
        AnnounceRequest {
            partial_added: vec![info("", 1, "")],
            ..Default::default()
        },
        AnnounceRequest {
            partial_added: vec![info("", 1, "abc")],
            ..Default::default()
        },
        AnnounceRequest {
            partial_removed: vec!["nope".into()],
            ..Default::default()
        },
    ];
    for mut req in bad {
        req.peer_id = "p".into();
        req.lease_secret.clone_from(&secret);
        let err = c.announce(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{req:?}: {err}");
    }
    // Nothing of the refused requests was written.
    let err = c
        .get_peers_by_digest(GetPeersByDigestRequest { sha256: hex32(1) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

/// ListPeers: a peer that shares nothing is listed with its address like one that shares, the
/// pages follow their tokens to the end, and a token the tracker did not issue is refused.
#[tokio::test]
async fn list_peers_names_every_live_peer_page_by_page() {
    let (_tracker, mut c) = tracker().await;
    register(&mut c, "seed", vec![info("movie.mkv", 1, "")]).await;
    register(&mut c, "idle-peer", vec![]).await;
    let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = c
            .list_peers(ListPeersRequest {
                page_size: 1,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.peers.len() <= 1, "{page:?}");
        seen.extend(page.peers.into_iter().map(|p| (p.peer_id, p.address)));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    seen.sort();
    let want = [("idle-peer", "127.0.0.1:5009"), ("seed", "127.0.0.1:5004")]
        .map(|(id, addr)| (id.to_owned(), addr.to_owned()));
    assert_eq!(seen, want);
    assert!(pages >= 2, "page_size 1 gave {pages} page(s)");
    let err = c
        .list_peers(ListPeersRequest {
            page_size: 0,
            page_token: "not-a-token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}
