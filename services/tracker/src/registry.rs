//! The tracker's rules: validation, leases and their secrets, filtering expired peers on read,
//! paging. Storage is behind [`Store`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p2p_common::names::{self, NameError};
use subtle::ConstantTimeEq;

use crate::store::{
    FileEntry, FileHolders, FileKey, Holder, NameQuery, PeerRecord, Store, StoreError,
};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{field}: {source}")]
    BadName {
        field: &'static str,
        #[source]
        source: NameError,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("peer {0:?} is not registered (or its lease expired); register again")]
    UnknownPeer(String),
    #[error(
        "peer id {id:?} is held by a live peer for another {remaining_s} s; pick another id or wait"
    )]
    IdTaken { id: String, remaining_s: u64 },
    #[error("lease secret does not match peer {0:?}")]
    WrongSecret(String),
    #[error("no live peer holds sha256 {0}")]
    DigestNotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Bounds on what one request may ask of the tracker.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_files_per_peer: usize,
    pub default_page_size: usize,
    pub max_page_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_files_per_peer: 100_000,
            default_page_size: 100,
            max_page_size: 1000,
        }
    }
}

/// A page of files with the live peers holding each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub files: Vec<(FileEntry, Vec<Holder>)>,
    pub next_token: Option<String>,
}

pub struct Registry {
    store: Arc<dyn Store>,
    ttl: Duration,
    limits: Limits,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn new_secret() -> Result<String, RegistryError> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).map_err(|e| {
        RegistryError::Store(StoreError::Unavailable(format!("no randomness: {e}")))
    })?;
    Ok(hex::encode(buf))
}

fn check_files(files: &[FileEntry], limit: usize) -> Result<(), RegistryError> {
    if files.len() > limit {
        return Err(RegistryError::Invalid(format!(
            "{} files in one request; at most {limit} are allowed",
            files.len()
        )));
    }
    let mut seen = HashSet::with_capacity(files.len());
    for f in files {
        names::validate_file_name(&f.name).map_err(|source| RegistryError::BadName {
            field: "file name",
            source,
        })?;
        names::validate_digest(&f.sha256).map_err(|source| RegistryError::BadName {
            field: "sha256",
            source,
        })?;
        if !seen.insert(f.name.as_str()) {
            return Err(RegistryError::Invalid(format!(
                "file name {:?} appears twice",
                f.name
            )));
        }
    }
    Ok(())
}

fn check_id(id: &str) -> Result<(), RegistryError> {
    names::validate_peer_id(id).map_err(|source| RegistryError::BadName {
        field: "peer id",
        source,
    })
}

/// Cursor tokens are the hex of `name NUL digest`: opaque to clients, stable across calls.
fn encode_token(key: &FileKey) -> String {
    hex::encode(format!("{}\0{}", key.name, key.sha256))
}

