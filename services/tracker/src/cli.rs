//! Command line of `p2p-tracker`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
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
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Log filter, e.g. "info" or "p2p_tracker=debug" (telemetry.log_level).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags that only matter to a running tracker (not shown on `health`).
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Lease length, e.g. "30s" (registry.lease_ttl).
    #[arg(long, value_name = "DURATION")]
    pub lease_ttl: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the tracker (the default).
    Serve(ServeArgs),
    /// Probe a tracker's gRPC health; exit 0 when SERVING, 1 otherwise.
    Health {
        /// host:port to probe (default: P2P_HEALTHCHECK_ADDR, else this config's listen port).
        #[arg(long)]
        addr: Option<String>,
    },
}

impl Cli {
    fn flags(&self) -> Flags {
        let lease_ttl = match &self.command {
            Some(Command::Serve(a)) => a.lease_ttl.clone(),
            _ => None,
        }
        .or_else(|| self.serve.lease_ttl.clone());
        let mut f = Flags::new();
        f.set("server.listen", self.listen.clone())
            .set("registry.lease_ttl", lease_ttl)
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
        None | Some(Command::Serve(_)) => {
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
                // Once, on stderr: the process ends here, so this is the line users read.
                Err(e) => {
                    eprintln!("p2p-tracker: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            if a.get_help().is_none() && a.get_long_help().is_none() {
                out.push(format!("{path} {}", a.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            undocumented(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_argument_has_help_text() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        undocumented(&cmd, "p2p-tracker", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn lease_ttl_is_a_serve_flag_only() {
        let mut cmd = Cli::command();
        cmd.build();
        let health = cmd.find_subcommand("health").expect("health");
        assert!(health.get_arguments().all(|a| a.get_id() != "lease_ttl"));
        for args in [
            &["p2p-tracker", "--lease-ttl", "5s"][..],
            &["p2p-tracker", "serve", "--lease-ttl", "5s"][..],
        ] {
            let cli = Cli::try_parse_from(args).expect("parses");
            let cfg = TrackerConfig::load(None, cli.flags()).expect("config");
            assert_eq!(cfg.registry.lease_ttl, std::time::Duration::from_secs(5));
        }
        assert!(Cli::try_parse_from(["p2p-tracker", "health", "--lease-ttl", "5s"]).is_err());
    }
}
