//! The client operations (search, ls, get, put, leave) that the CLI, the menu and the daemon
//! call. The CLI (`cli`) and the menu (`menu`) are its two faces: neither holds an operation of
//! its own, neither imports the other, and both print through [`render`]; `peer` holds the
//! requests to one peer's HTTP API.

pub(crate) mod peer;
pub(crate) mod render;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::PeerConfig;
use crate::error::{Error, Result};
use crate::net::Net;
use crate::share::partial::Partials;
use crate::share::{Digest, bitfield, partial, pieces};
use crate::store::{Published, Store};
use crate::swarm::{Fetched, Report, Swarm, Target};
use crate::tracker::{Match, Tracker};
use crate::transfer::Limits;
pub(crate) use crate::wire::Placed;
pub(crate) use crate::wire::upload::Uploaded;

pub use peer::{request_leave, upload};

pub fn tracker(cfg: &PeerConfig) -> Result<Tracker> {
    Tracker::connect(cfg)
}

/// The file to download for `name` (and `sha256` when given), with its holders.
pub(crate) async fn resolve(
    tracker: &Tracker,
    name: &str,
    sha256: Option<&Digest>,
) -> Result<Target> {
    crate::store::check_name(name).map_err(|e| Error::Refused(format!("bad file name: {e}")))?;
    let matches = tracker.search(name, true).await?;
    match choose(matches, name, sha256) {
        // Names are matched exactly, but search is case-insensitive: say what it would find.
        Err(Error::NotFound(msg)) if sha256.is_none() => match did_you_mean(tracker, name).await {
            Some(other) => Err(Error::NotFound(format!("{msg}; did you mean {other:?}?"))),
            None => Err(Error::NotFound(msg)),
        },
        r => r,
    }
}

/// A shared name that differs from `name` only in case, if the network has one.
async fn did_you_mean(tracker: &Tracker, name: &str) -> Option<String> {
    let found = tracker.search(name, false).await.ok()?;
    found
        .into_iter()
        .map(|m| m.name)
        .find(|n| n != name && n.to_lowercase() == name.to_lowercase())
}

/// Picks the match to download: the requested digest, else the one most peers hold.
pub(crate) fn choose(
    mut matches: Vec<Match>,
    name: &str,
    sha256: Option<&Digest>,
) -> Result<Target> {
    // Most holders in all (a match lists only a sample of them when many hold it).
    matches.sort_by_key(|m| std::cmp::Reverse(m.holder_count));
    let targets: Vec<Target> = matches
        .into_iter()
        .map(Target::from)
        .filter(|t| t.name == name && sha256.is_none_or(|d| d == &t.sha256))
        .collect();
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

/// The download machinery for a process that serves nothing (the CLI, the client menu): its
/// own limits from `[transfer]`, no partials registry.
pub(crate) fn standalone_swarm(cfg: &PeerConfig, tracker: Option<Tracker>) -> Result<Swarm> {
    swarm(cfg, tracker, cfg.transfer.limits(), None, None, None)
}

/// A [`Swarm`] from the configuration. A serving peer passes its process-wide `limits` and
/// `partials` (so that what it downloads is served while it downloads) and its own address
/// as `skip`.
pub fn swarm(
    cfg: &PeerConfig,
    tracker: Option<Tracker>,
    limits: Limits,
    partials: Option<Arc<Partials>>,
    metrics: Option<crate::metrics::Metrics>,
    skip: Option<String>,
) -> Result<Swarm> {
    Ok(Swarm {
        // A serving peer names its address on its requests (see `transfer::choker`).
        net: match &skip {
            Some(me) => Net::serving(cfg, me)?,
            None => Net::new(cfg)?,
        },
        tracker,
        limits,
        max_sources: cfg.transfer.max_sources,
        io_timeout: cfg.peer.io_timeout,
        partials,
        metrics,
        skip,
        room: crate::transfer::Room::new(&cfg.transfer),
    })
}

/// Where a verified download goes.
pub enum Destination<'a> {
    /// A peer's share: published, indexed, then announced (the store's change notification).
    Share(&'a Store),
    /// A path outside any share (`get -o`, the client menu's current directory).
    Path(PathBuf),
}

impl Destination<'_> {
    /// The `.partial/` the download is written in: on the destination's file system, so that
    /// publishing is a link, not a copy.
    pub(crate) fn partial_dir(&self) -> PathBuf {
        match self {
            Destination::Share(store) => store.partial_dir(),
            Destination::Path(p) => parent_of(p).join(crate::store::PARTIAL_DIR),
        }
    }

    fn describe(&self, name: &str) -> String {
        match self {
            Destination::Share(store) => store.dir().join(name).display().to_string(),
            Destination::Path(p) => p.display().to_string(),
        }
    }
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The one publish rule: a verified, fsynced file at `part` becomes `target.name` in a share,
/// or `dest` outside one, never replacing anything there. Every path (CLI, menu, daemon) ends
/// a download here.
pub(crate) async fn publish(
    fetched: &Fetched,
    target: &Target,
    dest: &Destination<'_>,
) -> Result<Placed> {
    let part = fetched.path.as_path();
    match dest {
        Destination::Share(store) => {
            // The download verified these bytes and hashed them as they came: no second read.
            // The size is the one the holders served (the manifest), not the tracker's.
            let outcome = store
                .publish_hashed(part, &target.name, &fetched.hashed)
                .await
                .map_err(|e| Error::Other(e.into()))?;
            match outcome {
                Published::Created => Ok(Placed::Created),
                Published::Identical => Ok(Placed::Identical),
                Published::Conflict => Err(Error::Refused(format!(
                    "a different file named {} is already shared here; kept it",
                    target.name
                ))),
                Published::NotAFile => Err(Error::Refused(format!(
                    "{} is taken here by something that is not a shared file; kept it",
                    target.name
                ))),
            }
        }
        Destination::Path(d) => {
            let (p, d) = (part.to_path_buf(), d.clone());
            let placed = tokio::task::spawn_blocking(move || crate::store::place_new(&p, &d))
                .await
                .map_err(|e| Error::Other(e.into()))?;
            match placed {
                Ok(()) => Ok(Placed::Created),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let _ = tokio::fs::remove_file(part).await;
                    Err(Error::Refused(format!(
                        "{} already exists; not replaced",
                        dest.describe(&target.name)
                    )))
                }
                // The verified copy stays in `.partial/`: the next get only places it.
                Err(e) => Err(Error::Refused(format!(
                    "cannot write {}: {e}",
                    dest.describe(&target.name)
                ))),
            }
        }
    }
}

