//! The store's tests: indexing, the digest cache, publication and what is never shared.

use super::*;
use crate::share::pieces;

#[tokio::test]
async fn indexes_caches_and_publishes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("share");
    let store = Store::open(&dir).await.unwrap();
    std::fs::write(dir.join("a.txt"), b"hello").unwrap();
    std::fs::write(dir.join("bad\nname"), b"x").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
    assert!(store.rescan().await.unwrap());
    let list = store.list().await;
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0].sha256.to_hex(),
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert!(!store.rescan().await.unwrap());

    // A reopened store trusts its cache for unchanged files.
    drop(store);
    let store = Store::open(&dir).await.unwrap();
    assert_eq!(store.list().await.len(), 1);
    assert!(!store.rescan().await.unwrap());

    let p = dir.join(PARTIAL_DIR).join("upload-1");
    std::fs::write(&p, b"other").unwrap();
    let (size, digest) = hash_file(&p).unwrap();
    assert_eq!(
        store.publish(&p, "a.txt", size, &digest).await.unwrap(),
        Published::Conflict
    );
    assert!(!p.exists(), "rejected temp file left behind");
    std::fs::write(&p, b"other").unwrap();
    assert_eq!(
        store.publish(&p, "b.txt", size, &digest).await.unwrap(),
        Published::Created
    );
    assert_eq!(std::fs::read(dir.join("b.txt")).unwrap(), b"other");
    std::fs::write(&p, b"other").unwrap();
    assert_eq!(
        store.publish(&p, "b.txt", size, &digest).await.unwrap(),
        Published::Identical
    );

    std::fs::remove_file(dir.join("a.txt")).unwrap();
    assert!(store.rescan().await.unwrap());
    let names = names(&store).await;
    assert_eq!(names, ["b.txt"]);
    assert!(matches!(
        check_name(".partial"),
        Err(StoreError::Reserved(_))
    ));
}

async fn names(store: &Store) -> Vec<String> {
    let all = store.list().await;
    all.into_iter().map(|e| e.name.to_string()).collect()
}

/// The chain's values at each piece's end, the last one the file's SHA-256.
fn piece_digests(bytes: &[u8]) -> Vec<crate::share::Digest> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let size = pieces::piece_size(bytes.len() as u64) as usize;
    let mut chain = crate::share::chain::Chain::new();
    let mut out = Vec::new();
    for piece in bytes.chunks(size) {
        chain.update(piece);
        if chain.at_boundary() {
            out.push(chain.value());
        }
    }
    if bytes.len().is_multiple_of(size) {
        out.pop();
    }
    out.push(crate::share::digest::sha256(bytes));
    out
}

#[tokio::test]
async fn index_cache_carries_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("share");
    let store = Store::open(&dir).await.unwrap();
    let bytes: Vec<u8> = (0..(5 << 20) + 3).map(|i: u32| (i % 251) as u8).collect();
    std::fs::write(dir.join("two-pieces"), &bytes).unwrap();
    assert!(store.rescan().await.unwrap());
    let entry = store.get("two-pieces").await.unwrap();
    let m = entry.manifest().expect("manifest computed with the digest");
    assert_eq!(m.digests(), &piece_digests(&bytes)[..]);
    assert_eq!(store.manifest(&entry).await.unwrap(), m);
    let cache = dir.join(STATE_DIR).join(INDEX_FILE);
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(
        on_disk["two-pieces"]["manifest"]["digests"][1],
        piece_digests(&bytes)[1].to_hex()
    );

    // A restart takes the manifest from the cache: nothing to rehash.
    drop(store);
    let store = Store::open(&dir).await.unwrap();
    assert!(!store.rescan().await.unwrap());
    assert_eq!(
        store.get("two-pieces").await.unwrap().manifest(),
        Some(m.clone())
    );

    // A cache written before manifests existed: served meanwhile, rehashed once.
    let mut old = on_disk.clone();
    old["two-pieces"]
        .as_object_mut()
        .unwrap()
        .remove("manifest");
    std::fs::write(&cache, serde_json::to_vec(&old).unwrap()).unwrap();
    drop(store);
    let store = Store::open(&dir).await.unwrap();
    let stale = store.get("two-pieces").await.unwrap();
    assert_eq!(stale.manifest(), None);
    assert_eq!(store.manifest(&stale).await.unwrap(), m);
    assert!(store.rescan().await.unwrap(), "old entry not rehashed");
    assert_eq!(
        store.get("two-pieces").await.unwrap().manifest(),
        Some(m.clone())
    );
    assert!(!store.rescan().await.unwrap(), "rehashed twice");

    // A cache of a version before manifests named their piece hash (SHA-256 pieces): that
    // entry is rehashed once, not misread, and the rest of the cache stays.
    let mut sha_pieces = on_disk.clone();
    let fields = sha_pieces["two-pieces"]["manifest"]
        .as_object_mut()
        .unwrap();
    fields.remove("piece_hash");
    fields.insert(
        "digests".into(),
        serde_json::json!(
            bytes
                .chunks(4 << 20)
                .map(|c| crate::share::digest::sha256(c).to_hex())
                .collect::<Vec<_>>()
        ),
    );
    std::fs::write(&cache, serde_json::to_vec(&sha_pieces).unwrap()).unwrap();
    drop(store);
    let store = Store::open(&dir).await.unwrap();
    assert_eq!(store.get("two-pieces").await.unwrap().manifest(), None);
    assert!(store.rescan().await.unwrap(), "older manifest not rehashed");
    assert_eq!(
        store.get("two-pieces").await.unwrap().manifest(),
        Some(m.clone())
    );
    assert!(!store.rescan().await.unwrap(), "rehashed twice");

    // A cached manifest that does not fit the file is not trusted either.
    let mut bad = on_disk;
    bad["two-pieces"]["manifest"]["digests"]
        .as_array_mut()
        .unwrap()
        .pop();
    std::fs::write(&cache, serde_json::to_vec(&bad).unwrap()).unwrap();
    drop(store);
    let store = Store::open(&dir).await.unwrap();
    assert!(store.rescan().await.unwrap());
    assert_eq!(store.get("two-pieces").await.unwrap().manifest(), Some(m));
}

