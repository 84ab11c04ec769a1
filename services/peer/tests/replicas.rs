//! Several trackers on one Redis, with the real binaries: one network whichever tracker is
//! asked, failover when one dies, recovery when Redis restarts empty, expiry counted once.
//!
//! Each test starts its own `redis-server` on a free loopback port. CI installs it and sets
//! CI=true, where a missing binary fails the test; elsewhere these tests skip loudly.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        Self::start_on(port)
    }

    fn start_on(port: u16) -> Option<Self> {
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "redis-server is not installed; CI must install it"
                );
                eprintln!(
                    "\n*** SKIPPING: redis-server is not installed (apt-get install redis-server) ***\n"
                );
                return None;
            }
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        let redis = Self { port, child };
        eventually(Duration::from_secs(20), "redis-server answering", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .and_then(|mut s| {
                    use std::io::{Read, Write};
                    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                    s.write_all(b"PING\r\n").ok()?;
                    let mut buf = [0u8; 7];
                    s.read_exact(&mut buf).ok()?;
                    (&buf == b"+PONG\r\n").then_some(())
                })
        });
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn tracker_on(dir: &Path, redis: &Redis, ttl: &str) -> Proc {
    spawn_tracker_with(
        dir,
        0,
        ttl,
        &[
            ("P2P_REGISTRY__STORE", "redis"),
            ("P2P_REGISTRY__REDIS_URL", &redis.url()),
        ],
    )
}

fn peer(dir: &Path, id: &str, tracker: &str, heartbeat: &str) -> Proc {
    let files = dir.join(id);
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join(format!("{id}.txt")), id.as_bytes()).unwrap();
    let p = spawn_peer(
        dir,
        PeerOpts {
            id,
            files_dir: &files,
            tracker,
            heartbeat,
            env: vec![],
        },
    );
    wait_ready(&p);
    p
}

/// `p2p-tracker health`: SERVING or not.
fn ready(t: &Proc) -> bool {
    Command::new(tracker_bin())
        .args(["health", "--addr", &t.addr.to_string()])
        .env_remove("P2P_CONFIG")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ids(tracker: &str, name: &str) -> Vec<String> {
    holders(tracker, name)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn peers_registered_through_one_tracker_are_found_through_another_and_survive_its_death() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut a = tracker_on(dir.path(), &redis, "3s");
    let b = tracker_on(dir.path(), &redis, "3s");
    let both = format!("{},{}", a.url(), b.url());
    // The peer talks to A first (the first URL of its list).
    let _p1 = peer(dir.path(), "p1", &both, "500ms");
    eventually(Duration::from_secs(20), "p1 found through B", || {
        (ids(&b.url(), "p1.txt") == ["p1"]).then_some(())
    });
    assert_eq!(ids(&a.url(), "p1.txt"), ["p1"]);

    a.kill9();
    let killed = Instant::now();
    // Past one lease TTL, the lease can only be alive if heartbeats moved to B.
    eventually(
        Duration::from_secs(30),
        "p1 still registered past the TTL",
        || {
            (killed.elapsed() > Duration::from_secs(4) && ids(&b.url(), "p1.txt") == ["p1"])
                .then_some(())
        },
    );
    // The CLI fails over too: A is first in its list and refuses connections.
    let (code, out, err) = cli(&both, &["search", "p1"]);
    assert_eq!(code, 0, "stdout {out} stderr {err}");
    assert!(out.contains("p1.txt"), "{out}");
}

#[test]
fn peers_come_back_when_redis_restarts_empty() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let t = tracker_on(dir.path(), &redis, "5s");
    let _p1 = peer(dir.path(), "p1", &t.url(), "1s");
    let _p2 = peer(dir.path(), "p2", &t.url(), "1s");
    eventually(Duration::from_secs(20), "both peers registered", || {
        (ids(&t.url(), "p1.txt") == ["p1"] && ids(&t.url(), "p2.txt") == ["p2"]).then_some(())
    });

    let port = redis.port;
    redis.kill9();
    // Redis down: the tracker answers UNAVAILABLE naming Redis, and keeps running.
    let (code, _, err) = eventually(Duration::from_secs(20), "an UNAVAILABLE answer", || {
        let r = cli(&t.url(), &["search", "p1"]);
        (r.2.contains("Redis")).then_some(r)
    });
    assert_ne!(code, 0, "{err}");
    eventually(Duration::from_secs(20), "tracker NOT_SERVING", || {
        (!ready(&t)).then_some(())
    });

    let _redis = Redis::start_on(port).expect("redis-server restarts");
    // Empty Redis: every peer finds itself forgotten at its next heartbeat and registers again.
    eventually(Duration::from_secs(30), "both peers back", || {
        (ids(&t.url(), "p1.txt") == ["p1"] && ids(&t.url(), "p2.txt") == ["p2"]).then_some(())
    });
    eventually(Duration::from_secs(20), "tracker SERVING again", || {
        ready(&t).then_some(())
    });
}

#[test]
fn a_silent_peer_expires_once_across_trackers() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = tracker_on(dir.path(), &redis, "1s");
    let b = tracker_on(dir.path(), &redis, "1s");
    let mut p = peer(dir.path(), "quiet", &a.url(), "300ms");
    eventually(Duration::from_secs(20), "peer registered", || {
        (ids(&b.url(), "quiet.txt") == ["quiet"]).then_some(())
    });
    p.kill9();
    let expired = |t: &Proc| metric(&t.url(), "p2p_tracker_lease_expirations_total");
    eventually(Duration::from_secs(30), "the lease swept", || {
        (expired(&a) + expired(&b) >= 1.0).then_some(())
    });
    // Both sweepers keep running (every TTL/2); the sum stays one.
    let settle = Instant::now();
    eventually(Duration::from_secs(30), "several more sweeps", || {
        (settle.elapsed() > Duration::from_secs(3)).then_some(())
    });
    assert_eq!(expired(&a) + expired(&b), 1.0);
    assert!(ids(&a.url(), "quiet.txt").is_empty());
}
