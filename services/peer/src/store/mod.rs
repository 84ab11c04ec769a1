//! The share directory: an index of its files (size, SHA-256 and piece manifest from one read,
//! cached on disk so a restart does not rehash unchanged files), atomic publication of uploads
//! and downloads, and safe opening.
//!
//! Layout: `<files_dir>/<name>` are the shared files (flat); `<files_dir>/.partial/` holds
//! uploads and downloads in progress and `<files_dir>/.p2pshare/` the peer's own state. Both are
//! reserved names, never listed and never served.
//!
//! `index` holds the entries and their two lookups, `fs` the file-system primitives (opening
//! only regular files, hashing, placing without replacing); the [`Store`] itself is here.
//!
//! The index is an `Arc<Index>` swapped whole under a short lock: readers (listings, metrics,
//! membership, the cache writer) hold a snapshot instead of a copy, a publication changes it in
//! place unless a snapshot is out (then it copies once), and a rescan that found changes merges
//! them into a new one.

mod fs;
mod index;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use p2p_common::names::{self, NameError};
use tokio::sync::{Mutex, watch};

use crate::share::pieces::Hashed;
use crate::share::{Digest, Manifest, ShareError};

pub use fs::hash_file;
use fs::{hash_regular, same_file};
pub(crate) use fs::{open_regular, place_new};
use index::{CacheFile, CachedEntries, stamp};
pub(crate) use index::{Entry, Index, Step, by_name};

pub(crate) const PARTIAL_DIR: &str = ".partial";
pub(crate) const STATE_DIR: &str = ".p2pshare";
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

/// What publishing a verified file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Published {
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
    /// Never held across an await: taken to clone the `Arc` or to change the index.
    index: std::sync::RwLock<Arc<Index>>,
    /// Serialises changes of the index and the share's names, so a check-then-rename cannot
    /// race another. Never held while hashing.
    publish: Mutex<()>,
    /// One rescan at a time: a rescan's commit assumes nobody but `publish` changed the index
    /// since its snapshot.
    scanning: Mutex<()>,
    /// One writer of the digest cache at a time, each writing the index as it is then.
    saving: Mutex<()>,
    changed: watch::Sender<u64>,
    /// Files the running rescan still has to hash.
    pending: watch::Sender<usize>,
    /// Entries that are not regular files, already logged once.
    skipped: std::sync::Mutex<BTreeSet<String>>,
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

