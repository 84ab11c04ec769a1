//! The p2pshare peer: serves a share directory over HTTP, keeps itself registered with the
//! tracker, and the client commands (search, ls, get, put, leave, menu).
#![warn(unreachable_pub)]

pub mod app;
pub(crate) mod buffers;
pub mod cli;
pub mod client;
pub mod config;
pub(crate) mod daemon;
pub mod error;
pub(crate) mod http;
pub(crate) mod membership;
pub mod memory;
pub mod menu;
pub mod metrics;
pub mod net;
pub mod range;
pub(crate) mod readiness;
pub mod server;
pub mod serving;
pub mod share;
pub mod store;
pub mod swarm;
pub mod tracker;
pub mod transfer;
pub mod wire;
