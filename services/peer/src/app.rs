//! What `p2p-peer` runs: the arguments and the configuration decide between the daemon (with
//! the menu in the original form), the client commands and the menu. The two client faces,
//! [`crate::cli`] and [`crate::menu`], meet only here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use p2p_common::config::Flags;
use p2p_common::telemetry::Service;

use crate::cli::{self, Cli, args::Command, args::ServeArgs};
use crate::client::render::Output;
use crate::config::PeerConfig;
use crate::error::{Error, Result, exit};
use crate::menu;

pub async fn run(cli: Cli) -> ExitCode {
    if let Err(e) = cli.original_form() {
        let _ = e.print();
        return ExitCode::from(2);
    }
    let mut flags = Flags::new();
    flags
        .set("tracker.endpoint", cli.tracker())
        .set("telemetry.log_level", cli.global.log_level.clone());
    let mut serve_args = match &cli.command {
        Some(Command::Serve(a)) => Some(ServeArgs {
            id: a.id.clone(),
            listen: a.listen.clone(),
            advertise_addr: a.advertise_addr.clone(),
            files_dir: a.files_dir.clone(),
            wait_for_id: a.wait_for_id,
            tracker: a.tracker.clone(),
        }),
        _ => None,
    };
    let original = cli.original.len() == 3;
    if original {
        let port = match cli.original[1].parse::<u16>() {
            Ok(p) => p,
            Err(_) => {
                eprintln!(
                    "p2p-peer: HTTP_PORT must be a port number, got {:?}",
                    cli.original[1]
                );
                return ExitCode::from(2);
            }
        };
        serve_args = Some(ServeArgs {
            id: Some(cli.original[0].clone()),
            listen: Some(format!("0.0.0.0:{port}")),
            files_dir: Some(PathBuf::from(&cli.original[2])),
            ..Default::default()
        });
    }
    if let Some(a) = &serve_args {
        flags
            .set("peer.id", a.id.clone())
            .set("peer.listen", a.listen.clone())
            .set("peer.advertise_addr", a.advertise_addr.clone())
            .set("peer.files_dir", a.files_dir.clone())
            .set("peer.wait_for_id", a.wait_for_id.then_some(true));
    }
    let cfg = match PeerConfig::load(cli.global.config.as_deref(), flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("p2p-peer: configuration error: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let out = Output {
        json: cli.global.json,
    };

    let menu = original && std::io::stdin().is_terminal();
    let (service, default_level) = match &cli.command {
        Some(Command::Health { addr }) => {
            let target = p2p_common::health::probe_target(addr.clone(), cfg.peer.listen);
            return p2p_common::health::run_probe(&target, &cfg.tls).await;
        }
        Some(Command::DevCerts { dir, names }) => {
            return match p2p_common::tls::generate_dev_certs(dir, names) {
                Ok(()) => {
                    println!(
                        "wrote {0}/ca.pem, {0}/cert.pem and {0}/key.pem (valid for {1}); keep {0}/ca-key.pem private",
                        dir.display(),
                        names.join(", ")
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("p2p-peer: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        None if !original => {
            eprintln!("p2p-peer: a command is needed; see p2p-peer --help");
            return ExitCode::from(2);
        }
        // The menu shares the terminal with the logs: only warnings interrupt it.
        None if menu => ("p2p-peer", "warn"),
        Some(Command::Serve(_)) | None => ("p2p-peer", "info"),
        Some(_) => ("p2p-cli", "warn"),
    };
    let who = match cli.command {
        Some(Command::Serve(_)) | None => Service::daemon(service, cfg.peer.id.clone()),
        Some(_) => Service::command(service),
    };
    let telemetry = p2p_common::telemetry::init(&cfg.telemetry, &who, default_level);
    let result = match cli.command {
        Some(Command::Serve(_)) | None => serve(cfg, menu).await,
        Some(command) => {
            let span = tracing::info_span!("p2p-peer", otel.name = command.name());
            p2p_common::telemetry::traced(span, client(command, &cfg, &out)).await
        }
    };
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

/// The client commands: the CLI's, and the menu without a peer of its own.
async fn client(command: Command, cfg: &PeerConfig, out: &Output) -> Result<()> {
    match command {
        Command::Search { name, exact, .. } => cli::search(cfg, out, &name, exact).await,
        Command::Ls { .. } => cli::ls(cfg, out).await,
        Command::Get {
            name,
            output,
            via: Some(via),
            sha256,
            ..
        } => cli::get_via(cfg, out, &via, &name, output, sha256.as_deref()).await,
        Command::Get {
            name,
            output,
            sha256,
            ..
        } => cli::get(cfg, out, &name, output, sha256.as_deref()).await,
        Command::Put { file, peer, name } => {
            cli::put(cfg, out, &file, &peer, name.as_deref()).await
        }
        Command::Replicate {
            name,
            peers,
            all,
            sha256,
            ..
        } => {
            let how_many = match (all, peers) {
                (false, Some(k)) => cli::replicate::HowMany::Peers(k),
                _ => cli::replicate::HowMany::All,
            };
            cli::replicate::replicate(cfg, out, &name, sha256.as_deref(), how_many).await
        }
        Command::Leave { peer } => {
            let addr = peer.unwrap_or_else(|| format!("127.0.0.1:{}", cfg.peer.listen.port()));
            cli::leave(cfg, out, &addr).await
        }
        Command::Menu { .. } => {
            let ctx = menu::Context::client(cfg)?;
            menu::run_stdio(ctx).await.map_err(Error::Other)
        }
        // Answered in `run`, before telemetry starts (health probes run often).
        Command::Serve(_) | Command::Health { .. } | Command::DevCerts { .. } => Ok(()),
    }
}

async fn serve(cfg: PeerConfig, with_menu: bool) -> Result<()> {
    if !with_menu {
        return crate::server::run(cfg, p2p_common::shutdown::signal())
            .await
            .map_err(Error::from_serve);
    }
    let running = crate::server::start(cfg.clone())
        .await
        .map_err(Error::from_serve)?;
    let token = running.shutdown.clone();
    let ctx = menu::Context::serving(&cfg, &running);
    let menu = tokio::spawn(menu::run_stdio(ctx));
    tokio::select! {
        () = p2p_common::shutdown::signal() => {}
        _ = menu => {}
        () = token.cancelled() => {}
    }
    running.shutdown().await.map_err(Error::from_serve)
}
