//! The p2pshare tracker: which peers are alive (leases) and which files each one shares.

pub mod cli;
pub mod config;
pub mod metrics;
mod proto;
pub mod registry;
pub mod server;
pub mod service;
pub mod store;