/// Downloads `target` with `swarm` and publishes it at `dest`: the whole of a get, whoever
/// asks for it.
pub async fn get(
    swarm: &Swarm,
    target: &Target,
    dest: &Destination<'_>,
    report: &dyn Report,
) -> Result<Placed> {
    let partial_dir = dest.partial_dir();
    let fetched = swarm.fetch(target, &partial_dir, report).await;
    let placed = match fetched {
        Ok(fetched) => publish(&fetched, target, dest).await,
        Err(e) => Err(e),
    };
    if let Destination::Path(p) = dest {
        tidy_partial_dir(&parent_of(p)).await;
    }
    placed
}

/// What is at `dest` before a get to a path: `true` the very bytes wanted (nothing to do),
/// `false` nothing; anything else there is a refusal, before anything is downloaded.
pub(crate) async fn existing(dest: &Path, sha256: &Digest) -> Result<bool> {
    let d = dest.to_path_buf();
    let found = tokio::task::spawn_blocking(move || match std::fs::symlink_metadata(&d) {
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
    match found {
        None => Ok(false),
        Some((_, digest)) if &digest == sha256 => Ok(true),
        Some(_) => Err(Error::Refused(format!(
            "{} exists with other content; remove it or pick another -o",
            dest.display()
        ))),
    }
}

/// The bytes of `target` verified in `dir` by an earlier run (what a resume starts from), read
/// from its saved bitfield; 0 when there is none or it does not describe this file under the
/// claim (`pieces_root`) the target follows: a record belongs to the claim its pieces were
/// checked against (`PartialFile::record_key`).
pub(crate) async fn kept_bytes(dir: &Path, target: &Target) -> u64 {
    let (dir, sha256, size, root) = (
        dir.to_path_buf(),
        target.sha256,
        target.size,
        target.pieces_root,
    );
    tokio::task::spawn_blocking(move || {
        if std::fs::metadata(partial::done_path(&dir, &sha256)).is_ok_and(|m| m.len() == size) {
            return size;
        }
        let data = dir.join(format!("{sha256}.data"));
        if std::fs::metadata(&data).map_or(true, |m| m.len() != size) || size == 0 {
            return 0;
        }
        let piece = pieces::piece_size(size);
        let count = u32::try_from(pieces::piece_count(size, piece)).unwrap_or(u32::MAX);
        let Some(root) = root else { return 0 };
        let path = dir.join(format!("{sha256}.bitfield"));
        match bitfield::load(&path, &root, count) {
            Ok(Some(held)) => held
                .ones()
                .map(|i| {
                    let start = u64::from(i.0) * piece;
                    piece.min(size.saturating_sub(start))
                })
                .sum(),
            _ => 0,
        }
    })
    .await
    .unwrap_or(0)
}

/// Removes the `.partial/` a client download used in `dir` when it is empty, unless `dir` is a
/// peer's share (it holds `.p2pshare/`): that `.partial/` is the peer's, not ours to remove.
pub(crate) async fn tidy_partial_dir(dir: &Path) {
    let state = dir.join(crate::store::STATE_DIR);
    if tokio::fs::symlink_metadata(&state).await.is_ok() {
        return;
    }
    // Fails, as it should, when something is still inside (a partial kept for a resume).
    let _ = tokio::fs::remove_dir(dir.join(crate::store::PARTIAL_DIR)).await;
}
