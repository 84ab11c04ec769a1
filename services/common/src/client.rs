//! The tracker API client both services' callers build (the peer, the CLI, tests).

use crate::{auth, failover, proto, telemetry};

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
