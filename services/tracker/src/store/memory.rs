//! The embedded single-process store. One lock makes each operation atomic; counts are the
//! sizes of the maps, and the substring index is kept in step with the name index.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use indexmap::IndexMap;
use p2p_common::Digest;

use super::names::{lower, trigrams};
use super::{
    Announcement, Counts, DigestHolders, FileEntry, FileHolders, FileKey, Holder, Lease, NameQuery,
    PartialEntry, PeerRecord, Store, StoreError, answer_mix, secret_matches,
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
    /// digest -> complete holders of these bytes.
    by_digest: HashMap<Digest, DigestIndex>,
    /// digest -> peer id -> its partial holding (indexed, for a random sample in O(sample)).
    partial_by_digest: HashMap<Digest, IndexMap<String, PartialEntry>>,
    /// Sum of the peers' partial holdings.
    partial_count: usize,
    /// name -> its lower-cased form and how many digests are shared under it.
    names: BTreeMap<String, (String, usize)>,
    /// trigram of lower-cased names -> the names holding it.
    grams: HashMap<[u8; 3], BTreeSet<String>>,
}

struct PeerEntry {
    record: PeerRecord,
    files: HashMap<String, FileEntry>,
    /// digest -> partial holding.
    partials: HashMap<Digest, PartialEntry>,
}

struct DigestIndex {
    /// As last announced (one digest, one size, unless a peer lies).
    size: u64,
    /// peer id -> how many of its names carry these bytes, and the root it announced last
    /// with them (one digest has one root unless a peer lies). Indexed, for a random sample in
    /// O(sample).
    holders: IndexMap<String, (usize, Option<Digest>)>,
}

