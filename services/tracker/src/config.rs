//! The tracker's configuration (see `config/tracker.toml` for the documented defaults).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use p2p_common::auth::AuthConfig;
use p2p_common::config::{self, ConfigError, Flags, TelemetryConfig};
use p2p_common::tls::TlsConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    pub server: ServerConfig,
    pub registry: RegistryConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest gRPC message accepted, in bytes.
    pub max_message_bytes: usize,
    /// On SIGTERM, how long open calls and streams may take before they are cut.
    #[serde(with = "p2p_common::config::duration")]
    pub shutdown_grace: Duration,
    /// Time a client has to send request headers or finish a TLS handshake.
    #[serde(with = "p2p_common::config::duration")]
    pub header_timeout: Duration,
    /// A connection with no call in flight for this long is closed (pings do not count).
    #[serde(with = "p2p_common::config::duration")]
    pub idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 50051)),
            max_message_bytes: 4 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Memory,
    Redis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    #[serde(with = "p2p_common::config::duration")]
    pub lease_ttl: Duration,
    pub store: StoreKind,
    /// `redis://host:6379/0`, or `rediss://` for TLS (with `store = "redis"`).
    pub redis_url: String,
    /// File holding the Redis password (overrides one in the URL); empty for none.
    pub redis_password_file: PathBuf,
    /// Prefix of every key, so several networks can share one Redis.
    pub redis_prefix: String,
    /// Bound on connecting to Redis and on each command.
    #[serde(with = "p2p_common::config::duration")]
    pub redis_timeout: Duration,
    pub max_files_per_peer: usize,
    /// Files one Register or Announce may carry (larger shares come in batches).
    pub max_files_per_request: usize,
    pub max_page_size: usize,
    /// Holders one GetPeersByDigest answer names at most: a random sample, partial holders
    /// mixed in, so every downloader sees a few and no answer grows with the swarm.
    pub holders_per_answer: usize,
    /// Holders one Search or ListFiles match names at most: a random sample of the live ones,
    /// with the count of all (`FileMatch.peer_count`), so a name a thousand peers share still
    /// fits a page.
    pub holders_per_match: usize,
    /// Bounds on what the tracker holds (refused with RESOURCE_EXHAUSTED, counted in
    /// `p2p_tracker_refusals_total{reason}`): peers, files (and partial holdings) and bytes of
    /// file names, in all and per source address (IPv6 by /64; 0: no bound per address).
    pub max_peers: usize,
    pub max_files: usize,
    pub max_name_bytes: u64,
    pub max_peers_per_address: usize,
    pub max_files_per_address: usize,
    pub max_name_bytes_per_address: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        let q = crate::quota::QuotaLimits::default();
        Self {
            lease_ttl: Duration::from_secs(30),
            store: StoreKind::Memory,
            redis_url: "redis://127.0.0.1:6379/0".into(),
            redis_password_file: PathBuf::new(),
            redis_prefix: "p2pshare:".into(),
            redis_timeout: Duration::from_secs(2),
            max_files_per_peer: 100_000,
            max_files_per_request: 1000,
            max_page_size: 1000,
            holders_per_answer: 50,
            holders_per_match: 20,
            max_peers: q.max_peers,
            max_files: q.max_entries,
            max_name_bytes: q.max_name_bytes,
            max_peers_per_address: q.max_peers_per_address,
            max_files_per_address: q.max_entries_per_address,
            max_name_bytes_per_address: q.max_name_bytes_per_address,
        }
    }
}

impl RegistryConfig {
    pub fn quota(&self) -> crate::quota::QuotaLimits {
        crate::quota::QuotaLimits {
            max_peers: self.max_peers,
            max_entries: self.max_files,
            max_name_bytes: self.max_name_bytes,
            max_peers_per_address: self.max_peers_per_address,
            max_entries_per_address: self.max_files_per_address,
            max_name_bytes_per_address: self.max_name_bytes_per_address,
        }
    }

