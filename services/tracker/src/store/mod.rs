//! Where the tracker keeps peers and their files. Every rule that must hold when several tracker
//! replicas share one store is a single store operation here (register if the id is free or the
//! secret matches, renew if the secret matches, announce within the per-peer cap, remove if still
//! expired), so no replica can interleave a read and a write of another. The request checks
//! (names, digests, bounds) and the paging rules live in [`crate::registry`].

#[cfg(test)]
pub mod conformance;
mod memory;
mod names;
mod redis;
#[cfg(test)]
pub mod redis_server;

use async_trait::async_trait;
use p2p_common::Digest;

pub use memory::MemoryStore;
pub use redis::{RedisOptions, RedisStore};

/// A file as a peer shares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    pub sha256: Digest,
    /// Root of the piece digests as this peer announced it, if it announced one.
    pub pieces_root: Option<Digest>,
}

/// A file a peer holds in part (it is downloading it and serves its verified pieces). Keyed by
/// digest: names belong to complete files only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialEntry {
    pub sha256: Digest,
    pub size: u64,
    /// Always `Some` once the registry accepted it (a partial holder must announce a root).
    pub pieces_root: Option<Digest>,
}

/// One Announce: applied in this order, as one step: `removed` names go, `added` files come
/// (replacing by name), `partial_removed` digests go, `partial_added` come, and last every
/// partial entry whose digest is in `added` goes (the download finished).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announcement {
    pub added: Vec<FileEntry>,
    pub removed: Vec<String>,
    pub partial_added: Vec<PartialEntry>,
    pub partial_removed: Vec<Digest>,
}

/// What a store keeps about a peer. The lease secret is never stored: only its SHA-256, so a
/// dump of the store (or a Redis replica) does not hand out the right to act for a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    pub id: String,
    pub address: String,
    /// Lowercase hex SHA-256 of the lease secret.
    pub secret_hash: String,
    /// Unix time in milliseconds; wall-clock so that several trackers can share a store.
    pub expires_at_ms: u64,
}

/// A peer holding some file, with its lease so the registry can drop expired holders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub peer_id: String,
    pub address: String,
    pub expires_at_ms: u64,
    /// The root this peer announced for the file, if any.
    pub pieces_root: Option<Digest>,
}

/// A peer with a lease, as [`Store::peers_after`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivePeer {
    pub id: String,
    pub address: String,
    /// The end of its lease, as the store orders peers by it (see [`LeaseKey`]).
    pub expires_at_ms: u64,
}

impl LivePeer {
    pub fn key(&self) -> LeaseKey {
        LeaseKey {
            expires_at_ms: self.expires_at_ms,
            id: self.id.clone(),
        }
    }
}

/// Position in lease order, (lease end, id), for paging ListPeers. Both stores already keep
/// peers in this order for the sweeper, so a page costs its own size, and a lease only ever
/// moves later: a peer is never skipped by a walk, only met again after it renews.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LeaseKey {
    pub expires_at_ms: u64,
    pub id: String,
}

/// Who holds some bytes, by digest: complete holders and partial ones, each set as stored or a
/// sample of it (a peer may appear in both; expired peers included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestHolders {
    pub size: u64,
    pub complete: Vec<Holder>,
    pub partial: Vec<Holder>,
}

/// Sizes kept by counters on write (not a scan).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Registered peers (those whose lease ended count until the sweeper removes them).
    pub peers: usize,
    /// Distinct (name, digest) pairs held complete.
    pub files: usize,
    /// (peer, digest) partial holdings.
    pub partial_holders: usize,
}

/// One (name, digest) pair and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHolders {
    pub file: FileEntry,
    pub holders: Vec<Holder>,
}

/// Position in the (name, digest) order, for paging.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileKey {
    pub name: String,
    pub sha256: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameQuery {
    All,
    Exact(String),
    /// Case-insensitive substring; the needle is lower-cased by the caller.
    Contains(String),
}

impl NameQuery {
    /// `lower` is the name lower-cased (see [`names::lower`]).
    pub fn matches(&self, name: &str, lower: &str) -> bool {
        match self {
            NameQuery::All => true,
            NameQuery::Exact(q) => name == q,
            NameQuery::Contains(q) => lower.contains(q.as_str()),
        }
    }
}

