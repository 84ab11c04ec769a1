//! The read paths: walking the key set and the trigram index, and the holders of what was
//! found, each a few pipelined commands.

use std::collections::{BTreeMap, HashMap};

use p2p_common::Digest;

use super::client::RedisStore;
use super::layout::{self, member, split_key};
use crate::store::names::lower;
use crate::store::{FileEntry, FileHolders, FileKey, Holder, LeaseKey, LivePeer, StoreError};

/// Candidate names read per round trip when walking an index.
const CHUNK: usize = 512;

impl Holder {
    pub(super) fn with_root(&self, root: Option<Digest>) -> Holder {
        Holder {
            pieces_root: root,
            ..self.clone()
        }
    }
}

/// The root `id` announced, from a `roots:<sha256>` hash (none there when it was written by
/// a tracker from before roots).
pub(super) fn root_of(
    roots: &BTreeMap<String, String>,
    id: &str,
) -> Result<Option<Digest>, StoreError> {
    layout::root(roots.get(id).map_or("", String::as_str))
}

impl RedisStore {
    /// The (name, digest) keys of `names` that sort after `after`, in order, up to `limit`.
    pub(super) async fn keys_of(
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
    pub(super) async fn with_holders(
        &self,
        keys: Vec<FileKey>,
    ) -> Result<Vec<FileHolders>, StoreError> {
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
    pub(super) async fn peers(
        &self,
        ids: &[&String],
    ) -> Result<HashMap<String, Holder>, StoreError> {
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

    /// Peers in lease order strictly after `after`, up to `limit`: fewer only when the order
    /// ends (a peer gone between the two reads is passed over, and the walk goes on).
    pub(super) async fn walk_leases(
        &self,
        after: &LeaseKey,
        limit: usize,
    ) -> Result<Vec<LivePeer>, StoreError> {
        let mut out = Vec::new();
        let mut cursor = after.clone();
        while out.len() < limit {
            let (ids, ended) = self.lease_ids(&cursor, limit - out.len()).await?;
            if let Some((id, at)) = ids.last() {
                cursor = LeaseKey {
                    expires_at_ms: *at,
                    id: id.clone(),
                };
            }
            let refs: Vec<&String> = ids.iter().map(|(id, _)| id).collect();
            let mut peers = self.peers(&refs).await?;
            // A peer's place is the lease end read from the set (the page's token is made of
            // it), even if it renewed between the two reads.
            out.extend(ids.into_iter().filter_map(|(id, at)| {
                peers.remove(&id).map(|h| LivePeer {
                    id,
                    address: h.address,
                    expires_at_ms: at,
                })
            }));
            if ended {
                break;
            }
        }
        Ok(out)
    }

    /// Up to `limit` (id, lease end) after `after` in the sweeper's `leases` set (scored by
    /// lease end; Redis orders equal scores by member, as [`LeaseKey`] does), and whether the
    /// set ended.
    async fn lease_ids(
        &self,
        after: &LeaseKey,
        limit: usize,
    ) -> Result<(Vec<(String, u64)>, bool), StoreError> {
        let chunk = limit.clamp(1, CHUNK);
        let mut ids = Vec::new();
        let mut offset = 0usize;
        loop {
            // From the cursor's lease end on: the peers that share it up to the cursor's id
            // are passed over (lease ends are in milliseconds: ties are few).
            let got: Vec<(String, f64)> = self
                .query(
                    redis::cmd("ZRANGEBYSCORE")
                        .arg(self.key(&["leases"]))
                        .arg(after.expires_at_ms)
                        .arg("+inf")
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(offset)
                        .arg(chunk),
                )
                .await?;
            let ended = got.len() < chunk;
            offset += got.len();
            for (id, score) in got {
                // Scores are the scripts' integer milliseconds, exact in a double.
                let at = score as u64;
                if (at, id.as_str()) > (after.expires_at_ms, after.id.as_str()) {
                    ids.push((id, at));
                    if ids.len() == limit {
                        return Ok((ids, false));
                    }
                }
            }
            if ended {
                return Ok((ids, true));
            }
        }
    }

    /// Walks the key set from `after`, keeping names whose lower-cased form holds `needle`,
    /// until `limit` keys are found or the set ends.
    pub(super) async fn walk_keys(
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
    pub(super) async fn walk_bytes(
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
