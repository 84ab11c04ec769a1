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
use super::error::ShareError;
use super::pieces::{Manifest, PieceIndex};

/// One file being downloaded into the share.
#[derive(Debug)]
pub struct PartialFile {
    sha256: Digest,
    manifest: Arc<Manifest>,
    /// The manifest's `pieces_root`: what the record of verified pieces belongs to.
    root: Digest,
    /// Where the bytes land: `.partial/<sha256>.data` in the share.
    data: PathBuf,
    /// Pieces whose bytes are written, synced and verified; nothing else is ever served.
    verified: RwLock<Bitfield>,
    /// How many pieces are verified: what a downloader waiting for news of this one's pieces
    /// waits on (`GET .../bitfield?after=N`, the swarm's "have").
    held: watch::Sender<u32>,
}

impl PartialFile {
    pub fn new(sha256: Digest, manifest: Arc<Manifest>, data: PathBuf, verified: Bitfield) -> Self {
        let held = watch::channel(verified.count()).0;
        Self {
            sha256,
            root: manifest.root(),
            manifest,
            data,
            verified: RwLock::new(verified),
            held,
        }
    }

    /// Pieces verified so far, changing as each one is (see [`PartialFile::mark_verified`]).
    pub fn held(&self) -> watch::Receiver<u32> {
        self.held.subscribe()
    }

    pub fn sha256(&self) -> &Digest {
        &self.sha256
    }

    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// What the persisted record of verified pieces belongs to: the claim (`pieces_root`) the
    /// pieces were checked against, not only the file. A piece checks against a claim's chain
    /// on its own, and a chain can be fake before the piece where it meets the real one, so a
    /// piece verified under one claim is never believed under another.
    pub fn record_key(&self) -> &Digest {
        &self.root
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
        let mut field = self.verified.write().unwrap_or_else(|p| p.into_inner());
        let new = field.set(piece);
        if new {
            // Under the lock, so the count never runs ahead of or behind the bitfield.
            self.held.send_replace(field.count());
        }
        new
    }
}

/// Requests for news of a download's pieces held open at once, over all downloads of a share
/// (`GET .../bitfield?after=N`); past this, such a request is answered at once, as a plain
/// bitfield request is, and its asker polls.
const HAVE_WAITERS: usize = 1024;

/// Files downloaded through the swarm that are remembered as such (see
/// [`Partials::downloaded_here`]); the oldest is forgotten first.
const DOWNLOADED_KEPT: usize = 256;

/// The downloads in progress in one share.
#[derive(Debug)]
pub struct Partials {
    files: Mutex<BTreeMap<Digest, Arc<PartialFile>>>,
    changed: watch::Sender<u64>,
    have_waiters: Arc<tokio::sync::Semaphore>,
    /// Digests this process finished downloading through the swarm, oldest first.
    downloaded: Mutex<std::collections::VecDeque<Digest>>,
}

