//! The shared store for several tracker replicas: Redis (or Valkey). Every rule that must be
//! atomic is one Lua script (sent once, then called by digest with EVALSHA; see [`scripts`]);
//! reads are plain commands, pipelined ([`reads`]). See `lua/common.lua` for the key layout
//! and [`layout`] for reading its values. Standalone Redis only: the scripts touch keys they
//! compute, which Redis Cluster does not allow.

mod client;
mod layout;
mod reads;
mod scripts;

use std::collections::BTreeMap;

use async_trait::async_trait;
use p2p_common::Digest;
use rand::seq::SliceRandom;

pub use client::{RedisOptions, RedisStore};
use reads::root_of;
use scripts::{ANNOUNCE, EXPIRE, LEAVE, REGISTER, RENEW, outcome};

use super::names::trigrams;
use super::{
    Announcement, Counts, DigestHolders, FileEntry, FileHolders, FileKey, Lease, LeaseKey,
    LivePeer, NameQuery, PeerRecord, Store, StoreError, answer_mix,
};

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

    async fn peers_after(
        &self,
        after: &LeaseKey,
        limit: usize,
    ) -> Result<Vec<LivePeer>, StoreError> {
        self.walk_leases(after, limit).await
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
        limit: usize,
    ) -> Result<Option<DigestHolders>, StoreError> {
        let sha = sha256.to_hex();
        // HRANDFIELD with a positive count: distinct fields, O(count) whatever the hash holds.
        let mut p = redis::pipe();
        p.cmd("HRANDFIELD")
            .arg(self.key(&["digest:", &sha]))
            .arg(limit)
            .cmd("HRANDFIELD")
            .arg(self.key(&["pholders:", &sha]))
            .arg(limit)
            .arg("WITHVALUES")
            .cmd("HGET")
            .arg(self.key(&["sizes"]))
            .arg(&sha);
        type Read = (Vec<String>, Vec<(String, String)>, Option<u64>);
        let (mut ids, mut partial, size): Read = self.pipe(&p).await?;
        if ids.is_empty() && partial.is_empty() {
            return Ok(None);
        }
        // A hash no larger than the count comes back whole, in its own order: shuffled, so
        // the part kept is a random one too.
        let (nc, np) = answer_mix(ids.len(), partial.len(), limit);
        {
            let mut rng = rand::rng();
            ids.shuffle(&mut rng);
            partial.shuffle(&mut rng);
        }
        ids.truncate(nc);
        partial.truncate(np);
        let roots: BTreeMap<String, String> = if ids.is_empty() {
            BTreeMap::new()
        } else {
            let got: Vec<Option<String>> = self
                .query(
                    redis::cmd("HMGET")
                        .arg(self.key(&["roots:", &sha]))
                        .arg(&ids),
                )
                .await?;
            ids.iter()
                .zip(got)
                .filter_map(|(id, r)| Some((id.clone(), r?)))
                .collect()
        };
        let refs: Vec<&String> = ids.iter().chain(partial.iter().map(|(id, _)| id)).collect();
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
            let (s, root) = layout::size_and_root(value)?;
            partial_size.get_or_insert(s);
            if let Some(h) = peers.get(id) {
                holders.push(h.with_root(layout::root(root)?));
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
    use std::time::Duration;

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
}