#[tokio::test]
async fn uploads_carry_their_manifest_and_bad_bytes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("share");
    let store = Store::open(&dir).await.unwrap();
    let p = dir.join(PARTIAL_DIR).join("upload-1");
    std::fs::write(&p, b"uploaded").unwrap();
    let hashed = pieces::hash_file(&p).unwrap();
    assert_eq!(
        store.publish_hashed(&p, "up", &hashed).await.unwrap(),
        Published::Created
    );
    let e = store.get("up").await.unwrap();
    assert_eq!(e.manifest().as_deref(), Some(&hashed.manifest));
    assert_eq!(e.sha256, hashed.sha256);

    // The size-and-digest form checks the bytes before anything is placed.
    std::fs::write(&p, b"other bytes").unwrap();
    let err = store
        .publish(&p, "other", 11, &hashed.sha256)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expected 11 bytes"), "{err}");
    assert!(!p.exists(), "refused temp file left behind");
    assert!(store.get("other").await.is_none());
}

#[tokio::test]
async fn by_digest_follows_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("share");
    let store = Store::open(&dir).await.unwrap();
    std::fs::write(dir.join("b"), b"same").unwrap();
    std::fs::write(dir.join("c"), b"same").unwrap();
    std::fs::write(dir.join("d"), b"different").unwrap();
    store.rescan().await.unwrap();
    let same = crate::share::digest::sha256(b"same");
    assert_eq!(&*store.by_digest(&same).await.unwrap().name, "b");
    // Published under a name that sorts first.
    let p = dir.join(PARTIAL_DIR).join("upload-1");
    std::fs::write(&p, b"same").unwrap();
    let (size, digest) = hash_file(&p).unwrap();
    store.publish(&p, "a", size, &digest).await.unwrap();
    assert_eq!(&*store.by_digest(&same).await.unwrap().name, "a");
    for (gone, next) in [("a", Some("b")), ("b", Some("c")), ("c", None)] {
        std::fs::remove_file(dir.join(gone)).unwrap();
        store.rescan().await.unwrap();
        let found = store.by_digest(&same).await.map(|e| e.name);
        assert_eq!(found.as_deref(), next, "after removing {gone}");
    }
    // A name rewritten with other bytes leaves the old digest.
    let other = crate::share::digest::sha256(b"different");
    std::fs::write(dir.join("d"), b"rewritten, longer").unwrap();
    store.rescan().await.unwrap();
    assert!(store.by_digest(&other).await.is_none());
    let now = crate::share::digest::sha256(b"rewritten, longer");
    assert_eq!(&*store.by_digest(&now).await.unwrap().name, "d");
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// Bounds a step that must not hang (the failure mode is hanging forever).
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

