//! The rules every [`Store`] must keep, as one suite run against each backend (memory in this
//! crate's unit tests, Redis in `tests/redis.rs`). Each check takes a fresh, empty store.

use std::sync::Arc;
use std::time::Duration;

use crate::registry::{Limits, Registry, RegistryError};
use crate::store::{FileEntry, Store};

pub fn file(name: &str, byte: u8) -> FileEntry {
    FileEntry {
        name: name.into(),
        size: u64::from(byte),
        sha256: hex::encode([byte; 32]),
    }
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
        },
    )
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
    let (size, holders) = r.peers_by_digest(&hex::encode([1u8; 32])).await.unwrap();
    assert_eq!((size, holders.len()), (1, 1));
    assert_eq!(r.counts().await.unwrap(), (1, 3));
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
        let digests: Vec<String> = first
            .files
            .iter()
            .chain(&second.files)
            .map(|f| f.0.sha256.clone())
            .collect();
        let want: Vec<String> = [3u8, 5, 7, 9]
            .iter()
            .map(|b| hex::encode([*b; 32]))
            .collect();
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
        r.announce("p1", "nope", vec![file("y", 2)], vec![]).await,
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
    assert_eq!(r.counts().await.unwrap(), (0, 0));
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
        .announce("p1", &s, vec![file("x", 2), file("y", 3)], vec![])
        .await
        .unwrap();
    assert_eq!(n, 2);
    let page = r.search("x", true, 0, "").await.unwrap();
    assert_eq!(page.files[0].0.sha256, hex::encode([2u8; 32]));
    assert!(r.peers_by_digest(&hex::encode([1u8; 32])).await.is_err());
    assert_eq!(
        r.announce("p1", &s, vec![], vec!["y".into()])
            .await
            .unwrap(),
        1
    );
    assert!(r.search("y", true, 0, "").await.unwrap().files.is_empty());

    // 1 + 6 + 4 = 11 > 10: refused, and none of the 4 is indexed.
    let six: Vec<_> = (0..6).map(|i| file(&format!("six{i}"), 10 + i)).collect();
    assert_eq!(r.announce("p1", &s, six, vec![]).await.unwrap(), 7);
    let four: Vec<_> = (0..4).map(|i| file(&format!("over{i}"), 20 + i)).collect();
    assert!(matches!(
        r.announce("p1", &s, four.clone(), vec![]).await,
        Err(RegistryError::OverCap(_))
    ));
    assert!(
        r.search("over", false, 0, "")
            .await
            .unwrap()
            .files
            .is_empty()
    );
    assert!(r.peers_by_digest(&hex::encode([20u8; 32])).await.is_err());
    assert_eq!(r.counts().await.unwrap(), (1, 7));
    // Removing in the same request makes room: the count is judged after the whole change.
    let gone: Vec<String> = (0..3).map(|i| format!("six{i}")).collect();
    assert_eq!(r.announce("p1", &s, four, gone).await.unwrap(), 8);
    assert_eq!(r.search("over", false, 0, "").await.unwrap().files.len(), 2);
    // More than one request may carry is a bad request, not a cap refusal.
    let seven: Vec<_> = (0..7).map(|i| file(&format!("big{i}"), 40 + i)).collect();
    assert!(matches!(
        r.announce("p1", &s, seven.clone(), vec![]).await,
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
    assert_eq!(r.counts().await.unwrap(), (1, 1));
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
}
