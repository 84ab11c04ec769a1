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
    if let Err(e) = reg.register(Box::new(process::ProcessMetrics::new())) {
        tracing::error!(error = %e, "process metrics registration failed");
    }
    reg
}

/// Latency buckets (seconds) shared by the RPC and HTTP histograms: loopback RPCs take 30-50 µs
/// and HTTP routes well under 0.5 ms, so the low end must resolve tens of microseconds; the top
/// catches a slow store or disk.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[cfg(target_os = "linux")]
mod process {
    use prometheus::core::{Collector, Desc};
    use prometheus::proto::MetricFamily;
    use prometheus::{Counter, process_collector::ProcessCollector};

    const CPU: &str = "process_cpu_seconds_total";

    /// The prometheus crate's `process_*` metrics, except that CPU time keeps its fraction: the
    /// crate truncates it to whole seconds, so a quiet process reads 0 for ever.
    pub struct ProcessMetrics {
        inner: ProcessCollector,
        cpu: Counter,
    }

    impl ProcessMetrics {
        pub fn new() -> Self {
            Self {
                inner: ProcessCollector::for_self(),
                cpu: Counter::new(CPU, "Total user and system CPU time spent in seconds.")
                    .expect("static metric definition"),
            }
        }
    }

    /// User plus system CPU time of this process, in seconds (clock-tick resolution).
    pub fn cpu_seconds() -> Option<f64> {
        let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
        Some((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
    }

    impl Collector for ProcessMetrics {
        fn desc(&self) -> Vec<&Desc> {
            // The inner collector already describes `process_cpu_seconds_total`.
            self.inner.desc()
        }

        fn collect(&self) -> Vec<MetricFamily> {
            let mut families: Vec<MetricFamily> = self
                .inner
                .collect()
                .into_iter()
                .filter(|f| f.name() != CPU)
                .collect();
            if let Some(total) = cpu_seconds() {
                // Two scrapes at once may both add; the counter only ever moves up.
                let delta = total - self.cpu.get();
                if delta > 0.0 {
                    self.cpu.inc_by(delta);
                }
                families.extend(self.cpu.collect());
            }
            families
        }
    }
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