#[tokio::test]
async fn recreates_its_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("share");
    let store = Store::open(&dir).await.unwrap();
    std::fs::write(dir.join("a.txt"), b"hello").unwrap();
    assert!(store.rescan().await.unwrap());
    // What a CLI `get -o` into the share used to do, or a user tidying up.
    std::fs::remove_dir_all(dir.join(PARTIAL_DIR)).unwrap();
    std::fs::remove_dir_all(dir.join(STATE_DIR)).unwrap();
    assert!(
        store.usable().await,
        "usable went false for a recreatable directory"
    );
    std::fs::remove_dir_all(dir.join(PARTIAL_DIR)).unwrap();
    let (file, path) = store.temp_file("upload-").await.unwrap();
    std::fs::write(&path, b"new").unwrap();
    drop(file);
    let (size, digest) = hash_file(&path).unwrap();
    let kept = path.keep().unwrap();
    assert_eq!(
        store.publish(&kept, "b.txt", size, &digest).await.unwrap(),
        Published::Created
    );
    std::fs::remove_dir_all(dir.join(STATE_DIR)).unwrap();
    std::fs::write(dir.join("c.txt"), b"c").unwrap();
    assert!(store.rescan().await.unwrap());
    assert!(
        dir.join(STATE_DIR).join(INDEX_FILE).exists(),
        "digest cache not saved after its directory vanished"
    );
    assert_eq!(store.list().await.len(), 3);
}

