//! Plumbing shared by the tracker and the peer: the generated tracker API, the naming rules both
//! sides enforce, layered config loading, logging and shutdown signals.

pub mod auth;
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

/// A tracker API client that traces each call (a client span) and carries its context.
pub type TrackerClient = proto::tracker_service_client::TrackerServiceClient<
    telemetry::ClientSpan<
        tonic::service::interceptor::InterceptedService<
            failover::FailoverChannel,
            telemetry::InjectContext,
        >,
    >,
>;

/// A tracker client over `channel` (one or several trackers) that sends `token` (when
/// authentication is on).
pub fn tracker_client(
    channel: failover::FailoverChannel,
    token: Option<&auth::Tokens>,
) -> TrackerClient {
    proto::tracker_service_client::TrackerServiceClient::new(telemetry::ClientSpan(
        tonic::service::interceptor::InterceptedService::new(
            channel,
            telemetry::InjectContext::new(token.map(auth::Tokens::outgoing)),
        ),
    ))
}

/// Version of this build, reported by `--version` and in metrics.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
