//! The client side of the tracker API: one per process, shared by search, downloads and
//! membership. Its answers are parsed here, once: the rest of the peer sees typed digests.

use std::collections::BTreeMap;
use std::time::Duration;

use p2p_common::TrackerClient;
use p2p_common::failover::split_endpoints;
use p2p_common::proto::{
    FileMatch, GetPeersByDigestRequest, ListFilesRequest, ListPeersRequest, PeerInfo, SearchRequest,
};
use p2p_common::tls::TlsConfig;

use tonic::Code;

use crate::config::PeerConfig;
use crate::error::{Error, Result};
use crate::share::Digest;

/// Cap on what one command pulls from the tracker, across pages.
const MAX_RESULTS: usize = 10_000;

/// A live peer holding a file, as the tracker listed it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holder {
    pub peer_id: String,
    /// `host:port` of its HTTP API.
    pub address: String,
    /// It is still downloading the file and serves only the pieces it verified.
    pub partial: bool,
    /// The root it announced for the file (`None`: it announced none, or one that is not a
    /// digest, which no download can follow).
    pub pieces_root: Option<Digest>,
}

impl From<PeerInfo> for Holder {
    fn from(p: PeerInfo) -> Self {
        Holder {
            pieces_root: Digest::parse_optional(&p.pieces_root).ok().flatten(),
            peer_id: p.peer_id,
            address: p.address,
            partial: p.partial,
        }
    }
}

/// A file on the network and its live holders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub name: String,
    pub size: u64,
    pub sha256: Digest,
    /// The root most holders announced (`None`: none did).
    pub pieces_root: Option<Digest>,
    /// A random sample of the live holders when many hold it (the tracker's
    /// `registry.holders_per_match`); downloads ask for holders by digest.
    pub holders: Vec<Holder>,
    /// Live holders in all (at least `holders.len()`).
    pub holder_count: usize,
}

impl Match {
    /// `None` for a match without a file or with a digest that is not one: nothing could
    /// download or verify it.
    fn from_proto(m: FileMatch) -> Option<Self> {
        let f = m.file?;
        let Ok(sha256) = f.sha256.parse() else {
            tracing::warn!(file = %f.name, "the tracker listed a file whose sha256 is not a digest; skipped");
            return None;
        };
        let holder_count = (m.peer_count as usize).max(m.peers.len());
        Some(Match {
            holder_count,
            name: f.name,
            size: f.size,
            sha256,
            pieces_root: Digest::parse_optional(&f.pieces_root).ok().flatten(),
            holders: m.peers.into_iter().map(Holder::from).collect(),
        })
    }
}

#[derive(Clone)]
pub struct Tracker {
    client: TrackerClient,
    endpoint: String,
    /// Lets a failure over TLS name its cause.
    tls: TlsConfig,
    timeout: Duration,
}

impl Tracker {
    pub fn connect(cfg: &PeerConfig) -> Result<Self> {
        let channel = crate::net::tracker_channel(cfg)?;
        let tokens = crate::net::tokens(cfg)?;
        Ok(Self {
            client: p2p_common::tracker_client(channel, tokens.as_ref()),
            endpoint: cfg.tracker.endpoint.clone(),
            tls: cfg.tls.clone(),
            timeout: cfg.tracker.request_timeout,
        })
    }

    /// A failed call as the user sees it. A transport failure over TLS is looked into once
    /// more, because the TLS layer's own reason (a client certificate required, say) does not
    /// survive inside the gRPC status.
    async fn status(&self, s: tonic::Status) -> Error {
        let transport = matches!(
            s.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        );
        if transport && self.tls.dials() {
            for url in split_endpoints(&self.endpoint) {
                if let Some(cause) = p2p_common::tls::diagnose(url, &self.tls, self.timeout).await {
                    return Error::Unreachable(format!(
                        "{url}: tracker unreachable: the TLS session was refused: {cause}"
                    ));
                }
            }
        }
        Error::from_status(&self.endpoint, s)
    }

    /// The gRPC client itself, for the calls only membership makes (register, heartbeat,
    /// announce, leave): the same channel as every other call of this process.
    pub(crate) fn grpc(&self) -> TrackerClient {
        self.client.clone()
    }

    /// Every match, following pages.
    pub async fn search(&self, query: &str, exact: bool) -> Result<Vec<Match>> {
        self.all_pages(|mut c, page_token| async move {
            let r = c
                .search(SearchRequest {
                    query: query.to_owned(),
                    exact,
                    page_size: 0,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((r.matches, r.next_page_token))
        })
        .await
    }

    /// Every file on the network, following pages.
    pub async fn list(&self) -> Result<Vec<Match>> {
        self.all_pages(|mut c, page_token| async move {
            let r = c
                .list_files(ListFilesRequest {
                    page_size: 0,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((r.files, r.next_page_token))
        })
        .await
    }

    /// Every live holder of `sha256`: complete holders first, then partial ones.
    pub(crate) async fn peers_by_digest(&self, sha256: &Digest) -> Result<Vec<Holder>> {
        let mut c = self.client.clone();
        match c
            .get_peers_by_digest(GetPeersByDigestRequest {
                sha256: sha256.to_hex(),
            })
            .await
        {
            Ok(r) => Ok(r.into_inner().peers.into_iter().map(Holder::from).collect()),
            Err(s) => Err(self.status(s).await),
        }
    }

    /// Every live peer, sharing or not: id -> address (a peer the pages name twice, having
    /// renewed its lease meanwhile, once).
    pub(crate) async fn live_peers(&self) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let mut token = String::new();
        loop {
            let answer = self
                .client
                .clone()
                .list_peers(ListPeersRequest {
                    page_size: 0,
                    page_token: token,
                })
                .await;
            let page = match answer {
                Ok(r) => r.into_inner(),
                // A tracker from before ListPeers: it is a tracker (it answered the search
                // before), so the user needs to know it is too old, not that it is not one.
                Err(s) if s.code() == Code::Unimplemented => {
                    return Err(Error::Refused(format!(
                        "{}: this tracker does not list live peers (ListPeers); upgrade it",
                        self.endpoint
                    )));
                }
                Err(s) => return Err(self.status(s).await),
            };
            for p in page.peers {
                out.entry(p.peer_id).or_insert(p.address);
            }
            if page.next_page_token.is_empty() || out.len() >= MAX_RESULTS {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    async fn all_pages<F, Fut>(&self, mut page: F) -> Result<Vec<Match>>
    where
        F: FnMut(TrackerClient, String) -> Fut,
        Fut: Future<Output = Result<(Vec<FileMatch>, String), tonic::Status>>,
    {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let (files, next) = match page(self.client.clone(), token).await {
                Ok(answer) => answer,
                Err(s) => return Err(self.status(s).await),
            };
            out.extend(files.into_iter().filter_map(Match::from_proto));
            if next.is_empty() || out.len() >= MAX_RESULTS {
                return Ok(out);
            }
            token = next;
        }
    }
}
