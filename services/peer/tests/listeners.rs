//! The listeners of both services under connections that never ask for anything: silent or
//! half-spoken clients are cut after `header_timeout` on TLS and plaintext alike, idle HTTP/2
//! connections that answer pings are closed, and a process at its open-file limit keeps serving.

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2p_common::tls::TlsConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

fn tls_files(dir: &Path) -> TlsConfig {
    let certs = dir.join("certs");
    p2p_common::tls::generate_dev_certs(&certs, &["localhost".into(), "127.0.0.1".into()]).unwrap();
    TlsConfig {
        cert: certs.join("cert.pem"),
        key: certs.join("key.pem"),
        ca: certs.join("ca.pem"),
        client_ca: Default::default(),
    }
}

async fn tracker(tls: TlsConfig) -> p2p_tracker::server::Running {
    let mut cfg = p2p_tracker::config::TrackerConfig::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.server.header_timeout = HEADER_TIMEOUT;
    cfg.tls = tls;
    p2p_tracker::server::start(cfg).await.unwrap()
}

async fn peer(tracker: SocketAddr, share: &Path, tls: TlsConfig) -> p2p_peer::server::Running {
    let scheme = if tls.dials() { "https" } else { "http" };
    let mut cfg = p2p_peer::config::PeerConfig::default();
    cfg.peer.id = "listener-peer".into();
    cfg.peer.listen = "127.0.0.1:0".parse().unwrap();
    cfg.peer.files_dir = share.to_path_buf();
    cfg.peer.header_timeout = HEADER_TIMEOUT;
    cfg.tracker.endpoint = format!("{scheme}://{tracker}");
    cfg.tls = tls;
    p2p_peer::server::start(cfg).await.unwrap()
}

/// Writes `send`, then waits for the server to close the connection; how long that took.
async fn held_open<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, send: &[u8]) -> Duration {
    let started = Instant::now();
    if !send.is_empty() {
        s.write_all(send).await.unwrap();
        s.flush().await.unwrap();
    }
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // An HTTP/2 server speaks first (SETTINGS, GOAWAY): keep reading to the close.
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "connection still open after 20 s");
    started.elapsed()
}

/// Every way of saying nothing, on one listener.
async fn silent_clients_are_cut(what: &str, addr: SocketAddr, tls: Option<&TlsConfig>) {
    for send in [&b""[..], b"PRI * HTTP/2.0\r\n", b"GET /files HTTP/1.1\r\n"] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let held = match tls {
            None => held_open(tcp, send).await,
            Some(tls) => {
                let cfg = tls.client_config().unwrap().unwrap();
                let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: TLS handshake failed: {e}"));
                held_open(stream, send).await
            }
        };
        // Generous: the point is that the server cuts at all (it used to wait 150 s+).
        assert!(
            held < HEADER_TIMEOUT + Duration::from_secs(8),
            "{what}: a client sending {:?} was held {held:?}",
            String::from_utf8_lossy(send)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_cut_on_every_listener() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let tls = tls_files(tmp.path());

    let t = tracker(TlsConfig::default()).await;
    silent_clients_are_cut("plaintext tracker", t.local_addr, None).await;
    let p = peer(t.local_addr, &share, TlsConfig::default()).await;
    silent_clients_are_cut("plaintext peer", p.local_addr, None).await;
    // The listeners still serve a client that asks.
    let (status, _) = tokio::task::spawn_blocking({
        let url = format!("http://{}/files", p.local_addr);
        move || common::http_get(&url).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    p.shutdown().await.unwrap();
    t.shutdown().await.unwrap();

    let t = tracker(tls.clone()).await;
    silent_clients_are_cut("TLS tracker", t.local_addr, Some(&tls)).await;
    let p = peer(t.local_addr, &share, tls.clone()).await;
    silent_clients_are_cut("TLS peer", p.local_addr, Some(&tls)).await;
    p.shutdown().await.unwrap();
    t.shutdown().await.unwrap();
}

/// Runs `cmd` with RLIMIT_NOFILE set to (soft, hard).
fn limit_files(cmd: &mut Command, soft: u64, hard: u64) {
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn soft_file_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

fn tracker_cmd(idle: &str) -> Command {
    let mut cmd = Command::new(common::tracker_bin());
    cmd.args(["--listen", "127.0.0.1:0"])
        .env("P2P_SERVER__IDLE_TIMEOUT", idle);
    cmd
}

#[test]
fn the_soft_file_limit_is_raised_to_the_hard_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = tracker_cmd("60s");
    limit_files(&mut cmd, 200, 300);
    let t = common::spawn_cmd(cmd, tmp.path().join("tracker.log"), "tracker listening");
    // The listener raises it before its first accept, just after the line above is logged.
    common::eventually(Duration::from_secs(20), "soft limit 300", || {
        (soft_file_limit(t.pid()) == 300).then_some(())
    });
}

/// Opens `n` HTTP/2 connections to `addr` that complete the handshake, answer pings and never
/// open a stream; they stay up until `hold` is dropped.
fn idle_h2_connections(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    n: usize,
) -> tokio::sync::watch::Sender<()> {
    let (hold, held) = tokio::sync::watch::channel(());
    for _ in 0..n {
        let mut held = held.clone();
        rt.spawn(async move {
            let ep = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_timeout(Duration::from_secs(60));
            let channel = ep.connect().await;
            let _ = held.changed().await;
            drop(channel);
        });
    }
    hold
}

#[test]
fn idle_http2_connections_cannot_exhaust_the_file_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("a.txt"), b"still served").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // 96 descriptors, soft and hard: 150 idle connections are more than the process can hold.
    let mut cmd = tracker_cmd("1s");
    limit_files(&mut cmd, 96, 96);
    let t = common::spawn_cmd(cmd, tmp.path().join("tracker.log"), "tracker listening");
    let mut cmd = Command::new(common::peer_bin());
    cmd.args(["--tracker", &t.url(), "serve", "--id", "fd-peer"])
        .args(["--listen", "127.0.0.1:0", "--files-dir"])
        .arg(&share)
        .env("P2P_PEER__IDLE_TIMEOUT", "1s");
    limit_files(&mut cmd, 96, 96);
    let p = common::spawn_cmd(cmd, tmp.path().join("peer.log"), "peer listening");

    let hold_t = idle_h2_connections(&rt, t.addr, 150);
    let hold_p = idle_h2_connections(&rt, p.addr, 150);

    // Both keep answering new clients while the idle connections keep coming.
    let tracker_addr = t.addr.to_string();
    common::eventually(Duration::from_secs(90), "tracker health SERVING", || {
        let status = rt.block_on(p2p_common::health::probe(
            &tracker_addr,
            "",
            Duration::from_secs(5),
            None,
        ));
        status
            .ok()
            .filter(|s| *s == tonic_health::pb::health_check_response::ServingStatus::Serving)
    });
    let url = format!("{}/files/a.txt", p.url());
    common::eventually(Duration::from_secs(90), "a download from the peer", || {
        common::http_get(&url).filter(|(s, body)| *s == 200 && body == b"still served")
    });
    drop((hold_t, hold_p));

    for proc in [&t, &p] {
        let log = std::fs::read_to_string(&proc.log).unwrap();
        assert!(
            !log.contains("Too many open files"),
            "{} ran out of descriptors:\n{}",
            proc.log.display(),
            log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
        );
    }
}