impl Default for Partials {
    fn default() -> Self {
        Self {
            files: Mutex::new(BTreeMap::new()),
            changed: watch::channel(0).0,
            have_waiters: Arc::new(tokio::sync::Semaphore::new(HAVE_WAITERS)),
            downloaded: Mutex::new(std::collections::VecDeque::new()),
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

    /// Remembers that this process downloaded `sha256` through the swarm (every piece
    /// verified): its holders are other downloaders of the same file.
    pub fn mark_downloaded(&self, sha256: &Digest) {
        let mut kept = self.downloaded.lock().unwrap_or_else(|p| p.into_inner());
        if !kept.contains(sha256) {
            if kept.len() >= DOWNLOADED_KEPT {
                kept.pop_front();
            }
            kept.push_back(*sha256);
        }
    }

    /// Whether this process downloaded `sha256` through the swarm (of the last
    /// [`DOWNLOADED_KEPT`] such files). Such a copy is not the file's origin: whoever asks it
    /// for a piece is served that piece (no "least served first", which is for a seed that
    /// alone holds what the swarm lacks).
    pub fn downloaded_here(&self, sha256: &Digest) -> bool {
        let kept = self.downloaded.lock().unwrap_or_else(|p| p.into_inner());
        kept.contains(sha256)
    }

    /// A place among the requests waiting for news of pieces, while there is one.
    pub fn have_waiter(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.have_waiters).try_acquire_owned().ok()
    }

    /// Notified (with a counter) whenever a download starts or ends.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// File names of one download in progress inside a partial directory.
fn file_in(dir: &Path, sha256: &Digest, ext: &str) -> PathBuf {
    dir.join(format!("{sha256}.{ext}"))
}

/// The exclusive right to write `<dir>/<sha256>.*`: an `flock` on `<sha256>.lock`, held by one
/// writer at a time, in this process or another (a lock belongs to an open file description,
/// so two opens in one process exclude each other too). The holder unlinks the lock file when
/// it lets go, so an idle `.partial/` can be removed; a waiter that then wins the lock on the
/// unlinked file notices and starts over on a fresh one.
#[derive(Debug)]
pub(crate) struct WriteLock {
    /// The lock lives as long as this descriptor.
    _file: std::fs::File,
    path: PathBuf,
}

impl WriteLock {
    /// One attempt: `Ok(None)` while another writer holds the lock.
    pub(crate) fn try_acquire(dir: &Path, sha256: &Digest) -> std::io::Result<Option<Self>> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let path = file_in(dir, sha256, "lock");
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
        };
        // A client that finished in the same directory removes `.partial/` once it is empty
        // (`client::tidy_partial_dir`), possibly between our creating it and our lock file.
        let file = match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                open()?
            }
            other => other?,
        };
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EWOULDBLOCK) => Ok(None),
                _ => Err(e),
            };
        }
        // The previous holder may have unlinked the file between our open and our lock.
        let held = file.metadata()?;
        match std::fs::metadata(&path) {
            Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                Ok(Some(WriteLock { _file: file, path }))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits for the lock, polling so that the wait never blocks a runtime thread and ends
    /// when the future is dropped.
    pub(crate) async fn acquire(dir: &Path, sha256: &Digest) -> std::io::Result<Self> {
        let mut waited = false;
        loop {
            let (d, s) = (dir.to_path_buf(), *sha256);
            let got = tokio::task::spawn_blocking(move || WriteLock::try_acquire(&d, &s))
                .await
                .map_err(std::io::Error::other)??;
            if let Some(lock) = got {
                return Ok(lock);
            }
            if !waited {
                tracing::info!(sha256 = %sha256, "another download of this file is writing here; waiting for it");
                waited = true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        // Unlinked while still held, so nobody can take a lock on a name about to vanish; the
        // lock itself goes with the descriptor.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Where a finished, verified download waits to be placed: the caller links or renames it
/// away. Kept under the lock's name space, so a later download of the digest into the same
/// directory finds it (and checks it) instead of fetching again.
pub(crate) fn done_path(dir: &Path, sha256: &Digest) -> PathBuf {
    file_in(dir, sha256, "done")
}

/// The one writer of a download in progress: the data file (preallocated), the persisted
/// bitfield, and the lock that makes it the only one.
#[derive(Debug)]
pub(crate) struct PartialWriter {
    file: Arc<PartialFile>,
    data: Arc<std::fs::File>,
    bitfield_path: PathBuf,
    dir: PathBuf,
    lock: WriteLock,
}

impl PartialWriter {
    /// Opens (or creates) the download of `sha256` in `dir` under `lock`, resuming from the
    /// persisted bitfield. Nothing is re-verified: the bitfield is only ever saved after the
    /// pieces it names were synced. A data file of the wrong length means the record does not
    /// describe it, so that case starts from no pieces. Blocking.
    pub(crate) fn open(
        dir: &Path,
        sha256: Digest,
        manifest: Arc<Manifest>,
        lock: WriteLock,
    ) -> Result<Self, ShareError> {
        let data_path = file_in(dir, &sha256, "data");
        let bitfield_path = file_in(dir, &sha256, "bitfield");
        let data = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)
            .map_err(super::io_err(&data_path))?;
        let len = data.metadata().map_err(super::io_err(&data_path))?.len();
        // Only a record of this claim's pieces is believed (see `PartialFile::record_key`).
        let mut verified = super::bitfield::load_or_empty(
            &bitfield_path,
            &manifest.root(),
            manifest.piece_count(),
        );
        if len != manifest.size() {
            if verified.count() > 0 {
                tracing::warn!(path = %data_path.display(), "data file has the wrong length; starting from no verified pieces");
            }
            verified = Bitfield::new(manifest.piece_count());
            if let Err(e) = preallocate(&data, manifest.size()) {
                // No room for the file: nothing of it is worth keeping (the lock is still ours).
                let _ = std::fs::remove_file(&data_path);
                let _ = std::fs::remove_file(&bitfield_path);
                return Err(super::io_err(&data_path)(e));
            }
        }
        let file = Arc::new(PartialFile::new(sha256, manifest, data_path, verified));
        Ok(PartialWriter {
            file,
            data: Arc::new(data),
            bitfield_path,
            dir: dir.to_path_buf(),
            lock,
        })
    }

    pub(crate) fn file(&self) -> &Arc<PartialFile> {
        &self.file
    }

    pub(crate) fn bitfield_path(&self) -> &Path {
        &self.bitfield_path
    }

    /// A handle for writing pieces from other threads.
    pub(crate) fn data(&self) -> Arc<std::fs::File> {
        Arc::clone(&self.data)
    }

    /// Writes a verified piece at its offset, then marks it verified (served from the page cache
    /// at once). It is not synced here: [`PartialWriter::save`] syncs the data file before it
    /// persists a record naming the piece, one sync for every piece since the last record
    /// rather than one per piece. Blocking.
    pub(crate) fn write_piece<B: AsRef<[u8]>>(
        file: &PartialFile,
        data: &std::fs::File,
        index: PieceIndex,
        parts: &[B],
    ) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let range = file
            .manifest()
            .range(index)
            .ok_or_else(|| std::io::Error::other(format!("no piece {index}")))?;
        let mut at = range.start;
        for p in parts {
            data.write_all_at(p.as_ref(), at)?;
            at += p.as_ref().len() as u64;
        }
        file.mark_verified(index);
        Ok(())
    }

    /// Persists the verified pieces. Blocking.
    pub(crate) fn save(&self) -> Result<(), ShareError> {
        save_synced(
            &self.data,
            self.file.data_path(),
            &self.bitfield_path,
            self.file.record_key(),
            &self.file.bitfield(),
        )
    }

    /// The download is complete (every piece checked, which proves its digest): the data file becomes
    /// [`done_path`] (the bitfield goes, since it would describe a file no longer there) and the
    /// lock is released. Blocking.
    pub(crate) fn finish(self) -> Result<PathBuf, ShareError> {
        let done = done_path(&self.dir, self.file.sha256());
        self.data
            .sync_all()
            .map_err(super::io_err(self.file.data_path()))?;
        std::fs::rename(self.file.data_path(), &done).map_err(super::io_err(&done))?;
        let _ = std::fs::remove_file(&self.bitfield_path);
        sync_dir(&self.dir);
        drop(self.lock);
        Ok(done)
    }

    /// Gives the download up and deletes its state (a local write failure). Blocking. Returns whether everything went.
    pub(crate) fn discard(self) -> bool {
        let mut all = true;
        for p in [self.file.data_path(), self.bitfield_path.as_path()] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => all = false,
            }
        }
        drop(self.lock);
        all
    }
}