    /// The password from `redis_password_file` (trailing newline dropped), if one is set.
    pub fn redis_password(&self) -> Result<Option<String>, String> {
        if self.redis_password_file.as_os_str().is_empty() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&self.redis_password_file)
            .map_err(|e| format!("cannot read {}: {e}", self.redis_password_file.display()))?;
        let pw = text.trim_end_matches(['\r', '\n']);
        if pw.is_empty() {
            return Err(format!("{} is empty", self.redis_password_file.display()));
        }
        Ok(Some(pw.to_owned()))
    }
}

/// Past this a single match (about 470 bytes per holder at worst) could approach a gRPC
/// message by itself.
pub const MAX_HOLDERS_PER_MATCH: usize = 1000;

pub const SECTIONS: &[&str] = &["server", "registry", "auth", "tls", "telemetry"];

impl TrackerConfig {
    /// Defaults < file < env < flags, then checks values the types cannot.
    pub fn load(file: Option<&Path>, flags: Flags) -> Result<Self, ConfigError> {
        let loaded = config::load::<Self>(SECTIONS, file, flags)?;
        let cfg = &loaded.value;
        config::require_positive(&loaded, "registry.lease_ttl", cfg.registry.lease_ttl)?;
        if cfg.registry.max_page_size == 0 {
            return Err(loaded.invalid("registry.max_page_size", "must be at least 1"));
        }
        if cfg.registry.holders_per_answer == 0 {
            return Err(loaded.invalid("registry.holders_per_answer", "must be at least 1"));
        }
        if !(1..=MAX_HOLDERS_PER_MATCH).contains(&cfg.registry.holders_per_match) {
            return Err(loaded.invalid(
                "registry.holders_per_match",
                format!("must be between 1 and {MAX_HOLDERS_PER_MATCH}"),
            ));
        }
        if cfg.registry.max_files_per_request == 0 {
            return Err(loaded.invalid("registry.max_files_per_request", "must be at least 1"));
        }
        if cfg.registry.store == StoreKind::Redis {
            if !(cfg.registry.redis_url.starts_with("redis://")
                || cfg.registry.redis_url.starts_with("rediss://"))
            {
                return Err(loaded.invalid(
                    "registry.redis_url",
                    "must start with redis:// or rediss:// (TLS)",
                ));
            }
            config::require_positive(
                &loaded,
                "registry.redis_timeout",
                cfg.registry.redis_timeout,
            )?;
            if let Err(e) = cfg.registry.redis_password() {
                return Err(loaded.invalid("registry.redis_password_file", e));
            }
        }
        if cfg.server.max_message_bytes < 1024 {
            return Err(loaded.invalid("server.max_message_bytes", "must be at least 1024"));
        }
        config::require_positive(&loaded, "server.header_timeout", cfg.server.header_timeout)?;
        config::require_positive(&loaded, "server.idle_timeout", cfg.server.idle_timeout)?;
        if let Err(e) = cfg.auth.tokens() {
            return Err(loaded.invalid("auth.token_file", e.to_string()));
        }
        if let Err(e) = cfg.tls.server_config() {
            return Err(loaded.invalid("tls.cert", e.to_string()));
        }
        cfg.telemetry.validate(&loaded)?;
        Ok(loaded.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_file_holds_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/tracker.toml");
        let cfg = TrackerConfig::load(Some(Path::new(path)), Flags::new()).unwrap();
        assert_eq!(cfg, TrackerConfig::default());
    }

    fn load_toml(text: &str) -> Result<TrackerConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tracker.toml");
        std::fs::write(&path, text).unwrap();
        TrackerConfig::load(Some(&path), Flags::new())
    }

    #[test]
    fn the_redis_store_needs_a_redis_url_and_a_readable_password() {
        let err = load_toml("[registry]\nstore = \"redis\"\nredis_url = \"http://h:6379\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("registry.redis_url"), "{err}");
        let err =
            load_toml("[registry]\nstore = \"redis\"\nredis_password_file = \"/nonexistent/pw\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("registry.redis_password_file"), "{err}");
        let cfg = load_toml("[registry]\nstore = \"redis\"\nredis_url = \"rediss://h:6380/1\"\n")
            .unwrap();
        assert_eq!(cfg.registry.store, StoreKind::Redis);
        let err = load_toml("[registry]\nmax_files_per_request = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("registry.max_files_per_request"), "{err}");
    }
}
