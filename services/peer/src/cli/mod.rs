//! The command-line face of the client: one function per command, each a call into
//! [`crate::client`] and its answer printed through [`crate::client::render`]. Parsing is in
//! [`args`]; which command runs is `app`'s choice.

pub(crate) mod args;
pub(crate) mod replicate;

use std::path::{Path, PathBuf};

use crate::client::render::{self, Got, Output, Progress};
use crate::client::{self, Destination};
use crate::config::PeerConfig;
use crate::error::{Error, Result};
use crate::net::Net;
use crate::share::Digest;
use crate::swarm::Target;
use crate::tracker::Holder;

pub use args::Cli;

/// A `--sha256` argument.
pub(crate) fn parse_sha256(arg: Option<&str>) -> Result<Option<Digest>> {
    arg.map(|d| {
        d.parse::<Digest>()
            .map_err(|e| Error::Refused(format!("bad sha256: {e}")))
    })
    .transpose()
}

pub(crate) async fn search(cfg: &PeerConfig, out: &Output, name: &str, exact: bool) -> Result<()> {
    let matches = client::tracker(cfg)?.search(name, exact).await?;
    out.matches(&matches);
    if matches.is_empty() {
        return Err(Error::NotFound(format!(
            "no live peer shares a file matching {name:?}"
        )));
    }
    Ok(())
}

pub(crate) async fn ls(cfg: &PeerConfig, out: &Output) -> Result<()> {
    let files = client::tracker(cfg)?.list().await?;
    out.matches(&files);
    Ok(())
}

/// Where `get -o` writes: a file, or NAME inside a directory; default ./NAME. The directory
/// must exist: a mistyped `-o` is an error, not a tree of new directories.
fn destination(output: Option<PathBuf>, name: &str) -> Result<PathBuf> {
    let path = match output {
        Some(p) if p.is_dir() => p.join(name),
        Some(p) => p,
        None => PathBuf::from(name),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::Refused(format!(
            "{} is not a directory; get does not create directories (create it first, or pick another -o)",
            dir.display()
        )));
    }
    Ok(path)
}

fn got(t: &Target) -> Got<'_> {
    Got {
        name: &t.name,
        size: t.size,
        sha256: &t.sha256,
        run: None,
    }
}

/// `get` without `--via`: this process downloads alone (from many holders, serving none).
pub(crate) async fn get(
    cfg: &PeerConfig,
    out: &Output,
    name: &str,
    output: Option<PathBuf>,
    sha256: Option<&str>,
) -> Result<()> {
    let sha256 = parse_sha256(sha256)?;
    let dest = destination(output, name)?;
    let tracker = client::tracker(cfg)?;
    let target = client::resolve(&tracker, name, sha256.as_ref()).await?;
    place(cfg, out, Some(tracker), target, &dest).await
}

/// The download of `target` to `dest`, unless it is there already.
async fn place(
    cfg: &PeerConfig,
    out: &Output,
    tracker: Option<crate::tracker::Tracker>,
    mut target: Target,
    dest: &Path,
) -> Result<()> {
    if client::existing(dest, &target.sha256).await? {
        if let Ok(meta) = tokio::fs::metadata(dest).await {
            target.size = meta.len();
        }
        out.got(&got(&target), dest, "already present");
        return Ok(());
    }
    let swarm = client::standalone_swarm(cfg, tracker)?;
    let progress = Progress::new(out.json, &target.name, None, Some(swarm.net.ledger.clone()));
    let destination = Destination::Path(dest.to_path_buf());
    // What an earlier run kept is said first, and is not this run's (as the daemon's start).
    let kept = client::kept_bytes(&destination.partial_dir(), &target).await;
    progress.show(&crate::daemon::start(&target, kept));
    // Ctrl-C stops the download (dropping it keeps what it verified) so that the kept bytes
    // can be said.
    let result = tokio::select! {
        r = client::get(&swarm, &target, &destination, &progress) => r,
        _ = tokio::signal::ctrl_c() => Err(Error::Interrupted(format!("download of {} interrupted", target.name))),
    };
    progress.finish();
    if let Err(e) = result {
        let dir = destination.partial_dir();
        let kept = client::kept_bytes(&dir, &target).await;
        if kept > 0 {
            eprintln!(
                "{} of {} kept in {}; run the same command to resume",
                render::human_bytes(kept),
                render::size(target.size),
                dir.display()
            );
        } else if matches!(e, Error::Interrupted(_)) {
            client::tidy_partial_dir(&dir).await;
        }
        return Err(e);
    }
    // The size the holders served and the digest verified, not the tracker's (anyone's claim).
    if let Ok(meta) = tokio::fs::metadata(dest).await {
        target.size = meta.len();
    }
    let run = progress.view();
    out.got(
        &Got {
            run: Some(run),
            ..got(&target)
        },
        dest,
        "downloaded",
    );
    Ok(())
}

/// `get --via ADDR`: the peer at ADDR downloads into its share; with `-o`, a verified copy of
/// its file comes here too.
pub(crate) async fn get_via(
    cfg: &PeerConfig,
    out: &Output,
    via: &str,
    name: &str,
    output: Option<PathBuf>,
    sha256: Option<&str>,
) -> Result<()> {
    crate::store::check_name(name).map_err(|e| Error::Refused(format!("bad file name: {e}")))?;
    let sha256 = parse_sha256(sha256)?;
    let output = output.map(|o| destination(Some(o), name)).transpose()?;
    let net = Net::new(cfg)?;
    let shown = Progress::new(out.json, name, Some(via), None);
    // Ctrl-C ends this client only: the download is the peer's and goes on there.
    let done = tokio::select! {
        r = client::peer::download_via(&net, via, name, sha256.as_ref(), |e| shown.show(e)) => r,
        _ = tokio::signal::ctrl_c() => Err(Error::Interrupted(format!(
            "interrupted; the peer at {via} goes on downloading {name} (stop it with DELETE /downloads/SHA256 or the page's Cancel)"
        ))),
    };
    shown.finish();
    let done = done?;
    let target = Target {
        name: done.name.clone(),
        size: done.size,
        sha256: done.sha256,
        pieces_root: None,
        holders: vec![Holder {
            peer_id: via.to_owned(),
            address: via.to_owned(),
            ..Default::default()
        }],
    };
    let Some(output) = output else {
        out.got_via(&got(&target), done.status.as_str(), via);
        return Ok(());
    };
    // The copy is a download like any other, from that one peer: verified the same way.
    place(cfg, out, None, target, &output).await
}

/// `put FILE --peer ADDR [--as NAME]`.
pub(crate) async fn put(
    cfg: &PeerConfig,
    out: &Output,
    file: &Path,
    addr: &str,
    name: Option<&str>,
) -> Result<()> {
    let up = client::upload(&Net::new(cfg)?, addr, file, name).await?;
    out.uploaded(&up, addr);
    Ok(())
}

pub(crate) async fn leave(cfg: &PeerConfig, out: &Output, addr: &str) -> Result<()> {
    client::request_leave(&Net::new(cfg)?, addr).await?;
    out.leaving(addr);
    Ok(())
}
