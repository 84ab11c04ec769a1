//! The gRPC face of the registry: the RPCs and their status codes. Messages become typed
//! values (and back) in [`crate::proto`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ConnectInfo;

use p2p_common::proto::tracker_service_server::TrackerService;
use p2p_common::proto::{
    AnnounceRequest, AnnounceResponse, GetPeersByDigestRequest, GetPeersByDigestResponse,
    HeartbeatRequest, HeartbeatResponse, LeaveRequest, LeaveResponse, ListFilesRequest,
    ListFilesResponse, ListPeersRequest, ListPeersResponse, RegisterRequest, RegisterResponse,
    SearchRequest, SearchResponse,
};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::metrics::{Method, Metrics};
use crate::proto;
use crate::registry::{Registry, RegistryError};
use crate::store::StoreError;

pub struct TrackerApi {
    registry: Arc<Registry>,
    metrics: Metrics,
}

impl TrackerApi {
    pub fn new(registry: Arc<Registry>, metrics: Metrics) -> Self {
        Self { registry, metrics }
    }

    /// Runs one RPC in `span`, counting it by method and resulting code.
    async fn observe<T>(
        &self,
        method: Method,
        span: tracing::Span,
        body: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let result = body.instrument(span.clone()).await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        p2p_common::telemetry::record_grpc_server_status(&span, code);
        self.metrics.observe_rpc(method, code, started);
        result.map(Response::new)
    }
}

impl From<RegistryError> for Status {
    fn from(e: RegistryError) -> Self {
        let msg = e.to_string();
        match e {
            RegistryError::BadName { .. } | RegistryError::Invalid(_) => {
                Status::invalid_argument(msg)
            }
            RegistryError::UnknownPeer(_) | RegistryError::DigestNotFound(_) => {
                Status::not_found(msg)
            }
            RegistryError::IdTaken { .. } => Status::already_exists(msg),
            RegistryError::WrongSecret(_) => Status::permission_denied(msg),
            RegistryError::OverCap(_) | RegistryError::Full { .. } => {
                Status::resource_exhausted(msg)
            }
            RegistryError::Store(StoreError::Corrupt(_)) => Status::internal(msg),
            RegistryError::Store(_) => Status::unavailable(msg),
        }
    }
}

/// A span for one RPC, child of the caller's trace when the metadata carries one. A span no
/// layer wants (logs above INFO, no trace export) is never given a parent: reading the trace
/// context was measurable per call and nothing would keep it.
fn rpc_span<T>(method: Method, req: &Request<T>) -> tracing::Span {
    let span = tracing::info_span!(
        "rpc",
        otel.name = method.otel_name(),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = method.name(),
        rpc.grpc.status_code = tracing::field::Empty,
    );
    if !span.is_disabled() {
        p2p_common::telemetry::set_remote_parent(&span, req.metadata().as_ref());
    }
    span
}

/// The address a call came from, as the bounds per address count it: IPv4 (also when mapped
/// into IPv6) as is, IPv6 by its /64 (what one host or one customer usually gets).
fn source<T>(req: &Request<T>) -> Option<IpAddr> {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .or_else(|| req.remote_addr().map(|a| a.ip()))?;
    Some(p2p_common::address::client_key(ip))
}

impl TrackerApi {
    /// Counts a refusal by a bound on what the tracker holds.
    fn count_refusal<T>(&self, r: Result<T, RegistryError>) -> Result<T, RegistryError> {
        if let Err(RegistryError::Full { refusal, .. }) = &r {
            self.metrics.refused(*refusal);
        }
        r
    }
}

fn ttl_ms(r: &Registry) -> u64 {
    r.ttl().as_millis() as u64
}

