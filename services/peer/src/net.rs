//! How this process reaches others: the tracker channel and the HTTP client for peers, both
//! with the configured TLS and bearer token.

use std::sync::Arc;

use p2p_common::auth::Tokens;
use p2p_common::failover::{FailoverChannel, split_endpoints};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use tonic::transport::Endpoint;

use crate::config::PeerConfig;
use crate::error::{Error, Result};
use crate::transfer::ledger::Ledger;
use crate::wire::blobs::PEER_ADDR_HEADER;

/// Lazily connecting channels to each URL of `tracker.endpoint` (comma-separated), as one
/// channel that moves to the next tracker when one is unreachable.
pub(crate) fn tracker_channel(cfg: &PeerConfig) -> Result<FailoverChannel> {
    let tls = cfg
        .tls
        .tonic_client()
        .map_err(|e| Error::Refused(e.to_string()))?;
    let mut channels = Vec::new();
    for endpoint in split_endpoints(&cfg.tracker.endpoint) {
        let mut ep = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| Error::Refused(format!("bad tracker endpoint {endpoint:?}: {e}")))?
            .connect_timeout(cfg.tracker.request_timeout)
            .timeout(cfg.tracker.request_timeout);
        if let Some(tls) = &tls {
            ep = ep
                .tls_config(tls.clone())
                .map_err(|e| Error::Refused(format!("TLS for {endpoint}: {e}")))?;
        }
        channels.push(ep.connect_lazy());
    }
    FailoverChannel::new(channels).ok_or_else(|| {
        Error::Refused(format!(
            "tracker.endpoint {:?} lists no URL",
            cfg.tracker.endpoint
        ))
    })
}

pub fn tokens(cfg: &PeerConfig) -> Result<Option<Tokens>> {
    cfg.auth.tokens().map_err(|e| Error::Refused(e.to_string()))
}

/// The HTTP client for other peers.
#[derive(Clone)]
pub struct Net {
    pub http: reqwest::Client,
    scheme: &'static str,
    /// What each source sent this process (credited as piece bytes arrive); the serving side
    /// reads it to serve those peers first.
    pub(crate) ledger: Arc<Ledger>,
}

impl Net {
    /// A client that names no address of its own: the CLI's and the client menu's, which serve
    /// nothing, so holders take them for newcomers.
    pub fn new(cfg: &PeerConfig) -> Result<Self> {
        Self::build(cfg, None)
    }

    /// A serving peer's client: its requests carry `me`, the address it serves at, so holders
    /// it uploaded to can serve it first.
    pub fn serving(cfg: &PeerConfig, me: &str) -> Result<Self> {
        Self::build(cfg, Some(me))
    }

    fn build(cfg: &PeerConfig, me: Option<&str>) -> Result<Self> {
        // reqwest refuses to build a client, even a plaintext one, without a TLS provider.
        p2p_common::tls::install_provider();
        let mut headers = HeaderMap::new();
        if let Some(t) = tokens(cfg)? {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", t.outgoing()))
                .map_err(|_| Error::Refused("the auth token is not a valid header value".into()))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        // A peer is asked at the address it advertised and nowhere else: a redirect in its
        // answer would let any registered peer aim every downloader at any URL (an internal
        // service, the cloud's metadata address), so none is followed.
        if let Some(me) = me {
            let v = HeaderValue::from_str(me).map_err(|_| {
                Error::Refused(format!(
                    "advertised address {me:?} is not a valid header value"
                ))
            })?;
            headers.insert(PEER_ADDR_HEADER, v);
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .connect_timeout(std::time::Duration::from_secs(5))
            .read_timeout(std::time::Duration::from_secs(30));
        let tls = cfg
            .tls
            .client_config()
            .map_err(|e| Error::Refused(e.to_string()))?;
        let scheme = if let Some(tls) = tls {
            builder = builder.tls_backend_preconfigured(tls);
            "https"
        } else {
            "http"
        };
        let http = builder.build().map_err(|e| Error::Other(e.into()))?;
        Ok(Self {
            http,
            scheme,
            ledger: Ledger::new(),
        })
    }

    /// `scheme://host:port/path` for a peer given as `host:port` or as a URL (what users
    /// paste); a URL's own scheme is kept, so `https://` is honoured.
    pub fn url(&self, addr: &str, path: &str) -> String {
        let (scheme, rest) = match addr.split_once("://") {
            Some((s, rest)) if s.eq_ignore_ascii_case("http") => ("http", rest),
            Some((s, rest)) if s.eq_ignore_ascii_case("https") => ("https", rest),
            _ => (self.scheme, addr),
        };
        let host = rest.split('/').next().unwrap_or(rest);
        format!("{scheme}://{host}{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_url_is_taken_as_its_address() {
        let net = Net::new(&PeerConfig::default()).unwrap();
        assert_eq!(net.url("h:5000", "/upload"), "http://h:5000/upload");
        assert_eq!(net.url("http://h:5000", "/upload"), "http://h:5000/upload");
        assert_eq!(net.url("http://h:5000/", "/leave"), "http://h:5000/leave");
        assert_eq!(
            net.url("HTTPS://h:5000", "/upload"),
            "https://h:5000/upload"
        );
    }
}
