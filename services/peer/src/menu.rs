//! The original interactive menu: 1 search, 2 get, 3 put, 4 leave.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cli;
use crate::config::PeerConfig;
use crate::download;
use crate::net::Net;
use crate::store::{Published, Store};

/// What the menu acts on: the tracker, and this process's own peer when it serves one.
pub struct Context {
    cfg: PeerConfig,
    own: Option<Own>,
}

struct Own {
    store: Arc<Store>,
    metrics: crate::metrics::Metrics,
    address: String,
    shutdown: CancellationToken,
}

impl Context {
    pub fn client(cfg: &PeerConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            own: None,
        }
    }

    pub fn serving(cfg: &PeerConfig, running: &crate::server::Running) -> Self {
        Self {
            cfg: cfg.clone(),
            own: Some(Own {
                store: running.store.clone(),
                metrics: running.metrics.clone(),
                address: running.advertised.clone(),
                shutdown: running.shutdown.clone(),
            }),
        }
    }
}

pub async fn run_stdio(ctx: Context) -> anyhow::Result<()> {
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
                    Ok(up) => format!("{} {} on {addr}", up.status, up.name),
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
    let result = match cli::tracker_of(&ctx.cfg) {
        Ok(t) => t.search(name, false).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(m) if m.is_empty() => format!("No file matches {name:?}."),
        Ok(m) => cli::format_matches(&m).trim_end().to_owned(),
        Err(e) => format!("search failed: {e}"),
    }
}

/// Downloads into this peer's share (then serves it) or, without one, the current directory.
async fn get(ctx: &Context, name: &str) -> String {
    let result = async {
        crate::store::check_name(name).map_err(|e| crate::error::Error::Refused(e.to_string()))?;
        let matches = cli::tracker_of(&ctx.cfg)?.search(name, true).await?;
        let target = cli::choose(matches, name, None)?;
        let net = Net::new(&ctx.cfg)?;
        match &ctx.own {
            Some(own) => {
                let _active = own.metrics.transfer("download");
                let fetched = download::fetch(
                    &net,
                    &target,
                    &own.store.partial_dir(),
                    Some(&own.address),
                    &crate::metrics::DownloadProgress(&own.metrics),
                )
                .await;
                let result = match &fetched {
                    Ok(_) => "ok",
                    Err(crate::error::Error::Integrity(_)) => "integrity_failure",
                    Err(_) => "error",
                };
                own.metrics.downloads.with_label_values(&[result]).inc();
                let part = fetched?;
                let outcome = own
                    .store
                    .publish(&part, &target.name, target.size, &target.sha256)
                    .await
                    .map_err(|e| crate::error::Error::Other(e.into()))?;
                Ok::<_, crate::error::Error>(match outcome {
                    Published::Created => format!(
                        "Downloaded {} ({} bytes, sha256 verified); now sharing it.",
                        target.name, target.size
                    ),
                    Published::Identical => format!("Already sharing {}.", target.name),
                    Published::Conflict => format!(
                        "A different file named {} is already shared here; kept it.",
                        target.name
                    ),
                    Published::NotAFile => format!(
                        "{} is taken here by something that is not a shared file; kept it.",
                        target.name
                    ),
                })
            }
            None => {
                let dir =
                    std::env::current_dir().map_err(|e| crate::error::Error::Other(e.into()))?;
                let partial = dir.join(crate::store::PARTIAL_DIR);
                let fetched =
                    download::fetch(&net, &target, &partial, None, &download::Silent).await;
                if fetched.is_err() {
                    cli::tidy_partial_dir(&dir).await;
                }
                let part = fetched?;
                let dest = dir.join(&target.name);
                let (p, d) = (part.clone(), dest.clone());
                let placed = tokio::task::spawn_blocking(move || crate::store::place_new(&p, &d))
                    .await
                    .map_err(|e| crate::error::Error::Other(e.into()))?;
                if let Err(e) = placed {
                    let _ = tokio::fs::remove_file(&part).await;
                    cli::tidy_partial_dir(&dir).await;
                    return Ok(if e.kind() == std::io::ErrorKind::AlreadyExists {
                        format!("{} already exists here; not replaced.", dest.display())
                    } else {
                        format!("get failed: cannot write {}: {e}", dest.display())
                    });
                }
                cli::tidy_partial_dir(&dir).await;
                Ok(format!("Downloaded {} (sha256 verified).", dest.display()))
            }
        }
    }
    .await;
    result.unwrap_or_else(|e| format!("get failed: {e}"))
}

async fn upload(
    cfg: &PeerConfig,
    addr: &str,
    path: &std::path::Path,
) -> crate::error::Result<cli::Uploaded> {
    cli::upload(&Net::new(cfg)?, addr, path).await
}
