//! The shared store for several tracker replicas: Redis (or Valkey). Every rule that must be
//! atomic is one Lua script (sent once, then called by digest with EVALSHA); reads are plain
//! commands, pipelined. See `lua/common.lua` for the key layout. Standalone Redis only: the
//! scripts touch keys they compute, which Redis Cluster does not allow.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use p2p_common::Digest;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo, Script};

use super::names::{lower, trigrams};
use super::{
    Announcement, Counts, DigestHolders, FileEntry, FileHolders, FileKey, Holder, Lease, NameQuery,
    PartialEntry, PeerRecord, Store, StoreError,
};

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
    fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push_str(p);
        }
        k
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn).await.map_err(|e| self.err(e))
    }

    async fn pipe<T: redis::FromRedisValue>(&self, p: &redis::Pipeline) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        p.query_async(&mut conn).await.map_err(|e| self.err(e))
    }

    /// Runs `script` with the prefix as its first argument, then `args` in order.
    async fn run(&self, script: &Script, args: &[&dyn ArgList]) -> Result<String, StoreError> {
        let mut inv = script.prepare_invoke();
        inv.arg(&self.prefix);
        for a in args {
            a.push_args(&mut inv);
        }
        let mut conn = self.conn.clone();
        inv.invoke_async(&mut conn).await.map_err(|e| self.err(e))
    }
}

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/common.lua"),
                "\n",
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

static REGISTER: LazyLock<Script> = script!("register.lua");
static RENEW: LazyLock<Script> = script!("renew.lua");
static ANNOUNCE: LazyLock<Script> = script!("announce.lua");
static LEAVE: LazyLock<Script> = script!("leave.lua");
static EXPIRE: LazyLock<Script> = script!("expire.lua");

/// The scripts' answers: "ok", "ok:N", or why nothing was written.
fn outcome(id: &str, answer: &str) -> Result<Option<u64>, StoreError> {
    let (word, n) = match answer.split_once(':') {
        Some((w, n)) => (
            w,
            Some(
                n.parse::<u64>()
                    .map_err(|_| StoreError::Corrupt(format!("script answered {answer:?}")))?,
            ),
        ),
        None => (answer, None),
    };
    match (word, n) {
        ("ok", n) => Ok(n),
        ("unknown", None) => Err(StoreError::UnknownPeer(id.to_owned())),
        ("wrong", None) => Err(StoreError::WrongSecret(id.to_owned())),
        ("taken", Some(left)) => Err(StoreError::IdTaken {
            id: id.to_owned(),
            remaining_ms: left,
        }),
        _ => Err(StoreError::Corrupt(format!("script answered {answer:?}"))),
    }
}

/// Script arguments of several shapes, pushed in order.
trait ArgList: Sync {
    fn push_args(&self, inv: &mut redis::ScriptInvocation<'_>);
}

impl ArgList for &str {
    fn push_args(&self, inv: &mut redis::ScriptInvocation<'_>) {
        inv.arg(*self);
    }
}

impl ArgList for u64 {
    fn push_args(&self, inv: &mut redis::ScriptInvocation<'_>) {
        inv.arg(*self);
    }
}

impl ArgList for usize {
    fn push_args(&self, inv: &mut redis::ScriptInvocation<'_>) {
        inv.arg(*self);
    }
}

/// Per file: name, size, sha256, lower-cased name, pieces_root ("" for none).
impl ArgList for Vec<FileEntry> {
    fn push_args(&self, inv: &mut redis::ScriptInvocation<'_>) {
        for f in self {
            inv.arg(&f.name)
                .arg(f.size)
                .arg(f.sha256.to_hex())
                .arg(lower(&f.name))
                .arg(Digest::hex_or_empty(f.pieces_root.as_ref()));
        }
    }
}

/// Per holding: sha256, size, pieces_root.
impl ArgList for Vec<PartialEntry> {
    fn push_args(&self, inv: &mut redis::ScriptInvocation<'_>) {
        for p in self {
            inv.arg(p.sha256.to_hex())
                .arg(p.size)
                .arg(Digest::hex_or_empty(p.pieces_root.as_ref()));
        }
    }
}

impl ArgList for Vec<String> {
    fn push_args(&self, inv: &mut redis::ScriptInvocation<'_>) {
        for s in self {
            inv.arg(s);
        }
    }
}

impl ArgList for Vec<Digest> {
    fn push_args(&self, inv: &mut redis::ScriptInvocation<'_>) {
        for d in self {
            inv.arg(d.to_hex());
        }
    }
}

fn digest(value: &str) -> Result<Digest, StoreError> {
    value
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("digest {value:?} is not 64 lowercase hex")))
}

