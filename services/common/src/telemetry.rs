//! Logs and traces shared by every binary.
//!
//! Logs: text on a terminal, JSON when configured (`auto`: JSON when stderr is not a terminal).
//! Traces: exported over OTLP/gRPC only when `telemetry.otlp_endpoint` is set, sampled by
//! `telemetry.sampling_ratio` (parent-based, so one `get` is kept or dropped as a whole), with
//! W3C trace context carried in gRPC metadata and HTTP headers (see [`inject_grpc`],
//! [`inject_http`], [`extract`]).

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer, fmt};

use crate::config::{LogFormat, TelemetryConfig};

/// Keeps the trace pipeline alive; [`Telemetry::shutdown`] flushes it.
#[must_use = "dropping it without shutdown loses the last spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes pending spans, waiting at most a few seconds (an unreachable collector must not
    /// hold the process).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let flush = tokio::task::spawn_blocking(move || provider.shutdown());
        if tokio::time::timeout(Duration::from_secs(5), flush)
            .await
            .is_err()
        {
            eprintln!("telemetry: span export did not finish in 5 s; dropping the rest");
        }
    }
}

/// Installs the global subscriber for `service` (e.g. "p2p-tracker"). `default_filter` is the
/// log filter when neither `RUST_LOG` nor a non-default `telemetry.log_level` says otherwise.
pub fn init(cfg: &TelemetryConfig, service: &str, default_filter: &str) -> Telemetry {
    let level = if cfg.log_level == TelemetryConfig::default().log_level {
        default_filter
    } else {
        cfg.log_level.as_str()
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match cfg.log_format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let fmt_layer = if json {
        fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    };

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = if cfg.otlp_endpoint.is_empty() {
        None
    } else {
        match provider(cfg, service) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("telemetry: trace export disabled: {e}");
                None
            }
        }
    };
    // Spans of our own crates at INFO and above, whatever the log filter says.
    let otel_layer = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service.to_owned()))
            .with_filter(
                Targets::new()
                    .with_target("p2p_tracker", LevelFilter::INFO)
                    .with_target("p2p_peer", LevelFilter::INFO)
                    .with_target("p2p_common", LevelFilter::INFO),
            )
    });
    // A second init (tests start several servers in one process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init();
    Telemetry { provider }
}

fn provider(cfg: &TelemetryConfig, service: &str) -> Result<SdkTracerProvider, String> {
    // The batch processor exports from its own OS thread; tonic needs a Tokio reactor there, so
    // the exporter owns a small runtime of its own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the export runtime: {e}"))?;
    let exporter = {
        let _guard = runtime.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(cfg.otlp_endpoint.clone())
            .with_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| format!("bad OTLP endpoint {:?}: {e}", cfg.otlp_endpoint))?
    };
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .with_attributes([KeyValue::new("service.version", crate::VERSION)])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(OnRuntime { exporter, runtime })
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.sampling_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// An exporter driven on its own runtime, callable from any thread.
struct OnRuntime {
    exporter: opentelemetry_otlp::SpanExporter,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for OnRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnRuntime").finish_non_exhaustive()
    }
}

impl SpanExporter for OnRuntime {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let result = self.runtime.block_on(self.exporter.export(batch));
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.exporter.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.exporter.set_resource(resource);
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// gRPC client interceptor: puts the current span's context, and the bearer token when there
/// is one, into the request metadata.
#[derive(Clone, Default)]
pub struct InjectContext {
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl InjectContext {
    pub fn new(token: Option<&str>) -> Self {
        Self {
            authorization: token.and_then(|t| format!("Bearer {t}").parse().ok()),
        }
    }
}

impl tonic::service::Interceptor for InjectContext {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.authorization {
            req.metadata_mut().insert("authorization", v.clone());
        }
        let cx = tracing::Span::current().context();
        TraceContextPropagator::new()
            .inject_context(&cx, &mut MetadataInjector(req.metadata_mut()));
        Ok(req)
    }
}

/// The current span's context as HTTP headers (`traceparent`, `tracestate`).
pub fn inject_http() -> Vec<(String, String)> {
    struct Pairs(Vec<(String, String)>);
    impl Injector for Pairs {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_owned(), value));
        }
    }
    let mut pairs = Pairs(Vec::new());
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut pairs);
    pairs.0
}

/// Reads a remote parent from request headers (HTTP headers or gRPC metadata).
pub fn extract(headers: &http::HeaderMap) -> Context {
    struct Headers<'a>(&'a http::HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    TraceContextPropagator::new().extract(&Headers(headers))
}

/// Makes `span` a child of the remote context in `headers`, if there is one.
pub fn set_remote_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    let cx = extract(headers);
    // Without a valid remote parent the span stays a root of its own trace.
    let _ = span.set_parent(cx);
}
