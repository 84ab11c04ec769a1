//! What is announced to the tracker: the shared files and downloads in progress as the tracker
//! sees them, the tracker's bounds, and changes split into requests it accepts.

use std::collections::BTreeMap;
use std::sync::Arc;

use p2p_common::proto::{FileInfo, RegisterResponse};
use prost::Message;

use crate::share::Digest;
use crate::share::partial::PartialFile;
use crate::store::{Entry, Index, Step, by_name};

/// What a tracker that states no bounds (0 in `RegisterResponse`) is taken to accept.
const DEFAULT_MAX_FILES_PER_PEER: usize = 100_000;
const DEFAULT_MAX_FILES_PER_REQUEST: usize = 1_000;
/// Every Register and Announce stays this small, well under gRPC's default 4 MiB message limit,
/// whatever count the tracker allows (long names make big entries).
const MAX_REQUEST_BYTES: usize = 1 << 20;

pub(super) fn info(e: &Entry) -> FileInfo {
    FileInfo {
        name: e.name.to_string(),
        size: e.size,
        sha256: e.sha256.to_hex(),
        pieces_root: e.manifest().map(|m| m.root().to_hex()).unwrap_or_default(),
    }
}

/// Shared files as the tracker sees them: the first `len` entries of an index snapshot (the
/// cap keeps a prefix in name order). Held between announces without a copy of the index.
#[derive(Clone, Default)]
pub(super) struct Snapshot {
    index: Arc<Index>,
    len: usize,
}

impl Snapshot {
    /// At most the first `cap` files of `index`.
    pub(super) fn new(index: Arc<Index>, cap: usize) -> Self {
        let len = index.len().min(cap);
        Snapshot { index, len }
    }

    pub(super) fn entries(&self) -> &[Entry] {
        &self.index.entries()[..self.len]
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first `n` of these files.
    pub(super) fn prefix(&self, n: usize) -> Self {
        Snapshot::new(self.index.clone(), n.min(self.len))
    }

    /// Whether one of these files has these bytes.
    fn holds(&self, sha256: &Digest) -> bool {
        // The first name with these bytes, so the prefix holds them iff it holds that one.
        self.index
            .position_of_digest(sha256)
            .is_some_and(|i| i < self.len)
    }

    /// These files after the first `removed` names and `added` entries of `changes` went
    /// through (an announce that failed half-way).
    pub(super) fn applied(&self, changes: &Changes<'_>, removed: usize, added: usize) -> Self {
        let gone = &changes.removed[..removed];
        let mut entries: Vec<Entry> = self
            .entries()
            .iter()
            .filter(|e| gone.binary_search(&e.name).is_err())
            .cloned()
            .collect();
        // After the older entries: `Index::new` keeps the last of a name.
        entries.extend(changes.added[..added].iter().map(|e| (*e).clone()));
        let index = Index::new(entries);
        Snapshot {
            len: index.len(),
            index: Arc::new(index),
        }
    }
}

/// What changed from `announced` to `now`: the entries to add (new or different) and the
/// names to remove, both in name order.
pub(super) fn diff<'a>(announced: &Snapshot, now: &'a Snapshot) -> (Vec<&'a Entry>, Vec<Arc<str>>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    if Arc::ptr_eq(&announced.index, &now.index) && announced.len == now.len {
        return (added, removed);
    }
    for step in by_name(announced.entries().iter(), now.entries().iter()) {
        match step {
            Step::Old(o) => removed.push(o.name.clone()),
            Step::New(n) => added.push(n),
            Step::Both(o, n) if o != n => added.push(n),
            Step::Both(..) => {}
        }
    }
    (added, removed)
}
/// Partial holdings by digest, as announced (name empty: the tracker ignores it).
pub(super) type PartialSnapshot = BTreeMap<String, FileInfo>;

