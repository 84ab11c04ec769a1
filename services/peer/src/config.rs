//! The peer's configuration (see `config/peer.toml` for the documented defaults). The client
//! commands read the same file, for `tracker.endpoint`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use p2p_common::auth::AuthConfig;
use p2p_common::config::{self, ConfigError, Flags, TelemetryConfig};
use p2p_common::tls::TlsConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerConfig {
    pub peer: PeerSection,
    pub tracker: TrackerSection,
    pub transfer: crate::transfer::TransferSection,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerSection {
    pub id: String,
    pub listen: SocketAddr,
    /// host:port other peers dial; empty derives it (see DESIGN "advertised address").
    pub advertise_addr: String,
    pub files_dir: PathBuf,
    pub max_upload_bytes: u64,
    /// How often the share directory is checked for files added or removed by hand.
    #[serde(with = "p2p_common::config::duration")]
    pub scan_interval: Duration,
    /// On SIGTERM, how long in-flight transfers may take to finish before they are cut.
    #[serde(with = "p2p_common::config::duration")]
    pub shutdown_grace: Duration,
    /// Time a client has to send request headers or finish a TLS handshake.
    #[serde(with = "p2p_common::config::duration")]
    pub header_timeout: Duration,
    /// A transfer that makes no progress this long is cut, in both directions.
    #[serde(with = "p2p_common::config::duration")]
    pub io_timeout: Duration,
    /// A connection with no request in flight for this long is closed (pings do not count).
    #[serde(with = "p2p_common::config::duration")]
    pub idle_timeout: Duration,
    /// Downloads served plus uploads received at once; more get 503.
    pub max_concurrent_transfers: usize,
    /// Transfers one client address (IPv6: its /64) holds once half of
    /// `max_concurrent_transfers` are held; more get 429.
    pub max_transfers_per_client: usize,
    /// Event streams (`/api/events`) and share listings (`/files`, `/api/share`) answered at
    /// once; more get 503.
    pub max_streams: usize,
    /// Of those, what one client address (IPv6: its /64) holds; more get 429.
    pub max_streams_per_client: usize,
    /// Uploads one client address may start per minute; more get 429.
    pub uploads_per_minute: u32,
    /// When the id is held by a live peer: wait for it rather than exit (code 6) after one
    /// lease TTL.
    pub wait_for_id: bool,
    /// Names besides `localhost`, IP addresses and the advertised host under which the web page
    /// and browser requests that change something are answered (DNS rebinding); `*`: any.
    pub allowed_hosts: Vec<String>,
}

impl Default for PeerSection {
    fn default() -> Self {
        Self {
            id: "peer_1".into(),
            listen: SocketAddr::from(([0, 0, 0, 0], 5000)),
            advertise_addr: String::new(),
            files_dir: PathBuf::from("./peer1_files"),
            max_upload_bytes: 1 << 30,
            scan_interval: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_concurrent_transfers: 64,
            max_transfers_per_client: 16,
            max_streams: 64,
            max_streams_per_client: 8,
            uploads_per_minute: 60,
            wait_for_id: false,
            allowed_hosts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerSection {
    pub endpoint: String,
    #[serde(with = "p2p_common::config::duration")]
    pub heartbeat_interval: Duration,
    /// Deadline of one tracker call.
    #[serde(with = "p2p_common::config::duration")]
    pub request_timeout: Duration,
}

impl Default for TrackerSection {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:50051".into(),
            heartbeat_interval: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
        }
    }
}

pub(crate) const SECTIONS: &[&str] = &["peer", "tracker", "transfer", "auth", "tls", "telemetry"];

impl PeerConfig {
    pub fn load(file: Option<&Path>, flags: Flags) -> Result<Self, ConfigError> {
        let mut loaded = config::load::<Self>(SECTIONS, file, flags)?;
        loaded.value.tracker.endpoint =
            with_scheme(&loaded.value.tracker.endpoint, loaded.value.tls.dials());
        let cfg = &loaded.value;
        p2p_common::names::validate_peer_id(&cfg.peer.id)
            .map_err(|e| loaded.invalid("peer.id", e.to_string()))?;
        if !cfg.peer.advertise_addr.is_empty() {
            p2p_common::names::validate_address(&cfg.peer.advertise_addr)
                .map_err(|e| loaded.invalid("peer.advertise_addr", e.to_string()))?;
        }
        if cfg.peer.files_dir.as_os_str().is_empty() {
            return Err(loaded.invalid("peer.files_dir", "must not be empty"));
        }
        // One URL, or several tracker replicas separated by commas.
        let endpoints = p2p_common::failover::split_endpoints(&cfg.tracker.endpoint);
        if endpoints.is_empty()
            || !endpoints
                .iter()
                .all(|e| e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(loaded.invalid(
                "tracker.endpoint",
                "must be a URL such as http://127.0.0.1:50051 (or several, comma-separated)",
            ));
        }
        config::require_positive(&loaded, "peer.scan_interval", cfg.peer.scan_interval)?;
        config::require_positive(
            &loaded,
            "tracker.heartbeat_interval",
            cfg.tracker.heartbeat_interval,
        )?;
        config::require_positive(
            &loaded,
            "tracker.request_timeout",
            cfg.tracker.request_timeout,
        )?;
        config::require_positive(&loaded, "peer.header_timeout", cfg.peer.header_timeout)?;
        config::require_positive(&loaded, "peer.io_timeout", cfg.peer.io_timeout)?;
        config::require_positive(&loaded, "peer.idle_timeout", cfg.peer.idle_timeout)?;
        if cfg.peer.max_concurrent_transfers == 0 {
            return Err(loaded.invalid("peer.max_concurrent_transfers", "must be at least 1"));
        }
        for (key, n) in [
            (
                "peer.max_transfers_per_client",
                cfg.peer.max_transfers_per_client,
            ),
            ("peer.max_streams", cfg.peer.max_streams),
            (
                "peer.max_streams_per_client",
                cfg.peer.max_streams_per_client,
            ),
        ] {
            if n == 0 {
                return Err(loaded.invalid(key, "must be at least 1"));
            }
        }
        if cfg.transfer.max_sources == 0 {
            return Err(loaded.invalid("transfer.max_sources", "must be at least 1"));
        }
        if cfg.transfer.max_concurrent_downloads == 0 {
            return Err(loaded.invalid("transfer.max_concurrent_downloads", "must be at least 1"));
        }
        config::require_positive(&loaded, "transfer.partial_ttl", cfg.transfer.partial_ttl)?;
        if cfg.peer.uploads_per_minute == 0 {
            return Err(loaded.invalid("peer.uploads_per_minute", "must be at least 1"));
        }
        if let Err(e) = cfg.auth.tokens() {
            return Err(loaded.invalid("auth.token_file", e.to_string()));
        }
        if let Err(e) = cfg
            .tls
            .server_config()
            .and_then(|_| cfg.tls.client_config())
        {
            return Err(loaded.invalid("tls", e.to_string()));
        }
        if endpoints
            .iter()
            .any(|e| cfg.tls.dials() != e.starts_with("https://"))
        {
            return Err(loaded.invalid(
                "tracker.endpoint",
                "use https:// exactly when tls.ca is set (a network is all TLS or all plaintext)",
            ));
        }
        cfg.telemetry.validate(&loaded)?;
        Ok(loaded.value)
    }
}

/// Each `host:port` of a tracker endpoint list (as `--peer` takes a peer's) stands for its
/// URL in this network's scheme; URLs stay as they are.
fn with_scheme(list: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let all: Vec<String> = p2p_common::failover::split_endpoints(list)
        .into_iter()
        .map(|e| {
            if e.contains("://") {
                e.to_owned()
            } else {
                format!("{scheme}://{e}")
            }
        })
        .collect();
    all.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracker_may_be_given_as_host_and_port() {
        assert_eq!(
            with_scheme("127.0.0.1:50051", false),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            with_scheme("t:1, https://u:2", true),
            "https://t:1,https://u:2"
        );
        assert_eq!(with_scheme("http://t:1", false), "http://t:1");
    }

    #[test]
    fn the_documented_file_holds_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/peer.toml");
        let cfg = PeerConfig::load(Some(Path::new(path)), Flags::new()).unwrap();
        assert_eq!(cfg, PeerConfig::default());
    }
}
