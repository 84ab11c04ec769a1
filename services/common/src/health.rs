//! Probing `grpc.health.v1` on a running service, for the `health` subcommands.

use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Env var that overrides the address `health` probes (one image runs both services).
pub const HEALTHCHECK_ADDR_ENV: &str = "P2P_HEALTHCHECK_ADDR";

/// `host:port` or a URL, as an endpoint URL (`https://` when probing over TLS).
pub fn endpoint_url(addr: &str, tls: bool) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else if tls {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// The address a `health` subcommand probes: the flag, else the env override, else the
/// service's own listen address (an unspecified IP means this host).
pub fn probe_target(flag: Option<String>, listen: std::net::SocketAddr) -> String {
    flag.or_else(|| {
        std::env::var(HEALTHCHECK_ADDR_ENV)
            .ok()
            .filter(|s| !s.is_empty())
    })
    .unwrap_or_else(|| {
        let ip = if listen.ip().is_unspecified() {
            if listen.is_ipv4() {
                "127.0.0.1".to_owned()
            } else {
                "[::1]".to_owned()
            }
        } else if listen.is_ipv6() {
            format!("[{}]", listen.ip())
        } else {
            listen.ip().to_string()
        };
        format!("{ip}:{}", listen.port())
    })
}

/// Asks `addr` for the status of `service` ("" is the whole server).
pub async fn probe(
    addr: &str,
    service: &str,
    timeout: Duration,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<ServingStatus, String> {
    let url = endpoint_url(addr, tls.is_some());
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.clone())
        .map_err(|e| format!("bad address {addr:?}: {e}"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| format!("TLS for {url}: {e}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {url}: {}", crate::tls::error_chain(&e)))?;
    let resp = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|s| format!("{url}: {} ({:?})", crate::tls::status_chain(&s), s.code()))?;
    Ok(ServingStatus::try_from(resp.into_inner().status).unwrap_or(ServingStatus::Unknown))
}

/// Runs a `health` subcommand: prints the status and returns the exit code (0 serving, 1 not).
/// The probe speaks TLS when this process dials over TLS (`tls.ca` set) or serves it, trusting
/// `tls.ca`.
pub async fn run_probe(addr: &str, tls: &crate::tls::TlsConfig) -> std::process::ExitCode {
    let client_tls = if tls.serves() || tls.dials() {
        match tls.tonic_client() {
            Ok(Some(t)) => Some(t),
            Ok(None) => {
                eprintln!("{addr}: this service serves TLS; set tls.ca so the probe can verify it");
                return std::process::ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("{e}");
                return std::process::ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let over_tls = client_tls.is_some();
    match probe(addr, "", Duration::from_secs(3), client_tls).await {
        Ok(ServingStatus::Serving) => {
            println!("{addr}: SERVING");
            std::process::ExitCode::SUCCESS
        }
        Ok(other) => {
            println!("{addr}: {}", other.as_str_name());
            std::process::ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{e}");
            let url = endpoint_url(addr, over_tls);
            if over_tls
                && let Some(cause) = crate::tls::diagnose(&url, tls, Duration::from_secs(3)).await
            {
                eprintln!("{url}: the TLS session was refused: {cause}");
            }
            std::process::ExitCode::from(1)
        }
    }
}