/// The downloads in progress to announce: not those whose bytes the share already holds
/// complete (the complete file is what counts), and no more than `room` of them, since they
/// count against the tracker's per-peer cap after the shared files.
pub(super) fn partial_snapshot(
    partials: &[Arc<PartialFile>],
    shared: &Snapshot,
    room: usize,
) -> PartialSnapshot {
    partials
        .iter()
        .filter(|p| !shared.holds(p.sha256()))
        .map(|p| FileInfo {
            name: String::new(),
            size: p.manifest().size(),
            sha256: p.sha256().to_hex(),
            pieces_root: p.manifest().root().to_hex(),
        })
        .take(room)
        .map(|f| (f.sha256.clone(), f))
        .collect()
}

/// What an Announce has to say: the entries to add are the index's own (borrowed from the
/// snapshot), turned into `FileInfo`s one request at a time.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Changes<'a> {
    /// In name order.
    pub(super) removed: Vec<Arc<str>>,
    pub(super) partial_removed: Vec<String>,
    pub(super) added: Vec<&'a Entry>,
    pub(super) partial_added: Vec<FileInfo>,
}

/// One Announce's worth of changes.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Batch {
    pub(super) removed: Vec<String>,
    pub(super) partial_removed: Vec<String>,
    pub(super) added: Vec<FileInfo>,
    pub(super) partial_added: Vec<FileInfo>,
    /// How many of `Changes::removed` and `Changes::added` this and the earlier batches hold.
    pub(super) removed_upto: usize,
    pub(super) added_upto: usize,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.removed.is_empty()
            && self.partial_removed.is_empty()
            && self.added.is_empty()
            && self.partial_added.is_empty()
    }
}

impl Changes<'_> {
    pub(super) fn is_empty(&self) -> bool {
        self.removed.is_empty()
            && self.partial_removed.is_empty()
            && self.added.is_empty()
            && self.partial_added.is_empty()
    }

    /// Splits into requests the tracker accepts (`per_request` entries, `MAX_REQUEST_BYTES`),
    /// each built when it is due. Removals go first, so that swapping files within the cap
    /// never passes it.
    pub(super) fn batches(&self, per_request: usize) -> impl Iterator<Item = Batch> + '_ {
        let mut at = [0usize; 4];
        std::iter::from_fn(move || {
            let (mut count, mut bytes) = (per_request, 0);
            let removed = names(&self.removed, &mut at[0], &mut count, &mut bytes);
            let partial_removed = names(&self.partial_removed, &mut at[1], &mut count, &mut bytes);
            let mut it = self.added[at[2]..].iter().map(|e| info(e)).peekable();
            let added = batch(&mut it, &mut count, &mut bytes, Message::encoded_len);
            at[2] += added.len();
            let mut it = self.partial_added[at[3]..].iter().cloned().peekable();
            let partial_added = batch(&mut it, &mut count, &mut bytes, Message::encoded_len);
            at[3] += partial_added.len();
            let b = Batch {
                removed,
                partial_removed,
                added,
                partial_added,
                removed_upto: at[0],
                added_upto: at[2],
            };
            (!b.is_empty()).then_some(b)
        })
    }
}

/// The next names of `all` from `at` that fit (see [`batch`]), moving `at` past them.
fn names(
    all: &[impl AsRef<str>],
    at: &mut usize,
    count: &mut usize,
    bytes: &mut usize,
) -> Vec<String> {
    let mut it = all[*at..].iter().map(AsRef::as_ref).peekable();
    let taken: Vec<String> = batch(&mut it, count, bytes, |n: &&str| n.len() + 2)
        .into_iter()
        .map(str::to_owned)
        .collect();
    *at += taken.len();
    taken
}

/// How much the tracker accepts from this peer; learnt from each `RegisterResponse`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Limits {
    pub(super) per_peer: usize,
    pub(super) per_request: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_peer: DEFAULT_MAX_FILES_PER_PEER,
            per_request: DEFAULT_MAX_FILES_PER_REQUEST,
        }
    }
}

