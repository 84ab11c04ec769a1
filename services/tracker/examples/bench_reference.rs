//! The framework's own cost, for `scripts/bench-tracker.sh`: a tonic server of the same
//! `TrackerService` with no logic. Search answers a fixed message of the same size as the real
//! tracker's answer to the exact Search that `bench_populate` writes (one file, one holder);
//! Heartbeat answers a fixed lease. Same tonic, same multi-threaded runtime, same message
//! limits, TCP_NODELAY and HTTP/2 keep-alive as the tracker, so the tracker's req/s divided by
//! this one's is what the tracker's own work costs.
//!
//!   bench_reference LISTEN_ADDR PEERS FILES [shared]
//!
//! With `shared` it is served by the listener the tracker uses (`p2p_common::serve`: HTTP/1 and
//! HTTP/2 on one port, the axum router, connection limits and timeouts) instead of tonic's own,
//! which tells the listener's cost from the tracker's handlers'.

use anyhow::Context;
use p2p_common::proto::tracker_service_server::{TrackerService, TrackerServiceServer};
use p2p_common::proto::{
    AnnounceRequest, AnnounceResponse, FileInfo, FileMatch, GetPeersByDigestRequest,
    GetPeersByDigestResponse, HeartbeatRequest, HeartbeatResponse, LeaveRequest, LeaveResponse,
    ListFilesRequest, ListFilesResponse, ListPeersRequest, ListPeersResponse, PeerInfo,
    RegisterRequest, RegisterResponse, SearchRequest, SearchResponse,
};
use tonic::{Request, Response, Status};

struct Reference {
    search: SearchResponse,
}

#[tonic::async_trait]
impl TrackerService for Reference {
    async fn register(
        &self,
        _: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        Err(Status::unimplemented("reference server"))
    }
    async fn heartbeat(
        &self,
        _: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        Ok(Response::new(HeartbeatResponse {
            lease_ttl_ms: 6 * 3600 * 1000,
        }))
    }
    async fn announce(
        &self,
        _: Request<AnnounceRequest>,
    ) -> Result<Response<AnnounceResponse>, Status> {
        Err(Status::unimplemented("reference server"))
    }
    async fn leave(&self, _: Request<LeaveRequest>) -> Result<Response<LeaveResponse>, Status> {
        Err(Status::unimplemented("reference server"))
    }
    async fn search(&self, _: Request<SearchRequest>) -> Result<Response<SearchResponse>, Status> {
        Ok(Response::new(self.search.clone()))
    }
    async fn list_files(
        &self,
        _: Request<ListFilesRequest>,
    ) -> Result<Response<ListFilesResponse>, Status> {
        Err(Status::unimplemented("reference server"))
    }
    async fn get_peers_by_digest(
        &self,
        _: Request<GetPeersByDigestRequest>,
    ) -> Result<Response<GetPeersByDigestResponse>, Status> {
        Err(Status::unimplemented("reference server"))
    }
    async fn list_peers(
        &self,
        _: Request<ListPeersRequest>,
    ) -> Result<Response<ListPeersResponse>, Status> {
        Err(Status::unimplemented("reference server"))
    }
}

/// The tracker's answer to `bench_populate`'s exact Search, field for field.
fn exact_answer(peers: usize, files: usize) -> SearchResponse {
    let p = peers / 2;
    let i = p * files + 1;
    SearchResponse {
        matches: vec![FileMatch {
            file: Some(FileInfo {
                name: format!("report-{p:05}-001.pdf"),
                size: i as u64,
                sha256: format!("{i:064x}"),
                pieces_root: format!("{:064x}", usize::MAX - i),
            }),
            peers: vec![PeerInfo {
                peer_id: format!("peer-{p:05}"),
                address: format!("10.0.{}.{}:5000", p / 250, p % 250 + 1),
                partial: false,
                pieces_root: format!("{:064x}", usize::MAX - i),
            }],
            peer_count: 1,
        }],
        next_page_token: String::new(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (listen, peers, files, shared) = match args.as_slice() {
        [_, l, p, f] => (l, p, f, false),
        [_, l, p, f, s] if s == "shared" => (l, p, f, true),
        _ => anyhow::bail!("usage: bench_reference LISTEN_ADDR PEERS FILES [shared]"),
    };
    let listen: std::net::SocketAddr = listen.parse().context("LISTEN_ADDR")?;
    let peers: usize = peers.parse().context("PEERS")?;
    let files: usize = files.parse().context("FILES")?;
    let limit = p2p_tracker::config::TrackerConfig::default()
        .server
        .max_message_bytes;
    let service = TrackerServiceServer::new(Reference {
        search: exact_answer(peers, files),
    })
    .max_decoding_message_size(limit)
    .max_encoding_message_size(limit);
    if shared {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let router = tonic::service::Routes::new(service).into_axum_router();
        let opts = p2p_common::serve::Options::default();
        p2p_common::serve::serve(listener, router, opts, std::future::pending()).await;
        return Ok(());
    }
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(service)
        .serve(listen)
        .await?;
    Ok(())
}
