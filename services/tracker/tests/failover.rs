//! Clients with several tracker URLs: a tracker that cannot be reached, or that answers
//! UNAVAILABLE (its Redis is down), is skipped within the same call, and later calls stay on
//! the one that answered.

use std::time::Duration;

use p2p_common::failover::FailoverChannel;
use p2p_common::proto::{RegisterRequest, SearchRequest};
use p2p_tracker::config::{StoreKind, TrackerConfig};
use tokio::net::TcpListener;
use tonic::transport::Endpoint;

async fn tracker(cfg: TrackerConfig) -> p2p_tracker::server::Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    p2p_tracker::server::start_on(cfg, listener).await.unwrap()
}

fn channel(port: u16) -> tonic::transport::Channel {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

#[tokio::test]
async fn calls_move_past_unreachable_and_unavailable_trackers() {
    // A tracker on a Redis nobody listens on: every RPC answers UNAVAILABLE.
    let mut broken = TrackerConfig::default();
    broken.registry.store = StoreKind::Redis;
    broken.registry.redis_url = format!("redis://127.0.0.1:{}/0", free_port());
    broken.registry.redis_timeout = Duration::from_millis(500);
    let broken = tracker(broken).await;
    let good = tracker(TrackerConfig::default()).await;
    let nobody = free_port();

    let fo = FailoverChannel::new(vec![
        channel(nobody),
        channel(broken.local_addr.port()),
        channel(good.local_addr.port()),
    ])
    .unwrap();
    let mut client = p2p_common::tracker_client(fo.clone(), None);
    let reg = client
        .register(RegisterRequest {
            peer_id: "p1".into(),
            address: "127.0.0.1:5000".into(),
            files: vec![],
            lease_secret: String::new(),
        })
        .await
        .expect("register lands on the third tracker");
    assert!(!reg.into_inner().lease_secret.is_empty());
    assert_eq!(fo.current(), 2);
    client
        .search(SearchRequest {
            query: "x".into(),
            exact: false,
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(fo.current(), 2);

    // Alone, the broken tracker's answer reaches the caller, naming Redis.
    let only_broken = FailoverChannel::new(vec![channel(broken.local_addr.port())]).unwrap();
    let err = p2p_common::tracker_client(only_broken, None)
        .search(SearchRequest {
            query: "x".into(),
            exact: false,
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(err.message().contains("Redis"), "{}", err.message());
    good.shutdown().await.unwrap();
    broken.shutdown().await.unwrap();
}
