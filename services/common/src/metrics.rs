//! Prometheus plumbing shared by both services: one registry per server with `p2p_build_info`
//! and the process metrics, and the text exposition.

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

/// A registry holding `p2p_build_info{service,version}` and `process_*`.
pub fn registry(service: &str) -> Registry {
    let reg = Registry::new();
    let info = IntGaugeVec::new(
        Opts::new("p2p_build_info", "Build of the running binary (always 1)."),
        &["service", "version"],
    )
    .expect("static metric definition");
    info.with_label_values(&[service, crate::VERSION]).set(1);
    register(&reg, info);
    #[cfg(target_os = "linux")]
    if let Err(e) = reg.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    )) {
        tracing::error!(error = %e, "process metrics registration failed");
    }
    reg
}

/// Registers a collector whose definition is fixed in code; a clash is a programming error
/// caught by every test that builds a server, so it is logged rather than propagated.
pub fn register<C: prometheus::core::Collector + Clone + 'static>(reg: &Registry, c: C) -> C {
    if let Err(e) = reg.register(Box::new(c.clone())) {
        tracing::error!(error = %e, "metric registration failed");
    }
    c
}

/// Prometheus text format of everything in `reg`.
pub fn encode(reg: &Registry) -> String {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&reg.gather(), &mut buf) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
