//! Downloading one file from many holders at once.
//!
//! Rooms, each importing only those listed after it: `download` (one download start to end)
//! → `resolve` (claims decided by the file's own bytes) → `engine` (the event loop, all I/O)
//! → `holders` (who to ask, the root, the manifest, failures) and `finish` (keep, keep for a
//! resume, or discard) → `plan` (the pure core: sources and requests) → `picker` (which piece
//! next, pure); `source` does the HTTP asks and `target` holds what a download is given.

mod download;
mod engine;
mod finish;
mod holders;
mod picker;
mod plan;
mod resolve;
mod source;
mod target;

pub use finish::Fetched;
pub(crate) use target::Logged;
pub use target::{Report, Swarm, Target};

/// The pure scheduling core and the engine's cadence, public for the simulator
/// (`services/sim`), which drives this code over a simulated network.
pub mod core {
    pub use super::engine::{BLOCK, EARLY, HOLDERS_EARLY_EVERY, HOLDERS_EVERY, TICK};
    pub use super::picker::SourceId;
    pub use super::plan::{Ask, Checked, Fetched, Geometry, Meter, Next, Plan, Source, Tuning};
}
