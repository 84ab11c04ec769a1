//! The original interactive menu: 1 search, 2 get, 3 put, 4 leave.

use std::path::PathBuf;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client::render::format_matches;
use crate::client::{self, Destination, Placed};
use crate::config::PeerConfig;
use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::net::Net;
use crate::swarm::Logged;
use crate::tracker::Tracker;

/// What the menu acts on: the tracker, and this process's own peer when it serves one.
pub struct Context {
    cfg: PeerConfig,
    /// The process's one tracker client (the serving peer's own, when there is one).
    tracker: Tracker,
    own: Option<Own>,
}

struct Own {
    daemon: Daemon,
    address: String,
    shutdown: CancellationToken,
}

impl Context {
    pub fn client(cfg: &PeerConfig) -> Result<Self> {
        Ok(Self {
            cfg: cfg.clone(),
            tracker: client::tracker(cfg)?,
            own: None,
        })
    }

    pub fn serving(cfg: &PeerConfig, running: &crate::server::Running) -> Self {
        Self {
            cfg: cfg.clone(),
            tracker: running.daemon.tracker.clone(),
            own: Some(Own {
                daemon: running.daemon.clone(),
                address: running.advertised.clone(),
                shutdown: running.shutdown.clone(),
            }),
        }
    }
}

pub(crate) async fn run_stdio(ctx: Context) -> anyhow::Result<()> {
    run(ctx, BufReader::new(tokio::io::stdin()), tokio::io::stdout()).await
}

const MENU: &str = "\n1. Search for a file\n2. Get (download) a file\n3. Put (upload) a file\n4. Leave the network\nChoice: ";

/// Runs until "4" or end of input.
pub async fn run<R, W>(ctx: Context, input: R, mut out: W) -> anyhow::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut lines = input.lines();
    loop {
        out.write_all(MENU.as_bytes()).await?;
        out.flush().await?;
        let Some(choice) = lines.next_line().await? else {
            return Ok(());
        };
        let reply = match choice.trim() {
            "1" => {
                let Some(name) = ask(&mut lines, &mut out, "File name to search: ").await? else {
                    return Ok(());
                };
                search(&ctx, &name)
                    .instrument(tracing::info_span!("menu", otel.name = "menu search"))
                    .await
            }
            "2" => {
                let Some(name) = ask(&mut lines, &mut out, "File name to get: ").await? else {
                    return Ok(());
                };
                // A trace of its own: the menu has no caller to continue one.
                get(&ctx, &name)
                    .instrument(tracing::info_span!("menu", otel.name = "menu get"))
                    .await
            }
            "3" => {
                let Some(path) = ask(&mut lines, &mut out, "Path of the file to put: ").await?
                else {
                    return Ok(());
                };
                let default = ctx.own.as_ref().map(|o| o.address.clone());
                let prompt = match &default {
                    Some(d) => format!("Peer address [{d}]: "),
                    None => "Peer address (host:port): ".to_owned(),
                };
                let Some(addr) = ask(&mut lines, &mut out, &prompt).await? else {
                    return Ok(());
                };
                let addr = if addr.is_empty() {
                    default.unwrap_or_default()
                } else {
                    addr
                };
                let put = tracing::info_span!("menu", otel.name = "menu put");
                match upload(&ctx.cfg, &addr, &PathBuf::from(path))
                    .instrument(put)
                    .await
                {
                    Ok(up) => format!("{} {} on {addr}", up.word(), up.name),
                    Err(e) => format!("put failed: {e}"),
                }
            }
            "4" => {
                if let Some(own) = &ctx.own {
                    own.shutdown.cancel();
                    out.write_all(b"Leaving the network.\n").await?;
                } else {
                    out.write_all(b"Bye.\n").await?;
                }
                out.flush().await?;
                return Ok(());
            }
            "" => continue,
            other => format!("Unknown choice {other:?}: type 1, 2, 3 or 4."),
        };
        out.write_all(reply.as_bytes()).await?;
        out.write_all(b"\n").await?;
    }
}

async fn ask<R, W>(
    lines: &mut tokio::io::Lines<R>,
    out: &mut W,
    prompt: &str,
) -> anyhow::Result<Option<String>>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    out.write_all(prompt.as_bytes()).await?;
    out.flush().await?;
    Ok(lines.next_line().await?.map(|l| l.trim().to_owned()))
}

async fn search(ctx: &Context, name: &str) -> String {
    match ctx.tracker.search(name, false).await {
        Ok(m) if m.is_empty() => format!("No file matches {name:?}."),
        Ok(m) => format_matches(&m).trim_end().to_owned(),
        Err(e) => format!("search failed: {e}"),
    }
}

/// Downloads into this peer's share (then serves it) through its own daemon or, without one,
/// into the current directory.
async fn get(ctx: &Context, name: &str) -> String {
    let result = match &ctx.own {
        Some(own) => own.daemon.download(name, None, &|_| {}).await.map(|d| {
            if d.status == Placed::Identical {
                format!("Already sharing {}.", d.name)
            } else {
                format!(
                    "Downloaded {} ({} bytes, sha256 verified); now sharing it.",
                    d.name, d.size
                )
            }
        }),
        None => get_here(ctx, name).await,
    };
    result.unwrap_or_else(|e| format!("get failed: {e}"))
}

async fn get_here(ctx: &Context, name: &str) -> Result<String> {
    let target = client::resolve(&ctx.tracker, name, None).await?;
    let dir = std::env::current_dir().map_err(|e| Error::Other(e.into()))?;
    let dest = dir.join(&target.name);
    let swarm = client::standalone_swarm(&ctx.cfg, Some(ctx.tracker.clone()))?;
    client::get(&swarm, &target, &Destination::Path(dest.clone()), &Logged).await?;
    Ok(format!("Downloaded {} (sha256 verified).", dest.display()))
}

async fn upload(cfg: &PeerConfig, addr: &str, path: &std::path::Path) -> Result<client::Uploaded> {
    client::upload(&Net::new(cfg)?, addr, path, None).await
}
