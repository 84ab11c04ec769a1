//! The p2pshare peer: serves a share directory over HTTP, keeps itself registered with the
//! tracker, and the client commands (search, ls, get, put, leave, menu).

pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod error;
pub mod http;
pub mod membership;
pub mod memory;
pub mod menu;
pub mod metrics;
pub mod net;
pub mod range;
pub mod readiness;
pub mod server;
pub mod share;
pub mod store;
pub mod swarm;
pub mod tracker;
pub mod transfer;
pub mod wire;
