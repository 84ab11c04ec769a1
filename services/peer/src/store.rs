//! The share directory: an index of its files (size + SHA-256, cached on disk so a restart does
//! not rehash unchanged files), atomic publication of uploads and downloads, and safe opening.
//!
//! Layout: `<files_dir>/<name>` are the shared files (flat); `<files_dir>/.partial/` holds
//! uploads and downloads in progress and `<files_dir>/.p2pshare/` the peer's own state. Both are
//! reserved names, never listed and never served.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use p2p_common::names::{self, NameError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, RwLock, watch};

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
    pub sha256: String,
    /// Modification time (ns since the epoch) when hashed: a changed file is rehashed.
    #[serde(default)]
    pub mtime_ns: u128,
}

/// What publishing a verified file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Created,
    /// The same bytes were already shared under that name.
    Identical,
    /// Other bytes are shared under that name; nothing changed.
    Conflict,
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
    index: RwLock<BTreeMap<String, Entry>>,
    /// Serialises publication so a check-then-rename cannot race another.
    publish: Mutex<()>,
    changed: watch::Sender<u64>,
}

fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// SHA-256 of a whole file, read in 1 MiB blocks.
pub fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

impl Store {
    /// Creates the directory layout and loads the digest cache; call [`Store::rescan`] next.
    pub async fn open(dir: &Path) -> Result<Arc<Self>, StoreError> {
        let dir = dir.to_path_buf();
        for d in [dir.clone(), dir.join(PARTIAL_DIR), dir.join(STATE_DIR)] {
            tokio::fs::create_dir_all(&d).await.map_err(io_err(&d))?;
        }
        // Uploads interrupted by a crash: never published, nothing to keep.
        if let Ok(mut rd) = tokio::fs::read_dir(dir.join(PARTIAL_DIR)).await {
            while let Ok(Some(e)) = rd.next_entry().await {
                if e.file_name().to_string_lossy().starts_with("upload-") {
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
        let (changed, _) = watch::channel(0);
        Ok(Arc::new(Self {
            dir,
            index: RwLock::new(cached),
            publish: Mutex::new(()),
            changed,
        }))
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

    /// Notified (with a counter) whenever the set of shared files changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub async fn list(&self) -> Vec<Entry> {
        self.index.read().await.values().cloned().collect()
    }

    pub async fn get(&self, name: &str) -> Option<Entry> {
        self.index.read().await.get(name).cloned()
    }

    /// Brings the index in line with the directory: hashes new or changed files, forgets
    /// vanished ones. Returns whether anything changed.
    pub async fn rescan(&self) -> Result<bool, StoreError> {
        // A publication between the directory read and the index swap would be lost otherwise.
        let _guard = self.publish.lock().await;
        let dir = self.dir.clone();
        let known = self.index.read().await.clone();
        let fresh = tokio::task::spawn_blocking(move || scan(&dir, &known))
            .await
            .map_err(|e| StoreError::Io {
                path: self.dir.clone(),
                source: io::Error::other(e),
            })??;
        let mut index = self.index.write().await;
        if *index == fresh {
            return Ok(false);
        }
        *index = fresh;
        let snapshot = index.clone();
        drop(index);
        self.save(&snapshot).await;
        self.changed.send_modify(|v| *v += 1);
        Ok(true)
    }

    async fn save(&self, index: &BTreeMap<String, Entry>) {
        let path = self.state_dir().join(INDEX_FILE);
        let tmp = self.state_dir().join(format!("{INDEX_FILE}.tmp"));
        let result = async {
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

    /// Moves a verified, fsynced file at `tmp` into the share as `name`, unless the name is
    /// taken. `tmp` must be inside this share (same file system, so the rename is atomic).
    pub async fn publish(
        &self,
        tmp: &Path,
        name: &str,
        size: u64,
        sha256: &str,
    ) -> Result<Published, StoreError> {
        check_name(name)?;
        let _guard = self.publish.lock().await;
        let dest = self.dir.join(name);
        if let Some(e) = self.get(name).await {
            let _ = tokio::fs::remove_file(tmp).await;
            return Ok(if e.sha256 == sha256 {
                Published::Identical
            } else {
                Published::Conflict
            });
        }
        // Not indexed yet, but maybe put there by hand since the last scan.
        if tokio::fs::symlink_metadata(&dest).await.is_ok() {
            let d = dest.clone();
            let existing = tokio::task::spawn_blocking(move || hash_file(&d))
                .await
                .ok()
                .and_then(Result::ok);
            let _ = tokio::fs::remove_file(tmp).await;
            return Ok(match existing {
                Some((_, digest)) if digest == sha256 => Published::Identical,
                _ => Published::Conflict,
            });
        }
        tokio::fs::rename(tmp, &dest).await.map_err(io_err(&dest))?;
        if let Ok(dir) = tokio::fs::File::open(&self.dir).await {
            let _ = dir.sync_all().await;
        }
        let meta = tokio::fs::metadata(&dest).await.map_err(io_err(&dest))?;
        let entry = Entry {
            name: name.to_owned(),
            size,
            sha256: sha256.to_owned(),
            mtime_ns: mtime_ns(&meta),
        };
        let snapshot = {
            let mut index = self.index.write().await;
            index.insert(name.to_owned(), entry);
            index.clone()
        };
        self.save(&snapshot).await;
        self.changed.send_modify(|v| *v += 1);
        Ok(Published::Created)
    }

    /// Opens a shared file for reading, refusing symlinks and files that changed since they were
    /// hashed (the next scan rehashes them).
    pub async fn open_file(&self, entry: &Entry) -> io::Result<tokio::fs::File> {
        let path = self.dir.join(&entry.name);
        let file = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
        })
        .await
        .map_err(io::Error::other)??;
        let meta = file.metadata()?;
        if !meta.is_file() || meta.len() != entry.size || mtime_ns(&meta) != entry.mtime_ns {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "file changed since it was indexed",
            ));
        }
        Ok(tokio::fs::File::from_std(file))
    }

    /// Whether transfers can still land here: the directory exists and `.partial/` takes a file.
    pub async fn usable(&self) -> bool {
        let partial = self.partial_dir();
        tokio::task::spawn_blocking(move || tempfile::tempfile_in(partial).is_ok())
            .await
            .unwrap_or(false)
    }
}

fn scan(
    dir: &Path,
    known: &BTreeMap<String, Entry>,
) -> Result<BTreeMap<String, Entry>, StoreError> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let Ok(e) = e else { continue };
        // Symlinks and directories are not shared: a link could point outside the share.
        let Ok(ft) = e.file_type() else { continue };
        if !ft.is_file() {
            continue;
        }
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if check_name(&name).is_err() {
            continue;
        }
        let Ok(meta) = e.metadata() else { continue };
        let mtime = mtime_ns(&meta);
        if let Some(k) = known.get(&name) {
            if k.size == meta.len() && k.mtime_ns == mtime {
                out.insert(name, k.clone());
                continue;
            }
        }
        match hash_file(&e.path()) {
            Ok((size, sha256)) if size == meta.len() => {
                out.insert(
                    name.clone(),
                    Entry {
                        name,
                        size,
                        sha256,
                        mtime_ns: mtime,
                    },
                );
            }
            // Still being written: the next scan sees a stable file.
            Ok(_) => {}
            Err(err) => tracing::warn!(file = %name, error = %err, "cannot hash file"),
        }
    }
    Ok(out)
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
            list[0].sha256,
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
}
