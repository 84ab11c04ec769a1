//! One download from start to end: the lock on its digest, an earlier copy reused, the holders
//! and their manifest (`holders`), the event loop (`engine`) and its end (`finish`).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use super::engine::{Engine, Outcome};
use super::finish::{self, Fetched, other};
use super::holders::{self, Claim, Failures};
use super::resolve::resolve;
use super::target::{Report, Swarm, Target};
use crate::error::Result;
use crate::share::ShareError;
use crate::share::partial::{self, PartialWriter, WriteLock};
use crate::transfer::room::{Refusal, Slot};
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

    /// Gives `target` the size and root of the claim a download would try first, from the
    /// holders' manifests, in place of the tracker's (its size is the last announcement, which
    /// anyone may have made). Shown and checked against the disk before a download starts;
    /// [`Swarm::fetch`] asks the holders again and goes by what they say then. When no holder
    /// serves a manifest, `target` stays as it was.
    pub async fn settle(&self, target: &mut Target) {
        let quiet = |_: Event| {};
        let (mut failures, mut failed) = (Failures::default(), HashSet::new());
        // Nobody serving a manifest is the download's to find and report, source by source.
        if let Ok(claims) = holders::claims(self, target, &mut failures, &mut failed, &quiet).await
            && let Some(first) = claims.first()
        {
            target.size = first.manifest.size();
            target.pieces_root = first.start.root;
        }
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
    // A place among the process's downloads, and the reserve of free space, before anything is
    // asked or written; the room for the file itself is asked once a claim's manifest gives its
    // size (the tracker's size is the last announcement, which anyone could have made).
    let (room, d) = (Arc::clone(&swarm.room), dir.to_path_buf());
    let slot = tokio::task::spawn_blocking(move || room.admit(&d, &sha256, 0))
        .await
        .map_err(|e| other(dir, e))?
        .map_err(|r| swarm.refused(r))
        .map(Arc::new)?;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| other(dir, e))?;
    let lock = WriteLock::acquire(dir, &sha256)
        .await
        .map_err(|e| other(dir, e))?;
    let earlier = partial::done_path(dir, &sha256);
    if let Some(done) = finish::earlier_copy(earlier, sha256).await {
        report.event(Event::Verified {
            size: done.hashed.manifest.size(),
        });
        return Ok(done);
    }

    let mut failures = Failures::default();
    let mut failed = HashSet::new();
    let claims = holders::claims(swarm, target, &mut failures, &mut failed, report).await?;
    let claims = resolve(swarm, target, claims, &mut failures, &mut failed, report).await;
    let mut lock = Some(lock);
    let mut i = 0;
    while let Some(claim) = claims.get(i) {
        let lock = match lock.take() {
            Some(l) => l,
            None => WriteLock::acquire(dir, &sha256)
                .await
                .map_err(|e| other(dir, e))?,
        };
        let tried = attempt(
            swarm,
            target,
            dir,
            report,
            &slot,
            lock,
            claim,
            &mut failures,
            &failed,
        )
        .await?;
        match tried {
            Tried::Done(p) => return Ok(p),
            // No source could complete the file under this claim (a chain that is fake in the
            // middle stops at the piece where it meets the real one): the next claim is tried,
            // its pieces kept apart from this one's (the record of verified pieces is the
            // claim's, see `PartialWriter::open`).
            Tried::GaveUp(e) => {
                i += 1;
                match claims.get(i) {
                    Some(next) => {
                        tracing::warn!(file = %target.name, manifest_from = %claim.from, next_root = ?next.start.root, error = %e, "the claim did not complete; trying the next root its holders announced");
                    }
                    None => return Err(e),
                }
            }
        }
    }
    Err(failures.error(&target.name))
}

/// How one claim's download ended, when the next claim may still succeed.
enum Tried {
    Done(Fetched),
    /// Sources ran out before every piece verified; what verified is kept for a resume.
    GaveUp(crate::error::Error),
}

/// Downloads the file as `claim` describes it: its size and pieces, from its holders.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    swarm: &Swarm,
    target: &Target,
    dir: &Path,
    report: &dyn Report,
    slot: &Arc<Slot>,
    lock: WriteLock,
    claim: &Claim,
    failures: &mut Failures,
    failed: &HashSet<String>,
) -> Result<Tried> {
    let sha256 = target.sha256;
    let target = Target {
        size: claim.manifest.size(),
        pieces_root: claim.start.root,
        ..target.clone()
    };
    let manifest = Arc::clone(&claim.manifest);
    let (d, m) = (dir.to_path_buf(), Arc::clone(&manifest));
    // The data file takes its full size here: the room is asked for it now, with what other
    // downloads took meanwhile.
    let slot = Arc::clone(slot);
    let opened = tokio::task::spawn_blocking(move || {
        slot.grow(m.size(), || PartialWriter::open(&d, sha256, m, lock))
    })
    .await
    .map_err(|e| other(dir, e))?;
    let writer = match opened.map_err(|r| swarm.refused(r))? {
        Ok(w) => w,
        Err(ShareError::Io { path, source }) => {
            return Err(finish::local_failure(None, &path, &source).await);
        }
        Err(e) => return Err(e.into()),
    };
    let mut engine = Engine::new(
        swarm,
        &target,
        manifest,
        &writer,
        claim.start.clone(),
        failed.iter().cloned(),
        std::mem::take(failures),
        report,
    );
    let outcome = engine.run().await;
    *failures = engine.take_failures();
    // Cancels whatever still runs and takes the download out of the daemon's registry.
    drop(engine);
    match outcome {
        Outcome::Complete => finish::complete(writer, &target, dir, report)
            .await
            .map(Tried::Done),
        Outcome::Local(path, e) => Err(finish::local_failure(Some(writer), &path, &e).await),
        Outcome::GaveUp(e) => {
            finish::keep_for_resume(writer).await;
            Ok(Tried::GaveUp(e))
        }
    }
}
