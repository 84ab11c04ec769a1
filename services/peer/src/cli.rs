//! Command line of `p2p-peer`: the `serve` daemon, the client commands, and the original
//! `p2p-peer <PEER_ID> <HTTP_PORT> <FILES_DIR>` form (serve plus the interactive menu).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use p2p_common::config::Flags;
use p2p_common::proto::{FileMatch, PeerInfo};
use p2p_common::telemetry::Service;
use serde_json::json;

use crate::client::{self, Destination};
use crate::config::PeerConfig;
use crate::daemon::Event;
use crate::download::{Progress, Target};
use crate::error::{Error, Result, exit};
use crate::net::Net;

#[derive(Debug, Parser)]
#[command(
    name = "p2p-peer",
    version,
    about = "p2pshare peer and client",
    after_help = "Original form: p2p-peer <PEER_ID> <HTTP_PORT> <FILES_DIR> serves FILES_DIR and, on a terminal, shows the menu.\n\nExit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 unreachable, 5 integrity failure, 6 peer id taken, 78 bad configuration."
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
        /// Local file to upload; the peer stores it under the same file name.
        file: PathBuf,
        /// The peer: host:port, or a URL such as http://host:5000.
        #[arg(long)]
        peer: String,
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
    pub fn original_form(&self) -> Result<(), clap::Error> {
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
    fn tracker(&self) -> Option<String> {
        let sub = match &self.command {
            Some(Command::Serve(a)) => a.tracker.url.clone(),
            Some(
                Command::Search { tracker, .. }
                | Command::Ls { tracker }
                | Command::Get { tracker, .. }
                | Command::Menu { tracker },
            ) => tracker.url.clone(),
            _ => None,
        };
        sub.or_else(|| self.tracker.clone())
    }
}

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

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Serve(_) => "serve",
            Command::Search { .. } => "search",
            Command::Ls { .. } => "ls",
            Command::Get { .. } => "get",
            Command::Put { .. } => "put",
            Command::Leave { .. } => "leave",
            Command::Menu { .. } => "menu",
            Command::Health { .. } => "health",
            Command::DevCerts { .. } => "dev-certs",
        }
    }
}

