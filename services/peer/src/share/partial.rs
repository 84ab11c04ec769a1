//! Downloads in progress in one share, by digest: what the peer serves of files it is still
//! fetching (verified pieces only) and announces to the tracker as a partial holder.
//!
//! Swarm wiring (issue 9): the registry below is what serving and membership read; the writer
//! side (one writer per digest, persisted bitfield, resume) lives next to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

use super::bitfield::Bitfield;
use super::digest::Digest;
use super::pieces::{Manifest, PieceIndex};

/// One file being downloaded into the share.
#[derive(Debug)]
pub struct PartialFile {
    sha256: Digest,
    manifest: Arc<Manifest>,
    /// Where the bytes land: `.partial/<sha256>.data` in the share.
    data: PathBuf,
    /// Pieces whose bytes are written, synced and verified; nothing else is ever served.
    verified: RwLock<Bitfield>,
}

impl PartialFile {
    pub fn new(sha256: Digest, manifest: Arc<Manifest>, data: PathBuf, verified: Bitfield) -> Self {
        Self {
            sha256,
            manifest,
            data,
            verified: RwLock::new(verified),
        }
    }

    pub fn sha256(&self) -> &Digest {
        &self.sha256
    }

    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    pub fn data_path(&self) -> &Path {
        &self.data
    }

    /// A snapshot of the verified pieces.
    pub fn bitfield(&self) -> Bitfield {
        match self.verified.read() {
            Ok(b) => b.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn has(&self, piece: PieceIndex) -> bool {
        match self.verified.read() {
            Ok(b) => b.get(piece),
            Err(poisoned) => poisoned.into_inner().get(piece),
        }
    }

    /// Records a piece as verified. Call only once its bytes are written and synced.
    pub fn mark_verified(&self, piece: PieceIndex) -> bool {
        match self.verified.write() {
            Ok(mut b) => b.set(piece),
            Err(poisoned) => poisoned.into_inner().set(piece),
        }
    }
}

/// The downloads in progress in one share.
#[derive(Debug)]
pub struct Partials {
    files: Mutex<BTreeMap<Digest, Arc<PartialFile>>>,
    changed: watch::Sender<u64>,
}

impl Default for Partials {
    fn default() -> Self {
        Self {
            files: Mutex::new(BTreeMap::new()),
            changed: watch::channel(0).0,
        }
    }
}

impl Partials {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn files(&self) -> std::sync::MutexGuard<'_, BTreeMap<Digest, Arc<PartialFile>>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts serving (and announcing) a download in progress.
    pub fn insert(&self, file: Arc<PartialFile>) {
        self.files().insert(*file.sha256(), file);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Stops serving a download: finished (now a shared file) or given up.
    pub fn remove(&self, sha256: &Digest) -> Option<Arc<PartialFile>> {
        let removed = self.files().remove(sha256);
        if removed.is_some() {
            self.changed.send_modify(|v| *v += 1);
        }
        removed
    }

    pub fn get(&self, sha256: &Digest) -> Option<Arc<PartialFile>> {
        self.files().get(sha256).cloned()
    }

    pub fn list(&self) -> Vec<Arc<PartialFile>> {
        self.files().values().cloned().collect()
    }

    /// Notified (with a counter) whenever a download starts or ends.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