/// Persists `field` (a snapshot of the verified pieces) after syncing the data file. Every bit
/// in the snapshot was set after its piece was written, so the sync covers it and the record
/// never claims bytes that a crash could lose. Blocking.
pub(crate) fn save_synced(
    data: &std::fs::File,
    data_path: &Path,
    bitfield_path: &Path,
    record_key: &Digest,
    field: &Bitfield,
) -> Result<(), ShareError> {
    data.sync_data().map_err(super::io_err(data_path))?;
    super::bitfield::save(bitfield_path, record_key, field)
}

/// Reserves the whole file up front, so a full disk fails the download before any byte moves;
/// file systems without `fallocate` get a sparse file of the right length.
fn preallocate(file: &std::fs::File, size: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    file.set_len(0)?;
    if size == 0 {
        return Ok(());
    }
    let len = libc::off_t::try_from(size).map_err(std::io::Error::other)?;
    // SAFETY: posix_fallocate on a descriptor we own; no memory is involved.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(size),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::digest::sha256;

    /// A 3-piece file (pieces of 4 MiB, the last shorter) and its manifest.
    fn sample() -> (Vec<u8>, Digest, Arc<Manifest>) {
        // Three pieces, the last one short.
        let len = 2 * super::super::pieces::MIN_PIECE_SIZE as u32 + 70_001;
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + i / 7) as u8).collect();
        let size = data.len() as u64;
        let ps = super::super::pieces::piece_size(size) as usize;
        let digests = data.chunks(ps).map(sha256).collect();
        (
            data.clone(),
            sha256(&data),
            Arc::new(Manifest::new(size, digests).unwrap()),
        )
    }

    fn piece_bytes(data: &[u8], m: &Manifest, i: u32) -> Vec<u8> {
        let r = m.range(PieceIndex(i)).unwrap();
        data[r.start as usize..r.end as usize].to_vec()
    }

    #[test]
    fn a_second_writer_in_this_process_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let d = sha256(b"x");
        let first = WriteLock::try_acquire(dir.path(), &d).unwrap();
        assert!(first.is_some());
        // Another open of the same lock file in the same process: a separate open file
        // description, so flock excludes it.
        assert!(WriteLock::try_acquire(dir.path(), &d).unwrap().is_none());
        // Another digest is another writer.
        assert!(
            WriteLock::try_acquire(dir.path(), &sha256(b"y"))
                .unwrap()
                .is_some()
        );
        drop(first);
        assert!(
            !dir.path().join(format!("{d}.lock")).exists(),
            "the holder removes the lock file"
        );
        assert!(WriteLock::try_acquire(dir.path(), &d).unwrap().is_some());
    }

    #[tokio::test]
    async fn acquire_waits_until_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let d = sha256(b"x");
        let held = WriteLock::try_acquire(dir.path(), &d).unwrap().unwrap();
        let path = dir.path().to_path_buf();
        let waiter = tokio::spawn(async move { WriteLock::acquire(&path, &d).await });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!waiter.is_finished(), "took a lock that is held");
        drop(held);
        let got = tokio::time::timeout(std::time::Duration::from_secs(20), waiter)
            .await
            .expect("lock not taken after release")
            .unwrap();
        assert!(got.is_ok());
    }

    #[test]
    fn resume_finds_only_the_pieces_that_were_verified_and_saved() {
        let dir = tempfile::tempdir().unwrap();
        let (data, d, m) = sample();
        let lock = WriteLock::try_acquire(dir.path(), &d).unwrap().unwrap();
        let w = PartialWriter::open(dir.path(), d, Arc::clone(&m), lock).unwrap();
        assert_eq!(w.file().bitfield().count(), 0);
        PartialWriter::write_piece(
            w.file(),
            &w.data(),
            PieceIndex(1),
            &piece_bytes(&data, &m, 1)
                .chunks(100_000)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        w.save().unwrap();
        // Written and synced after the last save: not claimed by the record.
        PartialWriter::write_piece(
            w.file(),
            &w.data(),
            PieceIndex(2),
            &piece_bytes(&data, &m, 2)
                .chunks(100_000)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        drop(w);

        let lock = WriteLock::try_acquire(dir.path(), &d).unwrap().unwrap();
        let w = PartialWriter::open(dir.path(), d, Arc::clone(&m), lock).unwrap();
        let b = w.file().bitfield();
        assert_eq!(b.ones().collect::<Vec<_>>(), [PieceIndex(1)]);
        // The resumed data file still holds the verified piece.
        let on_disk = std::fs::read(w.file().data_path()).unwrap();
        let r = m.range(PieceIndex(1)).unwrap();
        assert_eq!(
            &on_disk[r.start as usize..r.end as usize],
            &piece_bytes(&data, &m, 1)[..]
        );
        assert_eq!(on_disk.len() as u64, m.size());
    }

    #[test]
    fn a_lock_is_taken_even_when_its_directory_was_removed_meanwhile() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(".partial");
        let d = crate::share::digest::sha256(b"x");
        // As another client's tidy-up would leave it: created, then removed while empty.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::remove_dir(&dir).unwrap();
        let lock = WriteLock::try_acquire(&dir, &d).unwrap();
        assert!(lock.is_some());
        assert!(WriteLock::try_acquire(&dir, &d).unwrap().is_none(), "held");
    }

    #[test]
    fn a_torn_bitfield_or_a_data_file_of_the_wrong_length_starts_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let (data, d, m) = sample();
        let lock = WriteLock::try_acquire(dir.path(), &d).unwrap().unwrap();
        let w = PartialWriter::open(dir.path(), d, Arc::clone(&m), lock).unwrap();
        for i in 0..2 {
            PartialWriter::write_piece(
                w.file(),
                &w.data(),
                PieceIndex(i),
                &piece_bytes(&data, &m, i)
                    .chunks(100_000)
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        }
        w.save().unwrap();
        let bf = w.bitfield_path().to_path_buf();
        let data_path = w.file().data_path().to_path_buf();
        drop(w);

        // Torn: the record cut short.
        let full = std::fs::read(&bf).unwrap();
        std::fs::write(&bf, &full[..full.len() - 1]).unwrap();
        let lock = WriteLock::try_acquire(dir.path(), &d).unwrap().unwrap();
        let w = PartialWriter::open(dir.path(), d, Arc::clone(&m), lock).unwrap();
        assert_eq!(w.file().bitfield().count(), 0);
        drop(w);

        // A sound record next to a data file that is not the one it describes.
        std::fs::write(&bf, &full).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&data_path)
            .unwrap()
            .set_len(5)
            .unwrap();
        let lock = WriteLock::try_acquire(dir.path(), &d).unwrap().unwrap();
        let w = PartialWriter::open(dir.path(), d, Arc::clone(&m), lock).unwrap();
        assert_eq!(w.file().bitfield().count(), 0);
        assert_eq!(std::fs::metadata(&data_path).unwrap().len(), m.size());
    }

    #[test]
    fn finish_moves_the_data_aside_and_discard_removes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let (data, d, m) = sample();
        let lock = WriteLock::try_acquire(dir.path(), &d).unwrap().unwrap();
        let w = PartialWriter::open(dir.path(), d, Arc::clone(&m), lock).unwrap();
        for i in 0..3 {
            PartialWriter::write_piece(
                w.file(),
                &w.data(),
                PieceIndex(i),
                &piece_bytes(&data, &m, i)
                    .chunks(100_000)
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        }
        w.save().unwrap();
        let done = w.finish().unwrap();
        assert_eq!(done, done_path(dir.path(), &d));
        assert_eq!(std::fs::read(&done).unwrap(), data);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from(format!("{d}.done"))]);

        std::fs::remove_file(&done).unwrap();
        let lock = WriteLock::try_acquire(dir.path(), &d).unwrap().unwrap();
        let w = PartialWriter::open(dir.path(), d, Arc::clone(&m), lock).unwrap();
        w.save().unwrap();
        assert!(w.discard());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