/// A pieces_root as stored: hex, or "" when the peer announced none.
fn parse_root(value: &str) -> Result<Option<Digest>, StoreError> {
    Digest::parse_optional(value)
        .map_err(|_| StoreError::Corrupt(format!("pieces_root {value:?} is not 64 lowercase hex")))
}

/// A partial holding as the scripts write it: `size:root`.
fn size_and_root(value: &str) -> Result<(u64, &str), StoreError> {
    let (size, root) = value.split_once(':').unwrap_or((value, ""));
    let size = size
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("holding {value:?} has no size")))?;
    Ok((size, root))
}

/// A member of the `keys` set: `name NUL sha256`.
fn member(key: &FileKey) -> String {
    format!("{}\0{}", key.name, key.sha256)
}

fn split_key(member: &str) -> Result<FileKey, StoreError> {
    let (name, sha) = member
        .split_once('\0')
        .ok_or_else(|| StoreError::Corrupt(format!("file key {member:?} has no digest")))?;
    Ok(FileKey {
        name: name.to_owned(),
        sha256: digest(sha)?,
    })
}

/// Candidate names read per round trip when walking an index.
const CHUNK: usize = 512;

impl Holder {
    fn with_root(&self, root: Option<Digest>) -> Holder {
        Holder {
            pieces_root: root,
            ..self.clone()
        }
    }
}

/// The root `id` announced, from a `roots:<sha256>` hash (none there when it was written by
/// a tracker from before roots).
fn root_of(roots: &BTreeMap<String, String>, id: &str) -> Result<Option<Digest>, StoreError> {
    parse_root(roots.get(id).map_or("", String::as_str))
}

impl RedisStore {
    /// The (name, digest) keys of `names` that sort after `after`, in order, up to `limit`.
    async fn keys_of(
        &self,
        names: &[String],
        after: Option<&FileKey>,
        limit: usize,
    ) -> Result<Vec<FileKey>, StoreError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for n in names {
            p.cmd("ZRANGEBYLEX")
                .arg(self.key(&["keys"]))
                .arg(format!("[{n}\0"))
                .arg(format!("({n}\u{1}"));
        }
        let lists: Vec<Vec<String>> = self.pipe(&p).await?;
        let mut out = Vec::new();
        for member in lists.into_iter().flatten() {
            let key = split_key(&member)?;
            if after.is_some_and(|a| key <= *a) {
                continue;
            }
            out.push(key);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Holders (with their leases) of each key, in the same order.
    async fn with_holders(&self, keys: Vec<FileKey>) -> Result<Vec<FileHolders>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for k in &keys {
            let sha = k.sha256.to_hex();
            p.cmd("HGETALL")
                .arg(self.key(&["holders:", &k.name, "\0", &sha]))
                .cmd("HGETALL")
                .arg(self.key(&["roots:", &sha]));
        }
        // Per key: its holders (id -> size), then the roots of its digest (id -> root).
        let maps: Vec<BTreeMap<String, String>> = self.pipe(&p).await?;
        let ids: Vec<&String> = {
            let mut ids: Vec<&String> = maps.iter().step_by(2).flat_map(|m| m.keys()).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let peers = self.peers(&ids).await?;
        keys.into_iter()
            .zip(maps.chunks_exact(2))
            .map(|(k, pair)| {
                let (m, roots) = (&pair[0], &pair[1]);
                let size = match m.values().next() {
                    Some(v) => v.parse().map_err(|_| {
                        StoreError::Corrupt(format!("holder size {v:?} is not a number"))
                    })?,
                    None => 0,
                };
                let mut holders = Vec::with_capacity(m.len());
                for id in m.keys() {
                    if let Some(h) = peers.get(id) {
                        holders.push(h.with_root(root_of(roots, id)?));
                    }
                }
                Ok(FileHolders {
                    file: FileEntry {
                        size,
                        name: k.name,
                        sha256: k.sha256,
                        pieces_root: None,
                    },
                    holders,
                })
            })
            .collect()
    }

    /// Peers by id, with no pieces_root (the caller knows which root goes with which file).
    async fn peers(&self, ids: &[&String]) -> Result<HashMap<String, Holder>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut p = redis::pipe();
        for id in ids {
            p.cmd("HMGET")
                .arg(self.key(&["peer:", id]))
                .arg("addr")
                .arg("exp");
        }
        let recs: Vec<(Option<String>, Option<u64>)> = self.pipe(&p).await?;
        Ok(ids
            .iter()
            .zip(recs)
            .filter_map(|(id, rec)| match rec {
                (Some(address), Some(expires_at_ms)) => Some((
                    (*id).clone(),
                    Holder {
                        peer_id: (*id).clone(),
                        address,
                        expires_at_ms,
                        pieces_root: None,
                    },
                )),
                _ => None,
            })
            .collect())
    }

