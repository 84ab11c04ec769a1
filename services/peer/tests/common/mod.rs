//! Test harness: starts the real binaries on 127.0.0.1 with ephemeral ports, learns their
//! addresses from their JSON logs, polls for readiness with deadlines, and kills them on drop.

#![allow(dead_code)]

pub mod fake;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn peer_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_p2p-peer"))
}

/// The tracker binary sits next to ours in the target directory (`cargo test --workspace`
/// builds it).
pub fn tracker_bin() -> PathBuf {
    let p = peer_bin().with_file_name("p2p-tracker");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p p2p-tracker` or `cargo test --workspace`",
        p.display()
    );
    p
}

pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(&self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    /// Waits for the process to exit on its own, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {limit:?}; log {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL in `sec`'s scheme.
    pub fn url_in(&self, sec: &Sec) -> String {
        format!("{}://{}", sec.scheme(), self.addr)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd`, copies its stderr to `log`, and returns once it logs `message` with a
/// `local_addr` field (within 20 s).
pub fn spawn_cmd(mut cmd: Command, log: PathBuf, message: &str) -> Proc {
    cmd.env_remove("P2P_CONFIG")
        .env_remove("RUST_LOG")
        .env("P2P_TELEMETRY__LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let wanted = message.to_owned();
    let log_path = log.clone();
    std::thread::spawn(move || {
        let mut file = std::fs::File::create(&log_path).expect("log file");
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(file, "{line}");
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["fields"]["message"] == wanted.as_str()
                && let Some(addr) = v["fields"]["local_addr"].as_str()
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr.parse::<SocketAddr>().expect("addr"));
            }
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "no {message:?} line within 20 s; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    };
    Proc { child, addr, log }
}

pub fn spawn_tracker(dir: &Path, port: u16, lease_ttl: &str) -> Proc {
    spawn_tracker_with(dir, port, lease_ttl, &[])
}

pub fn spawn_tracker_with(dir: &Path, port: u16, lease_ttl: &str, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(tracker_bin());
    cmd.args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--lease-ttl",
        lease_ttl,
    ]);
    cmd.envs(env.iter().copied());
    let log = dir.join(format!("tracker-{}.log", unique()));
    spawn_cmd(cmd, log, "tracker listening")
}

pub struct PeerOpts<'a> {
    pub id: &'a str,
    pub files_dir: &'a Path,
    pub tracker: &'a str,
    pub heartbeat: &'a str,
    pub env: Vec<(&'a str, String)>,
}

pub fn spawn_peer(log_dir: &Path, o: PeerOpts<'_>) -> Proc {
    let mut cmd = Command::new(peer_bin());
    cmd.args([
        "--tracker",
        o.tracker,
        "serve",
        "--id",
        o.id,
        "--listen",
        "127.0.0.1:0",
    ])
    .arg("--files-dir")
    .arg(o.files_dir)
    .env("P2P_TRACKER__HEARTBEAT_INTERVAL", o.heartbeat)
    .env("P2P_PEER__SCAN_INTERVAL", "300ms");
    for (k, v) in o.env {
        cmd.env(k, v);
    }
    spawn_cmd(
        cmd,
        log_dir.join(format!("{}-{}.log", o.id, unique())),
        "peer listening",
    )
}

