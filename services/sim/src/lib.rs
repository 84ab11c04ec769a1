//! p2p-sim: the peer's real download scheduling (`p2p_peer::swarm::core`: the plan, the
//! picker, bitfields) and its serving policies (`p2p_peer::serving`: super-seeding, upload
//! slots and the choker's order) driven over a simulated network of many hosts, with the
//! tracker's holder sampling (`p2p_tracker::answer_mix`). Time is simulated and every random
//! choice comes from one seeded generator: a run with the same settings and seed gives the
//! same result.
//!
//! Rooms: `config` (what a run is given) → `world` (hosts, requests, the event loop and the
//! network step) with `fetch` (the downloader's side, around its plan) and `serve` (the
//! holder's side, state in `holder`) → `tracker` (holder sampling) and `net` (max-min fair
//! sharing); `queue` holds the events in time order; `summary` is what a run reports.

mod config;
mod error;
mod fetch;
mod holder;
mod net;
mod queue;
mod serve;
mod summary;
mod tracker;
mod world;

pub use config::{Config, Scenario};
pub use error::SimError;
pub use summary::{Summary, Trace};

/// Runs one simulation.
pub fn run(config: &Config) -> Result<(Summary, Trace), SimError> {
    config.check()?;
    let started = std::time::Instant::now();
    let mut world = world::World::new(config);
    world.run();
    Ok(world.summary(started.elapsed()))
}
