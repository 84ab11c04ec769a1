//! How a download ends: the whole-file hash (kept up with the verified prefix while pieces
//! arrive, so at the end only the tail is left to hash), then keep or discard what was written.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use super::target::{Report, Target};
use crate::error::{Error, Result};
use crate::share::digest::Sha256;
use crate::share::partial::{PartialFile, PartialWriter};
use crate::share::pieces::Hashed;
use crate::share::{Digest, Manifest, PieceIndex, ShareError};
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

/// The whole-file hash, on a thread of its own, following the verified prefix of the data file.
pub(super) struct Hasher {
    wake: mpsc::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<Option<Digest>>>,
}

impl Hasher {
    pub(super) fn start(writer: &PartialWriter) -> Self {
        let (wake, woken) = mpsc::channel();
        let (file, data) = (Arc::clone(writer.file()), writer.data());
        let task = tokio::task::spawn_blocking(move || hash_in_order(file, data, woken));
        Hasher { wake, task }
    }

    /// What tells the hasher a piece was verified (it hashes on as far as the prefix goes).
    pub(super) fn waker(&self) -> mpsc::Sender<()> {
        self.wake.clone()
    }

    /// The whole-file digest, once every waker is gone (the download's loop has ended).
    async fn digest(self, dir: &Path) -> Result<std::io::Result<Option<Digest>>> {
        drop(self.wake);
        self.task.await.map_err(|e| other(dir, e))
    }
}

/// Follows the verified prefix of the data file and hashes it in order. Ends with the whole-file
/// digest when every piece is in, or `None` when the download ends first (its senders dropped).
fn hash_in_order(
    file: Arc<PartialFile>,
    data: Arc<std::fs::File>,
    wake: mpsc::Receiver<()>,
) -> std::io::Result<Option<Digest>> {
    use std::os::unix::fs::FileExt;
    let manifest = Arc::clone(file.manifest());
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut next = 0u32;
    let mut open = true;
    loop {
        while next < manifest.piece_count() && file.has(PieceIndex(next)) {
            let range = manifest
                .range(PieceIndex(next))
                .ok_or_else(|| std::io::Error::other("piece past the end"))?;
            let mut at = range.start;
            while at < range.end {
                let n = ((range.end - at) as usize).min(buf.len());
                data.read_exact_at(&mut buf[..n], at)?;
                h.update(&buf[..n]);
                at += n as u64;
            }
            next += 1;
        }
        if next == manifest.piece_count() {
            return Ok(Some(h.finish()));
        }
        if !open {
            return Ok(None);
        }
        // Once the senders are gone, one more look: the last pieces may have landed meanwhile.
        open = wake.recv().is_ok();
    }
}

/// Every piece is in: the file is kept when its whole digest is the target's, and discarded
/// (the manifest lied: `None`) when not.
pub(super) async fn complete(
    writer: PartialWriter,
    hasher: Hasher,
    target: &Target,
    manifest_from: &str,
    dir: &Path,
    report: &dyn Report,
) -> Result<Option<Fetched>> {
    let sha256 = target.sha256;
    let digest = match hasher.digest(dir).await? {
        Ok(Some(d)) => d,
        Ok(None) => return Err(other(dir, "the whole-file hash stopped early")),
        Err(e) => return Err(local_failure(Some(writer), dir, &e).await),
    };
    if digest != sha256 {
        tracing::error!(
            expected = %sha256,
            got = %digest,
            manifest_from = %manifest_from,
            "every piece matched the manifest but the file does not match its digest: the manifest lied"
        );
        let _ = tokio::task::spawn_blocking(move || writer.discard()).await;
        return Ok(None);
    }
    let manifest = Manifest::clone(writer.file().manifest());
    let done = tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|e| other(dir, e))?;
    match done {
        Ok(path) => {
            report.event(Event::Verified { size: target.size });
            Ok(Some(Fetched {
                path,
                hashed: Hashed { sha256, manifest },
            }))
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