async fn client(command: Command, cfg: &PeerConfig, out: &Output) -> Result<()> {
    match command {
        Command::Search { name, exact, .. } => search(cfg, out, &name, exact).await,
        Command::Ls { .. } => ls(cfg, out).await,
        Command::Get {
            name,
            output,
            via: Some(via),
            sha256,
            ..
        } => get_via(cfg, out, &via, &name, output, sha256.as_deref()).await,
        Command::Get {
            name,
            output,
            sha256,
            ..
        } => get(cfg, out, &name, output, sha256.as_deref()).await,
        Command::Put { file, peer } => put(cfg, out, &file, &peer).await,
        Command::Leave { peer } => {
            let addr = peer.unwrap_or_else(|| format!("127.0.0.1:{}", cfg.peer.listen.port()));
            leave(cfg, out, &addr).await
        }
        Command::Menu { .. } => {
            let ctx = crate::menu::Context::client(cfg);
            crate::menu::run_stdio(ctx).await.map_err(Error::Other)
        }
        Command::Serve(_) | Command::Health { .. } | Command::DevCerts { .. } => {
            unreachable!("handled before the client commands")
        }
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
    let ctx = crate::menu::Context::serving(&cfg, &running);
    let menu = tokio::spawn(crate::menu::run_stdio(ctx));
    tokio::select! {
        () = p2p_common::shutdown::signal() => {}
        _ = menu => {}
        () = token.cancelled() => {}
    }
    running.shutdown().await.map_err(Error::from_serve)
}

/// Prints results for people or, with --json, for scripts.
pub struct Output {
    pub json: bool,
}

impl Output {
    fn error(&self, e: &Error) {
        if self.json {
            println!(
                "{}",
                json!({ "error": e.to_string(), "kind": e.kind(), "exit_code": e.exit_code() })
            );
        }
        eprintln!("p2p-peer: {e}");
    }

    fn matches(&self, matches: &[FileMatch]) {
        if self.json {
            let list: Vec<_> = matches.iter().map(match_json).collect();
            println!("{}", json!({ "files": list }));
            return;
        }
        print!("{}", format_matches(matches));
    }
}

fn match_json(m: &FileMatch) -> serde_json::Value {
    let f = m.file.clone().unwrap_or_default();
    json!({
        "name": f.name, "size": f.size, "sha256": f.sha256,
        "peers": m.peers.iter().map(|p| json!({"peer_id": p.peer_id, "address": p.address})).collect::<Vec<_>>(),
    })
}

pub fn format_matches(matches: &[FileMatch]) -> String {
    let mut s = String::new();
    for m in matches {
        let f = m.file.clone().unwrap_or_default();
        s.push_str(&format!(
            "{}  {} bytes  sha256:{}\n",
            f.name, f.size, f.sha256
        ));
        for p in &m.peers {
            s.push_str(&format!("    {}  {}\n", p.peer_id, p.address));
        }
    }
    s
}

async fn search(cfg: &PeerConfig, out: &Output, name: &str, exact: bool) -> Result<()> {
    let matches = client::search(cfg, name, exact).await?;
    out.matches(&matches);
    if matches.is_empty() {
        return Err(Error::NotFound(format!(
            "no live peer shares a file matching {name:?}"
        )));
    }
    Ok(())
}

async fn ls(cfg: &PeerConfig, out: &Output) -> Result<()> {
    let files = client::ls(cfg).await?;
    out.matches(&files);
    Ok(())
}

/// Where `get -o` writes: a file, or NAME inside a directory; default ./NAME.
fn destination(output: Option<PathBuf>, name: &str) -> PathBuf {
    match output {
        Some(p) if p.is_dir() => p.join(name),
        Some(p) => p,
        None => PathBuf::from(name),
    }
}

/// `get` without `--via`: this process downloads alone (from many holders, serving none).
async fn get(
    cfg: &PeerConfig,
    out: &Output,
    name: &str,
    output: Option<PathBuf>,
    sha256: Option<&str>,
) -> Result<()> {
    let tracker = client::tracker(cfg)?;
    let target = client::resolve(&tracker, name, sha256).await?;
    let dest = destination(output, name);
    if client::existing(&dest, &target.sha256).await? {
        out.got(&target, &dest, "already present");
        return Ok(());
    }
    let swarm = client::standalone_swarm(cfg, Some(tracker))?;
    let progress = ConsoleProgress::new(out.json, &target.name);
    client::get(&swarm, &target, &Destination::Path(dest.clone()), &progress).await?;
    out.got(&target, &dest, "downloaded");
    Ok(())
}

/// `get --via ADDR`: the peer at ADDR downloads into its share; with `-o`, a verified copy of
/// its file comes here too.
async fn get_via(
    cfg: &PeerConfig,
    out: &Output,
    via: &str,
    name: &str,
    output: Option<PathBuf>,
    sha256: Option<&str>,
) -> Result<()> {
    crate::store::check_name(name).map_err(|e| Error::Refused(format!("bad file name: {e}")))?;
    let net = Net::new(cfg)?;
    let shown = ViaProgress::new(out.json, name, via);
    let done = client::peer::download_via(&net, via, name, sha256, |e| shown.event(e)).await;
    shown.finish();
    let done = done?;
    let target = Target {
        name: done.name.clone(),
        size: done.size,
        sha256: done.sha256.clone(),
        pieces_root: String::new(),
        peers: vec![PeerInfo {
            peer_id: via.to_owned(),
            address: via.to_owned(),
            ..Default::default()
        }],
    };
    let Some(output) = output else {
        if out.json {
            println!(
                "{}",
                json!({"name": done.name, "size": done.size, "sha256": done.sha256, "status": done.status, "via": via})
            );
        } else {
            println!(
                "{}: {} on {via} ({} bytes, sha256 {} verified)",
                done.status, done.name, done.size, done.sha256
            );
        }
        return Ok(());
    };
    let dest = destination(Some(output), name);
    if client::existing(&dest, &target.sha256).await? {
        out.got(&target, &dest, "already present");
        return Ok(());
    }
    // The copy is a download like any other, from that one peer: verified the same way.
    let swarm = client::standalone_swarm(cfg, None)?;
    let progress = ConsoleProgress::new(out.json, &target.name);
    client::get(&swarm, &target, &Destination::Path(dest.clone()), &progress).await?;
    out.got(&target, &dest, "downloaded");
    Ok(())
}

impl Output {
    fn got(&self, t: &Target, dest: &Path, what: &str) {
        if self.json {
            println!(
                "{}",
                json!({"name": t.name, "path": dest.display().to_string(), "size": t.size, "sha256": t.sha256, "status": what})
            );
        } else {
            println!(
                "{what}: {} ({} bytes, sha256 {} verified)",
                dest.display(),
                t.size,
                t.sha256
            );
        }
    }
}

async fn put(cfg: &PeerConfig, out: &Output, file: &Path, addr: &str) -> Result<()> {
    let up = client::upload(&Net::new(cfg)?, addr, file).await?;
    if out.json {
        println!("{}", json!(up));
    } else {
        let status = if up.status.is_empty() {
            "uploaded"
        } else {
            up.status.as_str()
        };
        println!(
            "{status}: {} ({} bytes, sha256 {}) on {addr}",
            up.name, up.size, up.sha256
        );
    }
    Ok(())
}

async fn leave(cfg: &PeerConfig, out: &Output, addr: &str) -> Result<()> {
    client::request_leave(&Net::new(cfg)?, addr).await?;
    if out.json {
        println!("{}", json!({"peer": addr, "status": "leaving"}));
    } else {
        println!("{addr} is leaving the network");
    }
    Ok(())
}

fn bar(len: u64) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    b
}