#[tokio::test]
async fn only_regular_files_are_indexed_compared_or_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("share");
    let store = Store::open(&dir).await.unwrap();
    std::fs::write(dir.join("plain"), b"same").unwrap();
    std::fs::write(tmp.path().join("outside"), b"same").unwrap();
    mkfifo(&dir.join("fifo"));
    std::os::unix::fs::symlink(dir.join("fifo"), dir.join("to-fifo")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("outside"), dir.join("to-file")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("to-device")).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(dir.join("sock")).unwrap();
    std::fs::create_dir(dir.join("subdir")).unwrap();

    bounded("rescan", store.rescan()).await.unwrap();
    let names = names(&store).await;
    assert_eq!(names, ["plain"]);
    // One log line per odd entry, not one per scan.
    let odd: BTreeSet<String> = ["fifo", "sock", "subdir", "to-device", "to-fifo", "to-file"]
        .map(String::from)
        .into();
    assert_eq!(store.note_skipped(odd.clone()), 0, "logged again");
    bounded("rescan", store.rescan()).await.unwrap();
    assert_eq!(store.skipped.lock().unwrap().clone(), odd);

    // The same answer whatever the name holds or points to: no oracle, no hang, and the
    // name is left as it was.
    let p = dir.join(PARTIAL_DIR).join("upload-x");
    for content in [&b"same"[..], b"other"] {
        for name in odd.iter() {
            std::fs::write(&p, content).unwrap();
            let (size, digest) = hash_file(&p).unwrap();
            let got = bounded(name, store.publish(&p, name, size, &digest))
                .await
                .unwrap();
            assert_eq!(got, Published::NotAFile, "{name}");
            assert!(!p.exists(), "temp file left behind");
        }
    }
    assert!(
        std::fs::symlink_metadata(dir.join("to-file"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    for name in ["fifo", "to-fifo", "to-file", "to-device", "sock"] {
        assert!(hash_file(&dir.join(name)).is_err(), "{name} hashed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_does_not_hold_up_publication() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("share");
    let store = Store::open(&dir).await.unwrap();
    // Sparse: seconds of hashing without writing gigabytes in a test.
    let big = std::fs::File::create(dir.join("big")).unwrap();
    big.set_len(512 << 20).unwrap();
    drop(big);
    let mut pending = store.pending_hashes();
    let scanning = {
        let store = store.clone();
        tokio::spawn(async move { store.rescan().await })
    };
    bounded("hashing to start", pending.wait_for(|n| *n > 0))
        .await
        .unwrap();

    let p = dir.join(PARTIAL_DIR).join("upload-1");
    std::fs::write(&p, b"small").unwrap();
    let (size, digest) = hash_file(&p).unwrap();
    let got = bounded("publish", store.publish(&p, "small", size, &digest))
        .await
        .unwrap();
    assert_eq!(got, Published::Created);
    assert!(
        !scanning.is_finished() && *pending.borrow() > 0,
        "publication waited for the hashing"
    );
    // The scan's commit keeps what was published while it ran.
    bounded("rescan", scanning).await.unwrap().unwrap();
    let names = names(&store).await;
    assert_eq!(names, ["big", "small"]);
}

/// A name from a small pool and a digest from a smaller one, so that digests repeat.
fn pick(seed: &mut u64) -> (String, crate::share::Digest) {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let name = format!("n{:02}", (*seed >> 33) % 40);
    let digest = crate::share::digest::sha256(&[((*seed >> 20) % 6) as u8]);
    (name, digest)
}

fn entry(name: &str, sha256: crate::share::Digest) -> Entry {
    Entry::with_manifest(name, 0, sha256, 0, None)
}

/// Both orders of the index against a plain map, for every digest of the pool.
fn agrees(index: &Index, model: &std::collections::BTreeMap<String, crate::share::Digest>) {
    let names: Vec<&str> = index.entries().iter().map(|e| &*e.name).collect();
    assert_eq!(names, model.keys().map(String::as_str).collect::<Vec<_>>());
    for d in 0..6u8 {
        let d = crate::share::digest::sha256(&[d]);
        let first = model
            .iter()
            .find(|(_, v)| **v == d)
            .map(|(k, _)| k.as_str());
        assert_eq!(index.by_digest(&d).map(|e| &*e.name), first);
    }
}

#[test]
fn index_lookups_agree_after_every_change() {
    let mut seed = 7;
    let mut model = std::collections::BTreeMap::new();
    let mut index = Index::default();
    for _ in 0..400 {
        let (name, digest) = pick(&mut seed);
        index.insert(entry(&name, digest));
        model.insert(name, digest);
        agrees(&index, &model);
    }
    // A rescan's merge: some names rewritten or new, some gone.
    for _ in 0..20 {
        let mut upserts = Vec::new();
        for _ in 0..5 {
            let (name, digest) = pick(&mut seed);
            upserts.push(entry(&name, digest));
        }
        let upserts = Index::new(upserts).entries().to_vec();
        let (gone, _) = pick(&mut seed);
        let removed: Vec<Arc<str>> = if upserts.iter().any(|e| *e.name == *gone) {
            vec![]
        } else {
            vec![gone.as_str().into()]
        };
        model.remove(&gone);
        for e in &upserts {
            model.insert(e.name.to_string(), e.sha256);
        }
        index = index.merged(upserts, &removed);
        agrees(&index, &model);
    }
    // Of two entries with one name, the last stays.
    let d = |b: u8| crate::share::digest::sha256(&[b]);
    let index = Index::new(vec![entry("x", d(1)), entry("a", d(2)), entry("x", d(3))]);
    assert_eq!(index.get("x").unwrap().sha256, d(3));
    assert_eq!(index.len(), 2);
}

#[test]
fn small_manifests_are_kept_as_their_digest_and_the_cache_format_is_unchanged() {
    for size in [0usize, 1, 4 << 20, (4 << 20) + 1] {
        let bytes = vec![7u8; size];
        let m = Manifest::new(size as u64, piece_digests(&bytes)).unwrap();
        let sha = crate::share::digest::sha256(&bytes);
        let e = Entry::with_manifest("f", size as u64, sha, u64::MAX - 1, Some(m.clone()));
        assert_eq!(e.manifest().as_deref(), Some(&m), "{size} bytes");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "name": "f",
                "size": size,
                "sha256": sha.to_hex(),
                "mtime_ns": u64::MAX - 1,
                "manifest": serde_json::to_value(&m).unwrap(),
            })
        );
        assert_eq!(serde_json::from_value::<Entry>(json).unwrap(), e);
    }
    // The cache as an older peer wrote it: mtime as a u128 (in range), maybe no manifest.
    let old = r#"{"a":{"name":"a","size":1,"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","mtime_ns":1764900000123456789}}"#;
    let index::CachedEntries(entries) = serde_json::from_str(old).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].mtime_ns, 1_764_900_000_123_456_789);
    assert_eq!(entries[0].manifest(), None);
}

#[tokio::test]
async fn an_unchanged_share_is_rescanned_without_a_new_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("share");
    let store = Store::open(&dir).await.unwrap();
    for i in 0..50 {
        std::fs::write(dir.join(format!("f{i:02}")), i.to_string()).unwrap();
    }
    assert!(store.rescan().await.unwrap());
    let before = store.snapshot();
    assert!(!store.rescan().await.unwrap());
    assert!(Arc::ptr_eq(&before, &store.snapshot()), "index replaced");
    // A publication while a snapshot is out leaves the snapshot as it was.
    let p = dir.join(PARTIAL_DIR).join("upload-1");
    std::fs::write(&p, b"new").unwrap();
    let (size, digest) = hash_file(&p).unwrap();
    store.publish(&p, "g", size, &digest).await.unwrap();
    assert_eq!((before.len(), store.snapshot().len()), (50, 51));
    assert!(before.get("g").is_none());
    assert_eq!(
        store.snapshot().by_digest(&digest).unwrap().name.as_ref(),
        "g"
    );
}
