//! The client side of the tracker API, as the CLI uses it.

use p2p_common::TrackerClient;
use p2p_common::proto::{FileMatch, ListFilesRequest, SearchRequest};

use crate::config::PeerConfig;
use crate::error::{Error, Result};

/// Cap on what one command pulls from the tracker, across pages.
const MAX_RESULTS: usize = 10_000;

#[derive(Clone)]
pub struct Tracker {
    client: TrackerClient,
    endpoint: String,
}

impl Tracker {
    pub fn connect(cfg: &PeerConfig) -> Result<Self> {
        let channel = crate::net::tracker_channel(cfg)?;
        let tokens = crate::net::tokens(cfg)?;
        Ok(Self {
            client: p2p_common::tracker_client(channel, tokens.as_ref()),
            endpoint: cfg.tracker.endpoint.clone(),
        })
    }

    fn status(&self, s: tonic::Status) -> Error {
        Error::from_status(&self.endpoint, s)
    }

    /// Every match, following pages.
    pub async fn search(&self, query: &str, exact: bool) -> Result<Vec<FileMatch>> {
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
    pub async fn list(&self) -> Result<Vec<FileMatch>> {
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

    async fn all_pages<F, Fut>(&self, mut page: F) -> Result<Vec<FileMatch>>
    where
        F: FnMut(TrackerClient, String) -> Fut,
        Fut: Future<Output = Result<(Vec<FileMatch>, String), tonic::Status>>,
    {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let (files, next) = page(self.client.clone(), token)
                .await
                .map_err(|s| self.status(s))?;
            out.extend(files);
            if next.is_empty() || out.len() >= MAX_RESULTS {
                return Ok(out);
            }
            token = next;
        }
    }
}