/// What `get --via` shows of the peer's events: a bar on a terminal, else a line per event
/// (progress at most once a second); nothing but the result with `--json`.
struct ViaProgress {
    bar: Option<ProgressBar>,
    quiet: bool,
    name: String,
    via: String,
    last_line: Mutex<Option<std::time::Instant>>,
}

impl ViaProgress {
    fn new(json: bool, name: &str, via: &str) -> Self {
        Self {
            bar: (!json && std::io::stderr().is_terminal()).then(|| bar(0)),
            quiet: json,
            name: name.to_owned(),
            via: via.to_owned(),
            last_line: Mutex::new(None),
        }
    }

    fn line(&self, s: String) {
        match &self.bar {
            Some(b) => b.println(s),
            None if !self.quiet => eprintln!("{s}"),
            None => {}
        }
    }

    fn event(&self, e: &Event) {
        match e {
            Event::Start { size, have, .. } => {
                if let Some(b) = &self.bar {
                    b.set_length(*size);
                    b.set_position(*have);
                    b.set_message(format!("{} via {}", self.name, self.via));
                } else {
                    self.line(format!(
                        "{} downloading {} ({size} bytes{})",
                        self.via,
                        self.name,
                        if *have > 0 {
                            format!(", {have} already verified")
                        } else {
                            String::new()
                        }
                    ));
                }
            }
            Event::Progress {
                have,
                size,
                sources,
            } => {
                if let Some(b) = &self.bar {
                    b.set_length(*size);
                    b.set_position(*have);
                    return;
                }
                let due = match self.last_line.lock() {
                    Ok(mut last) if last.is_none_or(|t| t.elapsed().as_secs() >= 1) => {
                        *last = Some(std::time::Instant::now());
                        true
                    }
                    _ => false,
                };
                if due {
                    self.line(format!(
                        "{} {have}/{size} bytes from {sources} source(s)",
                        self.name
                    ));
                }
            }
            Event::SourceFailed {
                peer,
                address,
                reason,
                bad,
            } => self.line(format!(
                "{peer} ({address}): {reason}{}",
                if *bad {
                    "; dropped as a bad source"
                } else {
                    ""
                }
            )),
            Event::Done { .. } | Event::Error { .. } => {}
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// A progress bar on a terminal, a line per event otherwise.
struct ConsoleProgress {
    bar: Option<ProgressBar>,
    quiet: bool,
    name: String,
    started: Mutex<Option<std::time::Instant>>,
}

impl ConsoleProgress {
    fn new(json: bool, name: &str) -> Self {
        Self {
            bar: (!json && std::io::stderr().is_terminal()).then(|| bar(0)),
            quiet: json,
            name: name.to_owned(),
            started: Mutex::new(None),
        }
    }
}

impl Progress for ConsoleProgress {
    fn attempt(&self, peer: &PeerInfo, total: u64, already: u64) {
        if let Ok(mut s) = self.started.lock() {
            *s = Some(std::time::Instant::now());
        }
        match &self.bar {
            Some(b) => {
                b.set_length(total);
                b.set_position(already);
                b.set_message(format!("{} from {}", self.name, peer.peer_id));
            }
            None if !self.quiet => eprintln!(
                "downloading {} ({total} bytes) from {} at {}{}",
                self.name,
                peer.peer_id,
                peer.address,
                if already > 0 {
                    format!(", resuming at byte {already}")
                } else {
                    String::new()
                }
            ),
            None => {}
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    fn failed(&self, peer: &PeerInfo, why: &str, _: bool) {
        match &self.bar {
            Some(b) => b.println(format!(
                "{} ({}): {why}; trying the next peer",
                peer.peer_id, peer.address
            )),
            None if !self.quiet => eprintln!(
                "{} ({}): {why}; trying the next peer",
                peer.peer_id, peer.address
            ),
            None => {}
        }
    }

    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        let secs = self
            .started
            .lock()
            .ok()
            .and_then(|s| *s)
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        if !self.quiet && self.bar.is_none() {
            eprintln!("verified {} in {secs:.1}s", self.name);
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
