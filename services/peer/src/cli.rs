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
use serde_json::json;
use tracing::Instrument;

use crate::config::PeerConfig;
use crate::download::{self, Progress, Target};
use crate::error::{Error, Result, exit};
use crate::net::Net;
use crate::tracker::Tracker;

#[derive(Debug, Parser)]
#[command(
    name = "p2p-peer",
    version,
    about = "p2pshare peer and client",
    after_help = "Original form: p2p-peer <PEER_ID> <HTTP_PORT> <FILES_DIR> serves FILES_DIR and, on a terminal, shows the menu.\n\nExit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 unreachable, 5 integrity failure, 78 bad configuration."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Original form: peer id, HTTP port, share directory.
    #[arg(num_args = 3, value_names = ["PEER_ID", "HTTP_PORT", "FILES_DIR"])]
    pub original: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Global {
    /// TOML config file (also P2P_CONFIG).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Tracker URL (tracker.endpoint), e.g. http://127.0.0.1:50051.
    #[arg(long, global = true, value_name = "URL")]
    pub tracker: Option<String>,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log filter (telemetry.log_level).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the share directory and stay registered with the tracker.
    Serve(ServeArgs),
    /// Find files by name (substring, case-insensitive; --exact for the whole name).
    Search {
        name: String,
        #[arg(long)]
        exact: bool,
    },
    /// List every file the network shares.
    Ls,
    /// Download a file from a live peer and verify its SHA-256.
    Get {
        name: String,
        /// Where to write it (a file, or a directory to put NAME in); default ./NAME.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Pick these bytes when peers share different files under one name.
        #[arg(long)]
        sha256: Option<String>,
    },
    /// Upload a file to a peer.
    Put {
        file: PathBuf,
        /// host:port of the peer.
        #[arg(long)]
        peer: String,
    },
    /// Make a peer on this host leave the network and stop.
    Leave {
        /// host:port of the peer (default: this config's peer.listen port on 127.0.0.1).
        #[arg(long)]
        peer: Option<String>,
    },
    /// The original interactive menu (1 search, 2 get, 3 put, 4 leave).
    Menu,
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
        #[arg(long)]
        addr: Option<String>,
    },
}

