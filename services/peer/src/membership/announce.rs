//! What is announced to the tracker: the shared files and downloads in progress as the tracker
//! sees them, the tracker's bounds, and changes split into requests it accepts.

use std::collections::BTreeMap;
use std::sync::Arc;

use p2p_common::proto::{FileInfo, RegisterResponse};
use prost::Message;

use crate::share::Digest;
use crate::share::partial::PartialFile;
use crate::store::Entry;

/// What a tracker that states no bounds (0 in `RegisterResponse`) is taken to accept.
const DEFAULT_MAX_FILES_PER_PEER: usize = 100_000;
const DEFAULT_MAX_FILES_PER_REQUEST: usize = 1_000;
/// Every Register and Announce stays this small, well under gRPC's default 4 MiB message limit,
/// whatever count the tracker allows (long names make big entries).
const MAX_REQUEST_BYTES: usize = 1 << 20;

pub(super) fn info(e: &Entry) -> FileInfo {
    FileInfo {
        name: e.name.clone(),
        size: e.size,
        sha256: e.sha256.to_hex(),
        pieces_root: e
            .manifest
            .as_ref()
            .map(|m| m.root().to_hex())
            .unwrap_or_default(),
    }
}

pub(super) type Snapshot = BTreeMap<String, Entry>;
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
    let complete: std::collections::BTreeSet<&Digest> =
        shared.values().map(|e| &e.sha256).collect();
    partials
        .iter()
        .filter(|p| !complete.contains(p.sha256()))
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

/// One Announce's worth of changes.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Changes {
    pub(super) removed: Vec<String>,
    pub(super) partial_removed: Vec<String>,
    pub(super) added: Vec<FileInfo>,
    pub(super) partial_added: Vec<FileInfo>,
}

impl Changes {
    pub(super) fn is_empty(&self) -> bool {
        self.removed.is_empty()
            && self.partial_removed.is_empty()
            && self.added.is_empty()
            && self.partial_added.is_empty()
    }

    /// Splits into requests the tracker accepts (`per_request` entries, `MAX_REQUEST_BYTES`).
    /// Removals go first, so that swapping files within the cap never passes it.
    pub(super) fn into_batches(self, per_request: usize) -> Vec<Changes> {
        let mut removed = self.removed.into_iter().peekable();
        let mut partial_removed = self.partial_removed.into_iter().peekable();
        let mut added = self.added.into_iter().peekable();
        let mut partial_added = self.partial_added.into_iter().peekable();
        let mut out = Vec::new();
        loop {
            let (mut count, mut bytes) = (per_request, 0);
            let name_len = |n: &String| n.len() + 2;
            let batch = Changes {
                removed: batch(&mut removed, &mut count, &mut bytes, name_len),
                partial_removed: batch(&mut partial_removed, &mut count, &mut bytes, name_len),
                added: batch(&mut added, &mut count, &mut bytes, Message::encoded_len),
                partial_added: batch(
                    &mut partial_added,
                    &mut count,
                    &mut bytes,
                    Message::encoded_len,
                ),
            };
            if batch.is_empty() {
                return out;
            }
            out.push(batch);
        }
    }
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

    #[test]
    fn downloads_in_progress_are_announced_with_size_and_root_within_the_cap() {
        let (a, b, c) = (partial(b"a"), partial(b"b"), partial(b"c"));
        let mut shared = Snapshot::new();
        let done = Entry {
            name: "b.txt".into(),
            size: 1,
            sha256: *b.sha256(),
            mtime_ns: 0,
            manifest: Some(b.manifest().clone()),
        };
        assert_eq!(info(&done).pieces_root, b.manifest().root().to_hex());
        shared.insert(done.name.clone(), done);
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
    }

    #[test]
    fn announce_batches_send_removals_first_and_respect_the_count() {
        let f = |n: &str| FileInfo {
            name: n.into(),
            sha256: n.repeat(64),
            ..Default::default()
        };
        let changes = Changes {
            removed: vec!["r1".into(), "r2".into()],
            partial_removed: vec!["p1".into()],
            added: vec![f("a"), f("b")],
            partial_added: vec![f("c")],
        };
        let batches = changes.into_batches(2);
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[0].removed, ["r1", "r2"]);
        assert!(batches[0].added.is_empty() && batches[0].partial_removed.is_empty());
        assert_eq!(batches[1].partial_removed, ["p1"]);
        assert_eq!(batches[1].added, [f("a")]);
        assert_eq!(batches[2].added, [f("b")]);
        assert_eq!(batches[2].partial_added, [f("c")]);
        assert!(Changes::default().into_batches(5).is_empty());
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
