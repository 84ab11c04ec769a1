//! Plumbing shared by the tracker and the peer: the generated tracker API, the naming rules both
//! sides enforce, layered config loading, logging and shutdown signals.

pub mod config;
pub mod health;
pub mod metrics;
pub mod names;
pub mod shutdown;
pub mod telemetry;

/// The tracker API (`proto/p2pshare/tracker/v1/tracker.proto`).
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("p2pshare.tracker.v1");
}

/// Version of this build, reported by `--version` and in metrics.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
