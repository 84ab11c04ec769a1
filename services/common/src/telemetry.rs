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
use opentelemetry_otlp::{RetryPolicy, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer, fmt};

use crate::config::{LogFormat, TelemetryConfig};

/// Who is exporting: the resource every span carries, and how long the process lives.
#[derive(Debug, Clone)]
pub struct Service {
    /// `service.name`, e.g. "p2p-tracker".
    pub name: &'static str,
    /// `service.instance.id`: tells replicas of one service apart (peer id, pod or host name).
    pub instance: String,
    /// A short-lived CLI command: one export attempt, and exit does not wait long on the
    /// collector (a retried export against a dead collector added most of a second to every
    /// command).
    pub command: bool,
}

impl Service {
    /// A long-running server.
    pub fn daemon(name: &'static str, instance: impl Into<String>) -> Self {
        Self {
            name,
            instance: instance.into(),
            command: false,
        }
    }

    /// A one-shot CLI command, identified by the host it runs on.
    pub fn command(name: &'static str) -> Self {
        Self {
            name,
            instance: host_name(),
            command: true,
        }
    }
}

/// This machine's name (the pod name in Kubernetes), for `service.instance.id`.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// How long exit waits for the last spans: a daemon may wait out a slow collector, a CLI
/// command must not keep its user waiting.
const DAEMON_FLUSH: Duration = Duration::from_secs(5);
const COMMAND_FLUSH: Duration = Duration::from_secs(1);

/// Keeps the trace pipeline alive; [`Telemetry::shutdown`] flushes it.
#[must_use = "dropping it without shutdown loses the last spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    flush: Duration,
}

impl Telemetry {
    /// Flushes pending spans, waiting at most the bound for this kind of process (an
    /// unreachable collector must not hold the process).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let bound = self.flush;
        let flush = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(bound));
        if tokio::time::timeout(bound, flush).await.is_err() {
            eprintln!("telemetry: span export did not finish in {bound:?}; dropping the rest");
        }
    }
}

/// Installs the global subscriber for `service`. `default_filter` is the log filter when
/// neither `RUST_LOG` nor a non-default `telemetry.log_level` says otherwise.
pub fn init(cfg: &TelemetryConfig, service: &Service, default_filter: &str) -> Telemetry {
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
        // Colour codes only for a terminal: text logs written to a file or a pipe stay plain
        // (and NO_COLOR, https://no-color.org, turns them off on a terminal too).
        fmt::layer()
            .with_ansi(colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
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
            .with_tracer(p.tracer(service.name))
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
    Telemetry {
        provider,
        flush: if service.command {
            COMMAND_FLUSH
        } else {
            DAEMON_FLUSH
        },
    }
}

fn provider(cfg: &TelemetryConfig, service: &Service) -> Result<SdkTracerProvider, String> {
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
        let retry = if service.command {
            RetryPolicy::disabled()
        } else {
            RetryPolicy::recommended()
        };
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(cfg.otlp_endpoint.clone())
            .with_timeout(Duration::from_secs(3))
            .with_retry_policy(retry)
            .build()
            .map_err(|e| format!("bad OTLP endpoint {:?}: {e}", cfg.otlp_endpoint))?
    };
    let resource = Resource::builder()
        .with_service_name(service.name)
        .with_attributes([
            KeyValue::new("service.version", crate::VERSION),
            KeyValue::new("service.instance.id", service.instance.clone()),
        ])
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

/// Wraps a gRPC client so that every call gets a client span (child of the current span, or
/// the root of a trace of its own), whose context the inner [`InjectContext`] sends along.
/// The span ends with the response head; a failed call or a non-OK status marks it an error.
#[derive(Clone, Debug)]
pub struct ClientSpan<S>(pub S);

impl<S, B, RB> tower::Service<http::Request<B>> for ClientSpan<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // "/p2pshare.tracker.v1.TrackerService/Search" -> "TrackerService", "Search".
        let (service, method) = req
            .uri()
            .path()
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("", ""));
        let service = service.rsplit('.').next().unwrap_or(service);
        let span = tracing::info_span!(
            "rpc client",
            otel.name = %format!("{service}/{method}"),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        // Entered while the inner service runs its interceptor, which sends this span's context.
        let fut = span.in_scope(|| self.0.call(req));
        Box::pin(
            async move {
                let result = fut.await;
                let span = tracing::Span::current();
                match &result {
                    // Errors come trailers-only, with the status in the head; an OK answer
                    // puts it in the trailers.
                    Ok(resp) => {
                        let code = resp
                            .headers()
                            .get("grpc-status")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<i32>().ok())
                            .unwrap_or(0);
                        span.record("rpc.grpc.status_code", code);
                        if code != 0 {
                            mark_error(&span, format!("{:?}", tonic::Code::from_i32(code)));
                        }
                    }
                    Err(e) => {
                        mark_error(&span, "transport error");
                        tracing::debug!(error = %e, "gRPC call failed");
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

/// Marks `span` as failed (OpenTelemetry status ERROR). `why` is a short fixed description:
/// never a message that may hold a file name.
pub fn mark_error(span: &tracing::Span, why: impl Into<std::borrow::Cow<'static, str>>) {
    span.set_status(opentelemetry::trace::Status::error(why));
}

/// Runs `fut` in `span`; an `Err` marks the span failed.
pub async fn traced<T, E>(
    span: tracing::Span,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let result = fut.instrument(span.clone()).await;
    if result.is_err() {
        mark_error(&span, "failed");
    }
    result
}

/// Records a served RPC's outcome on its span (field `rpc.grpc.status_code`, and the status):
/// only codes that mean the server failed are errors (OpenTelemetry's gRPC
/// conventions); NotFound or InvalidArgument are answers, not failures.
pub fn record_grpc_server_status(span: &tracing::Span, code: tonic::Code) {
    use tonic::Code;
    span.record("rpc.grpc.status_code", code as i32);
    if matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    ) {
        mark_error(span, format!("{code:?}"));
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

/// Whether text logs carry colour codes: on a terminal, unless `NO_COLOR` is set (to anything
/// but the empty string).
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod colour_tests {
    #[test]
    fn text_logs_are_coloured_only_on_a_terminal() {
        use std::ffi::OsStr;
        assert!(super::colour(true, None));
        assert!(super::colour(true, Some(OsStr::new(""))));
        assert!(!super::colour(false, None));
        assert!(!super::colour(true, Some(OsStr::new("1"))));
    }
}
