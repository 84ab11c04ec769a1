//! The rules every [`Store`] must keep, as one suite run against each backend (memory in this
//! crate's unit tests, Redis in `store::redis`'s). Each check takes a fresh, empty store.

use std::sync::Arc;
use std::time::Duration;

use p2p_common::Digest;

use crate::registry::{Limits, Registry, RegistryError};
use crate::store::{Announcement, FileEntry, Holder, PartialEntry, Store};

/// The digest of file `byte`'s bytes.
pub fn sha(byte: u8) -> Digest {
    Digest([byte; 32])
}

/// The pieces_root honest peers announce for file `byte`.
pub fn root(byte: u8) -> Digest {
    Digest([!byte; 32])
}

/// A file named `name` holding bytes `byte`: size `byte`, digest [`sha`], root [`root`].
pub fn file(name: &str, byte: u8) -> FileEntry {
    FileEntry {
        name: name.into(),
        size: u64::from(byte),
        sha256: sha(byte),
        pieces_root: Some(root(byte)),
    }
}

/// An Announce of complete files only.
pub fn files_change(added: Vec<FileEntry>, removed: Vec<String>) -> Announcement {
    Announcement {
        added,
        removed,
        ..Announcement::default()
    }
}

/// File `byte` held in part: size `byte` + 1000 (so answers show whose size they carry).
pub fn partial(byte: u8) -> PartialEntry {
    PartialEntry {
        sha256: sha(byte),
        size: 1000 + u64::from(byte),
        pieces_root: Some(root(byte)),
    }
}

/// An Announce of partial holdings only.
pub fn partials_change(added: Vec<PartialEntry>, removed: Vec<Digest>) -> Announcement {
    Announcement {
        partial_added: added,
        partial_removed: removed,
        ..Announcement::default()
    }
}

type IdAndRoot = (String, Option<Digest>);

/// (peer id, pieces_root) of each holder, sorted by id (stores differ in holder order).
fn ids_and_roots(holders: &[Holder]) -> Vec<IdAndRoot> {
    let mut v: Vec<_> = holders
        .iter()
        .map(|h| (h.peer_id.clone(), h.pieces_root))
        .collect();
    v.sort();
    v
}

