//! Clients believe only the answer they asked for: a tracker (or any other server) behind a
//! `--peer` address is no upload or leave, unknown HTTP paths on the tracker are 404, and TLS
//! failures reach the user with their cause.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use p2p_common::tls::TlsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn tracker(tls: TlsConfig) -> p2p_tracker::server::Running {
    let mut cfg = p2p_tracker::config::TrackerConfig::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.tls = tls;
    p2p_tracker::server::start(cfg).await.unwrap()
}

/// Runs the CLI with `env` (and nothing from the caller's P2P_ settings); (code, stdout, stderr).
async fn run_cli(args: Vec<String>, env: Vec<(String, String)>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(common::peer_bin());
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("P2P_")) {
            cmd.env_remove(k);
        }
        let out = cmd
            .args(&args)
            .envs(env)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_leave_aimed_at_the_tracker_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("photo.jpg");
    std::fs::write(&file, b"bytes").unwrap();
    let t = tracker(TlsConfig::default()).await;
    let addr = t.local_addr.to_string();

    let (code, out, err) = run_cli(
        vec![
            "put".into(),
            file.display().to_string(),
            "--peer".into(),
            addr.clone(),
        ],
        vec![],
    )
    .await;
    assert_eq!(
        code, 4,
        "put to the tracker's port: stdout {out:?} stderr {err:?}"
    );
    assert!(out.is_empty(), "nothing reported as uploaded: {out:?}");
    assert!(
        err.contains("does not answer as a p2pshare peer"),
        "stderr: {err}"
    );

    let (code, out, err) = run_cli(args(&["leave", "--peer", &addr]), vec![]).await;
    assert_eq!(
        code, 4,
        "leave to the tracker's port: stdout {out:?} stderr {err:?}"
    );
    assert!(
        err.contains("does not answer as a p2pshare peer"),
        "stderr: {err}"
    );
    t.shutdown().await.unwrap();
}