pub async fn run(cli: Cli) -> ExitCode {
    let mut flags = Flags::new();
    flags
        .set("tracker.endpoint", cli.global.tracker.clone())
        .set("telemetry.log_level", cli.global.log_level.clone());
    let mut serve_args = match &cli.command {
        Some(Command::Serve(a)) => Some(ServeArgs {
            id: a.id.clone(),
            listen: a.listen.clone(),
            advertise_addr: a.advertise_addr.clone(),
            files_dir: a.files_dir.clone(),
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
            advertise_addr: None,
            files_dir: Some(PathBuf::from(&cli.original[2])),
        });
    }
    if let Some(a) = &serve_args {
        flags
            .set("peer.id", a.id.clone())
            .set("peer.listen", a.listen.clone())
            .set("peer.advertise_addr", a.advertise_addr.clone())
            .set("peer.files_dir", a.files_dir.clone());
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
    let telemetry = p2p_common::telemetry::init(&cfg.telemetry, service, default_level);
    let result = match cli.command {
        Some(Command::Serve(_)) | None => serve(cfg, menu).await,
        Some(command) => {
            let span = tracing::info_span!("p2p-peer", otel.name = command.name());
            client(command, &cfg, &out).instrument(span).await
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
            Command::Ls => "ls",
            Command::Get { .. } => "get",
            Command::Put { .. } => "put",
            Command::Leave { .. } => "leave",
            Command::Menu => "menu",
            Command::Health { .. } => "health",
            Command::DevCerts { .. } => "dev-certs",
        }
    }
}

async fn client(command: Command, cfg: &PeerConfig, out: &Output) -> Result<()> {
    match command {
        Command::Search { name, exact } => search(cfg, out, &name, exact).await,
        Command::Ls => ls(cfg, out).await,
        Command::Get {
            name,
            output,
            sha256,
        } => get(cfg, out, &name, output, sha256.as_deref()).await,
        Command::Put { file, peer } => put(cfg, out, &file, &peer).await,
        Command::Leave { peer } => {
            let addr = peer.unwrap_or_else(|| format!("127.0.0.1:{}", cfg.peer.listen.port()));
            leave(cfg, out, &addr).await
        }
        Command::Menu => {
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
            .map_err(Error::Other);
    }
    let running = crate::server::start(cfg.clone())
        .await
        .map_err(Error::Other)?;
    let token = running.shutdown.clone();
    let ctx = crate::menu::Context::serving(&cfg, &running);
    let menu = tokio::spawn(crate::menu::run_stdio(ctx));
    tokio::select! {
        () = p2p_common::shutdown::signal() => {}
        _ = menu => {}
        () = token.cancelled() => {}
    }
    running.shutdown().await.map_err(Error::Other)
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

pub fn tracker_of(cfg: &PeerConfig) -> Result<Tracker> {
    Tracker::connect(cfg)
}

async fn search(cfg: &PeerConfig, out: &Output, name: &str, exact: bool) -> Result<()> {
    let matches = tracker_of(cfg)?.search(name, exact).await?;
    out.matches(&matches);
    if matches.is_empty() {
        return Err(Error::NotFound(format!(
            "no live peer shares a file matching {name:?}"
        )));
    }
    Ok(())
}

async fn ls(cfg: &PeerConfig, out: &Output) -> Result<()> {
    let files = tracker_of(cfg)?.list().await?;
    out.matches(&files);
    Ok(())
}

/// Picks the match to download: the requested digest, else the one most peers hold.
pub fn choose(matches: Vec<FileMatch>, name: &str, sha256: Option<&str>) -> Result<Target> {
    let mut targets: Vec<Target> = matches
        .into_iter()
        .filter_map(Target::from_match)
        .filter(|t| t.name == name && sha256.is_none_or(|d| d == t.sha256))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.peers.len()));
    let mut it = targets.into_iter();
    let first = it
        .next()
        .ok_or_else(|| Error::NotFound(format!("no live peer shares {name:?}")))?;
    if it.next().is_some() {
        tracing::warn!(
            "peers share different files named {name:?}; taking sha256 {} (held by most peers); use --sha256 to choose",
            first.sha256
        );
    }
    Ok(first)
}

async fn get(
    cfg: &PeerConfig,
    out: &Output,
    name: &str,
    output: Option<PathBuf>,
    sha256: Option<&str>,
) -> Result<()> {
    crate::store::check_name(name).map_err(|e| Error::Refused(format!("bad file name: {e}")))?;
    let dest = match output {
        Some(p) if p.is_dir() => p.join(name),
        Some(p) => p,
        None => PathBuf::from(name),
    };
    let matches = tracker_of(cfg)?.search(name, true).await?;
    let target = choose(matches, name, sha256)?;

    let d = dest.clone();
    let existing = tokio::task::spawn_blocking(move || match std::fs::symlink_metadata(&d) {
        Ok(m) if m.file_type().is_file() => crate::store::hash_file(&d).map(Some),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "exists and is not a regular file",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    })
    .await
    .map_err(|e| Error::Other(e.into()))?
    .map_err(|e| Error::Refused(format!("{}: {e}", dest.display())))?;
    if let Some((_, digest)) = existing {
        if digest == target.sha256 {
            out.got(&target, &dest, "already present");
            return Ok(());
        }
        return Err(Error::Refused(format!(
            "{} exists with other content; remove it or pick another -o",
            dest.display()
        )));
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let partial_dir = parent.join(crate::store::PARTIAL_DIR);
    let progress = ConsoleProgress::new(out.json, &target.name);
    let net = Net::new(cfg)?;
    let fetched = download::fetch(&net, &target, &partial_dir, None, &progress).await;
    let placed = match fetched {
        Ok(part) => publish_to(&part, &dest).await,
        Err(e) => Err(e),
    };
    tidy_partial_dir(&parent).await;
    placed?;
    out.got(&target, &dest, "downloaded");
    Ok(())
}

/// Removes the `.partial/` a client download used in `dir` when it is empty, unless `dir` is a
/// peer's share (it holds `.p2pshare/`): that `.partial/` is the peer's, not ours to remove.
pub async fn tidy_partial_dir(dir: &Path) {
    let state = dir.join(crate::store::STATE_DIR);
    if tokio::fs::symlink_metadata(&state).await.is_ok() {
        return;
    }
    // Fails, as it should, when something is still inside (a partial kept for a resume).
    let _ = tokio::fs::remove_dir(dir.join(crate::store::PARTIAL_DIR)).await;
}

/// Puts a verified partial in place without replacing anything there.
async fn publish_to(part: &Path, dest: &Path) -> Result<()> {
    let (p, d) = (part.to_path_buf(), dest.to_path_buf());
    let placed = tokio::task::spawn_blocking(move || crate::store::place_new(&p, &d))
        .await
        .map_err(|e| Error::Other(e.into()))?;
    // On failure the verified copy stays in `.partial/`: the next `get` only places it.
    placed.map_err(|e| Error::Refused(format!("cannot write {}: {e}", dest.display())))
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

/// Uploads `file` to the peer at `addr` as multipart field `file`.
pub async fn upload(net: &Net, addr: &str, file: &Path) -> Result<serde_json::Value> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Refused(format!("{} has no usable file name", file.display())))?
        .to_owned();
    let f = tokio::fs::File::open(file)
        .await
        .map_err(|e| Error::Refused(format!("cannot read {}: {e}", file.display())))?;
    let len = f
        .metadata()
        .await
        .map_err(|e| Error::Other(e.into()))?
        .len();
    let body =
        reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024));
    let part = reqwest::multipart::Part::stream_with_length(body, len).file_name(name);
    let form = reqwest::multipart::Form::new().part("file", part);
    let url = net.url(addr, "/upload");
    let resp = net
        .http
        .post(&url)
        .multipart(form)
        .send()
        .await
        .map_err(|e| Error::Unreachable(format!("{url}: {e}")))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_else(|_| json!({}));
    if status.is_success() {
        Ok(body)
    } else {
        let msg = body["error"].as_str().unwrap_or("no details").to_owned();
        Err(Error::Refused(format!("{url} answered {status}: {msg}")))
    }
}

async fn put(cfg: &PeerConfig, out: &Output, file: &Path, addr: &str) -> Result<()> {
    let body = upload(&Net::new(cfg)?, addr, file).await?;
    if out.json {
        println!("{body}");
    } else {
        println!(
            "{}: {} ({} bytes, sha256 {}) on {addr}",
            body["status"].as_str().unwrap_or("uploaded"),
            body["name"].as_str().unwrap_or_default(),
            body["size"],
            body["sha256"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}

pub async fn request_leave(net: &Net, addr: &str) -> Result<()> {
    let url = net.url(addr, "/leave");
    let resp = net
        .http
        .post(&url)
        .send()
        .await
        .map_err(|e| Error::Unreachable(format!("{url}: {e}")))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(Error::Refused(format!("{url} answered {}", resp.status())))
    }
}

async fn leave(cfg: &PeerConfig, out: &Output, addr: &str) -> Result<()> {
    request_leave(&Net::new(cfg)?, addr).await?;
    if out.json {
        println!("{}", json!({"peer": addr, "status": "leaving"}));
    } else {
        println!("{addr} is leaving the network");
    }
    Ok(())
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
        let bar = (!json && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        Self {
            bar,
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
