//! Command line of `p2p-tracker`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use p2p_common::config::Flags;

use crate::config::TrackerConfig;

#[derive(Debug, Parser)]
#[command(name = "p2p-tracker", version, about = "p2pshare tracker (gRPC)")]
pub struct Cli {
    /// TOML config file (also P2P_CONFIG).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on (server.listen).
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Lease length, e.g. "30s" (registry.lease_ttl).
    #[arg(long, global = true, value_name = "DURATION")]
    pub lease_ttl: Option<String>,
    /// Log filter, e.g. "info" or "p2p_tracker=debug" (telemetry.log_level).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the tracker (the default).
    Serve,
    /// Probe a tracker's gRPC health; exit 0 when SERVING, 1 otherwise.
    Health {
        /// host:port to probe (default: P2P_HEALTHCHECK_ADDR, else this config's listen port).
        #[arg(long)]
        addr: Option<String>,
    },
}

impl Cli {
    fn flags(&self) -> Flags {
        let mut f = Flags::new();
        f.set("server.listen", self.listen.clone())
            .set("registry.lease_ttl", self.lease_ttl.clone())
            .set("telemetry.log_level", self.log_level.clone());
        f
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    let cfg = match TrackerConfig::load(cli.config.as_deref(), cli.flags()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("p2p-tracker: configuration error: {e}");
            return ExitCode::from(78);
        }
    };
    match cli.command {
        Some(Command::Health { addr }) => {
            let target = p2p_common::health::probe_target(addr, cfg.server.listen);
            p2p_common::health::run_probe(&target, &cfg.tls).await
        }
        None | Some(Command::Serve) => {
            let telemetry = p2p_common::telemetry::init(
                &cfg.telemetry,
                &p2p_common::telemetry::Service::daemon(
                    "p2p-tracker",
                    p2p_common::telemetry::host_name(),
                ),
                "info",
            );
            let result = crate::server::run(cfg, p2p_common::shutdown::signal()).await;
            telemetry.shutdown().await;
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("p2p-tracker: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