/// A web server that answers every request with 200 and `body` as `content_type`, once it
/// has read the request (answering first can cut the client's upload with a broken pipe, which
/// is another failure than the one under test).
async fn imposter(content_type: &'static str, body: &'static str) -> SocketAddr {
    let app = axum::Router::new().fallback(move |_request: axum::body::Bytes| async move {
        ([(axum::http::header::CONTENT_TYPE, content_type)], body)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_and_leave_accept_only_a_peers_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, b"twelve bytes").unwrap();
    let net = p2p_peer::net::Net::new(&p2p_peer::config::PeerConfig::default()).unwrap();
    let cases = [
        ("text/plain", "ok"),
        ("application/json", "{}"),
        ("application/json", r#"{"status":"created"}"#),
        // Someone else's file.
        (
            "application/json",
            r#"{"name":"other.txt","size":12,"sha256":"0000000000000000000000000000000000000000000000000000000000000000","status":"created"}"#,
        ),
        // Not a digest.
        (
            "application/json",
            r#"{"name":"notes.txt","size":12,"sha256":"","status":"created"}"#,
        ),
    ];
    for (ct, body) in cases {
        let addr = imposter(ct, body).await.to_string();
        let e = p2p_peer::client::upload(&net, &addr, &file, None)
            .await
            .expect_err(&format!("an answer of {ct} {body} was taken for an upload"));
        assert_eq!(e.exit_code(), 4, "{e}");
        assert!(
            e.to_string().contains("does not answer as a p2pshare peer"),
            "{e}"
        );
        let e = p2p_peer::client::request_leave(&net, &addr)
            .await
            .expect_err("a 200 from anything was taken for a leave");
        assert_eq!(e.exit_code(), 4, "{e}");
    }
}

/// (status line, headers and body) of one raw HTTP/1.1 request.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("answer within 10 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracker_answers_unknown_paths_with_404_and_unknown_rpcs_with_unimplemented() {
    let t = tracker(TlsConfig::default()).await;
    for req in [
        "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "POST /leave HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ] {
        let answer = raw(t.local_addr, req).await;
        assert!(
            answer.starts_with("HTTP/1.1 404"),
            "{req:?} answered:\n{answer}"
        );
        assert!(
            !answer.to_ascii_lowercase().contains("grpc-status"),
            "{answer}"
        );
    }
    // What the tracker does serve is untouched.
    let answer = raw(
        t.local_addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A gRPC client calling a method nobody serves still gets UNIMPLEMENTED.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", t.local_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let status = grpc
        .unary(
            tonic::Request::new(()),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/p2pshare.tracker.v1.TrackerService/Nope",
            ),
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    t.shutdown().await.unwrap();
}

fn certs(dir: &Path, names: &[&str]) -> TlsConfig {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    p2p_common::tls::generate_dev_certs(dir, &names).unwrap();
    TlsConfig {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        ca: dir.join("ca.pem"),
        client_ca: Default::default(),
    }
}

/// Settings of a client that trusts `ca` and nothing else about TLS.
fn trusting(ca: &Path) -> Vec<(String, String)> {
    vec![
        ("P2P_TLS__CA".into(), ca.display().to_string()),
        // A TLS network's tracker URL is https (checked by the config).
        (
            "P2P_TRACKER__ENDPOINT".into(),
            "https://127.0.0.1:50051".into(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_reach_the_user_with_their_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let good = certs(&tmp.path().join("good"), &["localhost", "127.0.0.1"]);
    let other = certs(&tmp.path().join("other"), &["localhost", "127.0.0.1"]);
    let elsewhere = certs(&tmp.path().join("elsewhere"), &["tracker.example"]);

    // A CA the client does not trust.
    let t = tracker(good.clone()).await;
    let url = format!("https://127.0.0.1:{}", t.local_addr.port());
    let (code, _, err) = run_cli(
        args(&["--tracker", &url, "search", "x"]),
        trusting(&other.ca),
    )
    .await;
    assert_eq!(code, 4, "{err}");
    // Both test CAs share a name, so rustls reports the signature rather than the issuer.
    assert!(
        err.contains("invalid peer certificate"),
        "unknown CA: {err}"
    );
    // The health probe of a TLS service that trusts another CA says why it cannot connect
    // (it used to print only "transport error").
    let mut other_service = trusting(&other.ca);
    other_service.push(("P2P_TLS__CERT".into(), other.cert.display().to_string()));
    other_service.push(("P2P_TLS__KEY".into(), other.key.display().to_string()));
    let (code, _, err) = run_cli(
        args(&["health", "--addr", &t.local_addr.to_string()]),
        other_service,
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("invalid peer certificate"),
        "health with an unknown CA: {err}"
    );

    // Client certificates required, none presented.
    t.shutdown().await.unwrap();
    let t = tracker(TlsConfig {
        client_ca: good.ca.clone(),
        ..good.clone()
    })
    .await;
    let url = format!("https://127.0.0.1:{}", t.local_addr.port());
    let (code, _, err) = run_cli(
        args(&["--tracker", &url, "search", "x"]),
        trusting(&good.ca),
    )
    .await;
    // The server's CertificateRequired alert arrives after the client's handshake is done and
    // ends hyper's connection task, which drops it; the CLI finds it by opening a session of
    // its own after the failure.
    assert_eq!(code, 4, "no client cert: {err}");
    assert!(err.contains("CertificateRequired"), "no client cert: {err}");
    // The health probe too.
    let (code, _, err) = run_cli(
        args(&["health", "--addr", &t.local_addr.to_string()]),
        trusting(&good.ca),
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("CertificateRequired"),
        "health without a client cert: {err}"
    );
    // With one, the same call goes through (nothing matches: 3).
    let mut with_cert = trusting(&good.ca);
    with_cert.push(("P2P_TLS__CERT".into(), good.cert.display().to_string()));
    with_cert.push(("P2P_TLS__KEY".into(), good.key.display().to_string()));
    let (code, _, err) = run_cli(args(&["--tracker", &url, "search", "x"]), with_cert).await;
    assert_eq!(code, 3, "{err}");
    t.shutdown().await.unwrap();

    // A certificate for another name.
    let t = tracker(elsewhere.clone()).await;
    let url = format!("https://127.0.0.1:{}", t.local_addr.port());
    let (code, _, err) = run_cli(
        args(&["--tracker", &url, "search", "x"]),
        trusting(&elsewhere.ca),
    )
    .await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("not valid for name"), "name mismatch: {err}");
    t.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_over_tls_when_only_the_ca_is_set() {
    let tmp = tempfile::tempdir().unwrap();
    let tls = certs(&tmp.path().join("certs"), &["localhost", "127.0.0.1"]);
    let t = tracker(tls.clone()).await;
    let addr = t.local_addr.to_string();
    let (code, out, err) = run_cli(args(&["health", "--addr", &addr]), trusting(&tls.ca)).await;
    assert_eq!(code, 0, "stdout {out:?} stderr {err:?}");
    assert!(out.contains("SERVING"), "{out}");
    // The probe still verifies: another CA fails, naming why.
    let other = certs(&tmp.path().join("other"), &["localhost", "127.0.0.1"]);
    let (code, _, err) = run_cli(args(&["health", "--addr", &addr]), trusting(&other.ca)).await;
    assert_eq!(code, 1);
    assert!(err.contains("invalid peer certificate"), "{err}");
    t.shutdown().await.unwrap();
}
