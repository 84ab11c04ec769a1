//! One `get` is one trace across three processes: the CLI, the tracker and the serving peer,
//! collected by an in-process OTLP receiver.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

/// (service.name, trace id, span name) of every span received.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<(String, String, String)>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push((service.clone(), hex::encode(&span.trace_id), span.name));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[test]
fn one_get_is_one_trace_across_three_processes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = Receiver::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    let app =
        tonic::service::Routes::new(TraceServiceServer::new(receiver.clone())).into_axum_router();
    rt.spawn(async move { axum::serve(listener, app).await });

    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let content = bytes(200_000, 11);
    std::fs::write(share.join("traced.bin"), &content).unwrap();

    let otel = |service_env: &mut Vec<(&str, String)>| {
        service_env.push(("P2P_TELEMETRY__OTLP_ENDPOINT", collector.clone()));
        service_env.push(("OTEL_BSP_SCHEDULE_DELAY", "100".into()));
    };
    let mut tracker_env = Vec::new();
    otel(&mut tracker_env);
    let tracker_env: Vec<(&str, &str)> =
        tracker_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let tracker = spawn_tracker_with(tmp.path(), 0, "10s", &tracker_env);
    let turl = tracker.url();
    let mut peer_env = Vec::new();
    otel(&mut peer_env);
    let peer = spawn_peer(
        tmp.path(),
        PeerOpts {
            id: "traced",
            files_dir: &share,
            tracker: &turl,
            heartbeat: "1s",
            env: peer_env,
        },
    );
    wait_ready(&peer);

    let dest = tmp.path().join("out.bin");
    let out = std::process::Command::new(peer_bin())
        .args([
            "--tracker",
            &turl,
            "get",
            "traced.bin",
            "-o",
            dest.to_str().unwrap(),
        ])
        .env("P2P_TELEMETRY__OTLP_ENDPOINT", &collector)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&dest).unwrap(), content);

    // The CLI flushed its spans on exit; the services export within their batch delay.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (trace, names) = loop {
        let spans = receiver.0.lock().unwrap().clone();
        let mut by_trace: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
        for (service, trace, name) in spans {
            by_trace.entry(trace).or_default().insert((service, name));
        }
        let found = by_trace.into_iter().find(|(_, s)| {
            let services: BTreeSet<&str> = s.iter().map(|(svc, _)| svc.as_str()).collect();
            services.contains("p2p-cli")
                && services.contains("p2p-tracker")
                && services.contains("p2p-peer")
        });
        if let Some(f) = found {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "no trace spans all three services; got {:?}",
            receiver.0.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("trace {trace}: {names:?}");
    assert!(
        names.contains(&("p2p-cli".into(), "get".into())),
        "{names:?}"
    );
    assert!(
        names.contains(&("p2p-tracker".into(), "TrackerService/Search".into())),
        "{names:?}"
    );
    assert!(
        names.contains(&("p2p-peer".into(), "GET /files/{name}".into())),
        "{names:?}"
    );
    drop(peer);
    drop(tracker);
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