/// (complete, partial) holders of file `byte`'s digest, as [`ids_and_roots`].
async fn by_digest(r: &Registry, byte: u8) -> Option<(Vec<IdAndRoot>, Vec<IdAndRoot>)> {
    match r.peers_by_digest(&sha(byte)).await {
        Ok(d) => Some((ids_and_roots(&d.complete), ids_and_roots(&d.partial))),
        Err(RegistryError::DigestNotFound(_)) => None,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// `root` is a digest or `None` (the holder announced no root).
fn pair(id: &str, root: impl Into<Option<Digest>>) -> IdAndRoot {
    (id.to_owned(), root.into())
}

/// (peers, files, partial holdings) as the store counts them.
async fn counts(r: &Registry) -> (usize, usize, usize) {
    let c = r.counts().await.unwrap();
    (c.peers, c.files, c.partial_holders)
}

fn registry(store: Arc<dyn Store>, ttl: Duration) -> Registry {
    Registry::new(
        store,
        ttl,
        Limits {
            max_files_per_peer: 10,
            max_files_per_request: 6,
            default_page_size: 2,
            max_page_size: 3,
            holders_per_answer: 50,
            ..Limits::default()
        },
    )
}

/// A registry whose GetPeersByDigest answers name at most `n` holders.
fn sampling(store: Arc<dyn Store>, n: usize) -> Registry {
    Registry::new(
        store,
        Duration::from_secs(60),
        Limits {
            max_files_per_peer: 10,
            holders_per_answer: n,
            ..Limits::default()
        },
    )
}

/// Registers `n` peers `{prefix}{i}` holding file `byte`, complete or in part.
async fn holders(r: &Registry, prefix: &str, n: usize, byte: u8, complete: bool) {
    for i in 0..n {
        let id = format!("{prefix}{i}");
        let files = if complete {
            vec![file("a.iso", byte)]
        } else {
            vec![]
        };
        let secret = r
            .register(&id, &format!("h{prefix}:{}", i + 1), files, "")
            .await
            .unwrap();
        if !complete {
            r.announce(&id, &secret, partials_change(vec![partial(byte)], vec![]))
                .await
                .unwrap();
        }
    }
}

/// (complete, partial) counts of one answer for file `byte`, checked to name distinct peers.
async fn answer(
    r: &Registry,
    byte: u8,
    seen: &mut std::collections::BTreeSet<String>,
) -> (usize, usize) {
    let d = r.peers_by_digest(&sha(byte)).await.unwrap();
    let ids: std::collections::BTreeSet<String> = d
        .complete
        .iter()
        .chain(&d.partial)
        .map(|h| h.peer_id.clone())
        .collect();
    assert_eq!(
        ids.len(),
        d.complete.len() + d.partial.len(),
        "a holder named twice"
    );
    seen.extend(ids);
    (d.complete.len(), d.partial.len())
}

fn names(page: &crate::registry::Page) -> Vec<String> {
    page.files.iter().map(|f| f.0.name.clone()).collect()
}

/// Register, search (exact, case-insensitive substring, paged), leave, digests.
pub async fn register_search_and_leave(store: Arc<dyn Store>) {
    let r = registry(store, Duration::from_secs(60));
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
        vec![
            file("a.txt", 1),
            file("ab.bin", 3),
            file("Photo-ÉTÉ.JPG", 4),
        ],
        "",
    )
    .await
    .unwrap();

    let page = r.search("a.txt", true, 0, "").await.unwrap();
    assert_eq!(page.files.len(), 1);
    let ids: Vec<_> = page.files[0].1.iter().map(|h| h.peer_id.as_str()).collect();
    assert_eq!(ids, ["p1", "p2"]);
    assert_eq!(page.files[0].1[1].address, "127.0.0.1:5001");

    let ab = r.search("AB", false, 0, "").await.unwrap();
    assert_eq!(names(&ab), ["ab.bin"]);
    // Trigram path, Unicode case folding on both sides.
    let ete = r.search("été.jp", false, 0, "").await.unwrap();
    assert_eq!(names(&ete), ["Photo-ÉTÉ.JPG"]);
    assert!(
        r.search("xyz", false, 0, "")
            .await
            .unwrap()
            .files
            .is_empty()
    );

    // Paged two by two, same order for a short needle (scan) and a long one (index).
    for needle in [".", ".t", "txt", ".bin"] {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let p = r.search(needle, false, 0, &token).await.unwrap();
            assert!(p.files.len() <= 2);
            all.extend(names(&p));
            match p.next_token {
                Some(t) => token = t,
                None => break,
            }
        }
        let want: Vec<&str> = ["Photo-ÉTÉ.JPG", "a.txt", "ab.bin", "b.txt"]
            .into_iter()
            .filter(|n| n.to_lowercase().contains(needle))
            .collect();
        assert_eq!(all, want, "needle {needle:?}");
    }

    r.leave("p1", &s1).await.unwrap();
    assert!(
        r.search("b.txt", true, 0, "")
            .await
            .unwrap()
            .files
            .is_empty()
    );
    assert!(
        r.search("b.tx", false, 0, "")
            .await
            .unwrap()
            .files
            .is_empty()
    );
    let found = r.peers_by_digest(&sha(1)).await.unwrap();
    assert_eq!((found.size, found.complete.len()), (1, 1));
    assert_eq!(counts(&r).await, (1, 3, 0));
}

/// Several digests under one name page in digest order, and exact search pages through them.
pub async fn one_name_many_digests(store: Arc<dyn Store>) {
    let r = registry(store, Duration::from_secs(60));
    for (i, b) in [5u8, 3, 9, 7].into_iter().enumerate() {
        r.register(&format!("p{i}"), "h:1", vec![file("same.iso", b)], "")
            .await
            .unwrap();
    }
    for exact in [true, false] {
        let first = r.search("same.iso", exact, 3, "").await.unwrap();
        let token = first.next_token.clone().expect("a second page");
        let second = r.search("same.iso", exact, 3, &token).await.unwrap();
        let digests: Vec<Digest> = first
            .files
            .iter()
            .chain(&second.files)
            .map(|f| f.0.sha256)
            .collect();
        let want: Vec<Digest> = [3u8, 5, 7, 9].into_iter().map(sha).collect();
        assert_eq!(digests, want, "exact = {exact}");
    }
}

