//! The command line of `p2p-peer`: the `serve` daemon, the client commands, and the original
//! `p2p-peer <PEER_ID> <HTTP_PORT> <FILES_DIR>` form (serve plus the interactive menu).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "p2p-peer",
    version,
    about = "p2pshare peer and client",
    after_help = "Original form: p2p-peer <PEER_ID> <HTTP_PORT> <FILES_DIR> serves FILES_DIR and, on a terminal, shows the menu.\n\nExit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 unreachable, 5 integrity failure, 6 peer id taken, 7 download refused by transfer.max_concurrent_downloads or transfer.min_free_space, 78 bad configuration."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    /// Tracker URL (tracker.endpoint), e.g. http://127.0.0.1:50051.
    #[arg(long, value_name = "URL")]
    pub tracker: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Original form: peer id, HTTP port, share directory.
    // Parsed as 1 to 3 words so that a mistyped subcommand can be told apart from the original
    // form (see `original_form`).
    #[arg(num_args = 1..=3, value_names = ["PEER_ID", "HTTP_PORT", "FILES_DIR"])]
    pub original: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Global {
    /// TOML config file (also P2P_CONFIG).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log filter (telemetry.log_level).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// `--tracker`, on the commands that talk to the tracker.
#[derive(Debug, Args, Default, Clone)]
pub struct TrackerFlag {
    /// Tracker URL (tracker.endpoint), e.g. http://127.0.0.1:50051.
    #[arg(long = "tracker", value_name = "URL")]
    pub url: Option<String>,
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Peer id (peer.id).
    #[arg(long)]
    pub id: Option<String>,
    /// Listen address (peer.listen).
    #[arg(long)]
    pub listen: Option<String>,
    /// Address other peers dial (peer.advertise_addr).
    #[arg(long)]
    pub advertise_addr: Option<String>,
    /// Share directory (peer.files_dir).
    #[arg(long)]
    pub files_dir: Option<PathBuf>,
    /// When the peer id is held by a live peer, wait for it instead of exiting with code 6
    /// (peer.wait_for_id).
    #[arg(long)]
    pub wait_for_id: bool,
    #[command(flatten)]
    pub tracker: TrackerFlag,
}

/// A file name argument: empty is a usage error, not a search for everything.
fn non_empty() -> clap::builder::NonEmptyStringValueParser {
    clap::builder::NonEmptyStringValueParser::new()
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the share directory and stay registered with the tracker.
    Serve(ServeArgs),
    /// Find files by name (substring, case-insensitive; --exact for the whole name).
    Search {
        /// Part of the file name to look for (not empty).
        #[arg(value_parser = non_empty())]
        name: String,
        /// Match the whole name exactly (still case-sensitive as stored).
        #[arg(long)]
        exact: bool,
        #[command(flatten)]
        tracker: TrackerFlag,
    },
    /// List every file the network shares.
    Ls {
        #[command(flatten)]
        tracker: TrackerFlag,
    },
    /// Download a file from the live peers that hold it and verify its SHA-256.
    Get {
        /// Exact name of the file on the network.
        #[arg(value_parser = non_empty())]
        name: String,
        /// Where to write it (a file, or a directory to put NAME in); default ./NAME, or
        /// nowhere with --via.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Make the running peer at this address (host:port or URL) download the file into its
        /// share, serving its pieces to others meanwhile; with -o, copy it here too.
        #[arg(long, value_name = "ADDR")]
        via: Option<String>,
        /// Pick these bytes when peers share different files under one name.
        #[arg(long)]
        sha256: Option<String>,
        #[command(flatten)]
        tracker: TrackerFlag,
    },
    /// Upload a file to a peer.
    Put {
        /// Local file to upload; the peer stores it under the same file name unless --as.
        file: PathBuf,
        /// The peer: host:port, or a URL such as http://host:5000.
        #[arg(long)]
        peer: String,
        /// Store it under this name instead (e.g. when the peer answers 409: the name is
        /// taken there by other bytes).
        #[arg(long = "as", value_name = "NAME", value_parser = non_empty())]
        name: Option<String>,
    },
    /// Put a file on live peers before anyone asks (preheat): each downloads it through the
    /// swarm by its own POST /downloads.
    Replicate {
        /// Exact name of the file on the network.
        #[arg(value_parser = non_empty())]
        name: String,
        /// This many peers that do not hold it yet (those the tracker lists as holders of
        /// anything).
        #[arg(
            long,
            value_name = "K",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        peers: Option<usize>,
        /// Every such peer.
        #[arg(long)]
        all: bool,
        /// Pick these bytes when peers share different files under one name.
        #[arg(long)]
        sha256: Option<String>,
        #[command(flatten)]
        tracker: TrackerFlag,
    },
    /// Make a peer on this host leave the network and stop.
    Leave {
        /// The peer: host:port or URL (default: this config's peer.listen port on 127.0.0.1).
        #[arg(long)]
        peer: Option<String>,
    },
    /// The original interactive menu (1 search, 2 get, 3 put, 4 leave).
    Menu {
        #[command(flatten)]
        tracker: TrackerFlag,
    },
    /// Write a development CA and a certificate for a local network (ca.pem, cert.pem, key.pem).
    DevCerts {
        /// Directory to write into.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// DNS names and IP addresses the certificate is valid for.
        #[arg(long = "name", default_values = ["localhost", "127.0.0.1", "::1"])]
        names: Vec<String>,
    },
    /// Probe a peer's gRPC health; exit 0 when SERVING, 1 otherwise.
    Health {
        /// host:port to probe (default: P2P_HEALTHCHECK_ADDR, else this config's listen port).
        #[arg(long)]
        addr: Option<String>,
    },
}

impl Cli {
    /// Checks the words given without a subcommand. A first word that is close to a subcommand
    /// name is taken for a typo of it rather than a peer id, so `p2p-peer serach photo` says so
    /// instead of complaining about arity or starting a peer called "serach".
    pub(crate) fn original_form(&self) -> Result<(), clap::Error> {
        use clap::CommandFactory;
        use clap::error::ErrorKind;
        let Some(first) = self.original.first() else {
            return Ok(());
        };
        let mut cmd = Cli::command();
        let complete = self.original.len() == 3 && self.original[1].parse::<u16>().is_ok();
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        // The closest subcommand, if close enough to be what was meant.
        let suggestion = names
            .iter()
            .map(|name| (strsim::jaro(first, name), name))
            .filter(|(score, name)| {
                if complete {
                    // A full, valid original form: only an obvious slip (one edit, no digits,
                    // which peer ids such as "peer1" have) is not a peer id.
                    !first.chars().any(|c| c.is_ascii_digit())
                        && strsim::damerau_levenshtein(first, name) <= 1
                } else {
                    // clap's own threshold for "did you mean".
                    *score > 0.7
                }
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, name)| name);
        if let Some(name) = suggestion {
            return Err(cmd.error(
                ErrorKind::InvalidSubcommand,
                format!("unrecognized subcommand '{first}' (did you mean '{name}'?)"),
            ));
        }
        if self.original.len() != 3 {
            return Err(cmd.error(
                ErrorKind::WrongNumberOfValues,
                format!(
                    "'{first}' is not a subcommand; the original form takes 3 values: <PEER_ID> <HTTP_PORT> <FILES_DIR>"
                ),
            ));
        }
        Ok(())
    }

    /// `--tracker` wherever it was given (after the subcommand wins).
    pub(crate) fn tracker(&self) -> Option<String> {
        let sub = match &self.command {
            Some(Command::Serve(a)) => a.tracker.url.clone(),
            Some(
                Command::Search { tracker, .. }
                | Command::Ls { tracker }
                | Command::Get { tracker, .. }
                | Command::Replicate { tracker, .. }
                | Command::Menu { tracker },
            ) => tracker.url.clone(),
            _ => None,
        };
        sub.or_else(|| self.tracker.clone())
    }
}

impl Command {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Command::Serve(_) => "serve",
            Command::Search { .. } => "search",
            Command::Ls { .. } => "ls",
            Command::Get { .. } => "get",
            Command::Put { .. } => "put",
            Command::Replicate { .. } => "replicate",
            Command::Leave { .. } => "leave",
            Command::Menu { .. } => "menu",
            Command::Health { .. } => "health",
            Command::DevCerts { .. } => "dev-certs",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of `cmd` and its subcommands without help text, as "path --arg".
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

    fn arg_names(cmd: &mut clap::Command, sub: &str) -> Vec<String> {
        cmd.build();
        cmd.find_subcommand(sub)
            .unwrap_or_else(|| panic!("no subcommand {sub}"))
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect()
    }

    #[test]
    fn every_argument_has_help_text() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        undocumented(&cmd, "p2p-peer", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn tracker_flag_shows_only_on_commands_that_use_the_tracker() {
        let mut cmd = Cli::command();
        for sub in ["put", "leave", "health", "dev-certs"] {
            let args = arg_names(&mut cmd, sub);
            assert!(
                !args.contains(&"url".to_owned()),
                "{sub} shows --tracker: {args:?}"
            );
        }
        for sub in ["serve", "search", "ls", "get", "menu"] {
            let args = arg_names(&mut cmd, sub);
            assert!(
                args.contains(&"url".to_owned()),
                "{sub} lacks --tracker: {args:?}"
            );
        }
        let top = Cli::try_parse_from(["p2p-peer", "--tracker", "http://t:1", "search", "x"]);
        assert_eq!(top.unwrap().tracker().as_deref(), Some("http://t:1"));
        let sub = Cli::try_parse_from(["p2p-peer", "search", "x", "--tracker", "http://t:2"]);
        assert_eq!(sub.unwrap().tracker().as_deref(), Some("http://t:2"));
    }

    fn typo(args: &[&str]) -> Option<String> {
        let cli = Cli::try_parse_from(args).expect("parses");
        cli.original_form().err().map(|e| e.to_string())
    }

    #[test]
    fn a_mistyped_subcommand_is_named_with_a_suggestion() {
        for (args, wanted) in [
            (&["p2p-peer", "serach", "photo"][..], "search"),
            (&["p2p-peer", "serach"][..], "search"),
            (&["p2p-peer", "lss"][..], "ls"),
            (&["p2p-peer", "gte", "5000", "./dir"][..], "get"),
        ] {
            let msg = typo(args).unwrap_or_else(|| panic!("{args:?} accepted"));
            assert!(
                msg.contains(&format!(
                    "unrecognized subcommand '{}' (did you mean '{wanted}'?)",
                    args[1]
                )),
                "{args:?}: {msg}"
            );
        }
        let e = Cli::try_parse_from(["p2p-peer", "serach", "photo"])
            .unwrap()
            .original_form()
            .unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn the_original_form_still_parses() {
        for args in [
            &["p2p-peer", "peer1", "5000", "./dir"][..],
            &["p2p-peer", "peer_1", "5001", "./dir"][..],
            &["p2p-peer", "alice", "5002", "./dir"][..],
        ] {
            assert_eq!(typo(args), None, "{args:?}");
        }
        let msg = typo(&["p2p-peer", "peer1", "5000"]).expect("two words refused");
        assert!(msg.contains("takes 3 values"), "{msg}");
    }

    #[test]
    fn an_empty_name_is_a_usage_error() {
        for args in [
            &["p2p-peer", "search", ""][..],
            &["p2p-peer", "get", ""][..],
        ] {
            let e = Cli::try_parse_from(args).expect_err("empty name accepted");
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }
}
