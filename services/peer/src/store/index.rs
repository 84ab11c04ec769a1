//! The index of the share: its entries in name order, and a lookup by digest. An [`Entry`] is
//! also what the digest cache (`.p2pshare/index.json`) holds, so that a restart does not rehash
//! unchanged files.
//!
//! Shares hold 100k files, so an entry is kept small (measured in `docs/DESIGN.md`, "As
//! built"): its name is one shared `Arc<str>`, the manifest of a file of at most one piece is
//! its one digest (rebuilt when asked), and the index is one sorted `Vec` plus 4 bytes per file
//! for the digest lookup. Readers take an `Arc<Index>` snapshot instead of copying it.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::sync::Arc;

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::fs::mtime_ns;
use crate::share::pieces::Hashed;
use crate::share::{Digest, Manifest};

/// The piece digests of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pieces {
    /// From a cache written before manifests existed, until the next scan hashes the file.
    Unknown,
    /// A file of at most one piece: its manifest is `Manifest::new(size, this)`, rebuilt when
    /// asked rather than kept as a heap allocation of its own (most files of a large share).
    Small(Option<Digest>),
    Many(Arc<Manifest>),
}

impl Pieces {
    fn of(size: u64, manifest: Manifest) -> Self {
        if let [] | [_] = manifest.digests() {
            let small = manifest.digests().first().copied();
            // Only where the rebuilt manifest is the same value: a manifest with anything more
            // than its size and digests stays whole.
            if rebuild(size, small).is_some_and(|m| m == manifest) {
                return Pieces::Small(small);
            }
        }
        Pieces::Many(Arc::new(manifest))
    }
}

fn rebuild(size: u64, digest: Option<Digest>) -> Option<Manifest> {
    Manifest::new(size, digest.into_iter().collect()).ok()
}

/// A shared file as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Shared by every copy of the entry (snapshots, the digest cache's writer, membership).
    pub name: Arc<str>,
    pub size: u64,
    pub sha256: Digest,
    /// Modification time (ns since the epoch) when hashed: a changed file is rehashed.
    pub mtime_ns: u64,
    pieces: Pieces,
}

/// `mtime_ns` as the index keeps it (u64 ns: until the year 2554).
pub(super) fn stamp(meta: &std::fs::Metadata) -> u64 {
    u64::try_from(mtime_ns(meta)).unwrap_or(u64::MAX)
}

/// A cached manifest this version can use, or `None` (rehashed at the next scan) for one it
/// cannot read, such as an older version's without a piece hash: one stale entry must not cost
/// the whole cache.
fn manifest_if_current<'de, D>(d: D) -> Result<Option<Manifest>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw = Option::<serde_json::Value>::deserialize(d)?;
    Ok(raw.and_then(|v| serde_json::from_value(v).ok()))
}

impl Entry {
    pub(super) fn new(name: Arc<str>, hashed: &Hashed, meta: &std::fs::Metadata) -> Self {
        Entry {
            name,
            size: hashed.manifest.size(),
            sha256: hashed.sha256,
            mtime_ns: stamp(meta),
            pieces: Pieces::of(hashed.manifest.size(), hashed.manifest.clone()),
        }
    }

    /// An entry as a cache or a test states it; `manifest` None: not known yet.
    pub(crate) fn with_manifest(
        name: &str,
        size: u64,
        sha256: Digest,
        mtime_ns: u64,
        manifest: Option<Manifest>,
    ) -> Self {
        Entry {
            name: name.into(),
            size,
            sha256,
            mtime_ns,
            pieces: manifest.map_or(Pieces::Unknown, |m| Pieces::of(size, m)),
        }
    }

    /// The piece manifest, computed with the digest; None for an entry of a cache written
    /// before manifests existed, until the next scan hashes it once more.
    pub fn manifest(&self) -> Option<Arc<Manifest>> {
        match &self.pieces {
            Pieces::Unknown => None,
            Pieces::Small(d) => rebuild(self.size, *d).map(Arc::new),
            Pieces::Many(m) => Some(m.clone()),
        }
    }

    /// Whether a cached entry can stand for the file without a rehash: same size and mtime,
    /// and a manifest that fits the size.
    pub(super) fn still_describes(&self, meta: &std::fs::Metadata) -> bool {
        self.size == meta.len()
            && self.mtime_ns == stamp(meta)
            && match &self.pieces {
                Pieces::Unknown => false,
                // Built by `Manifest::new` for this size, so it fits.
                Pieces::Small(_) => true,
                Pieces::Many(m) => m.size() == self.size && m.validate(&self.sha256, None).is_ok(),
            }
    }
}

/// The cache's form of an entry (the fields of the `Entry` it replaced, unchanged on disk).
#[derive(Serialize)]
struct EntryOut<'a> {
    name: &'a str,
    size: u64,
    sha256: &'a Digest,
    mtime_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest: Option<Arc<Manifest>>,
}