/// Ids, secrets, expiry.
pub async fn leases_and_secrets(store: Arc<dyn Store>) {
    let r = registry(store, Duration::from_millis(400));
    let s = r
        .register("p1", "h:1", vec![file("x", 1)], "")
        .await
        .unwrap();
    assert!(matches!(
        r.register("p1", "h:2", vec![], "").await,
        Err(RegistryError::IdTaken { .. })
    ));
    assert!(matches!(
        r.register("p1", "h:2", vec![], "not-the-secret").await,
        Err(RegistryError::IdTaken { .. })
    ));
    assert!(matches!(
        r.heartbeat("p1", "nope").await,
        Err(RegistryError::WrongSecret(_))
    ));
    assert!(matches!(
        r.heartbeat("p1", "").await,
        Err(RegistryError::WrongSecret(_))
    ));
    assert!(matches!(
        r.leave("p1", "").await,
        Err(RegistryError::WrongSecret(_))
    ));
    assert!(matches!(
        r.announce("p1", "nope", files_change(vec![file("y", 2)], vec![]))
            .await,
        Err(RegistryError::WrongSecret(_))
    ));
    assert!(r.search("y", true, 0, "").await.unwrap().files.is_empty());
    // The holder of the secret can reclaim the id (a restarted peer); the old secret dies.
    let s2 = r
        .register("p1", "h:1", vec![file("x", 1)], &s)
        .await
        .unwrap();
    assert_ne!(s, s2);
    assert!(matches!(
        r.heartbeat("p1", &s).await,
        Err(RegistryError::WrongSecret(_))
    ));
    r.heartbeat("p1", &s2).await.unwrap();

    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(r.search("x", true, 0, "").await.unwrap().files.is_empty());
    assert!(matches!(
        r.heartbeat("p1", &s2).await,
        Err(RegistryError::UnknownPeer(_))
    ));
    assert_eq!(r.sweep().await.unwrap(), 1);
    assert_eq!(r.sweep().await.unwrap(), 0);
    assert_eq!(counts(&r).await, (0, 0, 0));
    // Expired: anyone may take the id now.
    r.register("p1", "h:9", vec![], "").await.unwrap();
    assert!(matches!(
        r.heartbeat("nobody", "x").await,
        Err(RegistryError::UnknownPeer(_))
    ));
}