    /// Walks the key set from `after`, keeping names whose lower-cased form holds `needle`,
    /// until `limit` keys are found or the set ends.
    async fn walk_keys(
        &self,
        needle: Option<&str>,
        after: Option<&FileKey>,
        limit: usize,
    ) -> Result<Vec<FileKey>, StoreError> {
        let mut out: Vec<FileKey> = Vec::new();
        let mut from = after.map_or_else(|| "-".to_owned(), |a| format!("({}", member(a)));
        loop {
            let members: Vec<String> = self
                .query(
                    redis::cmd("ZRANGEBYLEX")
                        .arg(self.key(&["keys"]))
                        .arg(&from)
                        .arg("+")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(CHUNK),
                )
                .await?;
            let Some(last) = members.last() else {
                return Ok(out);
            };
            from = format!("({last}");
            let done = members.len() < CHUNK;
            for m in &members {
                let key = split_key(m)?;
                if needle.is_none_or(|q| lower(&key.name).contains(q)) {
                    out.push(key);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if done {
                return Ok(out);
            }
        }
    }

    /// Walks a trigram's posting set (names) from `after`'s name, keeping those whose
    /// lower-cased form holds `needle`, until `limit` keys are found or the set ends.
    async fn walk_bytes(
        &self,
        zset: &[u8],
        needle: &str,
        after: Option<&FileKey>,
        limit: usize,
    ) -> Result<Vec<FileKey>, StoreError> {
        let mut out = Vec::new();
        let mut from = after.map_or_else(|| "-".to_owned(), |a| format!("[{}", a.name));
        loop {
            let members: Vec<String> = self
                .query(
                    redis::cmd("ZRANGEBYLEX")
                        .arg(zset)
                        .arg(&from)
                        .arg("+")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(CHUNK),
                )
                .await?;
            let Some(last) = members.last() else {
                return Ok(out);
            };
            from = format!("({last}");
            let done = members.len() < CHUNK;
            let names: Vec<String> = members
                .into_iter()
                .filter(|n| lower(n).contains(needle))
                .collect();
            out.extend(self.keys_of(&names, after, limit - out.len()).await?);
            if out.len() >= limit || done {
                return Ok(out);
            }
        }
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn register(
        &self,
        peer: PeerRecord,
        previous_secret_hash: &str,
        now_ms: u64,
        files: Vec<FileEntry>,
    ) -> Result<(), StoreError> {
        let answer = self
            .run(
                &REGISTER,
                &[
                    &peer.id.as_str(),
                    &peer.address.as_str(),
                    &peer.secret_hash.as_str(),
                    &previous_secret_hash,
                    &now_ms,
                    &peer.expires_at_ms,
                    &files,
                ],
            )
            .await?;
        outcome(&peer.id, &answer).map(|_| ())
    }

    async fn renew(&self, lease: Lease<'_>, expires_at_ms: u64) -> Result<(), StoreError> {
        let answer = self
            .run(
                &RENEW,
                &[&lease.id, &lease.secret_hash, &lease.now_ms, &expires_at_ms],
            )
            .await?;
        outcome(lease.id, &answer).map(|_| ())
    }

    async fn announce(
        &self,
        lease: Lease<'_>,
        change: Announcement,
        cap: usize,
    ) -> Result<usize, StoreError> {
        let answer = self
            .run(
                &ANNOUNCE,
                &[
                    &lease.id,
                    &lease.secret_hash,
                    &lease.now_ms,
                    &cap,
                    &change.added.len(),
                    &change.added,
                    &change.removed.len(),
                    &change.removed,
                    &change.partial_added.len(),
                    &change.partial_added,
                    &change.partial_removed.len(),
                    &change.partial_removed,
                ],
            )
            .await?;
        if let Some(n) = answer.strip_prefix("overcap:") {
            return Err(StoreError::OverCap {
                id: lease.id.to_owned(),
                would_hold: n.parse().unwrap_or(usize::MAX),
                cap,
            });
        }
        let count = outcome(lease.id, &answer)?.ok_or_else(|| {
            StoreError::Corrupt(format!("announce answered {answer:?} without a count"))
        })?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    async fn leave(&self, lease: Lease<'_>) -> Result<(), StoreError> {
        let answer = self
            .run(&LEAVE, &[&lease.id, &lease.secret_hash, &lease.now_ms])
            .await?;
        outcome(lease.id, &answer).map(|_| ())
    }

    async fn remove_if_expired(&self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let answer = self.run(&EXPIRE, &[&id, &now_ms]).await?;
        match answer.as_str() {
            "ok" => Ok(true),
            "kept" => Ok(false),
            other => Err(StoreError::Corrupt(format!("expire answered {other:?}"))),
        }
    }

    async fn expired_peers(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.query(
            redis::cmd("ZRANGEBYSCORE")
                .arg(self.key(&["leases"]))
                .arg("-inf")
                .arg(now_ms)
                .arg("LIMIT")
                .arg(0)
                .arg(limit),
        )
        .await
    }

    async fn find_files(
        &self,
        query: &NameQuery,
        after: Option<&FileKey>,
        limit: usize,
    ) -> Result<Vec<FileHolders>, StoreError> {
        let keys = match query {
            NameQuery::Exact(name) => {
                if after.is_some_and(|a| a.name > *name) {
                    Vec::new()
                } else {
                    self.keys_of(std::slice::from_ref(name), after, limit)
                        .await?
                }
            }
            NameQuery::All => self.walk_keys(None, after, limit).await?,
            NameQuery::Contains(q) if q.len() >= 3 => {
                // Every match holds every trigram of the needle: walk the rarest one's names.
                // A trigram may cut a character in two, so its key is raw bytes.
                let grams: Vec<Vec<u8>> = trigrams(q)
                    .iter()
                    .map(|g| [self.prefix().as_bytes(), b"tri:", g].concat())
                    .collect();
                let mut p = redis::pipe();
                for g in &grams {
                    p.cmd("ZCARD").arg(g);
                }
                let sizes: Vec<u64> = self.pipe(&p).await?;
                match grams.iter().zip(sizes).min_by_key(|(_, n)| *n) {
                    Some((rarest, n)) if n > 0 => self.walk_bytes(rarest, q, after, limit).await?,
                    _ => Vec::new(),
                }
            }
            NameQuery::Contains(q) => self.walk_keys(Some(q), after, limit).await?,
        };
        self.with_holders(keys).await
    }

    async fn holders_of_digest(
        &self,
        sha256: &Digest,
    ) -> Result<Option<DigestHolders>, StoreError> {
        let sha = sha256.to_hex();
        let mut p = redis::pipe();
        p.cmd("HKEYS")
            .arg(self.key(&["digest:", &sha]))
            .cmd("HGETALL")
            .arg(self.key(&["roots:", &sha]))
            .cmd("HGET")
            .arg(self.key(&["sizes"]))
            .arg(&sha)
            .cmd("HGETALL")
            .arg(self.key(&["pholders:", &sha]));
        type Read = (
            Vec<String>,
            BTreeMap<String, String>,
            Option<u64>,
            BTreeMap<String, String>,
        );
        let (ids, roots, size, partial): Read = self.pipe(&p).await?;
        if ids.is_empty() && partial.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&String> = ids.iter().chain(partial.keys()).collect();
        let peers = self.peers(&refs).await?;
        let mut complete = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(h) = peers.get(id) {
                complete.push(h.with_root(root_of(&roots, id)?));
            }
        }
        let mut partial_size = None;
        let mut holders = Vec::with_capacity(partial.len());
        for (id, value) in &partial {
            let (s, root) = size_and_root(value)?;
            partial_size.get_or_insert(s);
            if let Some(h) = peers.get(id) {
                holders.push(h.with_root(parse_root(root)?));
            }
        }
        Ok(Some(DigestHolders {
            size: size.or(partial_size).unwrap_or(0),
            complete,
            partial: holders,
        }))
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let mut p = redis::pipe();
        p.cmd("ZCARD")
            .arg(self.key(&["leases"]))
            .cmd("ZCARD")
            .arg(self.key(&["keys"]))
            .cmd("GET")
            .arg(self.key(&["npartial"]));
        let (peers, files, partial): (usize, usize, Option<usize>) = self.pipe(&p).await?;
        Ok(Counts {
            peers,
            files,
            partial_holders: partial.unwrap_or(0),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = self.query(&redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!("PING answered {pong:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::registry::{Limits, Registry, RegistryError};
    use crate::store::conformance::{self, file};
    use crate::store::redis_server::RedisServer;

    fn store(url: &str, prefix: &str) -> RedisStore {
        RedisStore::new(RedisOptions {
            url: url.to_owned(),
            password: None,
            prefix: prefix.to_owned(),
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn redis_store_passes_the_conformance_suite() {
        let Some(server) = RedisServer::start().await else {
            return;
        };
        let url = server.url();
        // One prefix per check: a fresh store, and proof that prefixes keep networks apart.
        let n = AtomicUsize::new(0);
        conformance::run_all(|| {
            let prefix = format!("t{}:", n.fetch_add(1, Ordering::Relaxed));
            let s = Arc::new(store(&url, &prefix)) as Arc<dyn Store>;
            async move { s }
        })
        .await;
    }

    #[tokio::test]
    async fn redis_down_is_unavailable_naming_redis_and_back_when_it_returns() {
        let Some(server) = RedisServer::start().await else {
            return;
        };
        let port = server.port;
        let s: Arc<dyn Store> = Arc::new(store(&server.url(), "p2pshare:"));
        let r = Registry::new(s.clone(), Duration::from_secs(60), Limits::default());
        let secret = r
            .register("p1", "h:1", vec![file("a", 1)], "")
            .await
            .unwrap();
        server.kill();
        let err = s.ping().await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        let err = r.heartbeat("p1", &secret).await.unwrap_err();
        assert!(matches!(
            err,
            RegistryError::Store(StoreError::Unavailable(_))
        ));
        assert!(err.to_string().contains("Redis at 127.0.0.1:"), "{err}");
        // Restarted empty: the store reconnects and the peer is simply unknown (it re-registers).
        let _again = RedisServer::start_on(port).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while s.ping().await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "no reconnect to Redis"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(matches!(
            r.heartbeat("p1", &secret).await,
            Err(RegistryError::UnknownPeer(_))
        ));
        r.register("p1", "h:1", vec![file("a", 1)], "")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn secrets_are_not_stored_in_clear() {
        let Some(server) = RedisServer::start().await else {
            return;
        };
        let r = Registry::new(
            Arc::new(store(&server.url(), "x:")),
            Duration::from_secs(60),
            Limits::default(),
        );
        let secret = r.register("p1", "h:1", vec![], "").await.unwrap();
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let stored: String = redis::cmd("HGET")
            .arg("x:peer:p1")
            .arg("secret")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(stored.len(), 64);
        assert_ne!(stored, secret);
    }

    #[test]
    fn partial_holdings_read_with_and_without_a_root() {
        assert_eq!(size_and_root("12").unwrap(), (12, ""));
        assert_eq!(size_and_root("12:").unwrap(), (12, ""));
        assert_eq!(size_and_root("12:ab").unwrap(), (12, "ab"));
        assert!(matches!(size_and_root("x:ab"), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn digests_read_as_written_and_anything_else_is_corrupt() {
        let d = Digest([0xab; 32]);
        let key = FileKey {
            name: "a.iso".into(),
            sha256: d,
        };
        assert_eq!(split_key(&member(&key)).unwrap(), key);
        assert_eq!(parse_root("").unwrap(), None);
        assert_eq!(parse_root(&d.to_hex()).unwrap(), Some(d));
        for bad in ["ab", &d.to_hex().to_uppercase()] {
            assert!(matches!(parse_root(bad), Err(StoreError::Corrupt(_))));
            assert!(matches!(digest(bad), Err(StoreError::Corrupt(_))));
            assert!(matches!(
                split_key(&format!("a.iso\0{bad}")),
                Err(StoreError::Corrupt(_))
            ));
        }
        assert!(matches!(digest(""), Err(StoreError::Corrupt(_))));
    }
}
