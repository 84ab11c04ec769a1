//! The index of the share: its entries by name and by digest. An [`Entry`] is also what the
//! digest cache (`.p2pshare/index.json`) holds, so that a restart does not rehash unchanged
//! files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::fs::mtime_ns;
use crate::share::pieces::Hashed;
use crate::share::{Digest, Manifest};

/// A shared file as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub sha256: Digest,
    /// Modification time (ns since the epoch) when hashed: a changed file is rehashed.
    #[serde(default)]
    pub mtime_ns: u128,
    /// The piece digests, from the same read as `sha256`. None only for an entry of a cache
    /// written before manifests existed, or before they named their piece hash (issue 18: SHA-256
    /// pieces), until the next scan hashes it once more.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "manifest_if_current"
    )]
    pub manifest: Option<Arc<Manifest>>,
}

/// A cached manifest this version can use, or `None` (rehashed at the next scan) for one it
/// cannot read, such as an older version's without a piece hash: one stale entry must not cost
/// the whole cache.
fn manifest_if_current<'de, D>(d: D) -> Result<Option<Arc<Manifest>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw = Option::<serde_json::Value>::deserialize(d)?;
    Ok(raw.and_then(|v| serde_json::from_value(v).ok().map(Arc::new)))
}

impl Entry {
    pub(super) fn new(name: &str, hashed: &Hashed, meta: &std::fs::Metadata) -> Self {
        Entry {
            name: name.to_owned(),
            size: hashed.manifest.size(),
            sha256: hashed.sha256,
            mtime_ns: mtime_ns(meta),
            manifest: Some(Arc::new(hashed.manifest.clone())),
        }
    }

    /// Whether a cached entry can stand for the file without a rehash: same size and mtime,
    /// and a manifest that fits the size.
    pub(super) fn still_describes(&self, meta: &std::fs::Metadata) -> bool {
        self.size == meta.len()
            && self.mtime_ns == mtime_ns(meta)
            && self
                .manifest
                .as_ref()
                .is_some_and(|m| m.size() == self.size && m.validate(None).is_ok())
    }
}

/// The shared files by name, and their names by digest (shares hold 100k files: a lookup by
/// digest must not scan them).
#[derive(Default)]
pub(super) struct Index {
    pub(super) by_name: BTreeMap<String, Entry>,
    by_digest: HashMap<Digest, BTreeSet<String>>,
}

impl Index {
    pub(super) fn new(by_name: BTreeMap<String, Entry>) -> Self {
        let mut by_digest: HashMap<Digest, BTreeSet<String>> = HashMap::new();
        for e in by_name.values() {
            by_digest
                .entry(e.sha256)
                .or_default()
                .insert(e.name.clone());
        }
        Index { by_name, by_digest }
    }

    /// The one way an entry changes, so that both maps always agree.
    pub(super) fn insert(&mut self, entry: Entry) {
        if let Some(old) = self.by_name.get(&entry.name) {
            if let Some(names) = self.by_digest.get_mut(&old.sha256) {
                names.remove(&entry.name);
                if names.is_empty() {
                    self.by_digest.remove(&old.sha256);
                }
            }
        }
        self.by_digest
            .entry(entry.sha256)
            .or_default()
            .insert(entry.name.clone());
        self.by_name.insert(entry.name.clone(), entry);
    }

    pub(super) fn by_digest(&self, sha256: &Digest) -> Option<&Entry> {
        let name = self.by_digest.get(sha256)?.first()?;
        self.by_name.get(name)
    }
}
