//! Downloading one file from many holders at once: the piece picker, the sources, the download
//! loop.

pub mod download;
pub mod picker;
pub mod source;
mod target;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use target::{Logged, Report, Target};

use crate::error::Result;
use crate::net::Net;
use crate::share::partial::Partials;
use crate::transfer::Limits;

/// Everything a download needs from its process. The CLI, the menu and the daemon build one
/// each and call [`Swarm::fetch`]; nothing else starts a download.
#[derive(Clone)]
pub struct Swarm {
    pub net: Net,
    /// Holders are refreshed from the tracker by digest while a download runs.
    pub tracker: Option<crate::tracker::Tracker>,
    /// The process's transfer limits (one bucket per direction, shared by all transfers).
    pub limits: Limits,
    /// Holders one download uses at once (`transfer.max_sources`).
    pub max_sources: usize,
    /// A source that sends nothing for this long loses its piece to another.
    pub io_timeout: Duration,
    /// The daemon's registry of downloads in progress: set, its verified pieces are served and
    /// announced while it downloads. `None` for the CLI, which serves nothing.
    pub partials: Option<Arc<Partials>>,
    pub metrics: Option<crate::metrics::Metrics>,
    /// An address never to fetch from (this peer's own).
    pub skip: Option<String>,
}

impl Swarm {
    /// A verified copy of `target` at the returned path inside `partial_dir`, ready to publish.
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
    ) -> Result<PathBuf> {
        download::run(self, target, partial_dir, report).await
    }
}