impl Limits {
    pub(super) fn from_response(r: &RegisterResponse) -> Self {
        let or = |v: u32, default: usize| match v {
            0 => default,
            v => usize::try_from(v).unwrap_or(default),
        };
        Self {
            per_peer: or(r.max_files_per_peer, DEFAULT_MAX_FILES_PER_PEER),
            per_request: or(r.max_files_per_request, DEFAULT_MAX_FILES_PER_REQUEST).max(1),
        }
    }
}

/// What this peer offers the tracker: the first `per_peer` files in name order (a stable
/// choice), and whether it already said that some are left out.
#[derive(Default)]
pub(super) struct Cap {
    pub(super) limits: Limits,
    pub(super) over: bool,
}

/// Takes entries from the front of `items` while a request has room: at most `count` of them
/// and `MAX_REQUEST_BYTES` in all (always at least one, so that progress is made).
pub(super) fn batch<T>(
    items: &mut std::iter::Peekable<impl Iterator<Item = T>>,
    count: &mut usize,
    bytes: &mut usize,
    size: impl Fn(&T) -> usize,
) -> Vec<T> {
    let mut out = Vec::new();
    while *count > 0 {
        let Some(item) = items.next_if(|i| *bytes == 0 || *bytes + size(i) <= MAX_REQUEST_BYTES)
        else {
            break;
        };
        *bytes += size(&item);
        *count -= 1;
        out.push(item);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unstated_bounds_are_the_documented_defaults() {
        let l = Limits::from_response(&RegisterResponse::default());
        assert_eq!((l.per_peer, l.per_request), (100_000, 1_000));
        let l = Limits::from_response(&RegisterResponse {
            max_files_per_peer: 7,
            max_files_per_request: 3,
            ..Default::default()
        });
        assert_eq!((l.per_peer, l.per_request), (7, 3));
    }

    fn partial(bytes: &[u8]) -> Arc<PartialFile> {
        use crate::share::pieces::Manifest;
        let sha = crate::share::digest::sha256(bytes);
        let m = Manifest::new(bytes.len() as u64, vec![sha]).unwrap();
        Arc::new(PartialFile::new(
            sha,
            Arc::new(m),
            std::path::PathBuf::from("unused"),
            crate::share::bitfield::Bitfield::new(1),
        ))
    }

    /// A shared file holding `bytes`, with its manifest.
    fn entry(name: &str, bytes: &[u8]) -> Entry {
        use crate::share::pieces::Manifest;
        let sha = crate::share::digest::sha256(bytes);
        let size = bytes.len() as u64;
        let m = Manifest::new(size, vec![sha]).unwrap();
        Entry::with_manifest(name, size, sha, 0, Some(m))
    }

    fn snapshot(entries: Vec<Entry>) -> Snapshot {
        Snapshot::new(Arc::new(Index::new(entries)), usize::MAX)
    }

    #[test]
    fn downloads_in_progress_are_announced_with_size_and_root_within_the_cap() {
        let (a, b, c) = (partial(b"a"), partial(b"b"), partial(b"c"));
        let done = entry("b.txt", b"b");
        assert_eq!(info(&done).pieces_root, b.manifest().root().to_hex());
        let shared = snapshot(vec![done]);
        let all = [a.clone(), b.clone(), c.clone()];
        let got = partial_snapshot(&all, &shared, 10);
        // b is held complete: announced as a file, not in part.
        let digests: Vec<&String> = got.keys().collect();
        let mut want = [a.sha256().to_hex(), c.sha256().to_hex()];
        want.sort();
        assert_eq!(digests, want.iter().collect::<Vec<_>>());
        let fa = &got[&a.sha256().to_hex()];
        assert_eq!(fa.size, 1);
        assert_eq!(fa.pieces_root, a.manifest().root().to_hex());
        assert!(fa.name.is_empty());
        // Partial holdings take what the shared files leave of the per-peer cap.
        assert_eq!(partial_snapshot(&all, &shared, 1).len(), 1);
        assert!(partial_snapshot(&all, &shared, 0).is_empty());
        // A complete file past the cap is not announced, so its download in progress is.
        assert_eq!(partial_snapshot(&all, &shared.prefix(0), 10).len(), 3);
    }

    #[test]
    fn announce_batches_send_removals_first_and_respect_the_count() {
        let (a, b) = (entry("a", b"a"), entry("b", b"b"));
        let f = |n: &str| FileInfo {
            name: n.into(),
            sha256: n.repeat(64),
            ..Default::default()
        };
        let changes = Changes {
            removed: vec!["r1".into(), "r2".into()],
            partial_removed: vec!["p1".into()],
            added: vec![&a, &b],
            partial_added: vec![f("c")],
        };
        let batches: Vec<Batch> = changes.batches(2).collect();
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[0].removed, ["r1", "r2"]);
        assert!(batches[0].added.is_empty() && batches[0].partial_removed.is_empty());
        assert_eq!(batches[1].partial_removed, ["p1"]);
        assert_eq!(batches[1].added, [info(&a)]);
        assert_eq!(batches[2].added, [info(&b)]);
        assert_eq!(batches[2].partial_added, [f("c")]);
        let upto: Vec<_> = batches
            .iter()
            .map(|b| (b.removed_upto, b.added_upto))
            .collect();
        assert_eq!(upto, [(2, 0), (2, 1), (2, 2)]);
        assert_eq!(Changes::default().batches(5).count(), 0);
    }

    #[test]
    fn the_diff_names_what_changed_and_a_half_sent_announce_keeps_what_got_through() {
        let (a, b, c, d) = (
            entry("a", b"a"),
            entry("b", b"b"),
            entry("c", b"c"),
            entry("d", b"d"),
        );
        let b2 = entry("b", b"other bytes");
        let announced = snapshot(vec![a.clone(), b.clone(), c.clone()]);
        let now = snapshot(vec![a.clone(), b2.clone(), d.clone()]);
        let (added, removed) = diff(&announced, &now);
        assert_eq!(added, [&b2, &d]);
        assert_eq!(removed, [Arc::<str>::from("c")]);
        // Nothing changed: the same snapshot, or the same files in another one.
        assert_eq!(diff(&now, &now), (vec![], vec![]));
        let same = snapshot(now.entries().to_vec());
        assert_eq!(diff(&now, &same), (vec![], vec![]));
        // Under a cap of 2, `d` is not shared: nothing to add for it.
        let capped = now.prefix(2);
        let (added, removed) = diff(&announced, &capped);
        assert_eq!((added, removed.len()), (vec![&b2], 1));

        let changes = Changes {
            added: vec![&b2, &d],
            removed: vec!["c".into()],
            ..Default::default()
        };
        // The removal and `b2` went through, `d` did not.
        let after = announced.applied(&changes, 1, 1);
        assert_eq!(after.entries(), [a.clone(), b2.clone()]);
        assert_eq!(
            announced.applied(&changes, 0, 0).entries(),
            announced.entries()
        );
        // What is left to send from there.
        let (added, removed) = diff(&after, &now);
        assert_eq!((added, removed.len()), (vec![&d], 0));
    }

    #[test]
    fn batches_stop_at_the_count_and_at_the_byte_budget() {
        let mut it = (0..10).peekable();
        let (mut count, mut bytes) = (4, 0);
        assert_eq!(
            batch(&mut it, &mut count, &mut bytes, |_| 1),
            vec![0, 1, 2, 3]
        );
        assert_eq!(it.peek(), Some(&4));
        let big = MAX_REQUEST_BYTES / 2 + 1;
        let (mut count, mut bytes) = (1000, 0);
        assert_eq!(batch(&mut it, &mut count, &mut bytes, |_| big), vec![4]);
        // The budget is shared by removals and additions in one request.
        let (mut count, mut bytes) = (3, 0);
        let mut a = ["x", "y"].into_iter().peekable();
        let mut b = [1, 2].into_iter().peekable();
        assert_eq!(batch(&mut a, &mut count, &mut bytes, |_| 1).len(), 2);
        assert_eq!(batch(&mut b, &mut count, &mut bytes, |_| 1), vec![1]);
    }
}
