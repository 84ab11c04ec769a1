//! One download from start to end: the lock on its digest, an earlier copy reused, the holders
//! and their manifest (`holders`), the event loop (`engine`) and its end (`finish`).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use super::engine::{Engine, Outcome};
use super::finish::{self, Fetched, Hasher, other};
use super::holders::{self, Failures};
use super::target::{Report, Swarm, Target};
use crate::error::Result;
use crate::share::ShareError;
use crate::share::partial::{self, PartialWriter, WriteLock};
use crate::transfer::room::Refusal;
use crate::wire::download::Event;

impl Swarm {
    /// A verified copy of `target` at the returned path inside `partial_dir`, ready to publish,
    /// with its whole-file digest and manifest (so publishing need not read it again).
    ///
    /// One writer per digest and directory: a second fetch of the same file into the same
    /// directory (in this process or another) waits for the first, then resumes from its
    /// verified pieces or reuses its finished copy. The returned file is the caller's to link or
    /// rename away (`Store::publish`, `store::place_new`); a later fetch that finds it still
    /// there checks it again and hands it out once more, so a failed placement costs no
    /// download.
    pub async fn fetch(
        &self,
        target: &Target,
        partial_dir: &Path,
        report: &dyn Report,
    ) -> Result<Fetched> {
        run(self, target, partial_dir, report).await
    }

    /// Whether `target` may start downloading into `partial_dir` now (the rule of
    /// [`crate::transfer::room`]), without taking a place: the daemon asks before it answers so
    /// that a refusal is the status of its answer. [`Swarm::fetch`] applies the rule itself.
    pub(crate) async fn check_room(&self, target: &Target, partial_dir: &Path) -> Result<()> {
        let (room, dir, sha256, size) = (
            Arc::clone(&self.room),
            partial_dir.to_path_buf(),
            target.sha256,
            target.size,
        );
        tokio::task::spawn_blocking(move || room.check(&dir, &sha256, size))
            .await
            .map_err(|e| other(partial_dir, e))?
            .map_err(|r| self.refused(r))
    }

    /// A refusal of the room, counted and logged.
    fn refused(&self, r: Refusal) -> crate::error::Error {
        if let Some(m) = &self.metrics {
            m.downloads_refused.with_label_values(&[r.reason]).inc();
        }
        tracing::warn!(reason = r.reason, "download refused: {}", r.message);
        crate::error::Error::NoRoom(r.message)
    }
}

async fn run(swarm: &Swarm, target: &Target, dir: &Path, report: &dyn Report) -> Result<Fetched> {
    let sha256 = target.sha256;
    // A place among the process's downloads, and room on the disk for what of the file is not
    // there yet, before anything is asked or written; held to the end.
    let (room, d, size) = (Arc::clone(&swarm.room), dir.to_path_buf(), target.size);
    let slot = tokio::task::spawn_blocking(move || room.admit(&d, &sha256, size))
        .await
        .map_err(|e| other(dir, e))?
        .map_err(|r| swarm.refused(r))?;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| other(dir, e))?;
    let lock = WriteLock::acquire(dir, &sha256)
        .await
        .map_err(|e| other(dir, e))?;
    let earlier = partial::done_path(dir, &sha256);
    if let Some(done) = finish::earlier_copy(earlier, sha256, target.size).await {
        report.event(Event::Verified { size: target.size });
        return Ok(done);
    }

    let start = holders::start(swarm, target).await?;
    let mut failures = Failures::default();
    let mut failed = HashSet::new();
    let (manifest, manifest_from) =
        holders::manifest(swarm, target, &start, &mut failures, &mut failed, report).await?;
    let manifest = Arc::new(manifest);

    let (d, m) = (dir.to_path_buf(), Arc::clone(&manifest));
    // The data file takes its full size here: the room is asked again, now that the holders'
    // manifest is in, with what other downloads took meanwhile.
    let (slot, opened) = tokio::task::spawn_blocking(move || {
        let opened = slot.grow(|| PartialWriter::open(&d, sha256, m, lock));
        (slot, opened)
    })
    .await
    .map_err(|e| other(dir, e))?;
    let _slot = slot;
    let writer = match opened.map_err(|r| swarm.refused(r))? {
        Ok(w) => w,
        Err(ShareError::Io { path, source }) => {
            return Err(finish::local_failure(None, &path, &source).await);
        }
        Err(e) => return Err(e.into()),
    };
    let hasher = Hasher::start(&writer);
    let mut engine = Engine::new(
        swarm,
        target,
        manifest,
        &writer,
        hasher.waker(),
        start,
        failed,
        failures,
        report,
    );
    let outcome = engine.run().await;
    // Cancels whatever still runs, takes the download out of the daemon's registry and lets
    // the hasher see the end.
    drop(engine);
    match outcome {
        Outcome::Complete => {
            finish::complete(writer, hasher, target, &manifest_from, dir, report).await
        }
        Outcome::Local(path, e) => Err(finish::local_failure(Some(writer), &path, &e).await),
        Outcome::GaveUp(e) => {
            finish::keep_for_resume(writer).await;
            Err(e)
        }
    }
}
