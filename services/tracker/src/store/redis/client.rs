//! The connection to Redis and the three ways the store talks over it: one command, one
//! pipeline, one script.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo, Script};

use super::scripts::ArgList;
use crate::store::StoreError;

/// How to reach Redis (from `registry.redis_*`).
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub url: String,
    /// Overrides a password in the URL (read from `registry.redis_password_file`).
    pub password: Option<String>,
    pub prefix: String,
    /// Bound on connecting and on each command, so a dead Redis turns into UNAVAILABLE
    /// answers instead of calls that hang.
    pub timeout: Duration,
}

pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    /// `host:port` for messages; never the URL, which may hold a password.
    addr: String,
}

impl RedisStore {
    /// Does not connect: the first command does, and later ones reconnect as needed.
    pub fn new(opts: RedisOptions) -> Result<Self, StoreError> {
        let bad = |e: redis::RedisError| {
            StoreError::Unavailable(format!(
                "bad registry.redis_url: {}",
                e.detail().unwrap_or("")
            ))
        };
        let mut info = opts.url.as_str().into_connection_info().map_err(bad)?;
        if let Some(pw) = &opts.password {
            let settings = info.redis_settings().clone().set_password(pw);
            info = info.set_redis_settings(settings);
        }
        let addr = info.addr().to_string();
        let client = Client::open(info).map_err(bad)?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.timeout))
            .set_response_timeout(Some(opts.timeout))
            .set_number_of_retries(1)
            .set_max_delay(opts.timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, cfg).map_err(bad)?;
        Ok(Self {
            conn,
            prefix: opts.prefix,
            addr,
        })
    }

    fn err(&self, e: redis::RedisError) -> StoreError {
        StoreError::Unavailable(format!("Redis at {} did not answer: {e}", self.addr))
    }

    /// What every key of this network starts with.
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push_str(p);
        }
        k
    }

    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await.map_err(|e| self.err(e))
    }

    pub(super) async fn pipe<T: redis::FromRedisValue>(
        &self,
        p: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        p.query_async(&mut conn).await.map_err(|e| self.err(e))
    }

    /// Runs `script` with the prefix as its first argument, then `args` in order.
    pub(super) async fn run(
        &self,
        script: &Script,
        args: &[&dyn ArgList],
    ) -> Result<String, StoreError> {
        let mut inv = script.prepare_invoke();
        inv.arg(&self.prefix);
        for a in args {
            a.push_args(&mut inv);
        }
        let mut conn = self.conn.clone();
        inv.invoke_async(&mut conn).await.map_err(|e| self.err(e))
    }
}
