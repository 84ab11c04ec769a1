//! The embedded single-process store. One lock makes each operation atomic; counts are the
//! sizes of the maps, and the substring index is kept in step with the name index.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use indexmap::IndexMap;
use p2p_common::Digest;

mod holding;

use self::holding::{Holding, PeerId, PeerList};
use super::names::{lower, trigrams};
use super::{
    Announcement, Counts, DigestHolders, FileEntry, FileHolders, FileKey, Holder, Lease, LeaseKey,
    LivePeer, NameQuery, PartialEntry, PeerRecord, Store, StoreError, answer_mix, secret_matches,
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

/// A file name, shared by every structure that names the file (one allocation per name).
type Name = Arc<str>;

#[derive(Default)]
struct Inner {
    peers: HashMap<PeerId, PeerEntry>,
    /// (expiry, id), so the sweeper finds expired leases without a scan.
    leases: BTreeSet<(u64, PeerId)>,
    /// (name, digest) -> size and holders.
    by_name: BTreeMap<(Name, Digest), NameHolders>,
    /// digest -> complete holders of these bytes.
    by_digest: HashMap<Digest, DigestIndex>,
    /// digest -> peer id -> its partial holding (indexed, for a random sample in O(sample)).
    partial_by_digest: HashMap<Digest, IndexMap<PeerId, PartialEntry>>,
    /// Sum of the peers' partial holdings.
    partial_count: usize,
    /// Every shared name: the one allocation of it the other maps share.
    names: BTreeMap<Name, NameInfo>,
    /// trigram of lower-cased names -> the names holding it.
    grams: HashMap<[u8; 3], BTreeSet<Name>>,
}

struct NameInfo {
    /// The lower-cased form, when it differs from the name (most names are lower case).
    lower: Option<Box<str>>,
    /// How many digests are shared under the name.
    digests: usize,
}

/// Holders of one (name, digest).
struct NameHolders {
    size: u64,
    holders: PeerList,
}

struct PeerEntry {
    /// The key this peer is filed under in `peers`, `leases` and the holder sets.
    key: PeerId,
    record: PeerRecord,
    /// name -> digest: size and root live once, in the indexes, not per peer as well.
    files: HashMap<Name, Digest>,
    /// digest -> partial holding.
    partials: HashMap<Digest, PartialEntry>,
}

struct DigestIndex {
    /// As last announced (one digest, one size, unless a peer lies).
    size: u64,
    holders: Holding,
}

/// Whether (name, digest) sorts at or before the paging cursor.
fn at_or_before(name: &str, sha256: &Digest, cursor: &FileKey) -> bool {
    (name, sha256) <= (cursor.name.as_str(), &cursor.sha256)
}

impl Inner {
    /// The shared allocation of `name` if it is already shared, else a new one.
    fn intern(&self, name: String) -> Name {
        match self.names.get_key_value(name.as_str()) {
            Some((shared, _)) => shared.clone(),
            None => Name::from(name),
        }
    }

    /// Files `peer`'s `name`; returns the name as the maps share it.
    fn index(&mut self, peer: &PeerId, f: FileEntry) -> Name {
        let name = self.intern(f.name);
        let mut new_key = false;
        self.by_name
            .entry((name.clone(), f.sha256))
            .and_modify(|held| held.holders.insert(peer))
            .or_insert_with(|| {
                new_key = true;
                NameHolders {
                    size: f.size,
                    holders: PeerList::One(peer.clone()),
                }
            });
        if new_key {
            self.add_name(&name);
        }
        let digest = self
            .by_digest
            .entry(f.sha256)
            .or_insert_with(|| DigestIndex {
                size: f.size,
                holders: Holding::Empty,
            });
        digest.size = f.size;
        let hold = digest.holders.hold_mut(peer);
        hold.names += 1;
        hold.root = f.pieces_root;
        name
    }

    fn unindex(&mut self, peer: &str, name: &Name, sha256: &Digest) {
        let key = (name.clone(), *sha256);
        if let Some(held) = self.by_name.get_mut(&key)
            && !held.holders.remove(peer)
        {
            self.by_name.remove(&key);
            self.drop_name(name);
        }
        if let Some(digest) = self.by_digest.get_mut(sha256) {
            if let Some(hold) = digest.holders.get_mut(peer) {
                hold.names -= 1;
                if hold.names == 0 {
                    digest.holders.remove(peer);
                }
            }
            if digest.holders.is_empty() {
                self.by_digest.remove(sha256);
            }
        }
    }

    /// Makes the digest index say what `peer` now holds in part of `sha256` (`None`: nothing).
    fn set_partial(&mut self, peer: &PeerId, sha256: &Digest, now: Option<PartialEntry>) {
        let held = now.is_some();
        let was_held = match now {
            Some(p) => self
                .partial_by_digest
                .entry(*sha256)
                .or_default()
                .insert(peer.clone(), p)
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

    fn add_name(&mut self, name: &Name) {
        if let Some(info) = self.names.get_mut(name) {
            info.digests += 1;
            return;
        }
        let low = lower(name);
        for g in trigrams(&low) {
            self.grams.entry(g).or_default().insert(name.clone());
        }
        let lower = (low != **name).then(|| low.into_boxed_str());
        self.names
            .insert(name.clone(), NameInfo { lower, digests: 1 });
    }

    fn drop_name(&mut self, name: &Name) {
        let Some(info) = self.names.get_mut(name) else {
            return;
        };
        info.digests -= 1;
        if info.digests > 0 {
            return;
        }
        let grams = trigrams(info.lower.as_deref().unwrap_or(name));
        for g in grams {
            if let Some(set) = self.grams.get_mut(&g) {
                set.remove(name);
                if set.is_empty() {
                    self.grams.remove(&g);
                }
            }
        }
        self.names.remove(name);
    }

    /// Gives back the tables' spare room once most of what filled them is gone (a hash map
    /// keeps its largest size otherwise): a quarter full or less, shrunk to what they hold.
    fn shrink_if_sparse(&mut self) {
        fn shrink<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, V>) {
            if m.capacity() > 64 && m.len() <= m.capacity() / 4 {
                m.shrink_to_fit();
            }
        }
        shrink(&mut self.peers);
        shrink(&mut self.by_digest);
        shrink(&mut self.partial_by_digest);
        shrink(&mut self.grams);
    }

    fn remove(&mut self, id: &str) -> bool {
        match self.peers.remove(id) {
            Some(entry) => {
                self.leases
                    .remove(&(entry.record.expires_at_ms, entry.key.clone()));
                for (name, f) in &entry.files {
                    self.unindex(id, name, f);
                }
                for sha in entry.partials.keys() {
                    self.set_partial(&entry.key, sha, None);
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
            .and_then(|h| h.root);
        self.holder(id, root)
    }

    /// Appends the (name, digest) keys of `name` that sort after `after`, up to `limit`.
    fn push_keys(
        &self,
        name: &Name,
        after: Option<&FileKey>,
        limit: usize,
        out: &mut Vec<FileHolders>,
    ) {
        // The smallest digest: the first key of `name`, whatever digests it has.
        let first = (name.clone(), Digest([0; 32]));
        for ((key_name, sha256), held) in self.by_name.range(first..) {
            if key_name != name || out.len() >= limit {
                return;
            }
            if after.is_some_and(|a| at_or_before(key_name, sha256, a)) {
                continue;
            }
            out.push(FileHolders {
                file: FileEntry {
                    name: key_name.to_string(),
                    size: held.size,
                    sha256: *sha256,
                    pieces_root: None,
                },
                holders: held
                    .holders
                    .as_slice()
                    .iter()
                    .filter_map(|id| self.digest_holder(id, sha256))
                    .collect(),
            });
        }
    }
}

/// At most `limit` of the indices `0..len`, chosen uniformly at random, in O(limit).
fn sample<R: rand::Rng>(rng: &mut R, len: usize, limit: usize) -> impl Iterator<Item = usize> {
    rand::seq::index::sample(rng, len, limit.min(len)).into_iter()
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
        if let Some(old) = inner.peers.get(peer.id.as_str()) {
            let live = old.record.expires_at_ms > now_ms;
            if live && !secret_matches(&old.record.secret_hash, previous_secret_hash) {
                return Err(StoreError::IdTaken {
                    id: peer.id,
                    remaining_ms: old.record.expires_at_ms - now_ms,
                });
            }
        }
        inner.remove(&peer.id);
        let key = PeerId::from(peer.id.as_str());
        let mut map = HashMap::with_capacity(files.len());
        for f in files {
            let sha256 = f.sha256;
            map.insert(inner.index(&key, f), sha256);
        }
        inner.leases.insert((peer.expires_at_ms, key.clone()));
        inner.peers.insert(
            key.clone(),
            PeerEntry {
                key,
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
        let key = entry.key.clone();
        inner.leases.remove(&(old, key.clone()));
        inner.leases.insert((expires_at_ms, key));
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
            if !entry.files.contains_key(f.name.as_str()) || gone.contains(f.name.as_str()) {
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
        let key = entry.key.clone();
        // Files leave the peer's map first, keeping their shared names; new ones are filed
        // once the indexes have given them theirs.
        let mut unindex = Vec::new();
        for name in removed.iter().chain(added.iter().map(|f| &f.name)) {
            if let Some(old) = entry.files.remove_entry(name.as_str()) {
                unindex.push(old);
            }
        }
        for d in &partial_removed {
            entry.partials.remove(d);
        }
        for p in partial_added {
            entry.partials.insert(p.sha256, p);
        }
        for f in &added {
            entry.partials.remove(&f.sha256);
        }
        let partial_now: Vec<(Digest, Option<PartialEntry>)> = touched
            .into_iter()
            .map(|d| {
                let now = entry.partials.get(&d).cloned();
                (d, now)
            })
            .collect();
        for (name, f) in &unindex {
            inner.unindex(lease.id, name, f);
        }
        let mut filed = Vec::with_capacity(added.len());
        for f in added {
            let sha256 = f.sha256;
            filed.push((inner.index(&key, f), sha256));
        }
        for (d, now) in partial_now {
            inner.set_partial(&key, &d, now);
        }
        if let Some(entry) = inner.peers.get_mut(lease.id) {
            entry.files.extend(filed);
            debug_assert_eq!(entry.files.len() + entry.partials.len(), count);
        }
        Ok(count)
    }

    async fn leave(&self, lease: Lease<'_>) -> Result<(), StoreError> {
        let mut inner = self.write();
        inner.authorize(lease)?;
        inner.remove(lease.id);
        inner.shrink_if_sparse();
        Ok(())
    }

    async fn remove_if_expired(&self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let mut inner = self.write();
        let expired = inner
            .peers
            .get(id)
            .is_some_and(|p| p.record.expires_at_ms <= now_ms);
        let removed = expired && inner.remove(id);
        if removed {
            inner.shrink_if_sparse();
        }
        Ok(removed)
    }

    async fn expired_peers(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(self
            .read()
            .leases
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .take(limit)
            .map(|(_, id)| id.to_string())
            .collect())
    }

    async fn peers_after(
        &self,
        after: &LeaseKey,
        limit: usize,
    ) -> Result<Vec<LivePeer>, StoreError> {
        let inner = self.read();
        let from = (after.expires_at_ms, PeerId::from(after.id.as_str()));
        Ok(inner
            .leases
            .range((Bound::Excluded(from), Bound::Unbounded))
            .filter_map(|(at, id)| {
                inner.peers.get(id).map(|p| LivePeer {
                    id: id.to_string(),
                    address: p.record.address.clone(),
                    expires_at_ms: *at,
                })
            })
            .take(limit)
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
        let from = after.map_or(Bound::Unbounded, |a| Bound::Included(a.name.as_str()));
        match query {
            NameQuery::Exact(name) => {
                if after.is_none_or(|a| a.name <= *name)
                    && let Some((name, _)) = inner.names.get_key_value(name.as_str())
                {
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
                for name in rarest.range::<str, _>((from, Bound::Unbounded)) {
                    if out.len() >= limit {
                        break;
                    }
                    let Some(info) = inner.names.get(name) else {
                        continue;
                    };
                    if info.lower.as_deref().unwrap_or(name).contains(q.as_str()) {
                        inner.push_keys(name, after, limit, &mut out);
                    }
                }
            }
            _ => {
                for (name, info) in inner.names.range::<str, _>((from, Bound::Unbounded)) {
                    if out.len() >= limit {
                        break;
                    }
                    if query.matches(name, info.lower.as_deref().unwrap_or(name)) {
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
        let complete = complete.map_or_else(Vec::new, |c| {
            sample(&mut rng, c.holders.len(), nc)
                .filter_map(|i| c.holders.get_index(i))
                .filter_map(|(id, hold)| inner.holder(id, hold.root))
                .collect()
        });
        let partial = partial.map_or_else(Vec::new, |p| {
            sample(&mut rng, p.len(), np)
                .filter_map(|i| p.get_index(i))
                .filter_map(|(id, p)| inner.holder(id, p.pieces_root))
                .collect()
        });
        Ok(Some(DigestHolders {
            size,
            complete,
            partial,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::file;

    fn peer(id: &str) -> PeerRecord {
        PeerRecord {
            id: id.into(),
            address: "h:1".into(),
            secret_hash: "x".into(),
            expires_at_ms: 1000,
        }
    }

    #[tokio::test]
    async fn a_name_is_one_allocation_whoever_shares_it() {
        let store = MemoryStore::new();
        for id in ["p1", "p2"] {
            store
                .register(
                    peer(id),
                    "",
                    0,
                    vec![file("Report.PDF", 1), file("b.txt", 2)],
                )
                .await
                .unwrap();
        }
        let inner = store.read();
        let (name, info) = inner.names.get_key_value("Report.PDF").unwrap();
        // The name map, the (name, digest) key, each trigram's posting and both peers' maps.
        let grams = trigrams("report.pdf").len();
        assert_eq!(Arc::strong_count(name), 2 + grams + 2);
        assert_eq!(info.lower.as_deref(), Some("report.pdf"));
        let (_, info) = inner.names.get_key_value("b.txt").unwrap();
        assert_eq!(info.lower, None, "a lower-case name is not copied");
        let (id, _) = inner.peers.get_key_value("p1").unwrap();
        // The peers map, its entry's key, the lease and the holder lists of two names and two
        // digests.
        assert_eq!(Arc::strong_count(id), 3 + 2 + 2);
    }
}
