//! A throwaway `redis-server` on a free loopback port, for tests. CI installs the Debian
//! package and sets CI=true: there a missing binary fails the test. Elsewhere the Redis tests
//! skip with a loud message, so a laptop without Redis can still run the rest.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Child,
}

impl RedisServer {
    /// Starts one, or None (after saying so) when `redis-server` is absent outside CI.
    pub async fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        Self::start_on(port).await
    }

    /// Starts one on `port` (to restart a killed one in place).
    pub async fn start_on(port: u16) -> Option<Self> {
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
                    "redis-server is not installed; CI must install it (apt-get install redis-server)"
                );
                eprintln!(
                    "\n*** SKIPPING a Redis test: redis-server is not installed \
                     (apt-get install redis-server). CI runs it. ***\n"
                );
                return None;
            }
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        let server = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if server.answers().await {
                return Some(server);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} not answering after 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn answers(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return false;
        };
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
