//! Where the tracker keeps peers and their files. The gRPC layer and the lease rules live in
//! [`crate::registry`]; a store only persists records and answers index lookups, so a shared
//! backend (Redis, for several tracker replicas) can replace the in-memory one unchanged.

mod memory;

use async_trait::async_trait;

pub use memory::MemoryStore;

/// A file as a peer shares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// One live (or not yet swept) peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    pub id: String,
    pub address: String,
    pub secret: String,
    /// Unix time in milliseconds; wall-clock so that several trackers can share a store.
    pub expires_at_ms: u64,
}

/// A peer holding some file, with its lease so the registry can drop expired holders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub peer_id: String,
    pub address: String,
    pub expires_at_ms: u64,
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
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameQuery {
    All,
    Exact(String),
    /// Case-insensitive substring; the needle is lower-cased by the caller.
    Contains(String),
}

impl NameQuery {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NameQuery::All => true,
            NameQuery::Exact(q) => name == q,
            NameQuery::Contains(q) => name.to_lowercase().contains(q.as_str()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Replaces everything known about `peer` (its record and its whole file list).
    async fn put_peer(&self, peer: PeerRecord, files: Vec<FileEntry>) -> Result<(), StoreError>;
    async fn get_peer(&self, id: &str) -> Result<Option<PeerRecord>, StoreError>;
    /// Sets a new expiry; false if the peer is unknown.
    async fn renew(&self, id: &str, expires_at_ms: u64) -> Result<bool, StoreError>;
    /// Adds (or replaces, by name) and removes files; the peer's file count, or None if unknown.
    async fn update_files(
        &self,
        id: &str,
        added: Vec<FileEntry>,
        removed: Vec<String>,
    ) -> Result<Option<usize>, StoreError>;
    /// Forgets the peer and its files; false if it was unknown.
    async fn remove_peer(&self, id: &str) -> Result<bool, StoreError>;
    /// Matching files in (name, digest) order, strictly after `after`, at most `limit` of them.
    /// Holders include expired peers: filtering on read is the registry's job.
    async fn find_files(
        &self,
        query: &NameQuery,
        after: Option<&FileKey>,
        limit: usize,
    ) -> Result<Vec<FileHolders>, StoreError>;
    /// Size of the bytes and the peers that hold them, or None if nobody does.
    async fn holders_of_digest(
        &self,
        sha256: &str,
    ) -> Result<Option<(u64, Vec<Holder>)>, StoreError>;
    /// Ids of peers whose lease ended before `now_ms`.
    async fn expired_peers(&self, now_ms: u64) -> Result<Vec<String>, StoreError>;
    /// Live peers and distinct (name, digest) pairs they share.
    async fn counts(&self, now_ms: u64) -> Result<(usize, usize), StoreError>;
    /// Fails when the backend cannot answer (for readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}
