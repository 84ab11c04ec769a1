//! The share directory: an index of its files (size, SHA-256 and piece manifest from one read,
//! cached on disk so a restart does not rehash unchanged files), atomic publication of uploads
//! and downloads, and safe opening.
//!
//! Layout: `<files_dir>/<name>` are the shared files (flat); `<files_dir>/.partial/` holds
//! uploads and downloads in progress and `<files_dir>/.p2pshare/` the peer's own state. Both are
//! reserved names, never listed and never served.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use p2p_common::names::{self, NameError};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock, watch};

use crate::share::pieces::{self, Hashed};
use crate::share::{Digest, Manifest, ShareError};

pub const PARTIAL_DIR: &str = ".partial";
pub const STATE_DIR: &str = ".p2pshare";
const INDEX_FILE: &str = "index.json";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    BadName(#[from] NameError),
    #[error("{0:?} is reserved for the peer's own use")]
    Reserved(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A shared file as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub sha256: Digest,
    /// Modification time (ns since the epoch) when hashed: a changed file is rehashed.
    #[serde(default)]
    pub mtime_ns: u128,
    /// The piece digests, from the same read as `sha256`. None only for an entry of a cache
    /// written before manifests existed, until the next scan hashes it once more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Arc<Manifest>>,
}

impl Entry {
    fn new(name: &str, hashed: &Hashed, meta: &std::fs::Metadata) -> Self {
        Entry {
            name: name.to_owned(),
            size: hashed.manifest.size(),
            sha256: hashed.sha256,
            mtime_ns: mtime_ns(meta),
            manifest: Some(Arc::new(hashed.manifest.clone())),
        }
    }

    /// Whether a cached entry can stand for the file without a rehash: same size and mtime,
    /// and a manifest that fits the size.
    fn still_describes(&self, meta: &std::fs::Metadata) -> bool {
        self.size == meta.len()
            && self.mtime_ns == mtime_ns(meta)
            && self
                .manifest
                .as_ref()
                .is_some_and(|m| m.size() == self.size && m.validate(None).is_ok())
    }
}

/// The shared files by name, and their names by digest (shares hold 100k files: a lookup by
/// digest must not scan them).
#[derive(Default)]
struct Index {
    by_name: BTreeMap<String, Entry>,
    by_digest: HashMap<Digest, BTreeSet<String>>,
}

impl Index {
    fn new(by_name: BTreeMap<String, Entry>) -> Self {
        let mut by_digest: HashMap<Digest, BTreeSet<String>> = HashMap::new();
        for e in by_name.values() {
            by_digest
                .entry(e.sha256)
                .or_default()
                .insert(e.name.clone());
        }
        Index { by_name, by_digest }
    }

    /// The one way an entry changes, so that both maps always agree.
    fn insert(&mut self, entry: Entry) {
        if let Some(old) = self.by_name.get(&entry.name) {
            if let Some(names) = self.by_digest.get_mut(&old.sha256) {
                names.remove(&entry.name);
                if names.is_empty() {
                    self.by_digest.remove(&old.sha256);
                }
            }
        }
        self.by_digest
            .entry(entry.sha256)
            .or_default()
            .insert(entry.name.clone());
        self.by_name.insert(entry.name.clone(), entry);
    }

    fn by_digest(&self, sha256: &Digest) -> Option<&Entry> {
        let name = self.by_digest.get(sha256)?.first()?;
        self.by_name.get(name)
    }
}

/// What publishing a verified file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Created,
    /// The same bytes were already shared under that name.
    Identical,
    /// Other bytes are shared under that name; nothing changed.
    Conflict,
    /// The name is held by something that is not a regular file (symlink, directory, FIFO,
    /// socket, device). Answered without looking at what it is or points to, so that uploads
    /// cannot be used to learn anything about other files.
    NotAFile,
}

