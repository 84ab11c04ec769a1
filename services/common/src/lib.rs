//! Plumbing shared by the tracker and the peer: the generated tracker API, the naming rules both
//! sides enforce, layered config loading, logging and shutdown signals.

pub mod address;
pub mod auth;
mod client;
pub mod config;
pub mod digest;
pub mod failover;
pub mod health;
pub mod metrics;
pub mod names;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

pub use digest::Digest;

/// The tracker API (`proto/p2pshare/tracker/v1/tracker.proto`).
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("p2pshare.tracker.v1");
}

pub use client::{TrackerClient, tracker_client};

/// Version of this build, reported by `--version` and in metrics.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
