//! How a download ends: kept when every piece verified (which proves the file's SHA-256), kept
//! for a resume when the network let it down, discarded when it cannot be written here.

use std::path::{Path, PathBuf};

use super::target::{Report, Target};
use crate::error::{Error, Result};
use crate::share::partial::PartialWriter;
use crate::share::pieces::Hashed;
use crate::share::{Digest, Manifest, ShareError};
use crate::wire::download::Event;

pub(super) fn other(what: &Path, e: impl std::fmt::Display) -> Error {
    Error::Other(anyhow::anyhow!("{}: {e}", what.display()))
}

/// A verified copy of a file, ready to publish, and what it hashes to: the publish step takes
/// the digest and manifest from here rather than reading the file once more.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    pub hashed: Hashed,
}

impl AsRef<Path> for Fetched {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// A verified copy left by an earlier download that was not placed: checked again (anything may
/// have touched it since), then reused; removed when it is not right.
pub(super) async fn earlier_copy(path: PathBuf, sha256: Digest) -> Option<Fetched> {
    tokio::task::spawn_blocking(move || {
        let meta = std::fs::symlink_metadata(&path).ok()?;
        let hashed = if meta.is_file() {
            crate::share::pieces::hash_file(&path)
                .ok()
                .filter(|h| h.sha256 == sha256)
        } else {
            None
        };
        match hashed {
            Some(hashed) => Some(Fetched { path, hashed }),
            None => {
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Every piece is in, each checked against a chain that ends at the target's SHA-256: the file
/// is the target (no second pass over it), so it is kept.
pub(super) async fn complete(
    writer: PartialWriter,
    target: &Target,
    dir: &Path,
    report: &dyn Report,
) -> Result<Fetched> {
    let sha256 = target.sha256;
    let manifest = Manifest::clone(writer.file().manifest());
    let done = tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|e| other(dir, e))?;
    match done {
        Ok(path) => {
            report.event(Event::Verified { size: target.size });
            Ok(Fetched {
                path,
                hashed: Hashed { sha256, manifest },
            })
        }
        Err(ShareError::Io { path, source }) => Err(local_failure(None, &path, &source).await),
        Err(e) => Err(e.into()),
    }
}

/// The network let the download down: verified pieces stay for a resume, with their record
/// brought up to date; a download that verified nothing leaves nothing behind.
pub(super) async fn keep_for_resume(writer: PartialWriter) {
    let _ = tokio::task::spawn_blocking(move || {
        if writer.file().bitfield().count() == 0 {
            writer.discard();
        } else {
            if let Err(e) = writer.save() {
                tracing::warn!(error = %e, "bitfield not saved");
            }
            drop(writer);
        }
    })
    .await;
}

/// A download that cannot be written here (no space, over a size limit, an I/O error) frees
/// what it wrote: a partial kept on a full disk keeps the disk full, and resuming needs room
/// this attempt did not have. Only failures on the network side keep the partial for a resume.
pub(super) async fn local_failure(
    writer: Option<PartialWriter>,
    path: &Path,
    e: &std::io::Error,
) -> Error {
    let removed = match writer {
        Some(w) => match tokio::task::spawn_blocking(move || w.discard()).await {
            Ok(true) => "; removed the partial download",
            _ => "; could not remove the partial download",
        },
        None => "; removed the partial download",
    };
    let why = match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => "no space left to write the download",
        Some(libc::EFBIG) => "the download is larger than this process may write",
        _ => "cannot write the download",
    };
    Error::Other(anyhow::anyhow!("{why}: {}: {e}{removed}", path.display()))
}