/// Announce replaces by name, removes, and is refused whole past the cap.
pub async fn announce_within_the_cap(store: Arc<dyn Store>) {
    let r = registry(store, Duration::from_secs(60));
    let s = r
        .register("p1", "h:1", vec![file("x", 1)], "")
        .await
        .unwrap();
    let n = r
        .announce(
            "p1",
            &s,
            files_change(vec![file("x", 2), file("y", 3)], vec![]),
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let page = r.search("x", true, 0, "").await.unwrap();
    assert_eq!(page.files[0].0.sha256, sha(2));
    assert!(r.peers_by_digest(&sha(1)).await.is_err());
    assert_eq!(
        r.announce("p1", &s, files_change(vec![], vec!["y".into()]))
            .await
            .unwrap(),
        1
    );
    assert!(r.search("y", true, 0, "").await.unwrap().files.is_empty());

    // 1 + 6 + 4 = 11 > 10: refused, and none of the 4 is indexed.
    let six: Vec<_> = (0..6).map(|i| file(&format!("six{i}"), 10 + i)).collect();
    assert_eq!(
        r.announce("p1", &s, files_change(six, vec![]))
            .await
            .unwrap(),
        7
    );
    let four: Vec<_> = (0..4).map(|i| file(&format!("over{i}"), 20 + i)).collect();
    assert!(matches!(
        r.announce("p1", &s, files_change(four.clone(), vec![]))
            .await,
        Err(RegistryError::OverCap(_))
    ));
    assert!(
        r.search("over", false, 0, "")
            .await
            .unwrap()
            .files
            .is_empty()
    );
    assert!(r.peers_by_digest(&sha(20)).await.is_err());
    assert_eq!(counts(&r).await, (1, 7, 0));
    // Removing in the same request makes room: the count is judged after the whole change.
    let gone: Vec<String> = (0..3).map(|i| format!("six{i}")).collect();
    assert_eq!(
        r.announce("p1", &s, files_change(four, gone))
            .await
            .unwrap(),
        8
    );
    assert_eq!(r.search("over", false, 0, "").await.unwrap().files.len(), 2);
    // More than one request may carry is a bad request, not a cap refusal.
    let seven: Vec<_> = (0..7).map(|i| file(&format!("big{i}"), 40 + i)).collect();
    assert!(matches!(
        r.announce("p1", &s, files_change(seven.clone(), vec![]))
            .await,
        Err(RegistryError::Invalid(_))
    ));
    assert!(matches!(
        r.register("p2", "h:2", seven, "").await,
        Err(RegistryError::Invalid(_))
    ));
}

/// Racing tasks: one id registered by many at once has exactly one winner; heartbeats racing
/// the sweeper never lose a renewed lease; many sweepers remove an expired peer exactly once.
pub async fn concurrent_races(store: Arc<dyn Store>) {
    let r = Arc::new(registry(store, Duration::from_millis(1500)));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            r.register("contested", &format!("h:{}", i + 1), vec![], "")
                .await
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(secret) => winners.push(secret),
            Err(RegistryError::IdTaken { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one registration wins");
    r.heartbeat("contested", &winners[0]).await.unwrap();

    // A peer kept alive by heartbeats while sweepers run is never removed.
    let alive = r
        .register("alive", "h:1", vec![file("keep", 1)], "")
        .await
        .unwrap();
    let doomed = r
        .register("doomed", "h:2", vec![file("gone", 2)], "")
        .await
        .unwrap();
    let _ = doomed;
    let beat = {
        let r = r.clone();
        tokio::spawn(async move {
            for _ in 0..12 {
                r.heartbeat("alive", &alive).await.unwrap();
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let mut swept = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        let sweepers: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                tokio::spawn(async move { r.sweep().await.unwrap() })
            })
            .collect();
        for s in sweepers {
            swept += s.await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    beat.await.unwrap();
    // "doomed" and "contested" expired; each removed once across all sweepers.
    assert_eq!(swept, 2);
    assert_eq!(r.search("keep", true, 0, "").await.unwrap().files.len(), 1);
    assert!(
        r.search("gone", true, 0, "")
            .await
            .unwrap()
            .files
            .is_empty()
    );
    assert_eq!(counts(&r).await, (1, 1, 0));
}

/// Each holder's root comes back with it in Search, ListFiles and GetPeersByDigest; a match's
/// root is the one most of its holders announced (peers without one do not vote).
pub async fn pieces_root_is_returned_with_every_match(store: Arc<dyn Store>) {
    let r = registry(store, Duration::from_secs(60));
    let liar = Digest([0xee; 32]);
    for (id, f) in [
        ("p1", file("a.iso", 1)),
        ("p2", with_root(file("a.iso", 1), liar)),
        ("p3", file("a.iso", 1)),
        ("p4", with_root(file("a.iso", 1), None)),
    ] {
        r.register(id, "h:1", vec![f], "").await.unwrap();
    }
    let want = vec![
        pair("p1", root(1)),
        pair("p2", liar),
        pair("p3", root(1)),
        pair("p4", None),
    ];
    let exact = r.search("a.iso", true, 0, "").await.unwrap();
    let listed = r.list_files(0, "").await.unwrap();
    let substring = r.search("A.IS", false, 0, "").await.unwrap();
    for page in [exact, listed, substring] {
        assert_eq!(page.files.len(), 1);
        let (f, holders, _) = &page.files[0];
        assert_eq!(f.pieces_root, Some(root(1)), "two of three roots say so");
        assert_eq!(ids_and_roots(holders), want);
    }
    assert_eq!(by_digest(&r, 1).await, Some((want, vec![])));

    // A tie goes to the smaller root; a file nobody announced a root for has none.
    let low = Digest([0x01; 32]);
    let high = Digest([0x02; 32]);
    let s5 = r
        .register(
            "p5",
            "h:5",
            vec![
                with_root(file("tie", 7), high),
                with_root(file("old", 8), None),
            ],
            "",
        )
        .await
        .unwrap();
    r.register("p6", "h:6", vec![with_root(file("tie", 7), low)], "")
        .await
        .unwrap();
    let tie = r.search("tie", true, 0, "").await.unwrap();
    assert_eq!(tie.files[0].0.pieces_root, Some(low));
    let old = r.search("old", true, 0, "").await.unwrap();
    assert_eq!(old.files[0].0.pieces_root, None);
    assert_eq!(ids_and_roots(&old.files[0].1), vec![pair("p5", None)]);

    // Announcing the file again with another root replaces it everywhere.
    let again = with_root(file("tie", 7), low);
    r.announce("p5", &s5, files_change(vec![again], vec![]))
        .await
        .unwrap();
    let tie = r.search("tie", true, 0, "").await.unwrap();
    assert_eq!(
        ids_and_roots(&tie.files[0].1),
        vec![pair("p5", low), pair("p6", low)]
    );
    assert_eq!(
        by_digest(&r, 7).await,
        Some((vec![pair("p5", low), pair("p6", low)], vec![]))
    );
}

fn with_root(mut f: FileEntry, root: impl Into<Option<Digest>>) -> FileEntry {
    f.pieces_root = root.into();
    f
}

/// Partial holders come after complete ones by digest, never in Search or ListFiles; a digest
/// held only in part still answers, with the size its partial holders announced.
pub async fn partial_holders_are_found_by_digest_only(store: Arc<dyn Store>) {
    let r = registry(store, Duration::from_secs(60));
    let s1 = r
        .register("p1", "h:1", vec![file("a.iso", 1)], "")
        .await
        .unwrap();
    let s2 = r.register("p2", "h:2", vec![], "").await.unwrap();
    let s3 = r.register("p3", "h:3", vec![], "").await.unwrap();
    assert_eq!(
        r.announce(
            "p2",
            &s2,
            partials_change(vec![partial(1), partial(2)], vec![])
        )
        .await
        .unwrap(),
        2
    );
    r.announce("p3", &s3, partials_change(vec![partial(1)], vec![]))
        .await
        .unwrap();
    assert_eq!(
        by_digest(&r, 1).await,
        Some((
            vec![pair("p1", root(1))],
            vec![pair("p2", root(1)), pair("p3", root(1))]
        ))
    );
    let d = r.peers_by_digest(&sha(1)).await.unwrap();
    assert_eq!(d.size, 1, "a complete holder's size wins");
    let d = r.peers_by_digest(&sha(2)).await.unwrap();
    assert_eq!(d.size, 1002, "size from the partial announcement");
    assert!(d.complete.is_empty());
    assert_eq!(ids_and_roots(&d.partial), vec![pair("p2", root(2))]);
    assert_eq!(d.partial[0].address, "h:2");

    let listed = r.list_files(0, "").await.unwrap();
    assert_eq!(names(&listed), ["a.iso"]);
    let holders: Vec<&str> = listed.files[0]
        .1
        .iter()
        .map(|h| h.peer_id.as_str())
        .collect();
    assert_eq!(holders, ["p1"]);
    let found = r.search("a.iso", true, 0, "").await.unwrap();
    assert_eq!(found.files[0].1.len(), 1);
    assert_eq!(counts(&r).await, (3, 1, 3));

    // A peer listed complete is not listed again as partial (a second download of bytes it
    // has is its own business).
    r.announce("p1", &s1, partials_change(vec![partial(1)], vec![]))
        .await
        .unwrap();
    let (complete, partial_holders) = by_digest(&r, 1).await.unwrap();
    assert_eq!(complete, vec![pair("p1", root(1))]);
    assert_eq!(partial_holders.len(), 2);
    r.announce("p1", &s1, partials_change(vec![], vec![sha(1)]))
        .await
        .unwrap();

    // Given up: gone from the answers and the count; the last partial holder of a digest
    // takes the digest with it.
    r.announce("p2", &s2, partials_change(vec![], vec![sha(2), sha(9)]))
        .await
        .unwrap();
    assert_eq!(by_digest(&r, 2).await, None);
    assert_eq!(counts(&r).await, (3, 1, 2));
    // Removing and adding one digest in one request keeps it (removals go first), with the
    // newly announced root.
    let mut moved = partial(1);
    moved.pieces_root = Some(Digest([0x33; 32]));
    assert_eq!(
        r.announce(
            "p3",
            &s3,
            partials_change(vec![moved.clone()], vec![sha(1)])
        )
        .await
        .unwrap(),
        1
    );
    let (_, partial_holders) = by_digest(&r, 1).await.unwrap();
    assert_eq!(
        partial_holders,
        vec![pair("p2", root(1)), pair("p3", moved.pieces_root)]
    );
    assert_eq!(counts(&r).await, (3, 1, 2));
}

/// A peer that announces a digest as a complete file stops being a partial holder of it,
/// also when both come in one request.
pub async fn a_complete_announce_replaces_the_partial_entry(store: Arc<dyn Store>) {
    let r = registry(store, Duration::from_secs(60));
    let s = r.register("p1", "h:1", vec![], "").await.unwrap();
    r.announce(
        "p1",
        &s,
        partials_change(vec![partial(1), partial(2)], vec![]),
    )
    .await
    .unwrap();
    assert_eq!(counts(&r).await, (1, 0, 2));
    let n = r
        .announce("p1", &s, files_change(vec![file("one.bin", 1)], vec![]))
        .await
        .unwrap();
    assert_eq!(n, 2, "one file and one partial holding");
    assert_eq!(
        by_digest(&r, 1).await,
        Some((vec![pair("p1", root(1))], vec![]))
    );
    assert_eq!(counts(&r).await, (1, 1, 1));
    // Finished and announced together: the complete file wins.
    let both = Announcement {
        added: vec![file("two.bin", 2)],
        partial_added: vec![partial(2), partial(3)],
        ..Announcement::default()
    };
    assert_eq!(r.announce("p1", &s, both).await.unwrap(), 3);
    assert_eq!(
        by_digest(&r, 2).await,
        Some((vec![pair("p1", root(2))], vec![]))
    );
    assert_eq!(
        by_digest(&r, 3).await,
        Some((vec![], vec![pair("p1", root(3))]))
    );
    assert_eq!(counts(&r).await, (1, 2, 1));
    // Re-registering starts from the files it carries: partial holdings are forgotten.
    r.register("p1", "h:1", vec![file("one.bin", 1)], &s)
        .await
        .unwrap();
    assert_eq!(by_digest(&r, 3).await, None);
    assert_eq!(counts(&r).await, (1, 1, 0));
}

/// Partial holdings count against `max_files_per_peer` with the files, in the one operation
/// that enforces the cap: a refused Announce writes nothing.
pub async fn partials_count_against_the_cap(store: Arc<dyn Store>) {
    let r = registry(store, Duration::from_secs(60));
    let six: Vec<_> = (0..6).map(|i| file(&format!("f{i}"), 10 + i)).collect();
    let s = r.register("p1", "h:1", six, "").await.unwrap();
    let three: Vec<_> = (1..=3).map(partial).collect();
    assert_eq!(
        r.announce("p1", &s, partials_change(three, vec![]))
            .await
            .unwrap(),
        9
    );
    // 9 + 2 = 11 > 10: refused, neither indexed.
    let over = vec![partial(4), partial(5)];
    assert!(matches!(
        r.announce("p1", &s, partials_change(over.clone(), vec![]))
            .await,
        Err(RegistryError::OverCap(_))
    ));
    assert_eq!(by_digest(&r, 4).await, None);
    assert_eq!(by_digest(&r, 5).await, None);
    assert_eq!(counts(&r).await, (1, 6, 3));
    // A complete file alongside a refused partial: nothing of either is written.
    let mixed = Announcement {
        added: vec![file("new", 20)],
        partial_added: over.clone(),
        ..Announcement::default()
    };
    assert!(matches!(
        r.announce("p1", &s, mixed).await,
        Err(RegistryError::OverCap(_))
    ));
    assert!(r.search("new", true, 0, "").await.unwrap().files.is_empty());
    // Room made in the same request counts: 9 - 1 + 2 = 10.
    assert_eq!(
        r.announce("p1", &s, partials_change(over, vec![sha(1)]))
            .await
            .unwrap(),
        10
    );
    // At the cap, finishing a download is no growth: the file replaces the partial entry.
    assert_eq!(
        r.announce("p1", &s, files_change(vec![file("two", 2)], vec![]))
            .await
            .unwrap(),
        10
    );
    assert!(matches!(
        r.announce("p1", &s, files_change(vec![file("eleven", 30)], vec![]))
            .await,
        Err(RegistryError::OverCap(_))
    ));
    assert_eq!(counts(&r).await, (1, 7, 3));
}

/// Partial holdings end with the lease: on Leave at once, on expiry at once for readers and
/// for the count when the sweeper runs.
pub async fn partial_holders_follow_the_lease(store: Arc<dyn Store>) {
    let r = registry(store, Duration::from_millis(400));
    let s1 = r.register("p1", "h:1", vec![], "").await.unwrap();
    let s2 = r.register("p2", "h:2", vec![], "").await.unwrap();
    r.announce("p1", &s1, partials_change(vec![partial(1)], vec![]))
        .await
        .unwrap();
    r.announce(
        "p2",
        &s2,
        partials_change(vec![partial(1), partial(2)], vec![]),
    )
    .await
    .unwrap();
    assert_eq!(counts(&r).await, (2, 0, 3));
    r.leave("p2", &s2).await.unwrap();
    assert_eq!(by_digest(&r, 2).await, None);
    assert_eq!(
        by_digest(&r, 1).await,
        Some((vec![], vec![pair("p1", root(1))]))
    );
    assert_eq!(counts(&r).await, (1, 0, 1));

    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        by_digest(&r, 1).await,
        None,
        "expired holders are filtered on read"
    );
    assert_eq!(r.sweep().await.unwrap(), 1);
    assert_eq!(counts(&r).await, (0, 0, 0));
    assert!(matches!(
        r.announce("p1", &s1, partials_change(vec![partial(3)], vec![]))
            .await,
        Err(RegistryError::UnknownPeer(_))
    ));
    assert_eq!(by_digest(&r, 3).await, None);
}

/// GetPeersByDigest names a random sample of at most `holders_per_answer` holders: partial
/// holders up to half of it, either kind filling what the other lacks, every holder offered
/// within a few answers.
pub async fn digest_answers_are_a_bounded_sample(store: Arc<dyn Store>) {
    let r = sampling(store, 8);
    holders(&r, "c", 16, 1, true).await;
    holders(&r, "p", 16, 1, false).await;
    holders(&r, "x", 2, 2, false).await;
    holders(&r, "y", 20, 2, true).await;
    holders(&r, "z", 20, 3, false).await;
    let mut seen = std::collections::BTreeSet::new();
    // Each holder is in an answer with probability 1/4: missing one in 100 answers is 3e-13.
    for _ in 0..100 {
        assert_eq!(answer(&r, 1, &mut seen).await, (4, 4));
    }
    assert_eq!(seen.len(), 32, "every holder offered: {seen:?}");
    let mut other = std::collections::BTreeSet::new();
    assert_eq!(
        answer(&r, 2, &mut other).await,
        (6, 2),
        "complete holders fill in"
    );
    assert_eq!(
        answer(&r, 3, &mut other).await,
        (0, 8),
        "partial holders alone fill it"
    );
}

/// Ten thousand holders of one digest: the answer stays at `holders_per_answer`.
pub async fn ten_thousand_holders_give_a_small_answer(store: Arc<dyn Store>) {
    let r = sampling(store, 50);
    holders(&r, "c", 9_000, 1, true).await;
    holders(&r, "p", 1_000, 1, false).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..5 {
        assert_eq!(answer(&r, 1, &mut seen).await, (25, 25));
    }
    assert!(
        seen.len() > 150,
        "answers differ: {} holders in 5 answers",
        seen.len()
    );
}

/// A name many peers hold is listed with a sample of them and the count of all; a page whose
/// matches would pass the byte budget stops early with a token, and paging still reaches
/// every file exactly once.
pub async fn matches_name_a_bounded_sample_and_pages_by_bytes(store: Arc<dyn Store>) {
    let r = Registry::new(
        store,
        Duration::from_secs(60),
        Limits {
            holders_per_match: 5,
            max_page_bytes: 4000,
            ..Limits::default()
        },
    );
    let long = |i: usize| format!("{}-{i:03}", "n".repeat(200));
    for p in 0..12 {
        let files = (0..6).map(|i| file(&long(i), i as u8 + 1)).collect();
        r.register(&format!("p{p:02}"), &format!("10.0.0.{p}:5000"), files, "")
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = r.list_files(1000, &token).await.unwrap();
        pages += 1;
        assert!(!page.files.is_empty(), "an empty page with a token");
        let bytes: usize = page
            .files
            .iter()
            .map(|(f, h, _)| {
                f.name.len()
                    + h.iter()
                        .map(|h| h.peer_id.len() + h.address.len())
                        .sum::<usize>()
            })
            .sum();
        assert!(bytes <= 4000, "page of {bytes} bytes");
        for (f, holders, total) in page.files {
            assert_eq!(holders.len(), 5, "{}", f.name);
            assert_eq!(total, 12);
            let ids: Vec<&str> = holders.iter().map(|h| h.peer_id.as_str()).collect();
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(ids, sorted, "distinct, in id order");
            assert_eq!(f.pieces_root, holders[0].pieces_root);
            seen.push(f.name);
        }
        match page.next_token {
            Some(t) => token = t,
            None => break,
        }
    }
    assert!(pages > 1, "the byte budget never cut a page");
    assert_eq!(seen, (0..6).map(long).collect::<Vec<_>>());
    let found = r.search("nnn", false, 1000, "").await.unwrap();
    assert!(found.files.len() < 6 && found.next_token.is_some());
}

/// (id, address) of every peer ListPeers names, page by page, and how many pages it took.
async fn walk_peers(r: &Registry, size: u32) -> (Vec<(String, String)>, usize) {
    let (mut all, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = r.list_peers(size, &token).await.unwrap();
        pages += 1;
        all.extend(page.peers.iter().map(|p| (p.id.clone(), p.address.clone())));
        let keys: Vec<_> = page.peers.iter().map(|p| p.key()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "lease order");
        match page.next_token {
            Some(t) => token = t,
            None => return (all, pages),
        }
    }
}

/// Every live peer is listed, sharing or not, in lease order (a renewed lease moves its peer to
/// the end), paged within the page size and the byte budget, each exactly once; peers that
/// left or whose lease ended are not.
pub async fn live_peers_are_listed_in_lease_order(store: Arc<dyn Store>) {
    let r = registry(store.clone(), Duration::from_millis(500));
    let ids = |all: &[(String, String)]| all.iter().map(|p| p.0.clone()).collect::<Vec<_>>();
    let gone = r.register("gone", "h:9", vec![], "").await.unwrap();
    r.leave("gone", &gone).await.unwrap();
    r.register("stale", "h:8", vec![], "").await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = registry(store, Duration::from_secs(60));
    r.register("p1", "10.0.0.1:5000", vec![file("a", 1)], "")
        .await
        .unwrap();
    let s2 = r.register("p2", "10.0.0.2:5000", vec![], "").await.unwrap();
    r.register("p3", "10.0.0.3:5000", vec![], "").await.unwrap();
    // Two to a page by default, three at most whatever is asked.
    let (all, pages) = walk_peers(&r, 0).await;
    assert_eq!(
        ids(&all),
        ["p1", "p2", "p3"],
        "sharing nothing, listed all the same"
    );
    assert_eq!(all[1].1, "10.0.0.2:5000");
    assert_eq!(pages, 2);
    let page = r.list_peers(100, "").await.unwrap();
    assert_eq!(page.peers.len(), 3);
    tokio::time::sleep(Duration::from_millis(5)).await;
    r.heartbeat("p2", &s2).await.unwrap();
    assert_eq!(ids(&walk_peers(&r, 1000).await.0), ["p1", "p3", "p2"]);
    assert!(matches!(
        r.list_peers(0, "zz").await,
        Err(RegistryError::Invalid(_))
    ));

    // A byte budget cuts pages short; every peer still comes once.
    let tight = Registry::new(
        r.store().clone(),
        Duration::from_secs(60),
        Limits {
            max_page_bytes: 1000,
            ..Limits::default()
        },
    );
    let long = |i: usize| format!("{}{i:02}", "q".repeat(60));
    for i in 0..20 {
        let addr = format!("{}.example:5000", "h".repeat(150));
        tight.register(&long(i), &addr, vec![], "").await.unwrap();
    }
    let (all, pages) = walk_peers(&tight, 1000).await;
    assert!(
        pages > 4,
        "the byte budget never cut a page ({pages} pages)"
    );
    let mut want: Vec<String> = ["p1", "p3", "p2"].map(String::from).to_vec();
    want.extend((0..20).map(long));
    assert_eq!(ids(&all), want);
}

/// Runs every check, each on a fresh store from `fresh`.
pub async fn run_all<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    register_search_and_leave(fresh().await).await;
    one_name_many_digests(fresh().await).await;
    leases_and_secrets(fresh().await).await;
    announce_within_the_cap(fresh().await).await;
    concurrent_races(fresh().await).await;
    pieces_root_is_returned_with_every_match(fresh().await).await;
    partial_holders_are_found_by_digest_only(fresh().await).await;
    a_complete_announce_replaces_the_partial_entry(fresh().await).await;
    partials_count_against_the_cap(fresh().await).await;
    partial_holders_follow_the_lease(fresh().await).await;
    digest_answers_are_a_bounded_sample(fresh().await).await;
    ten_thousand_holders_give_a_small_answer(fresh().await).await;
    matches_name_a_bounded_sample_and_pages_by_bytes(fresh().await).await;
    live_peers_are_listed_in_lease_order(fresh().await).await;
}