impl Inner {
    fn index(&mut self, peer: &str, f: &FileEntry) {
        let key = FileKey {
            name: f.name.clone(),
            sha256: f.sha256,
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
        let digest = self
            .by_digest
            .entry(f.sha256)
            .or_insert_with(|| DigestIndex {
                size: f.size,
                holders: IndexMap::new(),
            });
        digest.size = f.size;
        let (n, root) = digest.holders.entry(peer.to_owned()).or_default();
        *n += 1;
        *root = f.pieces_root;
    }

    fn unindex(&mut self, peer: &str, f: &FileEntry) {
        let key = FileKey {
            name: f.name.clone(),
            sha256: f.sha256,
        };
        if let Some((_, holders)) = self.by_name.get_mut(&key) {
            holders.remove(peer);
            if holders.is_empty() {
                self.by_name.remove(&key);
                self.drop_name(&f.name);
            }
        }
        if let Some(digest) = self.by_digest.get_mut(&f.sha256) {
            if let Some((n, _)) = digest.holders.get_mut(peer) {
                *n -= 1;
                if *n == 0 {
                    digest.holders.swap_remove(peer);
                }
            }
            if digest.holders.is_empty() {
                self.by_digest.remove(&f.sha256);
            }
        }
    }

    /// Makes the digest index say what `peer` now holds in part of `sha256` (`None`: nothing).
    fn set_partial(&mut self, peer: &str, sha256: &Digest, now: Option<PartialEntry>) {
        let held = now.is_some();
        let was_held = match now {
            Some(p) => self
                .partial_by_digest
                .entry(*sha256)
                .or_default()
                .insert(peer.to_owned(), p)
                .is_some(),
            None => match self.partial_by_digest.get_mut(sha256) {
                Some(holders) => {
                    let had = holders.swap_remove(peer).is_some();
                    if holders.is_empty() {
                        self.partial_by_digest.remove(sha256);
                    }
                    had
                }
                None => false,
            },
        };
        match (was_held, held) {
            (false, true) => self.partial_count += 1,
            (true, false) => self.partial_count -= 1,
            _ => {}
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
                for sha in entry.partials.keys() {
                    self.set_partial(id, sha, None);
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

    fn holder(&self, id: &str, pieces_root: Option<Digest>) -> Option<Holder> {
        self.peers.get(id).map(|p| Holder {
            peer_id: id.to_owned(),
            address: p.record.address.clone(),
            expires_at_ms: p.record.expires_at_ms,
            pieces_root,
        })
    }

    /// A complete holder of `sha256`, with the root it announced last for those bytes.
    fn digest_holder(&self, id: &str, sha256: &Digest) -> Option<Holder> {
        let root = self
            .by_digest
            .get(sha256)
            .and_then(|d| d.holders.get(id))
            .and_then(|(_, root)| *root);
        self.holder(id, root)
    }

    /// Appends the (name, digest) keys of `name` that sort after `after`, up to `limit`.
    fn push_keys(
        &self,
        name: &str,
        after: Option<&FileKey>,
        limit: usize,
        out: &mut Vec<FileHolders>,
    ) {
        // The smallest digest: the first key of `name`, whatever digests it has.
        let first = FileKey {
            name: name.to_owned(),
            sha256: Digest([0; 32]),
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
                    sha256: key.sha256,
                    pieces_root: None,
                },
                holders: holders
                    .iter()
                    .filter_map(|id| self.digest_holder(id, &key.sha256))
                    .collect(),
            });
        }
    }
}

/// At most `limit` entries of `map`, chosen uniformly at random, in O(limit).
fn sample<'a, K, V, R: rand::Rng>(
    rng: &mut R,
    map: &'a IndexMap<K, V>,
    limit: usize,
) -> impl Iterator<Item = (&'a K, &'a V)> + use<'a, K, V, R> {
    rand::seq::index::sample(rng, map.len(), limit.min(map.len()))
        .into_iter()
        .filter_map(|i| map.get_index(i))
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
                partials: HashMap::new(),
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
        change: Announcement,
        cap: usize,
    ) -> Result<usize, StoreError> {
        let Announcement {
            added,
            removed,
            partial_added,
            partial_removed,
        } = change;
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
        let partial_gone: HashSet<Digest> = partial_removed
            .iter()
            .copied()
            .filter(|d| entry.partials.contains_key(d))
            .collect();
        let partial_new: HashSet<Digest> = partial_added.iter().map(|p| p.sha256).collect();
        let completed: HashSet<Digest> = added.iter().map(|f| f.sha256).collect();
        let held_after = |d: &Digest| {
            partial_new.contains(d) || (entry.partials.contains_key(d) && !partial_gone.contains(d))
        };
        count += entry.partials.len() - partial_gone.len();
        count += partial_new
            .iter()
            .filter(|d| !entry.partials.contains_key(*d) || partial_gone.contains(*d))
            .count();
        count -= completed.iter().filter(|d| held_after(d)).count();
        if count > cap {
            return Err(StoreError::OverCap {
                id: lease.id.to_owned(),
                would_hold: count,
                cap,
            });
        }
        let touched: Vec<Digest> = partial_removed
            .iter()
            .chain(&partial_new)
            .chain(&completed)
            .copied()
            .collect();
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
        for d in &partial_removed {
            entry.partials.remove(d);
        }
        for p in partial_added {
            entry.partials.insert(p.sha256, p);
        }
        for f in &index {
            entry.partials.remove(&f.sha256);
        }
        debug_assert_eq!(entry.files.len() + entry.partials.len(), count);
        let partial_now: Vec<(Digest, Option<PartialEntry>)> = touched
            .into_iter()
            .map(|d| {
                let now = entry.partials.get(&d).cloned();
                (d, now)
            })
            .collect();
        for f in &unindex {
            inner.unindex(lease.id, f);
        }
        for f in &index {
            inner.index(lease.id, f);
        }
        for (d, now) in partial_now {
            inner.set_partial(lease.id, &d, now);
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
        sha256: &Digest,
        limit: usize,
    ) -> Result<Option<DigestHolders>, StoreError> {
        let inner = self.read();
        let complete = inner.by_digest.get(sha256);
        let partial = inner.partial_by_digest.get(sha256);
        let size = match (complete, partial) {
            (Some(c), _) => c.size,
            (None, Some(p)) => p.values().next().map_or(0, |p| p.size),
            (None, None) => return Ok(None),
        };
        let (nc, np) = answer_mix(
            complete.map_or(0, |c| c.holders.len()),
            partial.map_or(0, IndexMap::len),
            limit,
        );
        let mut rng = rand::rng();
        Ok(Some(DigestHolders {
            size,
            complete: complete
                .into_iter()
                .flat_map(|c| sample(&mut rng, &c.holders, nc))
                .filter_map(|(id, (_, root))| inner.holder(id, *root))
                .collect(),
            partial: partial
                .into_iter()
                .flat_map(|p| sample(&mut rng, p, np))
                .filter_map(|(id, p)| inner.holder(id, p.pieces_root))
                .collect(),
        }))
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let inner = self.read();
        Ok(Counts {
            peers: inner.peers.len(),
            files: inner.by_name.len(),
            partial_holders: inner.partial_count,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