#[tonic::async_trait]
impl TrackerService for TrackerApi {
    async fn register(
        &self,
        req: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let span = rpc_span(Method::Register, &req);
        let src = source(&req);
        self.observe(Method::Register, span, async {
            let r = req.into_inner();
            let limits = self.registry.limits();
            let bound = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            let files = proto::files(r.files)?;
            let secret = self.count_refusal(
                self.registry
                    .register_from(src, &r.peer_id, &r.address, files, &r.lease_secret)
                    .await,
            )?;
            tracing::info!(peer = %r.peer_id, address = %r.address, "peer registered");
            Ok(RegisterResponse {
                lease_secret: secret,
                lease_ttl_ms: ttl_ms(&self.registry),
                max_files_per_peer: bound(limits.max_files_per_peer),
                max_files_per_request: bound(limits.max_files_per_request),
            })
        })
        .await
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let span = rpc_span(Method::Heartbeat, &req);
        self.observe(Method::Heartbeat, span, async {
            let r = req.into_inner();
            self.registry.heartbeat(&r.peer_id, &r.lease_secret).await?;
            Ok(HeartbeatResponse {
                lease_ttl_ms: ttl_ms(&self.registry),
            })
        })
        .await
    }

    async fn announce(
        &self,
        req: Request<AnnounceRequest>,
    ) -> Result<Response<AnnounceResponse>, Status> {
        let span = rpc_span(Method::Announce, &req);
        let src = source(&req);
        self.observe(Method::Announce, span, async {
            let r = req.into_inner();
            let change =
                proto::announcement(r.added, r.removed, r.partial_added, r.partial_removed)?;
            let n = self.count_refusal(
                self.registry
                    .announce_from(src, &r.peer_id, &r.lease_secret, change)
                    .await,
            )?;
            Ok(AnnounceResponse {
                files: u32::try_from(n).unwrap_or(u32::MAX),
            })
        })
        .await
    }

    async fn leave(&self, req: Request<LeaveRequest>) -> Result<Response<LeaveResponse>, Status> {
        let span = rpc_span(Method::Leave, &req);
        self.observe(Method::Leave, span, async {
            let r = req.into_inner();
            self.registry.leave(&r.peer_id, &r.lease_secret).await?;
            tracing::info!(peer = %r.peer_id, "peer left");
            Ok(LeaveResponse {})
        })
        .await
    }

    async fn search(
        &self,
        req: Request<SearchRequest>,
    ) -> Result<Response<SearchResponse>, Status> {
        let span = rpc_span(Method::Search, &req);
        self.observe(Method::Search, span, async {
            let r = req.into_inner();
            let page = self
                .registry
                .search(&r.query, r.exact, r.page_size, &r.page_token)
                .await?;
            let (matches, next_page_token) = proto::matches(page);
            Ok(SearchResponse {
                matches,
                next_page_token,
            })
        })
        .await
    }

    async fn list_files(
        &self,
        req: Request<ListFilesRequest>,
    ) -> Result<Response<ListFilesResponse>, Status> {
        let span = rpc_span(Method::ListFiles, &req);
        self.observe(Method::ListFiles, span, async {
            let r = req.into_inner();
            let page = self.registry.list_files(r.page_size, &r.page_token).await?;
            let (files, next_page_token) = proto::matches(page);
            Ok(ListFilesResponse {
                files,
                next_page_token,
            })
        })
        .await
    }

    async fn get_peers_by_digest(
        &self,
        req: Request<GetPeersByDigestRequest>,
    ) -> Result<Response<GetPeersByDigestResponse>, Status> {
        let span = rpc_span(Method::GetPeersByDigest, &req);
        self.observe(Method::GetPeersByDigest, span, async {
            let r = req.into_inner();
            let sha256 = proto::digest("sha256", &r.sha256)?;
            let holders = self.registry.peers_by_digest(&sha256).await?;
            Ok(proto::peers_by_digest(holders))
        })
        .await
    }

    async fn list_peers(
        &self,
        req: Request<ListPeersRequest>,
    ) -> Result<Response<ListPeersResponse>, Status> {
        let span = rpc_span(Method::ListPeers, &req);
        self.observe(Method::ListPeers, span, async {
            let r = req.into_inner();
            let page = self.registry.list_peers(r.page_size, &r.page_token).await?;
            Ok(proto::live_peers(page))
        })
        .await
    }
}