#[derive(Deserialize)]
struct EntryIn {
    name: String,
    size: u64,
    sha256: Digest,
    #[serde(default)]
    mtime_ns: u64,
    #[serde(default, deserialize_with = "manifest_if_current")]
    manifest: Option<Manifest>,
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EntryOut {
            name: &self.name,
            size: self.size,
            sha256: &self.sha256,
            mtime_ns: self.mtime_ns,
            manifest: self.manifest(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let e = EntryIn::deserialize(d)?;
        Ok(Entry::with_manifest(
            &e.name, e.size, e.sha256, e.mtime_ns, e.manifest,
        ))
    }
}

/// The shared files in name order (names unique), and their positions by digest (shares hold
/// 100k files: a lookup by digest must not scan them).
#[derive(Debug, Clone, Default)]
pub struct Index {
    entries: Vec<Entry>,
    /// Positions in `entries`, ordered by (digest, position): the first of a digest is its
    /// first name in name order.
    by_digest: Vec<u32>,
}

/// A position in `entries`. An index never nears 4 billion files (that many entries alone
/// would take 400 GB).
fn pos(i: usize) -> u32 {
    debug_assert!(u32::try_from(i).is_ok());
    i as u32
}

impl Index {
    /// From entries in any order; of two entries with one name, the last stays.
    pub(crate) fn new(mut entries: Vec<Entry>) -> Self {
        // Stable: equal names keep their order, and `dedup_by` keeps the first of a run.
        entries.reverse();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries.dedup_by(|a, b| a.name == b.name);
        Self::from_sorted(entries)
    }

    fn from_sorted(entries: Vec<Entry>) -> Self {
        let mut by_digest: Vec<u32> = (0..entries.len()).map(pos).collect();
        by_digest.sort_unstable_by_key(|&i| (entries[i as usize].sha256, i));
        Index { entries, by_digest }
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Where `name` is (`Ok`) or would go (`Err`) in name order.
    pub(super) fn position(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| (*e.name).cmp(name))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Entry> {
        self.position(name).ok().map(|i| &self.entries[i])
    }

    /// The position of the first entry in name order with these bytes.
    pub(crate) fn position_of_digest(&self, sha256: &Digest) -> Option<usize> {
        let at = self
            .by_digest
            .partition_point(|&i| self.entries[i as usize].sha256 < *sha256);
        let i = *self.by_digest.get(at)? as usize;
        (self.entries[i].sha256 == *sha256).then_some(i)
    }

    pub(crate) fn by_digest(&self, sha256: &Digest) -> Option<&Entry> {
        self.position_of_digest(sha256).map(|i| &self.entries[i])
    }

    fn digest_slot(&self, i: usize) -> usize {
        let key = (self.entries[i].sha256, pos(i));
        self.by_digest
            .partition_point(|&j| (self.entries[j as usize].sha256, j) < key)
    }

    /// The one way a single entry changes, so that both orders always agree.
    pub(super) fn insert(&mut self, entry: Entry) {
        match self.position(&entry.name) {
            Ok(i) => {
                let slot = self.digest_slot(i);
                self.by_digest.remove(slot);
                self.entries[i] = entry;
                let slot = self.digest_slot(i);
                self.by_digest.insert(slot, pos(i));
            }
            Err(i) => {
                let at = pos(i);
                for j in &mut self.by_digest {
                    if *j >= at {
                        *j += 1;
                    }
                }
                self.entries.insert(i, entry);
                let slot = self.digest_slot(i);
                self.by_digest.insert(slot, at);
            }
        }
    }

    /// This index with `upserts` (sorted by name, names unique) put in and the names in
    /// `removed` (sorted) taken out, in one pass.
    pub(super) fn merged(&self, upserts: Vec<Entry>, removed: &[Arc<str>]) -> Index {
        if self.entries.is_empty() {
            // The first scan of a share: nothing to merge with.
            return Self::from_sorted(upserts);
        }
        let mut out = Vec::with_capacity(self.entries.len() + upserts.len());
        let old = self
            .entries
            .iter()
            .filter(|e| removed.binary_search(&e.name).is_err());
        for step in by_name(old, upserts.into_iter()) {
            match step {
                Step::Old(o) => out.push(o.clone()),
                Step::New(n) | Step::Both(_, n) => out.push(n),
            }
        }
        Self::from_sorted(out)
    }
}

/// One step of [`by_name`]: an entry only in the old run, only in the new, or in both.
pub(crate) enum Step<A, B> {
    Old(A),
    New(B),
    Both(A, B),
}

/// Walks two runs of entries in name order (each name once per run) side by side.
pub(crate) fn by_name<A: Borrow<Entry>, B: Borrow<Entry>>(
    old: impl Iterator<Item = A>,
    new: impl Iterator<Item = B>,
) -> impl Iterator<Item = Step<A, B>> {
    let (mut old, mut new) = (old.peekable(), new.peekable());
    std::iter::from_fn(move || {
        let order = match (old.peek(), new.peek()) {
            (None, None) => return None,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(o), Some(n)) => o.borrow().name.cmp(&n.borrow().name),
        };
        match order {
            Ordering::Less => old.next().map(Step::Old),
            Ordering::Greater => new.next().map(Step::New),
            Ordering::Equal => old.next().zip(new.next()).map(|(o, n)| Step::Both(o, n)),
        }
    })
}

/// The digest cache's file: a JSON object from name to entry.
pub(super) struct CacheFile<'a>(pub(super) &'a Index);

impl Serialize for CacheFile<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.entries.iter().map(|e| (&*e.name, e)))
    }
}

/// Reads the cache's entries one by one, never the whole object as a map.
pub(super) struct CachedEntries(pub(super) Vec<Entry>);

impl<'de> Deserialize<'de> for CachedEntries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = CachedEntries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map from file name to index entry")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                // The key repeats the entry's own name.
                while map.next_key::<IgnoredAny>()?.is_some() {
                    out.push(map.next_value::<Entry>()?);
                }
                Ok(CachedEntries(out))
            }
        }
        d.deserialize_map(Entries)
    }
}
