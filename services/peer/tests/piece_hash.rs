//! Issue 18: pieces are hashed with BLAKE3, which the manifest names (`"piece_hash"`) and
//! `pieces_root` is domain-separated by. A peer from before (SHA-256 pieces, no `piece_hash`, a
//! root of the digests alone) is refused by name, never misread; and during a rolling upgrade the
//! real tracker keeps serving holders of both kinds, each with its own root, so downloads follow
//! the holders they can check, even while older ones are the majority. Old holders are fakes (`common::fake`) registered with the real
//! tracker; new ones are real peers; downloads run in the real `p2p-peer` CLI.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::fake::{File, Seen, bytes_answer, file, holder_app, json_answer, register, serve};
use common::{start_peer, start_tracker};
use p2p_common::proto::GetPeersByDigestRequest;
use p2p_peer::share::digest::sha256;
use serde_json::json;

/// `f` as a peer from before issue 18 describes it: SHA-256 piece digests, the root SHA-256 of
/// the digests alone, no `piece_hash`.
fn older_peers(f: &File) -> File {
    let ps = p2p_peer::share::pieces::piece_size(f.content.len() as u64) as usize;
    let digests: Vec<_> = f.content.chunks(ps).map(sha256).collect();
    let cat: Vec<u8> = digests.iter().flat_map(|d| d.0).collect();
    let root = sha256(&cat).to_hex();
    let manifest = json!({
        "sha256": f.sha,
        "size": f.content.len(),
        "piece_size": ps,
        "pieces": digests.iter().map(|d| d.to_hex()).collect::<Vec<_>>(),
        "pieces_root": root,
    });
    File {
        root,
        manifest,
        ..f.clone()
    }
}

/// A fake older peer holding `old`: its manifest, every piece whole (counted), a full bitfield.
async fn older_holder(t: SocketAddr, id: &str, old: &File, pieces_asked: Arc<AtomicU64>) -> Seen {
    let seen = Seen::default();
    let (m, content) = (old.manifest.clone(), old.content.clone());
    let app = holder_app(
        &seen,
        move || json_answer(&m),
        move || {
            pieces_asked.fetch_add(1, Ordering::SeqCst);
            bytes_answer(&content)
        },
        || bytes_answer(&[0xff]),
    );
    let addr = serve(app).await;
    register(t, id, addr, old, old.content.len() as u64).await;
    seen
}

async fn cli(tracker: SocketAddr, args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::Sec::plain().cli(&format!("http://{tracker}"), &args)
    })
    .await
    .unwrap()
}

/// The holders the tracker gives for `sha`, as (peer id, root), sorted.
async fn holders(t: SocketAddr, sha: &str) -> Vec<(String, String)> {
    let answer = common::fake::tracker_client(t)
        .await
        .get_peers_by_digest(GetPeersByDigestRequest { sha256: sha.into() })
        .await;
    let mut v: Vec<(String, String)> = answer
        .map(|a| a.into_inner().peers)
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.peer_id, p.pieces_root))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_peers_manifest_is_refused_by_name() {
    let tracker = start_tracker().await;
    let t = tracker.local_addr;
    let f = file("old.bin", (5 << 20) + 3, 18);
    let old = older_peers(&f);
    let asked = Arc::new(AtomicU64::new(0));
    let seen = older_holder(t, "old-1", &old, Arc::clone(&asked)).await;

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("old.bin");
    let (code, _, err) = cli(t, &["get", "old.bin", "-o", out.to_str().unwrap()]).await;
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("names no piece hash: SHA-256 pieces from a p2pshare peer older"),
        "{err}"
    );
    assert!(err.contains("old-1"), "the refusal names the holder: {err}");
    // Older, not lying: not counted as a bad source.
    assert!(
        !err.contains("sent bad data") && !err.contains("counted as a bad source"),
        "{err}"
    );
    assert!(seen.requests() >= 1, "the manifest was never asked for");
    assert_eq!(
        asked.load(Ordering::SeqCst),
        0,
        "pieces asked of an unreadable manifest"
    );
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracker_serves_holders_of_both_kinds_during_a_rolling_upgrade() {
    let tracker = start_tracker().await;
    let t = tracker.local_addr;
    let f = file("mixed.bin", (5 << 20) + 3, 19);
    let old = older_peers(&f);
    assert_ne!(old.root, f.root, "a root names its piece hash");

    // One upgraded peer (a real one) and two not yet upgraded (fakes of the older kind): the
    // older root is the majority.
    let root = tempfile::tempdir().unwrap();
    let share = root.path().join("new-1");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join(&f.name), &f.content).unwrap();
    let new_peer = start_peer(t, "new-1", &share, |_| {}).await;
    let asked = Arc::new(AtomicU64::new(0));
    let mut olds = Vec::new();
    for id in ["old-1", "old-2"] {
        olds.push(older_holder(t, id, &old, Arc::clone(&asked)).await);
    }

    // The tracker passes each holder's own root through: all three are served.
    let want = vec![
        ("new-1".to_owned(), f.root.clone()),
        ("old-1".to_owned(), old.root.clone()),
        ("old-2".to_owned(), old.root.clone()),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = holders(t, &f.sha).await;
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "holders never became {want:?}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An upgraded downloader takes the file from the upgraded holder; the older ones are asked
    // at most for their manifest, refused by name, never for a piece it could not check.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mixed.bin");
    let (code, _, err) = cli(t, &["get", "mixed.bin", "-o", out.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), f.content);
    assert_eq!(asked.load(Ordering::SeqCst), 0, "{err}");
    for (id, seen) in ["old-1", "old-2"].iter().zip(&olds) {
        if seen.requests() > 0 {
            assert!(
                err.lines()
                    .any(|l| l.starts_with(&format!("{id} (")) && l.contains("SHA-256 pieces")),
                "{id} was asked but its refusal not said: {err}"
            );
        }
    }

    // Both kinds are still served once the download is done.
    assert_eq!(holders(t, &f.sha).await, want);
    drop(new_peer);
}