/// A peer serving `root/id` (created), heartbeat 1 s, with `env` set: what the swarm tests
/// start many of.
pub fn swarm_peer(root: &Path, id: &str, turl: &str, env: &[(&str, &str)]) -> (Proc, PathBuf) {
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let p = spawn_peer(
        root,
        PeerOpts {
            id,
            files_dir: &dir,
            tracker: turl,
            heartbeat: "1s",
            env: env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        },
    );
    (p, dir)
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Polls `f` every 25 ms until it returns Some, failing after `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Pseudo-random bytes (deterministic per seed) without another dependency.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// How test clients reach the network: plaintext and open, or TLS plus a join token.
#[derive(Clone, Default)]
pub struct Sec {
    /// Variables that configure a process (tracker, peer or CLI) for this mode.
    pub env: Vec<(String, String)>,
    tls: p2p_common::tls::TlsConfig,
    pub token: Option<String>,
}

impl Sec {
    pub fn plain() -> Self {
        Self::default()
    }

    /// A fresh CA and certificate for 127.0.0.1 in `dir`, and a token.
    pub fn secure(dir: &Path) -> Self {
        let certs = dir.join("certs");
        p2p_common::tls::generate_dev_certs(&certs, &["localhost".into(), "127.0.0.1".into()])
            .expect("dev certs");
        let tls = p2p_common::tls::TlsConfig {
            cert: certs.join("cert.pem"),
            key: certs.join("key.pem"),
            ca: certs.join("ca.pem"),
            client_ca: Default::default(),
        };
        let token = "test-join-token-0123456789".to_owned();
        let env = vec![
            ("P2P_TLS__CERT".into(), tls.cert.display().to_string()),
            ("P2P_TLS__KEY".into(), tls.key.display().to_string()),
            ("P2P_TLS__CA".into(), tls.ca.display().to_string()),
            ("P2P_AUTH__TOKEN".into(), token.clone()),
        ];
        Self {
            env,
            tls,
            token: Some(token),
        }
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls.dials() { "https" } else { "http" }
    }

    pub fn env_refs(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn client(&self) -> reqwest::Client {
        p2p_common::tls::install_provider();
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(5));
        if let Some(cfg) = self.tls.client_config().expect("client TLS") {
            b = b.tls_backend_preconfigured(cfg);
        }
        if let Some(t) = &self.token {
            let mut h = reqwest::header::HeaderMap::new();
            h.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
            b = b.default_headers(h);
        }
        b.build().expect("client")
    }

    /// Blocking GET; (status, body).
    pub fn get(&self, url: &str) -> Option<(u16, Vec<u8>)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let r = self.client().get(url).send().await.ok()?;
            let s = r.status().as_u16();
            Some((s, r.bytes().await.ok()?.to_vec()))
        })
    }

    pub fn wait_ready(&self, peer: &Proc) {
        eventually(Duration::from_secs(20), "peer /healthz 200", || {
            self.get(&format!("{}/healthz", peer.url_in(self)))
                .filter(|(s, _)| *s == 200)
        });
    }

    /// Runs the client with `--tracker`; (exit code, stdout, stderr).
    pub fn cli(&self, tracker: &str, args: &[&str]) -> (i32, String, String) {
        let out: Output = Command::new(peer_bin())
            .arg("--tracker")
            .arg(tracker)
            .args(args)
            .env_remove("P2P_CONFIG")
            .envs(self.env_refs())
            .stdin(Stdio::null())
            .output()
            .expect("run p2p-peer");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `search --json --exact NAME`: (peer id, address) of each holder of each match.
    pub fn holders(&self, tracker: &str, name: &str) -> Vec<(String, String)> {
        let (code, out, err) = self.cli(tracker, &["--json", "search", "--exact", name]);
        if code == 3 {
            return Vec::new();
        }
        assert_eq!(code, 0, "search failed: {err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        let mut hs = Vec::new();
        for f in v["files"].as_array().expect("files") {
            for p in f["peers"].as_array().expect("peers") {
                hs.push((
                    p["peer_id"].as_str().unwrap_or_default().to_owned(),
                    p["address"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        hs.sort();
        hs
    }

    /// The value of one series (`name{labels}` exactly as exposed) from `base`/metrics.
    pub fn metric(&self, base: &str, series: &str) -> f64 {
        let (status, body) = self
            .get(&format!("{base}/metrics"))
            .expect("scrape /metrics");
        assert_eq!(status, 200);
        let text = String::from_utf8_lossy(&body);
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} not in {base}/metrics:\n{text}"))
    }
}

pub fn http_get(url: &str) -> Option<(u16, Vec<u8>)> {
    Sec::plain().get(url)
}

pub fn wait_ready(peer: &Proc) {
    Sec::plain().wait_ready(peer)
}

pub fn cli(tracker: &str, args: &[&str]) -> (i32, String, String) {
    Sec::plain().cli(tracker, args)
}

pub fn holders(tracker: &str, name: &str) -> Vec<(String, String)> {
    Sec::plain().holders(tracker, name)
}

pub fn metric(base: &str, series: &str) -> f64 {
    Sec::plain().metric(base, series)
}

/// A tracker in this process on an ephemeral loopback port, with the embedded defaults.
pub async fn start_tracker() -> p2p_tracker::server::Running {
    start_tracker_with_auth(Default::default()).await
}

/// [`start_tracker`] with `auth` (a join token) in force.
pub async fn start_tracker_with_auth(
    auth: p2p_common::auth::AuthConfig,
) -> p2p_tracker::server::Running {
    let mut cfg = p2p_tracker::config::TrackerConfig::default();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap();
    cfg.auth = auth;
    p2p_tracker::server::start(cfg).await.unwrap()
}

/// A peer in this process on an ephemeral loopback port, registered with `tracker`; `tweak`
/// adjusts its configuration before it starts.
pub async fn start_peer(
    tracker: SocketAddr,
    id: &str,
    share: &Path,
    tweak: impl FnOnce(&mut p2p_peer::config::PeerConfig),
) -> p2p_peer::server::Running {
    let mut cfg = p2p_peer::config::PeerConfig::default();
    cfg.peer.id = id.into();
    cfg.peer.listen = "127.0.0.1:0".parse().unwrap();
    cfg.peer.files_dir = share.to_path_buf();
    cfg.peer.scan_interval = Duration::from_millis(200);
    cfg.tracker.endpoint = format!("http://{tracker}");
    cfg.tracker.heartbeat_interval = Duration::from_millis(500);
    tweak(&mut cfg);
    p2p_peer::server::start(cfg).await.unwrap()
}
