//! File-system primitives: opening only regular files, hashing a file that holds still, and
//! placing a file without replacing anything.

use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::UNIX_EPOCH;

use crate::share::pieces::{self, Hashed};
use crate::share::{Digest, ShareError};

pub(super) fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// Whether two stats describe the same, unchanged regular file.
pub(super) fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.is_file()
        && b.is_file()
        && a.dev() == b.dev()
        && a.ino() == b.ino()
        && a.len() == b.len()
        && mtime_ns(a) == mtime_ns(b)
}

/// Opens `path` for reading if, and only if, it is a regular file. Never follows a symlink
/// (`O_NOFOLLOW`), never blocks on a FIFO or a device (`O_NONBLOCK`, which regular files
/// ignore), and checks the type of what was opened (`fstat`), so a name swapped between a check
/// and the open cannot slip through. Blocking: call it from `spawn_blocking`.
pub(crate) fn open_regular(path: &Path) -> io::Result<(std::fs::File, std::fs::Metadata)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((file, meta))
}

/// SHA-256 of a regular file (see [`open_regular`]); anything else is an error.
pub fn hash_file(path: &Path) -> io::Result<(u64, Digest)> {
    hash_regular(path).map(|(h, _)| (h.manifest.size(), h.sha256))
}

fn changed_while_hashed() -> io::Error {
    io::Error::new(
        io::ErrorKind::Interrupted,
        "file changed while it was hashed",
    )
}

/// The share modules' errors as I/O errors, a change of length as `Interrupted`.
pub(super) fn share_io(e: ShareError) -> io::Error {
    match e {
        ShareError::Io { source, .. } => source,
        ShareError::Changed { .. } => changed_while_hashed(),
        other => io::Error::other(other.to_string()),
    }
}

/// Hashes the regular file at `path` in one read (whole-file SHA-256 and piece manifest) and
/// returns its stat from before the hash, but only if the file did not change while it was read
/// (same inode, size and mtime afterwards).
pub(super) fn hash_regular(path: &Path) -> io::Result<(Hashed, std::fs::Metadata)> {
    let (file, before) = open_regular(path)?;
    let hashed = pieces::hash_open(file, path).map_err(share_io)?;
    let after = std::fs::symlink_metadata(path)?;
    if hashed.manifest.size() != before.len() || !same_file(&before, &after) {
        return Err(changed_while_hashed());
    }
    Ok((hashed, before))
}

/// Puts the file at `tmp` in place as `dest`, never replacing anything already there
/// (`AlreadyExists` then). The one rule every publication follows: the peer's share, the CLI's
/// `-o` and the menu's current directory. Blocking: call it from `spawn_blocking`.
pub(crate) fn place_new(tmp: &Path, dest: &Path) -> io::Result<()> {
    // A hard link fails if `dest` exists, whatever it is, where a rename would replace it.
    match std::fs::hard_link(tmp, dest) {
        Ok(()) => {
            let _ = std::fs::remove_file(tmp);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        // File systems without hard links: rename after a last check.
        Err(_) => match std::fs::symlink_metadata(dest) {
            Ok(_) => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::rename(tmp, dest),
            Err(e) => Err(e),
        },
    }
}