/// What one pass over the directory found, against the index it started from.
struct Scanned {
    /// New or changed files, hashed; in name order.
    upserts: Vec<Entry>,
    /// Indexed names that are gone, no longer regular files, or could not be hashed; sorted.
    removed: Vec<Arc<str>>,
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
            index: std::sync::RwLock::new(Arc::default()),
            publish: Mutex::new(()),
            scanning: Mutex::new(()),
            saving: Mutex::new(()),
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
        let path = cache_path.clone();
        // Parsed as it is read: the file is ~270 bytes per entry, the entry ~140.
        let cached = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path).ok()?;
            let reader = io::BufReader::with_capacity(1 << 16, file);
            Some(serde_json::from_reader::<_, CachedEntries>(reader))
        })
        .await
        .ok()
        .flatten();
        let cached = match cached {
            Some(Ok(CachedEntries(entries))) => entries,
            Some(Err(e)) => {
                tracing::warn!(path = %cache_path.display(), error = %e, "ignoring unreadable digest cache");
                Vec::new()
            }
            None => Vec::new(),
        };
        let cached = cached
            .into_iter()
            .filter(|e| check_name(&e.name).is_ok())
            .collect();
        *store.write_index() = Arc::new(Index::new(cached));
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

    pub(crate) fn partial_dir(&self) -> PathBuf {
        self.dir.join(PARTIAL_DIR)
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.join(STATE_DIR)
    }

    /// A new temporary file in `.partial/` (recreated if it went missing); deleted when the
    /// returned path is dropped.
    pub(crate) async fn temp_file(
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
    #[cfg(test)]
    pub(crate) fn pending_hashes(&self) -> watch::Receiver<usize> {
        self.pending.subscribe()
    }

    /// The index as it is now, for as long as the caller holds it (no copy).
    pub fn snapshot(&self) -> Arc<Index> {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The lock holds no invariant a panic could break halfway: every change swaps or edits
    /// the index in one call.
    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, Arc<Index>> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    pub(crate) async fn list(&self) -> Vec<Entry> {
        self.snapshot().entries().to_vec()
    }

    pub async fn get(&self, name: &str) -> Option<Entry> {
        self.snapshot().get(name).cloned()
    }

    /// A shared file with these bytes, whatever its name; the first such name in name order.
    pub(crate) async fn by_digest(&self, sha256: &Digest) -> Option<Entry> {
        self.snapshot().by_digest(sha256).cloned()
    }

    /// The piece manifest of a shared file, as the index holds it.
    pub async fn manifest(&self, entry: &Entry) -> Result<Arc<Manifest>, ShareError> {
        if let Some(m) = entry.manifest() {
            return Ok(m);
        }
        let path = self.dir.join(&*entry.name);
        let current = self.get(&entry.name).await;
        if let Some(m) = current
            .filter(|e| e.sha256 == entry.sha256 && e.size == entry.size)
            .and_then(|e| e.manifest())
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
        let known = self.snapshot();
        let dir = self.dir.clone();
        let snapshot = known.clone();
        let pending = self.pending.clone();
        let scanned = blocking(&self.dir, move || scan(&dir, &snapshot, &pending)).await;
        self.pending.send_replace(0);
        let scanned = scanned?;
        self.note_skipped(scanned.skipped);

        let guard = self.publish.lock().await;
        // Publications since the snapshot win: the scan may have listed the directory before
        // they landed.
        let current = self.snapshot();
        let untouched = |name: &str| current.get(name) == known.get(name);
        let mut upserts = scanned.upserts;
        upserts.retain(|e| untouched(&e.name) && current.get(&e.name) != Some(e));
        let mut removed = scanned.removed;
        removed.retain(|n| untouched(n) && current.get(n).is_some());
        if upserts.is_empty() && removed.is_empty() {
            return Ok(false);
        }
        let next = Arc::new(current.merged(upserts, &removed));
        drop(known);
        drop(current);
        *self.write_index() = next;
        drop(guard);
        self.save().await;
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

    /// Writes the index as it is now to the digest cache, streamed (never a second copy of
    /// the index or of the file in memory).
    async fn save(&self) {
        let _one_save = self.saving.lock().await;
        let index = self.snapshot();
        let path = self.state_dir().join(INDEX_FILE);
        let tmp = self.state_dir().join(format!("{INDEX_FILE}.tmp"));
        let result = async {
            self.ensure_layout().await.map_err(io::Error::other)?;
            let (t, p) = (tmp.clone(), path.clone());
            tokio::task::spawn_blocking(move || {
                let written = (|| {
                    let mut out = io::BufWriter::with_capacity(1 << 16, std::fs::File::create(&t)?);
                    serde_json::to_writer(&mut out, &CacheFile(&index))
                        .map_err(io::Error::other)?;
                    out.flush()?;
                    drop(out);
                    std::fs::rename(&t, &p)
                })();
                if written.is_err() {
                    // A full disk leaves no truncated copy behind.
                    let _ = std::fs::remove_file(&t);
                }
                written
            })
            .await
            .map_err(io::Error::other)?
        }
        .await;
        if let Err(e) = result {
            // Only a cache: the next start rehashes.
            tracing::warn!(path = %path.display(), error = %e, "cannot save digest cache");
        }
    }

    /// [`Store::publish_hashed`] for a caller that knows only the file's size and digest: the
    /// bytes are read once more for their manifest, and refused (an `InvalidData` error) unless
    /// they are the ones announced. Downloads hand over what they hashed (`client::publish`);
    /// only the tests, which place bytes they did not hash, still need this.
    #[cfg(test)]
    pub(crate) async fn publish(
        &self,
        tmp: &Path,
        name: &str,
        size: u64,
        sha256: &Digest,
    ) -> Result<Published, StoreError> {
        let t = tmp.to_path_buf();
        let hashed = blocking(tmp, move || {
            crate::share::pieces::hash_file(&t).map_err(fs::share_io)
        })
        .await;
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
    pub(crate) async fn publish_hashed(
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
                    (Some(e), _) if e.size == meta.len() && e.mtime_ns == stamp(&meta) => {
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
            let entry = Entry::new(name.into(), hashed, &meta);
            // In place, unless a snapshot is out: then this copies the index once.
            Arc::make_mut(&mut *self.write_index()).insert(entry);
            drop(guard);
            self.save().await;
            self.changed.send_modify(|v| *v += 1);
            return Ok(Published::Created);
        }
        // Rewritten by hand three times while we looked: the name is busy with other bytes.
        Ok(Published::Conflict)
    }

    /// Takes `name` out of the share: deletes the file and forgets it, so that membership's
    /// next diff tells the tracker this peer no longer holds it. `Ok(None)`: no shared file of
    /// that name. Readers that already opened it finish reading it.
    pub(crate) async fn remove(&self, name: &str) -> Result<Option<Entry>, StoreError> {
        check_name(name)?;
        let guard = self.publish.lock().await;
        let Some(entry) = self.get(name).await else {
            return Ok(None);
        };
        let path = self.dir.join(name);
        let p = path.clone();
        blocking(&path, move || match std::fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await?;
        let next = Arc::new(
            self.snapshot()
                .merged(Vec::new(), std::slice::from_ref(&entry.name)),
        );
        *self.write_index() = next;
        drop(guard);
        self.save().await;
        self.changed.send_modify(|v| *v += 1);
        Ok(Some(entry))
    }

    /// Opens a shared file for reading, refusing anything but the regular file that was
    /// indexed (a symlink, a FIFO, or a file that changed since it was hashed: the next scan
    /// rehashes it).
    pub(crate) async fn open_file(&self, entry: &Entry) -> io::Result<std::fs::File> {
        let path = self.dir.join(&*entry.name);
        let (size, mtime) = (entry.size, entry.mtime_ns);
        let file = tokio::task::spawn_blocking(move || {
            let (file, meta) = open_regular(&path)?;
            if meta.len() != size || stamp(&meta) != mtime {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "file changed since it was indexed",
                ));
            }
            Ok(file)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(file)
    }

    /// Whether transfers can still land here: the layout exists (recreated if it went missing)
    /// and `.partial/` takes a file.
    pub async fn usable(&self) -> bool {
        self.temp_file("probe-").await.is_ok()
    }
}

fn scan(dir: &Path, known: &Index, pending: &watch::Sender<usize>) -> io::Result<Scanned> {
    let mut seen = vec![false; known.len()];
    let mut skipped = BTreeSet::new();
    let mut to_hash: Vec<Arc<str>> = Vec::new();
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
        match known.position(&name) {
            Ok(i) if known.entries()[i].still_describes(&meta) => seen[i] = true,
            // The index's own name when it has one: one allocation per name, shared.
            Ok(i) => to_hash.push(known.entries()[i].name.clone()),
            Err(_) => to_hash.push(name.into()),
        }
    }
    pending.send_replace(to_hash.len());
    to_hash.sort_unstable();
    let mut upserts = Vec::with_capacity(to_hash.len());
    for name in to_hash {
        match hash_regular(&dir.join(&*name)) {
            Ok((hashed, meta)) => upserts.push(Entry::new(name, &hashed, &meta)),
            // Still being written: the next scan sees a stable file.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // Swapped for a non-regular file since the listing.
            Err(err) if err.kind() == io::ErrorKind::InvalidInput => {
                skipped.insert(name.to_string());
            }
            Err(err) => tracing::warn!(file = %name, error = %err, "cannot hash file"),
        }
        pending.send_modify(|n| *n = n.saturating_sub(1));
    }
    // Every indexed name this scan did not find unchanged, unless hashed anew.
    let removed = known
        .entries()
        .iter()
        .zip(seen)
        .filter(|(e, seen)| !seen && upserts.binary_search_by(|u| u.name.cmp(&e.name)).is_err())
        .map(|(e, _)| e.name.clone())
        .collect();
    Ok(Scanned {
        upserts,
        removed,
        skipped,
    })
}
