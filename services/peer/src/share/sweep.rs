//! Stale partial downloads (`transfer.partial_ttl`): a download abandoned by a killed process
//! leaves `<sha256>.data` (preallocated to the full size) and its bitfield in `.partial/` until
//! someone asks for the digest again. Those untouched for the TTL are removed; one a live
//! writer holds (its `flock`, see [`super::partial::WriteLock`]) never is, however old, and
//! nothing but these download files is ever looked at: shared files, uploads in progress and
//! anything else in the directory stay.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::digest::Digest;
use super::partial::WriteLock;

/// The files one download keeps in a partial directory.
const EXTENSIONS: [&str; 4] = ["data", "bitfield", "done", "lock"];

/// What a sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Swept {
    /// Downloads removed.
    pub downloads: u64,
    /// Disk bytes freed (allocated blocks, not lengths: a sparse file frees what it held).
    pub bytes: u64,
}

/// Removes the downloads in `dir` whose files were all last modified more than `ttl` before
/// `now`, unless a writer holds them. Blocking.
pub(crate) fn sweep(dir: &Path, ttl: Duration, now: SystemTime) -> std::io::Result<Swept> {
    // Each download's newest modification among its files.
    let mut found: BTreeMap<Digest, Option<SystemTime>> = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Swept::default()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(sha256) = name.to_str().and_then(download_file) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let touched = found.entry(sha256).or_default();
        if let Ok(m) = meta.modified() {
            *touched = Some(touched.map_or(m, |t| t.max(m)));
        }
    }
    let mut swept = Swept::default();
    for (sha256, touched_then) in found {
        if !stale(touched_then, ttl, now) {
            continue;
        }
        let lock = match WriteLock::try_acquire(dir, &sha256) {
            Ok(Some(lock)) => lock,
            // A live writer: its download is running, however long it has been quiet.
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), %sha256, error = %e, "cannot lock a partial download to sweep it");
                continue;
            }
        };
        // Under the lock nobody writes: look again, a writer may have touched it just before.
        if !stale(touched(dir, &sha256), ttl, now) {
            continue;
        }
        let bytes = remove_files(dir, &sha256, &lock);
        // Unlinks the lock file too.
        drop(lock);
        tracing::info!(%sha256, bytes, ttl = ?ttl, "removed a partial download untouched for transfer.partial_ttl");
        swept.downloads += 1;
        swept.bytes += bytes;
    }
    Ok(swept)
}

/// Removes the files of the download of `sha256` in `dir` (the caller holds its `lock`);
/// the disk bytes freed. Also what cancelling a download without keeping it does. Blocking.
pub(crate) fn remove_files(dir: &Path, sha256: &Digest, _lock: &WriteLock) -> u64 {
    let mut bytes = 0;
    for ext in ["data", "bitfield", "done"] {
        let p = dir.join(format!("{sha256}.{ext}"));
        let held = std::fs::symlink_metadata(&p)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.blocks().saturating_mul(512));
        if let Some(held) = held {
            match std::fs::remove_file(&p) {
                Ok(()) => bytes += held,
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "cannot remove a partial download")
                }
            }
        }
    }
    bytes
}

/// The digest of a download file name (`<sha256>.<ext>`), else `None`.
fn download_file(name: &str) -> Option<Digest> {
    let (stem, ext) = name.split_once('.')?;
    if !EXTENSIONS.contains(&ext) {
        return None;
    }
    stem.parse().ok()
}

/// The newest modification of a download's own files (not its lock).
fn touched(dir: &Path, sha256: &Digest) -> Option<SystemTime> {
    ["data", "bitfield", "done"]
        .iter()
        .filter_map(|ext| std::fs::symlink_metadata(dir.join(format!("{sha256}.{ext}"))).ok())
        .filter_map(|m| m.modified().ok())
        .max()
}

/// Untouched for `ttl` or longer; files with no time at all are left alone.
fn stale(touched: Option<SystemTime>, ttl: Duration, now: SystemTime) -> bool {
    touched.is_some_and(|t| now.duration_since(t).is_ok_and(|age| age >= ttl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::digest::sha256;

    fn write(dir: &Path, name: &str, len: usize, age: Duration) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, vec![7u8; len]).unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
        p
    }

    #[test]
    fn only_stale_unheld_downloads_go() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let hour = Duration::from_secs(3600);
        let (old, fresh, held, half) = (sha256(b"a"), sha256(b"b"), sha256(b"c"), sha256(b"d"));
        write(d, &format!("{old}.data"), 1 << 16, 2 * hour);
        write(d, &format!("{old}.bitfield"), 80, 2 * hour);
        write(d, &format!("{fresh}.data"), 4096, Duration::ZERO);
        write(d, &format!("{held}.data"), 4096, 2 * hour);
        // Old data, but its bitfield was saved a minute ago: touched.
        write(d, &format!("{half}.data"), 4096, 2 * hour);
        write(d, &format!("{half}.bitfield"), 80, Duration::from_secs(60));
        // Not download files: never looked at, however old.
        for other in ["upload-123", "notes.data", "x.tmp", ".bitfield-abc"] {
            write(d, other, 10, 10 * hour);
        }
        let lock = WriteLock::try_acquire(d, &held).unwrap().unwrap();

        let swept = sweep(d, hour, SystemTime::now()).unwrap();
        assert_eq!(swept.downloads, 1);
        assert!(swept.bytes >= 1 << 16, "{swept:?}");
        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![
            format!("{fresh}.data"),
            format!("{held}.data"),
            format!("{held}.lock"),
            format!("{half}.data"),
            format!("{half}.bitfield"),
            "upload-123".into(),
            "notes.data".into(),
            "x.tmp".into(),
            ".bitfield-abc".into(),
        ];
        want.sort();
        assert_eq!(left, want);

        // Once its writer is gone, the old one goes too.
        drop(lock);
        let swept = sweep(d, hour, SystemTime::now()).unwrap();
        assert_eq!(swept.downloads, 1);
        assert!(!d.join(format!("{held}.data")).exists());
        // A directory that is not there has nothing to sweep.
        assert_eq!(
            sweep(&d.join("none"), hour, SystemTime::now()).unwrap(),
            Swept::default()
        );
    }
}
