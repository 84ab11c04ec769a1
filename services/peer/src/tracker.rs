//! The client side of the tracker API, as the CLI uses it.

use std::time::Duration;

use p2p_common::proto::tracker_service_client::TrackerServiceClient;
use p2p_common::proto::{FileMatch, ListFilesRequest, SearchRequest};
use tonic::transport::Channel;

use crate::error::{Error, Result};

/// Cap on what one command pulls from the tracker, across pages.
const MAX_RESULTS: usize = 10_000;

#[derive(Clone)]
pub struct Tracker {
    client: TrackerServiceClient<Channel>,
    endpoint: String,
}

impl Tracker {
    pub fn connect(endpoint: &str, timeout: Duration) -> Result<Self> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| Error::Refused(format!("bad tracker endpoint {endpoint:?}: {e}")))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        Ok(Self {
            client: TrackerServiceClient::new(channel),
            endpoint: endpoint.to_owned(),
        })
    }

    fn status(&self, s: tonic::Status) -> Error {
        Error::from_status(&self.endpoint, s)
    }

    /// Every match, following pages.
    pub async fn search(&self, query: &str, exact: bool) -> Result<Vec<FileMatch>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let resp = self
                .client
                .clone()
                .search(SearchRequest {
                    query: query.to_owned(),
                    exact,
                    page_size: 0,
                    page_token: token,
                })
                .await
                .map_err(|s| self.status(s))?
                .into_inner();
            out.extend(resp.matches);
            if resp.next_page_token.is_empty() || out.len() >= MAX_RESULTS {
                return Ok(out);
            }
            token = resp.next_page_token;
        }
    }

    pub async fn list(&self) -> Result<Vec<FileMatch>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let resp = self
                .client
                .clone()
                .list_files(ListFilesRequest {
                    page_size: 0,
                    page_token: token,
                })
                .await
                .map_err(|s| self.status(s))?
                .into_inner();
            out.extend(resp.files);
            if resp.next_page_token.is_empty() || out.len() >= MAX_RESULTS {
                return Ok(out);
            }
            token = resp.next_page_token;
        }
    }
}
