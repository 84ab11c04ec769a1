//! The embedded single-process store. One lock makes each operation atomic; counts are the
//! sizes of the maps, and the substring index is kept in step with the name index.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;

use super::names::{lower, trigrams};
use super::{
    FileEntry, FileHolders, FileKey, Holder, Lease, NameQuery, PeerRecord, Store, StoreError,
    secret_matches,
};

#[derive(Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    // No operation panics while holding the lock, and each leaves the maps consistent before
    // any step that could; a poisoned lock therefore still guards consistent data.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Inner {
    peers: HashMap<String, PeerEntry>,
    /// (expiry, id), so the sweeper finds expired leases without a scan.
    leases: BTreeSet<(u64, String)>,
    /// (name, digest) -> size and holders.
    by_name: BTreeMap<FileKey, (u64, BTreeSet<String>)>,
    /// digest -> peer id -> how many of that peer's names carry these bytes.
    by_digest: HashMap<String, BTreeMap<String, usize>>,
    /// name -> its lower-cased form and how many digests are shared under it.
    names: BTreeMap<String, (String, usize)>,
    /// trigram of lower-cased names -> the names holding it.
    grams: HashMap<[u8; 3], BTreeSet<String>>,
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
        let (_, holders) = self
            .by_name
            .entry(key)
            .or_insert_with(|| (f.size, BTreeSet::new()));
        let new_key = holders.is_empty();
        holders.insert(peer.to_owned());
        if new_key {
            self.add_name(&f.name);
        }
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
                self.drop_name(&f.name);
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

    fn add_name(&mut self, name: &str) {
        if let Some((_, n)) = self.names.get_mut(name) {
            *n += 1;
            return;
        }
        let low = lower(name);
        for g in trigrams(&low) {
            self.grams.entry(g).or_default().insert(name.to_owned());
        }
        self.names.insert(name.to_owned(), (low, 1));
    }

    fn drop_name(&mut self, name: &str) {
        let Some((low, n)) = self.names.get_mut(name) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        for g in trigrams(low) {
            if let Some(set) = self.grams.get_mut(&g) {
                set.remove(name);
                if set.is_empty() {
                    self.grams.remove(&g);
                }
            }
        }
        self.names.remove(name);
    }

    fn remove(&mut self, id: &str) -> bool {
        match self.peers.remove(id) {
            Some(entry) => {
                self.leases
                    .remove(&(entry.record.expires_at_ms, id.to_owned()));
                for f in entry.files.values() {
                    self.unindex(id, f);
                }
                true
            }
            None => false,
        }
    }

    /// The peer's entry if `lease` is live and its secret matches.
    fn authorize(&mut self, lease: Lease<'_>) -> Result<&mut PeerEntry, StoreError> {
        let entry = self
            .peers
            .get_mut(lease.id)
            .filter(|p| p.record.expires_at_ms > lease.now_ms)
            .ok_or_else(|| StoreError::UnknownPeer(lease.id.to_owned()))?;
        if !secret_matches(&entry.record.secret_hash, lease.secret_hash) {
            return Err(StoreError::WrongSecret(lease.id.to_owned()));
        }
        Ok(entry)
    }

    fn holder(&self, id: &str) -> Option<Holder> {
        self.peers.get(id).map(|p| Holder {
            peer_id: id.to_owned(),
            address: p.record.address.clone(),
            expires_at_ms: p.record.expires_at_ms,
        })
    }

    /// Appends the (name, digest) keys of `name` that sort after `after`, up to `limit`.
    fn push_keys(
        &self,
        name: &str,
        after: Option<&FileKey>,
        limit: usize,
        out: &mut Vec<FileHolders>,
    ) {
        let first = FileKey {
            name: name.to_owned(),
            sha256: String::new(),
        };
        for (key, (size, holders)) in self.by_name.range(first..) {
            if key.name != name || out.len() >= limit {
                return;
            }
            if after.is_some_and(|a| key <= a) {
                continue;
            }
            out.push(FileHolders {
                file: FileEntry {
                    name: key.name.clone(),
                    size: *size,
                    sha256: key.sha256.clone(),
                },
                holders: holders.iter().filter_map(|id| self.holder(id)).collect(),
            });
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn register(
        &self,
        peer: PeerRecord,
        previous_secret_hash: &str,
        now_ms: u64,
        files: Vec<FileEntry>,
    ) -> Result<(), StoreError> {
        let mut inner = self.write();
        if let Some(old) = inner.peers.get(&peer.id) {
            let live = old.record.expires_at_ms > now_ms;
            if live && !secret_matches(&old.record.secret_hash, previous_secret_hash) {
                return Err(StoreError::IdTaken {
                    id: peer.id,
                    remaining_ms: old.record.expires_at_ms - now_ms,
                });
            }
        }
        inner.remove(&peer.id);
        let id = peer.id.clone();
        let mut map = HashMap::with_capacity(files.len());
        for f in files {
            inner.index(&id, &f);
            map.insert(f.name.clone(), f);
        }
        inner.leases.insert((peer.expires_at_ms, id.clone()));
        inner.peers.insert(
            id,
            PeerEntry {
                record: peer,
                files: map,
            },
        );
        Ok(())
    }

    async fn renew(&self, lease: Lease<'_>, expires_at_ms: u64) -> Result<(), StoreError> {
        let mut inner = self.write();
        let entry = inner.authorize(lease)?;
        let old = std::mem::replace(&mut entry.record.expires_at_ms, expires_at_ms);
        inner.leases.remove(&(old, lease.id.to_owned()));
        inner.leases.insert((expires_at_ms, lease.id.to_owned()));
        Ok(())
    }

    async fn announce(
        &self,
        lease: Lease<'_>,
        added: Vec<FileEntry>,
        removed: Vec<String>,
        cap: usize,
    ) -> Result<usize, StoreError> {
        let mut guard = self.write();
        let inner = &mut *guard;
        let entry = inner.authorize(lease)?;
        // The count after the change, computed before anything is written.
        let gone: HashSet<&str> = removed
            .iter()
            .map(String::as_str)
            .filter(|n| entry.files.contains_key(*n))
            .collect();
        let mut count = entry.files.len() - gone.len();
        for f in &added {
            if !entry.files.contains_key(&f.name) || gone.contains(f.name.as_str()) {
                count += 1;
            }
        }
        if count > cap {
            return Err(StoreError::OverCap {
                id: lease.id.to_owned(),
                would_hold: count,
                cap,
            });
        }
        let mut unindex = Vec::new();
        for name in &removed {
            if let Some(old) = entry.files.remove(name) {
                unindex.push(old);
            }
        }
        let mut index = Vec::with_capacity(added.len());
        for f in added {
            if let Some(old) = entry.files.insert(f.name.clone(), f.clone()) {
                unindex.push(old);
            }
            index.push(f);
        }
        debug_assert_eq!(entry.files.len(), count);
        for f in &unindex {
            inner.unindex(lease.id, f);
        }
        for f in &index {
            inner.index(lease.id, f);
        }
        Ok(count)
    }

    async fn leave(&self, lease: Lease<'_>) -> Result<(), StoreError> {
        let mut inner = self.write();
        inner.authorize(lease)?;
        inner.remove(lease.id);
        Ok(())
    }

    async fn remove_if_expired(&self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let mut inner = self.write();
        let expired = inner
            .peers
            .get(id)
            .is_some_and(|p| p.record.expires_at_ms <= now_ms);
        Ok(expired && inner.remove(id))
    }

    async fn expired_peers(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(self
            .read()
            .leases
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .take(limit)
            .map(|(_, id)| id.clone())
            .collect())
    }

    async fn find_files(
        &self,
        query: &NameQuery,
        after: Option<&FileKey>,
        limit: usize,
    ) -> Result<Vec<FileHolders>, StoreError> {
        let inner = self.read();
        let mut out = Vec::new();
        // Names are visited in order from the cursor's name (which may hold more digests).
        let from = after.map_or(Bound::Unbounded, |a| Bound::Included(a.name.clone()));
        match query {
            NameQuery::Exact(name) => {
                if after.is_none_or(|a| a.name <= *name) {
                    inner.push_keys(name, after, limit, &mut out);
                }
            }
            NameQuery::Contains(q) if q.len() >= 3 => {
                // Every match holds every trigram of the needle: walk the rarest one's names.
                let mut postings = Vec::new();
                for g in trigrams(q) {
                    match inner.grams.get(&g) {
                        Some(set) => postings.push(set),
                        None => return Ok(out),
                    }
                }
                let Some(rarest) = postings.into_iter().min_by_key(|s| s.len()) else {
                    return Ok(out);
                };
                for name in rarest.range::<String, _>((from, Bound::Unbounded)) {
                    if out.len() >= limit {
                        break;
                    }
                    let Some((low, _)) = inner.names.get(name) else {
                        continue;
                    };
                    if low.contains(q.as_str()) {
                        inner.push_keys(name, after, limit, &mut out);
                    }
                }
            }
            _ => {
                for (name, (low, _)) in inner.names.range::<String, _>((from, Bound::Unbounded)) {
                    if out.len() >= limit {
                        break;
                    }
                    if query.matches(name, low) {
                        inner.push_keys(name, after, limit, &mut out);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn holders_of_digest(
        &self,
        sha256: &str,
    ) -> Result<Option<(u64, Vec<Holder>)>, StoreError> {
        let inner = self.read();
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

    async fn counts(&self) -> Result<(usize, usize), StoreError> {
        let inner = self.read();
        Ok((inner.peers.len(), inner.by_name.len()))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