/// Checks a name from outside (URL, multipart) before it gets near the file system.
pub fn check_name(name: &str) -> Result<(), StoreError> {
    names::validate_file_name(name)?;
    if name == PARTIAL_DIR || name == STATE_DIR {
        return Err(StoreError::Reserved(name.to_owned()));
    }
    Ok(())
}

pub struct Store {
    dir: PathBuf,
    index: RwLock<Index>,
    /// Serialises changes of the index and the share's names, so a check-then-rename cannot
    /// race another. Never held while hashing.
    publish: Mutex<()>,
    /// One rescan at a time: a rescan's commit assumes nobody but `publish` changed the index
    /// since its snapshot.
    scanning: Mutex<()>,
    changed: watch::Sender<u64>,
    /// Files the running rescan still has to hash.
    pending: watch::Sender<usize>,
    /// Entries that are not regular files, already logged once.
    skipped: std::sync::Mutex<BTreeSet<String>>,
}

fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// Whether two stats describe the same, unchanged regular file.
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
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
pub fn open_regular(path: &Path) -> io::Result<(std::fs::File, std::fs::Metadata)> {
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
fn share_io(e: ShareError) -> io::Error {
    match e {
        ShareError::Io { source, .. } => source,
        ShareError::Changed { .. } => changed_while_hashed(),
        other => io::Error::other(other.to_string()),
    }
}

/// Hashes the regular file at `path` in one read (whole-file SHA-256 and piece manifest) and
/// returns its stat from before the hash, but only if the file did not change while it was read
/// (same inode, size and mtime afterwards).
fn hash_regular(path: &Path) -> io::Result<(Hashed, std::fs::Metadata)> {
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
pub fn place_new(tmp: &Path, dest: &Path) -> io::Result<()> {
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

/// Runs blocking file-system work off the async runtime's threads.
async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(io_err(path))
}

/// What one pass over the directory found.
struct Scanned {
    entries: BTreeMap<String, Entry>,
    /// Names of entries that are not regular files (never indexed).
    skipped: BTreeSet<String>,
}

impl Store {
    /// Creates the directory layout and loads the digest cache; call [`Store::rescan`] next.
    pub async fn open(dir: &Path) -> Result<Arc<Self>, StoreError> {
        let dir = dir.to_path_buf();
        let (changed, _) = watch::channel(0);
        let (pending, _) = watch::channel(0);
        let store = Self {
            dir: dir.clone(),
            index: RwLock::new(Index::default()),
            publish: Mutex::new(()),
            scanning: Mutex::new(()),
            changed,
            pending,
            skipped: std::sync::Mutex::new(BTreeSet::new()),
        };
        store.ensure_layout().await?;
        // Uploads and probes interrupted by a crash: never published, nothing to keep.
        if let Ok(mut rd) = tokio::fs::read_dir(dir.join(PARTIAL_DIR)).await {
            while let Ok(Some(e)) = rd.next_entry().await {
                let n = e.file_name();
                let n = n.to_string_lossy();
                if n.starts_with("upload-") || n.starts_with("probe-") {
                    let _ = tokio::fs::remove_file(e.path()).await;
                }
            }
        }
        let cache_path = dir.join(STATE_DIR).join(INDEX_FILE);
        let cached: BTreeMap<String, Entry> = match tokio::fs::read(&cache_path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %cache_path.display(), error = %e, "ignoring unreadable digest cache");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        *store.index.write().await = Index::new(cached);
        Ok(Arc::new(store))
    }

    /// (Re)creates the share directory, `.partial/` and `.p2pshare/`. Anything outside the
    /// process may remove them (a CLI download into the share, a user tidying up); every path
    /// that writes into them calls this first rather than assuming they still exist.
    async fn ensure_layout(&self) -> Result<(), StoreError> {
        let dir = self.dir.clone();
        blocking(&self.dir, move || {
            for d in [dir.clone(), dir.join(PARTIAL_DIR), dir.join(STATE_DIR)] {
                std::fs::create_dir_all(&d)?;
            }
            Ok(())
        })
        .await
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn partial_dir(&self) -> PathBuf {
        self.dir.join(PARTIAL_DIR)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(STATE_DIR)
    }

    /// A new temporary file in `.partial/` (recreated if it went missing); deleted when the
    /// returned path is dropped.
    pub async fn temp_file(
        &self,
        prefix: &str,
    ) -> Result<(std::fs::File, tempfile::TempPath), StoreError> {
        self.ensure_layout().await?;
        let partial = self.partial_dir();
        let prefix = prefix.to_owned();
        blocking(&self.partial_dir(), move || {
            let tmp = tempfile::Builder::new()
                .prefix(&prefix)
                .tempfile_in(partial)?;
            Ok(tmp.into_parts())
        })
        .await
    }

    /// Notified (with a counter) whenever the set of shared files changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// How many files the running rescan still has to hash (0 when none runs).
    pub fn pending_hashes(&self) -> watch::Receiver<usize> {
        self.pending.subscribe()
    }

    pub async fn list(&self) -> Vec<Entry> {
        self.index.read().await.by_name.values().cloned().collect()
    }

    pub async fn get(&self, name: &str) -> Option<Entry> {
        self.index.read().await.by_name.get(name).cloned()
    }

    /// A shared file with these bytes, whatever its name; the first such name in name order.
    pub async fn by_digest(&self, sha256: &Digest) -> Option<Entry> {
        self.index.read().await.by_digest(sha256).cloned()
    }

    /// The piece manifest of a shared file, as the index holds it.
    pub async fn manifest(&self, entry: &Entry) -> Result<Arc<Manifest>, ShareError> {
        if let Some(m) = &entry.manifest {
            return Ok(m.clone());
        }
        let path = self.dir.join(&entry.name);
        let current = self.get(&entry.name).await;
        if let Some(m) = current
            .filter(|e| e.sha256 == entry.sha256 && e.size == entry.size)
            .and_then(|e| e.manifest)
        {
            return Ok(m);
        }
        // An entry from a cache older than manifests that the next scan has not reached yet.
        let p = path.clone();
        let (hashed, _) = tokio::task::spawn_blocking(move || hash_regular(&p))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(|source| ShareError::Io {
                path: path.clone(),
                source,
            })?;
        if hashed.sha256 != entry.sha256 {
            return Err(ShareError::Changed {
                path,
                expected: entry.size,
                read: hashed.manifest.size(),
            });
        }
        Ok(Arc::new(hashed.manifest))
    }

    /// Brings the index in line with the directory: hashes new or changed files, forgets
    /// vanished ones. Returns whether anything changed.
    ///
    /// Hashing happens without any lock that requests take; only the commit at the end takes
    /// the publication lock, and keeps whatever was published while the scan ran.
    pub async fn rescan(&self) -> Result<bool, StoreError> {
        let _one_scan = self.scanning.lock().await;
        let known = self.index.read().await.by_name.clone();
        let dir = self.dir.clone();
        let snapshot = known.clone();
        let pending = self.pending.clone();
        let scanned = blocking(&self.dir, move || scan(&dir, &snapshot, &pending)).await;
        self.pending.send_replace(0);
        let scanned = scanned?;
        self.note_skipped(scanned.skipped);

        let _guard = self.publish.lock().await;
        let mut index = self.index.write().await;
        let mut fresh = scanned.entries;
        // Publications since the snapshot win: the scan may have listed the directory before
        // they landed.
        for name in known.keys().chain(index.by_name.keys()) {
            if known.get(name) != index.by_name.get(name) {
                match index.by_name.get(name) {
                    Some(e) => fresh.insert(name.clone(), e.clone()),
                    None => fresh.remove(name),
                };
            }
        }
        if index.by_name == fresh {
            return Ok(false);
        }
        *index = Index::new(fresh);
        let snapshot = index.by_name.clone();
        drop(index);
        self.save(&snapshot).await;
        self.changed.send_modify(|v| *v += 1);
        Ok(true)
    }

    /// Logs each entry that is not a regular file once, not on every scan; returns how many
    /// lines that took.
    fn note_skipped(&self, now: BTreeSet<String>) -> usize {
        let Ok(mut seen) = self.skipped.lock() else {
            return 0;
        };
        let new: Vec<&String> = now.difference(&seen).collect();
        for name in &new {
            tracing::warn!(file = %name, "not a regular file (symlink, directory, FIFO, socket or device): not shared");
        }
        let logged = new.len();
        *seen = now;
        logged
    }

    async fn save(&self, index: &BTreeMap<String, Entry>) {
        let path = self.state_dir().join(INDEX_FILE);
        let tmp = self.state_dir().join(format!("{INDEX_FILE}.tmp"));
        let result = async {
            self.ensure_layout().await.map_err(io::Error::other)?;
            let bytes = serde_json::to_vec(index).map_err(io::Error::other)?;
            tokio::fs::write(&tmp, bytes).await?;
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        if let Err(e) = result {
            // Only a cache: the next start rehashes.
            tracing::warn!(path = %path.display(), error = %e, "cannot save digest cache");
        }
    }

    /// [`Store::publish_hashed`] for a caller that knows only the file's size and digest: the
    /// bytes are read once more for their manifest, and refused (an `InvalidData` error) unless
    /// they are the ones announced.
    pub async fn publish(
        &self,
        tmp: &Path,
        name: &str,
        size: u64,
        sha256: &Digest,
    ) -> Result<Published, StoreError> {
        let t = tmp.to_path_buf();
        let hashed = blocking(tmp, move || pieces::hash_file(&t).map_err(share_io)).await;
        let checked = hashed.and_then(|h| {
            if &h.sha256 == sha256 && h.manifest.size() == size {
                Ok(h)
            } else {
                Err(io_err(tmp)(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "holds {} bytes with sha256 {}, expected {size} bytes with sha256 {sha256}",
                        h.manifest.size(),
                        h.sha256
                    ),
                )))
            }
        });
        match checked {
            Ok(h) => self.publish_hashed(tmp, name, &h).await,
            Err(e) => {
                let _ = tokio::fs::remove_file(tmp).await;
                Err(e)
            }
        }
    }

    /// Moves a verified, fsynced file at `tmp`, hashed as `hashed`, into the share as `name`,
    /// unless the name is taken. `tmp` must be inside this share (same file system, so the
    /// placement is atomic); it is gone when this returns.
    pub async fn publish_hashed(
        &self,
        tmp: &Path,
        name: &str,
        hashed: &Hashed,
    ) -> Result<Published, StoreError> {
        let result = self.publish_inner(tmp, name, hashed).await;
        if !matches!(result, Ok(Published::Created)) {
            let _ = tokio::fs::remove_file(tmp).await;
        }
        result
    }

    async fn publish_inner(
        &self,
        tmp: &Path,
        name: &str,
        hashed: &Hashed,
    ) -> Result<Published, StoreError> {
        let sha256 = hashed.sha256;
        check_name(name)?;
        let dest = self.dir.join(name);
        // A file put there by hand since the last scan is hashed before taking the lock, and
        // its digest used only if it is still the same file once the lock is held.
        let mut seen: Option<(Digest, std::fs::Metadata)> = None;
        for _ in 0..3 {
            let d = dest.clone();
            let on_disk = blocking(&dest, move || match std::fs::symlink_metadata(&d) {
                Ok(m) => Ok(Some(m)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            });
            let guard = self.publish.lock().await;
            let existing = match on_disk.await? {
                None => None,
                Some(m) if !m.file_type().is_file() => return Ok(Published::NotAFile),
                Some(m) => Some(m),
            };
            if let Some(meta) = existing {
                let digest = match (self.get(name).await, &seen) {
                    (Some(e), _) if e.size == meta.len() && e.mtime_ns == mtime_ns(&meta) => {
                        Some(e.sha256)
                    }
                    (_, Some((digest, seen))) if same_file(seen, &meta) => Some(*digest),
                    _ => None,
                };
                if let Some(digest) = digest {
                    return Ok(if digest == sha256 {
                        Published::Identical
                    } else {
                        Published::Conflict
                    });
                }
                drop(guard);
                let d = dest.clone();
                seen = match blocking(&dest, move || hash_regular(&d)).await {
                    Ok((h, meta)) => Some((h.sha256, meta)),
                    // Changing under us, or swapped for something else: look again.
                    Err(_) => None,
                };
                continue;
            }
            let (t, d) = (tmp.to_path_buf(), dest.clone());
            match blocking(&dest, move || place_new(&t, &d)).await {
                Ok(()) => {}
                // Appeared since the check (by hand): decide again.
                Err(StoreError::Io { source, .. })
                    if source.kind() == io::ErrorKind::AlreadyExists =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
            if let Ok(dir) = tokio::fs::File::open(&self.dir).await {
                let _ = dir.sync_all().await;
            }
            let meta = tokio::fs::symlink_metadata(&dest)
                .await
                .map_err(io_err(&dest))?;
            let entry = Entry::new(name, hashed, &meta);
            let snapshot = {
                let mut index = self.index.write().await;
                index.insert(entry);
                index.by_name.clone()
            };
            drop(guard);
            self.save(&snapshot).await;
            self.changed.send_modify(|v| *v += 1);
            return Ok(Published::Created);
        }
        // Rewritten by hand three times while we looked: the name is busy with other bytes.
        Ok(Published::Conflict)
    }

    /// Opens a shared file for reading, refusing anything but the regular file that was
    /// indexed (a symlink, a FIFO, or a file that changed since it was hashed: the next scan
    /// rehashes it).
    pub async fn open_file(&self, entry: &Entry) -> io::Result<tokio::fs::File> {
        let path = self.dir.join(&entry.name);
        let (size, mtime) = (entry.size, entry.mtime_ns);
        let file = tokio::task::spawn_blocking(move || {
            let (file, meta) = open_regular(&path)?;
            if meta.len() != size || mtime_ns(&meta) != mtime {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "file changed since it was indexed",
                ));
            }
            Ok(file)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(tokio::fs::File::from_std(file))
    }

    /// Whether transfers can still land here: the layout exists (recreated if it went missing)
    /// and `.partial/` takes a file.
    pub async fn usable(&self) -> bool {
        self.temp_file("probe-").await.is_ok()
    }
}

fn scan(
    dir: &Path,
    known: &BTreeMap<String, Entry>,
    pending: &watch::Sender<usize>,
) -> io::Result<Scanned> {
    let mut entries = BTreeMap::new();
    let mut skipped = BTreeSet::new();
    let mut to_hash = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let Ok(e) = e else { continue };
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if check_name(&name).is_err() {
            continue;
        }
        // The entry's own type (never followed): symlinks could point outside the share, and
        // FIFOs, sockets and devices block or never end.
        let Ok(ft) = e.file_type() else { continue };
        if !ft.is_file() {
            skipped.insert(name);
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        match known.get(&name) {
            Some(k) if k.still_describes(&meta) => {
                entries.insert(name, k.clone());
            }
            _ => to_hash.push((name, e.path())),
        }
    }
    pending.send_replace(to_hash.len());
    for (name, path) in to_hash {
        match hash_regular(&path) {
            Ok((hashed, meta)) => {
                entries.insert(name.clone(), Entry::new(&name, &hashed, &meta));
            }
            // Still being written: the next scan sees a stable file.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // Swapped for a non-regular file since the listing.
            Err(err) if err.kind() == io::ErrorKind::InvalidInput => {
                skipped.insert(name);
            }
            Err(err) => tracing::warn!(file = %name, error = %err, "cannot hash file"),
        }
        pending.send_modify(|n| *n = n.saturating_sub(1));
    }
    Ok(Scanned { entries, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn indexes_caches_and_publishes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("share");
        let store = Store::open(&dir).await.unwrap();
        std::fs::write(dir.join("a.txt"), b"hello").unwrap();
        std::fs::write(dir.join("bad\nname"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
        assert!(store.rescan().await.unwrap());
        let list = store.list().await;
        assert_eq!(list.len(), 1);
        assert_eq!(
            list[0].sha256.to_hex(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(!store.rescan().await.unwrap());

        // A reopened store trusts its cache for unchanged files.
        drop(store);
        let store = Store::open(&dir).await.unwrap();
        assert_eq!(store.list().await.len(), 1);
        assert!(!store.rescan().await.unwrap());

        let p = dir.join(PARTIAL_DIR).join("upload-1");
        std::fs::write(&p, b"other").unwrap();
        let (size, digest) = hash_file(&p).unwrap();
        assert_eq!(
            store.publish(&p, "a.txt", size, &digest).await.unwrap(),
            Published::Conflict
        );
        assert!(!p.exists(), "rejected temp file left behind");
        std::fs::write(&p, b"other").unwrap();
        assert_eq!(
            store.publish(&p, "b.txt", size, &digest).await.unwrap(),
            Published::Created
        );
        assert_eq!(std::fs::read(dir.join("b.txt")).unwrap(), b"other");
        std::fs::write(&p, b"other").unwrap();
        assert_eq!(
            store.publish(&p, "b.txt", size, &digest).await.unwrap(),
            Published::Identical
        );

        std::fs::remove_file(dir.join("a.txt")).unwrap();
        assert!(store.rescan().await.unwrap());
        let names: Vec<_> = store.list().await.into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["b.txt"]);
        assert!(matches!(
            check_name(".partial"),
            Err(StoreError::Reserved(_))
        ));
    }

    fn piece_digests(bytes: &[u8]) -> Vec<crate::share::Digest> {
        let size = pieces::piece_size(bytes.len() as u64) as usize;
        bytes
            .chunks(size)
            .map(crate::share::digest::sha256)
            .collect()
    }

    #[tokio::test]
    async fn index_cache_carries_manifests() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("share");
        let store = Store::open(&dir).await.unwrap();
        let bytes: Vec<u8> = (0..(5 << 20) + 3).map(|i: u32| (i % 251) as u8).collect();
        std::fs::write(dir.join("two-pieces"), &bytes).unwrap();
        assert!(store.rescan().await.unwrap());
        let entry = store.get("two-pieces").await.unwrap();
        let m = entry
            .manifest
            .clone()
            .expect("manifest computed with the digest");
        assert_eq!(m.digests(), &piece_digests(&bytes)[..]);
        assert_eq!(store.manifest(&entry).await.unwrap(), m);
        let cache = dir.join(STATE_DIR).join(INDEX_FILE);
        let on_disk: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
        assert_eq!(
            on_disk["two-pieces"]["manifest"]["digests"][1],
            piece_digests(&bytes)[1].to_hex()
        );

        // A restart takes the manifest from the cache: nothing to rehash.
        drop(store);
        let store = Store::open(&dir).await.unwrap();
        assert!(!store.rescan().await.unwrap());
        assert_eq!(
            store.get("two-pieces").await.unwrap().manifest,
            Some(m.clone())
        );

        // A cache written before manifests existed: served meanwhile, rehashed once.
        let mut old = on_disk.clone();
        old["two-pieces"]
            .as_object_mut()
            .unwrap()
            .remove("manifest");
        std::fs::write(&cache, serde_json::to_vec(&old).unwrap()).unwrap();
        drop(store);
        let store = Store::open(&dir).await.unwrap();
        let stale = store.get("two-pieces").await.unwrap();
        assert_eq!(stale.manifest, None);
        assert_eq!(store.manifest(&stale).await.unwrap(), m);
        assert!(store.rescan().await.unwrap(), "old entry not rehashed");
        assert_eq!(
            store.get("two-pieces").await.unwrap().manifest,
            Some(m.clone())
        );
        assert!(!store.rescan().await.unwrap(), "rehashed twice");

        // A cached manifest that does not fit the file is not trusted either.
        let mut bad = on_disk;
        bad["two-pieces"]["manifest"]["digests"]
            .as_array_mut()
            .unwrap()
            .pop();
        std::fs::write(&cache, serde_json::to_vec(&bad).unwrap()).unwrap();
        drop(store);
        let store = Store::open(&dir).await.unwrap();
        assert!(store.rescan().await.unwrap());
        assert_eq!(store.get("two-pieces").await.unwrap().manifest, Some(m));
    }

    #[tokio::test]
    async fn uploads_carry_their_manifest_and_bad_bytes_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("share");
        let store = Store::open(&dir).await.unwrap();
        let p = dir.join(PARTIAL_DIR).join("upload-1");
        std::fs::write(&p, b"uploaded").unwrap();
        let hashed = pieces::hash_file(&p).unwrap();
        assert_eq!(
            store.publish_hashed(&p, "up", &hashed).await.unwrap(),
            Published::Created
        );
        let e = store.get("up").await.unwrap();
        assert_eq!(e.manifest.as_deref(), Some(&hashed.manifest));
        assert_eq!(e.sha256, hashed.sha256);

        // The size-and-digest form checks the bytes before anything is placed.
        std::fs::write(&p, b"other bytes").unwrap();
        let err = store
            .publish(&p, "other", 11, &hashed.sha256)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("expected 11 bytes"), "{err}");
        assert!(!p.exists(), "refused temp file left behind");
        assert!(store.get("other").await.is_none());
    }

    #[tokio::test]
    async fn by_digest_follows_the_index() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("share");
        let store = Store::open(&dir).await.unwrap();
        std::fs::write(dir.join("b"), b"same").unwrap();
        std::fs::write(dir.join("c"), b"same").unwrap();
        std::fs::write(dir.join("d"), b"different").unwrap();
        store.rescan().await.unwrap();
        let same = crate::share::digest::sha256(b"same");
        assert_eq!(store.by_digest(&same).await.unwrap().name, "b");
        // Published under a name that sorts first.
        let p = dir.join(PARTIAL_DIR).join("upload-1");
        std::fs::write(&p, b"same").unwrap();
        let (size, digest) = hash_file(&p).unwrap();
        store.publish(&p, "a", size, &digest).await.unwrap();
        assert_eq!(store.by_digest(&same).await.unwrap().name, "a");
        for (gone, next) in [("a", Some("b")), ("b", Some("c")), ("c", None)] {
            std::fs::remove_file(dir.join(gone)).unwrap();
            store.rescan().await.unwrap();
            let found = store.by_digest(&same).await.map(|e| e.name);
            assert_eq!(found.as_deref(), next, "after removing {gone}");
        }
        // A name rewritten with other bytes leaves the old digest.
        let other = crate::share::digest::sha256(b"different");
        std::fs::write(dir.join("d"), b"rewritten, longer").unwrap();
        store.rescan().await.unwrap();
        assert!(store.by_digest(&other).await.is_none());
        let now = crate::share::digest::sha256(b"rewritten, longer");
        assert_eq!(store.by_digest(&now).await.unwrap().name, "d");
    }

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    /// Bounds a step that must not hang (the failure mode is hanging forever).
    async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(30), f)
            .await
            .unwrap_or_else(|_| panic!("{what} hung"))
    }

    #[tokio::test]
    async fn recreates_its_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("share");
        let store = Store::open(&dir).await.unwrap();
        std::fs::write(dir.join("a.txt"), b"hello").unwrap();
        assert!(store.rescan().await.unwrap());
        // What a CLI `get -o` into the share used to do, or a user tidying up.
        std::fs::remove_dir_all(dir.join(PARTIAL_DIR)).unwrap();
        std::fs::remove_dir_all(dir.join(STATE_DIR)).unwrap();
        assert!(
            store.usable().await,
            "usable went false for a recreatable directory"
        );
        std::fs::remove_dir_all(dir.join(PARTIAL_DIR)).unwrap();
        let (file, path) = store.temp_file("upload-").await.unwrap();
        std::fs::write(&path, b"new").unwrap();
        drop(file);
        let (size, digest) = hash_file(&path).unwrap();
        let kept = path.keep().unwrap();
        assert_eq!(
            store.publish(&kept, "b.txt", size, &digest).await.unwrap(),
            Published::Created
        );
        std::fs::remove_dir_all(dir.join(STATE_DIR)).unwrap();
        std::fs::write(dir.join("c.txt"), b"c").unwrap();
        assert!(store.rescan().await.unwrap());
        assert!(
            dir.join(STATE_DIR).join(INDEX_FILE).exists(),
            "digest cache not saved after its directory vanished"
        );
        assert_eq!(store.list().await.len(), 3);
    }

    #[tokio::test]
    async fn only_regular_files_are_indexed_compared_or_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("share");
        let store = Store::open(&dir).await.unwrap();
        std::fs::write(dir.join("plain"), b"same").unwrap();
        std::fs::write(tmp.path().join("outside"), b"same").unwrap();
        mkfifo(&dir.join("fifo"));
        std::os::unix::fs::symlink(dir.join("fifo"), dir.join("to-fifo")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside"), dir.join("to-file")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("to-device")).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(dir.join("sock")).unwrap();
        std::fs::create_dir(dir.join("subdir")).unwrap();

        bounded("rescan", store.rescan()).await.unwrap();
        let names: Vec<_> = store.list().await.into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["plain"]);
        // One log line per odd entry, not one per scan.
        let odd: BTreeSet<String> = ["fifo", "sock", "subdir", "to-device", "to-fifo", "to-file"]
            .map(String::from)
            .into();
        assert_eq!(store.note_skipped(odd.clone()), 0, "logged again");
        bounded("rescan", store.rescan()).await.unwrap();
        assert_eq!(store.skipped.lock().unwrap().clone(), odd);

        // The same answer whatever the name holds or points to: no oracle, no hang, and the
        // name is left as it was.
        let p = dir.join(PARTIAL_DIR).join("upload-x");
        for content in [&b"same"[..], b"other"] {
            for name in odd.iter() {
                std::fs::write(&p, content).unwrap();
                let (size, digest) = hash_file(&p).unwrap();
                let got = bounded(name, store.publish(&p, name, size, &digest))
                    .await
                    .unwrap();
                assert_eq!(got, Published::NotAFile, "{name}");
                assert!(!p.exists(), "temp file left behind");
            }
        }
        assert!(
            std::fs::symlink_metadata(dir.join("to-file"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        for name in ["fifo", "to-fifo", "to-file", "to-device", "sock"] {
            assert!(hash_file(&dir.join(name)).is_err(), "{name} hashed");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_does_not_hold_up_publication() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("share");
        let store = Store::open(&dir).await.unwrap();
        // Sparse: seconds of hashing without writing gigabytes in a test.
        let big = std::fs::File::create(dir.join("big")).unwrap();
        big.set_len(512 << 20).unwrap();
        drop(big);
        let mut pending = store.pending_hashes();
        let scanning = {
            let store = store.clone();
            tokio::spawn(async move { store.rescan().await })
        };
        bounded("hashing to start", pending.wait_for(|n| *n > 0))
            .await
            .unwrap();

        let p = dir.join(PARTIAL_DIR).join("upload-1");
        std::fs::write(&p, b"small").unwrap();
        let (size, digest) = hash_file(&p).unwrap();
        let got = bounded("publish", store.publish(&p, "small", size, &digest))
            .await
            .unwrap();
        assert_eq!(got, Published::Created);
        assert!(
            !scanning.is_finished() && *pending.borrow() > 0,
            "publication waited for the hashing"
        );
        // The scan's commit keeps what was published while it ran.
        bounded("rescan", scanning).await.unwrap().unwrap();
        let names: Vec<_> = store.list().await.into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["big", "small"]);
    }
}
