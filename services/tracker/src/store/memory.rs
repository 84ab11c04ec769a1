//! The embedded single-process store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use async_trait::async_trait;
use tokio::sync::RwLock;

use super::{FileEntry, FileHolders, FileKey, Holder, NameQuery, PeerRecord, Store, StoreError};

#[derive(Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[derive(Default)]
struct Inner {
    peers: HashMap<String, PeerEntry>,
    /// (name, digest) -> size and holders.
    by_name: BTreeMap<FileKey, (u64, BTreeSet<String>)>,
    /// digest -> peer id -> how many of that peer's names carry these bytes.
    by_digest: HashMap<String, BTreeMap<String, usize>>,
}

struct PeerEntry {
    record: PeerRecord,
    files: HashMap<String, FileEntry>,
}

impl Inner {
    fn index(&mut self, peer: &str, f: &FileEntry) {
        let key = FileKey {
            name: f.name.clone(),
            sha256: f.sha256.clone(),
        };
        self.by_name
            .entry(key)
            .or_insert_with(|| (f.size, BTreeSet::new()))
            .1
            .insert(peer.to_owned());
        *self
            .by_digest
            .entry(f.sha256.clone())
            .or_default()
            .entry(peer.to_owned())
            .or_default() += 1;
    }

    fn unindex(&mut self, peer: &str, f: &FileEntry) {
        let key = FileKey {
            name: f.name.clone(),
            sha256: f.sha256.clone(),
        };
        if let Some((_, holders)) = self.by_name.get_mut(&key) {
            holders.remove(peer);
            if holders.is_empty() {
                self.by_name.remove(&key);
            }
        }
        if let Some(peers) = self.by_digest.get_mut(&f.sha256) {
            if let Some(n) = peers.get_mut(peer) {
                *n -= 1;
                if *n == 0 {
                    peers.remove(peer);
                }
            }
            if peers.is_empty() {
                self.by_digest.remove(&f.sha256);
            }
        }
    }

    fn remove(&mut self, id: &str) -> bool {
        match self.peers.remove(id) {
            Some(entry) => {
                for f in entry.files.values() {
                    self.unindex(id, f);
                }
                true
            }
            None => false,
        }
    }

    fn holder(&self, id: &str) -> Option<Holder> {
        self.peers.get(id).map(|p| Holder {
            peer_id: id.to_owned(),
            address: p.record.address.clone(),
            expires_at_ms: p.record.expires_at_ms,
        })
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_peer(&self, peer: PeerRecord, files: Vec<FileEntry>) -> Result<(), StoreError> {
        let mut inner = self.inner.write().await;
        inner.remove(&peer.id);
        let id = peer.id.clone();
        let mut map = HashMap::with_capacity(files.len());
        for f in files {
            inner.index(&id, &f);
            map.insert(f.name.clone(), f);
        }
        inner.peers.insert(
            id,
            PeerEntry {
                record: peer,
                files: map,
            },
        );
        Ok(())
    }

    async fn get_peer(&self, id: &str) -> Result<Option<PeerRecord>, StoreError> {
        Ok(self
            .inner
            .read()
            .await
            .peers
            .get(id)
            .map(|p| p.record.clone()))
    }

    async fn renew(&self, id: &str, expires_at_ms: u64) -> Result<bool, StoreError> {
        let mut inner = self.inner.write().await;
        Ok(match inner.peers.get_mut(id) {
            Some(p) => {
                p.record.expires_at_ms = expires_at_ms;
                true
            }
            None => false,
        })
    }

    async fn update_files(
        &self,
        id: &str,
        added: Vec<FileEntry>,
        removed: Vec<String>,
    ) -> Result<Option<usize>, StoreError> {
        let mut guard = self.inner.write().await;
        let inner = &mut *guard;
        let Some(entry) = inner.peers.get_mut(id) else {
            return Ok(None);
        };
        let mut unindex = Vec::new();
        for name in removed {
            if let Some(old) = entry.files.remove(&name) {
                unindex.push(old);
            }
        }
        let mut index = Vec::new();
        for f in added {
            if let Some(old) = entry.files.insert(f.name.clone(), f.clone()) {
                unindex.push(old);
            }
            index.push(f);
        }
        let count = entry.files.len();
        for f in &unindex {
            inner.unindex(id, f);
        }
        for f in &index {
            inner.index(id, f);
        }
        Ok(Some(count))
    }

    async fn remove_peer(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.inner.write().await.remove(id))
    }

    async fn find_files(
        &self,
        query: &NameQuery,
        after: Option<&FileKey>,
        limit: usize,
    ) -> Result<Vec<FileHolders>, StoreError> {
        let inner = self.inner.read().await;
        let lower = match after {
            Some(k) => Bound::Excluded(k.clone()),
            None => match query {
                // Exact names sit together in the order: start at the first of them.
                NameQuery::Exact(name) => Bound::Included(FileKey {
                    name: name.clone(),
                    sha256: String::new(),
                }),
                _ => Bound::Unbounded,
            },
        };
        let mut out = Vec::new();
        for (key, (size, holders)) in inner.by_name.range((lower, Bound::Unbounded)) {
            if let NameQuery::Exact(name) = query {
                if &key.name != name {
                    break;
                }
            } else if !query.matches(&key.name) {
                continue;
            }
            out.push(FileHolders {
                file: FileEntry {
                    name: key.name.clone(),
                    size: *size,
                    sha256: key.sha256.clone(),
                },
                holders: holders.iter().filter_map(|id| inner.holder(id)).collect(),
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn holders_of_digest(
        &self,
        sha256: &str,
    ) -> Result<Option<(u64, Vec<Holder>)>, StoreError> {
        let inner = self.inner.read().await;
        let Some(peers) = inner.by_digest.get(sha256) else {
            return Ok(None);
        };
        let size = peers
            .keys()
            .filter_map(|id| inner.peers.get(id))
            .flat_map(|p| p.files.values())
            .find(|f| f.sha256 == sha256)
            .map_or(0, |f| f.size);
        let holders = peers.keys().filter_map(|id| inner.holder(id)).collect();
        Ok(Some((size, holders)))
    }

    async fn expired_peers(&self, now_ms: u64) -> Result<Vec<String>, StoreError> {
        let inner = self.inner.read().await;
        Ok(inner
            .peers
            .values()
            .filter(|p| p.record.expires_at_ms <= now_ms)
            .map(|p| p.record.id.clone())
            .collect())
    }

    async fn counts(&self, now_ms: u64) -> Result<(usize, usize), StoreError> {
        let inner = self.inner.read().await;
        let live = |id: &String| {
            inner
                .peers
                .get(id)
                .is_some_and(|p| p.record.expires_at_ms > now_ms)
        };
        let peers = inner.peers.keys().filter(|id| live(id)).count();
        let files = inner
            .by_name
            .values()
            .filter(|(_, holders)| holders.iter().any(live))
            .count();
        Ok((peers, files))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
