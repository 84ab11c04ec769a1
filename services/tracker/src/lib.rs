//! The p2pshare tracker: which peers are alive (leases) and which files each one shares.

pub mod cli;
pub mod config;
mod metrics;
mod paging;
mod peer_list;
mod proto;
pub mod quota;
mod registry;
pub mod server;
mod service;
mod store;

/// How a holders answer mixes complete and partial holders, public for the simulator
/// (`services/sim`).
pub use store::answer_mix;
