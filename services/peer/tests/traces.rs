//! One `get` is one trace across three processes: the CLI, the tracker and the serving peer,
//! collected by an in-process OTLP receiver.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

/// One span as received, with its resource's `service.name` and `service.instance.id`.
#[derive(Clone, Debug)]
struct Got {
    service: String,
    instance: String,
    span: Span,
}

impl Got {
    fn trace(&self) -> String {
        hex::encode(&self.span.trace_id)
    }
    fn is_root(&self) -> bool {
        self.span.parent_span_id.is_empty()
    }
    fn failed(&self) -> bool {
        self.span
            .status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32)
    }
    fn duration(&self) -> Duration {
        Duration::from_nanos(
            self.span
                .end_time_unix_nano
                .saturating_sub(self.span.start_time_unix_nano),
        )
    }
    /// Every attribute value of the span and of its events, as text.
    fn attribute_text(&self) -> String {
        let kvs = self
            .span
            .attributes
            .iter()
            .chain(self.span.events.iter().flat_map(|e| &e.attributes));
        kvs.map(|kv| format!("{}={:?}; ", kv.key, kv.value))
            .collect()
    }
}

fn string_attr(attrs: &[KeyValue], key: &str) -> String {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Every span received; `fail` answers each export with UNAVAILABLE (and counts the calls).
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Got>>>,
    exports: Arc<AtomicUsize>,
    fail: bool,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.exports.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(tonic::Status::unavailable("collector overloaded"));
        }
        let mut spans = self.spans.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            let attrs = rs.resource.map(|r| r.attributes).unwrap_or_default();
            let service = string_attr(&attrs, "service.name");
            let instance = string_attr(&attrs, "service.instance.id");
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(Got {
                        service: service.clone(),
                        instance: instance.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    fn all(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits (up to 30 s) until `pick` finds something in what was received.
    fn wait_for<T>(&self, what: &str, mut pick: impl FnMut(&[Got]) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = pick(&self.all()) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not received; got {:#?}",
                self.all()
                    .iter()
                    .map(|g| (&g.service, &g.span.name, g.trace()))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Starts `receiver` on a loopback port; returns its URL.
fn start_collector(rt: &tokio::runtime::Runtime, receiver: Receiver) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = tonic::service::Routes::new(TraceServiceServer::new(receiver)).into_axum_router();
    rt.spawn(async move { axum::serve(listener, app).await });
    url
}

/// A tracker and a peer sharing `traced.bin` (200 kB) and `big.bin` (32 MiB), both exporting
/// to `collector`.
struct Net {
    tmp: tempfile::TempDir,
    tracker: Proc,
    peer: Proc,
    content: Vec<u8>,
}

fn start_net(collector: &str) -> Net {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let content = bytes(200_000, 11);
    std::fs::write(share.join("traced.bin"), &content).unwrap();
    std::fs::write(share.join("big.bin"), bytes(32 << 20, 12)).unwrap();
    let env = [
        ("P2P_TELEMETRY__OTLP_ENDPOINT", collector.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ];
    let tracker_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let tracker = spawn_tracker_with(tmp.path(), 0, "10s", &tracker_env);
    let turl = tracker.url();
    let peer = spawn_peer(
        tmp.path(),
        PeerOpts {
            id: "traced",
            files_dir: &share,
            tracker: &turl,
            heartbeat: "1s",
            env: env.to_vec(),
        },
    );
    wait_ready(&peer);
    Net {
        tmp,
        tracker,
        peer,
        content,
    }
}

fn cli_traced(collector: &str, tracker: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(peer_bin())
        .arg("--tracker")
        .arg(tracker)
        .args(args)
        .env_remove("P2P_CONFIG")
        .env("P2P_TELEMETRY__OTLP_ENDPOINT", collector)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn one_get_is_one_trace_across_three_processes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = Receiver::default();
    let collector = start_collector(&rt, receiver.clone());
    let net = start_net(&collector);
    let turl = net.tracker.url();

    let dest = net.tmp.path().join("out.bin");
    let out = cli_traced(
        &collector,
        &turl,
        &["get", "traced.bin", "-o", dest.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&dest).unwrap(), net.content);

    // The CLI flushed its spans on exit; the services export within their batch delay, and a
    // peer's spans of one get may come in more than one batch: wait for the ones checked below.
    let trace = receiver.wait_for("a trace over all three services", |spans| {
        spans
            .iter()
            .filter(|g| g.service == "p2p-cli" && g.span.name == "get" && g.is_root())
            .map(Got::trace)
            .find(|t| {
                let names: BTreeSet<(&str, &str)> = spans
                    .iter()
                    .filter(|g| &g.trace() == t)
                    .map(|g| (g.service.as_str(), g.span.name.as_str()))
                    .collect();
                names.contains(&("p2p-tracker", "TrackerService/Search"))
                    && names.contains(&("p2p-peer", "GET /blobs/{sha256}/pieces/{index}"))
            })
    });
    let spans: Vec<Got> = receiver
        .all()
        .into_iter()
        .filter(|g| g.trace() == trace)
        .collect();
    let find = |service: &str, name: &str| {
        spans
            .iter()
            .find(|g| g.service == service && g.span.name == name)
            .unwrap_or_else(|| panic!("no {service} span {name:?} in {spans:#?}"))
    };
    // The tracker call has a client span, parent of the tracker's server span.
    let client = find("p2p-cli", "TrackerService/Search");
    assert_eq!(client.span.kind, SpanKind::Client as i32);
    let server = find("p2p-tracker", "TrackerService/Search");
    assert_eq!(server.span.kind, SpanKind::Server as i32);
    assert_eq!(server.span.parent_span_id, client.span.span_id);
    let served = find("p2p-peer", "GET /blobs/{sha256}/pieces/{index}");
    assert!(!served.failed());
    // Replicas are told apart: the peer by its id, the tracker and the CLI by their host.
    assert_eq!(served.instance, "traced");
    assert!(!server.instance.is_empty() && !client.instance.is_empty());
    // File names stay out of attributes.
    for g in &spans {
        assert!(!g.attribute_text().contains("traced.bin"), "{g:#?}");
    }
}

#[test]
fn the_serving_span_lasts_until_the_body_is_sent() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = Receiver::default();
    let collector = start_collector(&rt, receiver.clone());
    let net = start_net(&collector);

    // A slow reader: 32 MiB cannot all sit in loopback socket buffers, so the body is still
    // being sent after the pause.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut conn =
        std::net::TcpStream::connect(net.peer.url().trim_start_matches("http://")).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        conn,
        "GET /files/big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         traceparent: 00-{trace_id}-00f067aa0ba902b7-01\r\n\r\n"
    )
    .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = conn.read(&mut buf).unwrap();
    assert!(n > 0);
    let pause = Duration::from_millis(800);
    std::thread::sleep(pause);
    let mut total = n;
    loop {
        match conn.read(&mut buf).unwrap() {
            0 => break,
            k => total += k,
        }
    }
    assert!(total > 32 << 20, "read {total} bytes");

    let span = receiver.wait_for("the GET span of the slow read", |spans| {
        spans
            .iter()
            .find(|g| g.trace() == trace_id && g.span.name == "GET /files/{name}")
            .cloned()
    });
    assert!(
        span.duration() >= pause,
        "span ended {:?} after it started, before the body was read",
        span.duration()
    );
}

#[test]
fn failures_and_the_daemons_own_calls_are_traced() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = Receiver::default();
    let collector = start_collector(&rt, receiver.clone());
    let net = start_net(&collector);
    let turl = net.tracker.url();

    // A failed command: its root span says so.
    let out = cli_traced(&collector, &turl, &["get", "no-such-file.bin"]);
    assert!(!out.status.success());
    let failed = receiver.wait_for("the failed get", |spans| {
        spans
            .iter()
            .find(|g| g.service == "p2p-cli" && g.span.name == "get")
            .cloned()
    });
    assert!(failed.failed(), "{failed:#?}");

    // An upload: the peer's event carries no file name.
    let up = net.tmp.path().join("secret-upload-name.txt");
    std::fs::write(&up, b"hello").unwrap();
    let peer_addr = net.peer.url().trim_start_matches("http://").to_owned();
    let out = cli_traced(
        &collector,
        &turl,
        &["put", up.to_str().unwrap(), "--peer", &peer_addr],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let upload = receiver.wait_for("the upload span", |spans| {
        spans
            .iter()
            .find(|g| g.service == "p2p-peer" && g.span.name == "POST /upload")
            .cloned()
    });
    assert!(
        upload.span.events.iter().any(|e| e.name == "upload"),
        "{upload:#?}"
    );
    assert!(
        !upload.attribute_text().contains("secret-upload-name"),
        "{upload:#?}"
    );

    // The daemon's registration and heartbeats are traces of their own, named, with the
    // client span under them and the tracker's span under that.
    for (root, rpc) in [
        ("register", "TrackerService/Register"),
        ("heartbeat", "TrackerService/Heartbeat"),
    ] {
        receiver.wait_for(root, |spans| {
            let r = spans
                .iter()
                .find(|g| g.service == "p2p-peer" && g.span.name == root && g.is_root())?;
            let client = spans.iter().find(|g| {
                g.service == "p2p-peer"
                    && g.span.name == rpc
                    && g.span.parent_span_id == r.span.span_id
            })?;
            spans
                .iter()
                .find(|g| {
                    g.service == "p2p-tracker"
                        && g.span.name == rpc
                        && g.span.parent_span_id == client.span.span_id
                })
                .map(|_| ())
        });
    }
    // No span of the peer daemon starts a trace unless it is one of the named roots or a
    // request from outside.
    for g in receiver.all() {
        if g.service == "p2p-peer" && g.is_root() {
            let name = g.span.name.as_str();
            assert!(
                ["register", "heartbeat", "announce", "leave"].contains(&name)
                    || name.starts_with("GET ")
                    || name.starts_with("POST "),
                "parentless peer span {name:?}"
            );
        }
    }
}

#[test]
fn a_cli_command_tries_a_failing_collector_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let failing = Receiver {
        fail: true,
        ..Receiver::default()
    };
    let collector = start_collector(&rt, failing.clone());
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("x.txt"), b"x").unwrap();
    let tracker = spawn_tracker(tmp.path(), 0, "10s");
    let turl = tracker.url();
    let peer = spawn_peer(
        tmp.path(),
        PeerOpts {
            id: "p",
            files_dir: &share,
            tracker: &turl,
            heartbeat: "1s",
            env: vec![],
        },
    );
    wait_ready(&peer);
    // Only the flush at exit exports (no timed batch in between, however slow the machine).
    let out = std::process::Command::new(peer_bin())
        .args(["--tracker", &turl, "search", "x.txt"])
        .env_remove("P2P_CONFIG")
        .env("P2P_TELEMETRY__OTLP_ENDPOINT", &collector)
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Retried exports (4 attempts, 0.7-0.9 s of backoff) held every command; one attempt is
    // made, then the command exits.
    assert_eq!(failing.exports.load(Ordering::SeqCst), 1);
}

#[test]
fn an_unreachable_collector_blocks_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("x.txt"), b"x").unwrap();
    // Nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let tracker = spawn_tracker_with(
        tmp.path(),
        0,
        "10s",
        &[("P2P_TELEMETRY__OTLP_ENDPOINT", &dead)],
    );
    let turl = tracker.url();
    let peer = spawn_peer(
        tmp.path(),
        PeerOpts {
            id: "p",
            files_dir: &share,
            tracker: &turl,
            heartbeat: "1s",
            env: vec![("P2P_TELEMETRY__OTLP_ENDPOINT", dead.clone())],
        },
    );
    wait_ready(&peer);
    let started = Instant::now();
    let out = std::process::Command::new(peer_bin())
        .args(["--tracker", &turl, "search", "x.txt"])
        .env("P2P_TELEMETRY__OTLP_ENDPOINT", &dead)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_menus_get_is_a_trace_of_its_own() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = Receiver::default();
    let collector = start_collector(&rt, receiver.clone());
    let net = start_net(&collector);
    let dir = net.tmp.path().join("menu_files");
    std::fs::create_dir_all(&dir).unwrap();

    // A serving peer with its menu, in this process (the binary shows the menu only on a
    // terminal), exporting its own spans.
    let telemetry = p2p_common::telemetry::init(
        &p2p_common::config::TelemetryConfig {
            otlp_endpoint: collector.clone(),
            ..Default::default()
        },
        &p2p_common::telemetry::Service::daemon("p2p-peer", "menu_peer"),
        "warn",
    );
    let mut cfg = p2p_peer::config::PeerConfig::default();
    cfg.peer.id = "menu_peer".into();
    cfg.peer.listen = "127.0.0.1:0".parse().unwrap();
    cfg.peer.files_dir = dir.clone();
    cfg.tracker.endpoint = net.tracker.url();
    let running = rt.block_on(p2p_peer::server::start(cfg.clone())).unwrap();
    let ctx = p2p_peer::menu::Context::serving(&cfg, &running);
    let mut out = Vec::new();
    rt.block_on(p2p_peer::menu::run(
        ctx,
        &b"2\ntraced.bin\n4\n"[..],
        &mut out,
    ))
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("Downloaded traced.bin"), "{out}");
    assert_eq!(std::fs::read(dir.join("traced.bin")).unwrap(), net.content);
    rt.block_on(running.wait()).unwrap();
    rt.block_on(telemetry.shutdown());

    receiver.wait_for("a `menu get` trace reaching the tracker", |spans| {
        let root = spans.iter().find(|g| {
            g.service == "p2p-peer"
                && g.instance == "menu_peer"
                && g.span.name == "menu get"
                && g.is_root()
        })?;
        spans
            .iter()
            .find(|g| {
                g.service == "p2p-tracker"
                    && g.span.name == "TrackerService/Search"
                    && g.trace() == root.trace()
            })
            .map(|_| ())
    });
}