/// A lease check made inside a store operation: the peer's id, the SHA-256 of the secret it
/// presented, and the time the request is judged at.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub id: &'a str,
    pub secret_hash: &'a str,
    pub now_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend did not answer (down, timed out, refused the connection or the password).
    #[error("{0}")]
    Unavailable(String),
    /// No live lease for this id (never registered, left, or expired).
    #[error("peer {0:?} is not registered (or its lease expired)")]
    UnknownPeer(String),
    /// The id belongs to a live peer and the request did not carry its secret.
    #[error("peer id {id:?} is held by a live peer for another {remaining_ms} ms")]
    IdTaken { id: String, remaining_ms: u64 },
    #[error("lease secret does not match peer {0:?}")]
    WrongSecret(String),
    /// The change would make the peer hold more files than allowed; nothing was written.
    #[error("peer {id:?} would share {would_hold} files; at most {cap} are allowed")]
    OverCap {
        id: String,
        would_hold: usize,
        cap: usize,
    },
    /// The backend answered something this code did not write (another program's keys under
    /// our prefix, or a different version of the scripts).
    #[error("store holds unexpected data: {0}")]
    Corrupt(String),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Writes `peer` with exactly `files` if its id is free, expired, or held under
    /// `previous_secret_hash`; otherwise [`StoreError::IdTaken`]. A re-registration replaces the
    /// old file list and forgets the old partial holdings. `files.len() <= cap` is the caller's check; names are distinct.
    async fn register(
        &self,
        peer: PeerRecord,
        previous_secret_hash: &str,
        now_ms: u64,
        files: Vec<FileEntry>,
    ) -> Result<(), StoreError>;
    /// Moves the lease's expiry to `expires_at_ms` if the lease is live and the secret matches.
    async fn renew(&self, lease: Lease<'_>, expires_at_ms: u64) -> Result<(), StoreError>;
    /// Applies `change` (see [`Announcement`]) if the lease is live, the secret matches and the
    /// peer then holds at most `cap` entries, files and partial holdings together; returns that
    /// count. On any refusal nothing is written. Within `change`, names of `added` and digests
    /// of `partial_added` are distinct (the caller's check).
    async fn announce(
        &self,
        lease: Lease<'_>,
        change: Announcement,
        cap: usize,
    ) -> Result<usize, StoreError>;
    /// Forgets the peer, its files and its partial holdings if the lease is live and the
    /// secret matches.
    async fn leave(&self, lease: Lease<'_>) -> Result<(), StoreError>;
    /// Forgets the peer if its lease is still over at `now_ms` (it may have renewed since it
    /// was listed); true for exactly one caller when several race.
    async fn remove_if_expired(&self, id: &str, now_ms: u64) -> Result<bool, StoreError>;
    /// Up to `limit` ids of peers whose lease ended at or before `now_ms`.
    async fn expired_peers(&self, now_ms: u64, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Up to `limit` peers in lease order, strictly after `after`, with the addresses they
    /// registered; read at a cost that grows with `limit`, not with the number of peers.
    /// Expired peers included (the registry starts past the present).
    async fn peers_after(
        &self,
        after: &LeaseKey,
        limit: usize,
    ) -> Result<Vec<LivePeer>, StoreError>;
    /// Matching files in (name, digest) order, strictly after `after`, at most `limit` of them.
    /// Holders include expired peers: filtering on read is the registry's job.
    async fn find_files(
        &self,
        query: &NameQuery,
        after: Option<&FileKey>,
        limit: usize,
    ) -> Result<Vec<FileHolders>, StoreError>;
    /// Size of the bytes and the peers that hold them in whole or in part, or None if nobody
    /// does. The size is a complete holder's when there is one, else a partial holder's.
    ///
    /// At most `limit` holders in all, a uniform random sample of each kind, as many of each
    /// as [`answer_mix`] says, in no particular order; read at a cost that grows with `limit`,
    /// not with the number of holders: a file ten thousand peers hold costs what one with
    /// fifty does.
    async fn holders_of_digest(
        &self,
        sha256: &Digest,
        limit: usize,
    ) -> Result<Option<DigestHolders>, StoreError>;
    /// See [`Counts`].
    async fn counts(&self) -> Result<Counts, StoreError>;
    /// Fails when the backend cannot answer (for readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// How many complete and partial holders an answer of at most `limit` names, given `complete`
/// and `partial` stored ones: partial holders up to half, complete ones the rest, and either
/// kind fills what the other cannot.
pub fn answer_mix(complete: usize, partial: usize, limit: usize) -> (usize, usize) {
    let c = complete.min(limit - partial.min(limit / 2));
    (c, partial.min(limit - c))
}

/// Whether a presented secret's hash is the stored one, in constant time (both are SHA-256
/// hex; an empty presented hash never matches).
pub fn secret_matches(stored_hash: &str, presented_hash: &str) -> bool {
    use subtle::ConstantTimeEq;
    !presented_hash.is_empty()
        && bool::from(stored_hash.as_bytes().ct_eq(presented_hash.as_bytes()))
}