fn decode_token(token: &str) -> Result<Option<FileKey>, RegistryError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || RegistryError::Invalid("page_token is not one this tracker issued".into());
    let raw = hex::decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (name, sha256) = text.split_once('\0').ok_or_else(bad)?;
    Ok(Some(FileKey {
        name: name.to_owned(),
        sha256: sha256.to_owned(),
    }))
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, ttl: Duration, limits: Limits) -> Self {
        Self { store, ttl, limits }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn expiry(&self, now: u64) -> u64 {
        now + self.ttl.as_millis() as u64
    }

    /// Joins (or re-joins) the network; returns the lease secret.
    pub async fn register(
        &self,
        id: &str,
        address: &str,
        files: Vec<FileEntry>,
        previous_secret: &str,
    ) -> Result<String, RegistryError> {
        check_id(id)?;
        names::validate_address(address).map_err(|source| RegistryError::BadName {
            field: "address",
            source,
        })?;
        check_files(&files, self.limits.max_files_per_peer)?;
        let now = now_ms();
        if let Some(old) = self.store.get_peer(id).await? {
            let reclaim = !previous_secret.is_empty()
                && bool::from(old.secret.as_bytes().ct_eq(previous_secret.as_bytes()));
            if old.expires_at_ms > now && !reclaim {
                return Err(RegistryError::IdTaken {
                    id: id.to_owned(),
                    remaining_s: (old.expires_at_ms - now).div_ceil(1000),
                });
            }
        }
        let secret = new_secret()?;
        let record = PeerRecord {
            id: id.to_owned(),
            address: address.to_owned(),
            secret: secret.clone(),
            expires_at_ms: self.expiry(now),
        };
        self.store.put_peer(record, files).await?;
        Ok(secret)
    }

    /// The live record of `id`, if `secret` is its lease secret.
    async fn authorize(&self, id: &str, secret: &str) -> Result<PeerRecord, RegistryError> {
        check_id(id)?;
        let now = now_ms();
        let peer = self
            .store
            .get_peer(id)
            .await?
            .filter(|p| p.expires_at_ms > now)
            .ok_or_else(|| RegistryError::UnknownPeer(id.to_owned()))?;
        if !bool::from(peer.secret.as_bytes().ct_eq(secret.as_bytes())) {
            return Err(RegistryError::WrongSecret(id.to_owned()));
        }
        Ok(peer)
    }

    pub async fn heartbeat(&self, id: &str, secret: &str) -> Result<(), RegistryError> {
        self.authorize(id, secret).await?;
        if !self.store.renew(id, self.expiry(now_ms())).await? {
            return Err(RegistryError::UnknownPeer(id.to_owned()));
        }
        Ok(())
    }

    pub async fn announce(
        &self,
        id: &str,
        secret: &str,
        added: Vec<FileEntry>,
        removed: Vec<String>,
    ) -> Result<usize, RegistryError> {
        self.authorize(id, secret).await?;
        check_files(&added, self.limits.max_files_per_peer)?;
        if removed.len() > self.limits.max_files_per_peer {
            return Err(RegistryError::Invalid(format!(
                "{} removals in one request; at most {} are allowed",
                removed.len(),
                self.limits.max_files_per_peer
            )));
        }
        for name in &removed {
            names::validate_file_name(name).map_err(|source| RegistryError::BadName {
                field: "removed file name",
                source,
            })?;
        }
        let count = self
            .store
            .update_files(id, added, removed)
            .await?
            .ok_or_else(|| RegistryError::UnknownPeer(id.to_owned()))?;
        if count > self.limits.max_files_per_peer {
            // Over the cap after the merge: drop the peer's claim rather than keep a huge index.
            return Err(RegistryError::Invalid(format!(
                "peer would share {count} files; at most {} are allowed",
                self.limits.max_files_per_peer
            )));
        }
        Ok(count)
    }

    pub async fn leave(&self, id: &str, secret: &str) -> Result<(), RegistryError> {
        self.authorize(id, secret).await?;
        self.store.remove_peer(id).await?;
        Ok(())
    }

    pub async fn search(
        &self,
        query: &str,
        exact: bool,
        page_size: u32,
        token: &str,
    ) -> Result<Page, RegistryError> {
        if query.is_empty() {
            return Err(RegistryError::Invalid("query must not be empty".into()));
        }
        if query.len() > names::MAX_FILE_NAME_BYTES || query.chars().any(char::is_control) {
            return Err(RegistryError::Invalid(format!(
                "query must be at most {} bytes with no control characters",
                names::MAX_FILE_NAME_BYTES
            )));
        }
        let q = if exact {
            NameQuery::Exact(query.to_owned())
        } else {
            NameQuery::Contains(query.to_lowercase())
        };
        self.page(&q, page_size, token).await
    }

    pub async fn list_files(&self, page_size: u32, token: &str) -> Result<Page, RegistryError> {
        self.page(&NameQuery::All, page_size, token).await
    }

    /// Reads store pages until `size` files with live holders are found or the store runs out.
    async fn page(
        &self,
        q: &NameQuery,
        page_size: u32,
        token: &str,
    ) -> Result<Page, RegistryError> {
        let size = match page_size as usize {
            0 => self.limits.default_page_size,
            n => n.min(self.limits.max_page_size),
        };
        let mut cursor = decode_token(token)?;
        let now = now_ms();
        let mut files = Vec::new();
        loop {
            let batch = self.store.find_files(q, cursor.as_ref(), size).await?;
            let exhausted = batch.len() < size;
            for FileHolders { file, holders } in batch {
                cursor = Some(FileKey {
                    name: file.name.clone(),
                    sha256: file.sha256.clone(),
                });
                let live: Vec<Holder> = holders
                    .into_iter()
                    .filter(|h| h.expires_at_ms > now)
                    .collect();
                if !live.is_empty() {
                    files.push((file, live));
                    if files.len() == size {
                        let next = cursor.as_ref().map(encode_token);
                        return Ok(Page {
                            files,
                            next_token: next,
                        });
                    }
                }
            }
            if exhausted {
                return Ok(Page {
                    files,
                    next_token: None,
                });
            }
        }
    }

    pub async fn peers_by_digest(&self, sha256: &str) -> Result<(u64, Vec<Holder>), RegistryError> {
        names::validate_digest(sha256).map_err(|source| RegistryError::BadName {
            field: "sha256",
            source,
        })?;
        let now = now_ms();
        let (size, holders) = self
            .store
            .holders_of_digest(sha256)
            .await?
            .ok_or_else(|| RegistryError::DigestNotFound(sha256.to_owned()))?;
        let live: Vec<Holder> = holders
            .into_iter()
            .filter(|h| h.expires_at_ms > now)
            .collect();
        if live.is_empty() {
            return Err(RegistryError::DigestNotFound(sha256.to_owned()));
        }
        Ok((size, live))
    }

    /// Forgets peers whose lease ended; returns how many.
    pub async fn sweep(&self) -> Result<usize, RegistryError> {
        let now = now_ms();
        let mut n = 0;
        for id in self.store.expired_peers(now).await? {
            // Re-check: the peer may have renewed between the two calls.
            if let Some(p) = self.store.get_peer(&id).await? {
                if p.expires_at_ms <= now && self.store.remove_peer(&id).await? {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Live peers and distinct files.
    pub async fn counts(&self) -> Result<(usize, usize), RegistryError> {
        Ok(self.store.counts(now_ms()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn reg(ttl_ms: u64) -> Registry {
        Registry::new(
            Arc::new(MemoryStore::new()),
            Duration::from_millis(ttl_ms),
            Limits {
                max_files_per_peer: 10,
                default_page_size: 2,
                max_page_size: 3,
            },
        )
    }

    fn file(name: &str, byte: u8) -> FileEntry {
        FileEntry {
            name: name.into(),
            size: byte as u64,
            sha256: hex::encode([byte; 32]),
        }
    }

    #[tokio::test]
    async fn register_search_and_leave() {
        let r = reg(60_000);
        let s1 = r
            .register(
                "p1",
                "127.0.0.1:5000",
                vec![file("a.txt", 1), file("b.txt", 2)],
                "",
            )
            .await
            .unwrap();
        r.register(
            "p2",
            "127.0.0.1:5001",
            vec![file("a.txt", 1), file("ab.bin", 3)],
            "",
        )
        .await
        .unwrap();

        let page = r.search("a.txt", true, 0, "").await.unwrap();
        assert_eq!(page.files.len(), 1);
        let ids: Vec<_> = page.files[0].1.iter().map(|h| h.peer_id.as_str()).collect();
        assert_eq!(ids, ["p1", "p2"]);

        // Case-insensitive substring.
        let ab = r.search("AB", false, 0, "").await.unwrap();
        assert_eq!(ab.files.len(), 1);
        assert_eq!(ab.files[0].0.name, "ab.bin");
        // Paged two by two.
        let p1 = r.search(".", false, 0, "").await.unwrap();
        assert_eq!(p1.files.len(), 2);
        let token = p1.next_token.expect("more pages");
        let p2 = r.search(".", false, 0, &token).await.unwrap();
        let names: Vec<_> = p1
            .files
            .iter()
            .chain(&p2.files)
            .map(|f| f.0.name.clone())
            .collect();
        assert_eq!(names, ["a.txt", "ab.bin", "b.txt"]);
        assert!(p2.next_token.is_none());

        r.leave("p1", &s1).await.unwrap();
        let page = r.search("b.txt", true, 0, "").await.unwrap();
        assert!(page.files.is_empty());
        let (size, holders) = r.peers_by_digest(&hex::encode([1u8; 32])).await.unwrap();
        assert_eq!((size, holders.len()), (1, 1));
    }

    #[tokio::test]
    async fn leases_and_secrets() {
        let r = reg(200);
        let s = r
            .register("p1", "h:1", vec![file("x", 1)], "")
            .await
            .unwrap();
        // Another process cannot take a live id, nor act for it.
        assert!(matches!(
            r.register("p1", "h:2", vec![], "").await,
            Err(RegistryError::IdTaken { .. })
        ));
        assert!(matches!(
            r.heartbeat("p1", "nope").await,
            Err(RegistryError::WrongSecret(_))
        ));
        assert!(matches!(
            r.leave("p1", "").await,
            Err(RegistryError::WrongSecret(_))
        ));
        // The holder of the secret can reclaim the id (a restarted peer).
        let s2 = r
            .register("p1", "h:1", vec![file("x", 1)], &s)
            .await
            .unwrap();
        assert_ne!(s, s2);
        r.heartbeat("p1", &s2).await.unwrap();

        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(r.search("x", true, 0, "").await.unwrap().files.is_empty());
        assert!(matches!(
            r.heartbeat("p1", &s2).await,
            Err(RegistryError::UnknownPeer(_))
        ));
        assert_eq!(r.counts().await.unwrap(), (0, 0));
        assert_eq!(r.sweep().await.unwrap(), 1);
        // Expired: anyone may take the id now.
        r.register("p1", "h:9", vec![], "").await.unwrap();
    }

    #[tokio::test]
    async fn announce_updates_the_index() {
        let r = reg(60_000);
        let s = r
            .register("p1", "h:1", vec![file("x", 1)], "")
            .await
            .unwrap();
        let n = r
            .announce("p1", &s, vec![file("x", 2), file("y", 3)], vec![])
            .await
            .unwrap();
        assert_eq!(n, 2);
        let page = r.search("x", true, 0, "").await.unwrap();
        assert_eq!(page.files.len(), 1);
        assert_eq!(page.files[0].0.sha256, hex::encode([2u8; 32]));
        assert!(r.peers_by_digest(&hex::encode([1u8; 32])).await.is_err());
        r.announce("p1", &s, vec![], vec!["y".into()])
            .await
            .unwrap();
        assert!(r.search("y", true, 0, "").await.unwrap().files.is_empty());
    }

    #[tokio::test]
    async fn rejects_bad_input() {
        let r = reg(60_000);
        for (id, addr) in [("", "h:1"), ("a/b", "h:1"), ("ok", "nohost"), ("ok", "h:0")] {
            assert!(matches!(
                r.register(id, addr, vec![], "").await,
                Err(RegistryError::BadName { .. })
            ));
        }
        let bad_files = [
            vec![file("../x", 1)],
            vec![file("a", 1), file("a", 2)],
            (0..11).map(|i| file(&format!("f{i}"), 1)).collect(),
            vec![FileEntry {
                name: "a".into(),
                size: 1,
                sha256: "XYZ".into(),
            }],
        ];
        for files in bad_files {
            assert!(r.register("ok", "h:1", files, "").await.is_err());
        }
        assert!(r.search("", false, 0, "").await.is_err());
        assert!(r.search("a\nb", false, 0, "").await.is_err());
        assert!(r.search("a", false, 0, "zz").await.is_err());
        assert!(r.peers_by_digest("abc").await.is_err());
    }
}
