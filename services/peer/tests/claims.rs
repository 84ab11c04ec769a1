//! Issue 19 points 4 and 5: sizes and roots are claims of holders, checked against what each
//! holder serves. A fake holder's size claim must not fail the download nor blame the honest
//! seed; a Sybil majority for a bogus `pieces_root` must lose to the honest seed, be named, and
//! waste at most one file's bytes. The seed and the downloading peer are real (`p2p-peer`
//! serving in this process, the `p2p-peer` CLI); fakes are `common::fake` holders.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use common::fake::{
    File, Seen, file, holder_app, json_answer, made_up_manifest, manifest_answer, not_found,
    register, serve, tracker_client,
};
use common::{eventually, sha256_hex, start_peer, start_tracker};
use p2p_common::proto::SearchRequest;
use serde_json::json;

/// Runs the CLI against `tracker`; (exit code, stdout, stderr).
async fn cli(tracker: SocketAddr, args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::cli(&format!("http://{tracker}"), &args)
    })
    .await
    .unwrap()
}

/// The tracker's answer for `name`: (size, pieces_root) of its one match and its holders' ids.
async fn tracker_says(tracker: SocketAddr, name: &str) -> (u64, String, Vec<String>) {
    let found = tracker_client(tracker)
        .await
        .search(SearchRequest {
            query: name.into(),
            exact: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let m = &found.matches[0];
    let f = m.file.clone().unwrap();
    let mut ids: Vec<String> = m.peers.iter().map(|p| p.peer_id.clone()).collect();
    ids.sort();
    (f.size, f.pieces_root, ids)
}

/// A seed serving `f` from a share of its own, registered with the tracker.
async fn seed(t: SocketAddr, dir: &std::path::Path, f: &File) -> p2p_peer::server::Running {
    let share = dir.join("seed");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join(&f.name), &f.content).unwrap();
    let seed = start_peer(t, "seed", &share, |_| {}).await;
    eventually(
        Duration::from_secs(20),
        "the seed's file at the tracker",
        || {
            common::holders(&format!("http://{t}"), &f.name)
                .iter()
                .any(|(id, _)| id == "seed")
                .then_some(())
        },
    );
    seed
}

fn stderr_line<'a>(err: &'a str, id: &str) -> Option<&'a str> {
    err.lines().find(|l| l.starts_with(&format!("{id} (")))
}

/// Point 4: a fake holder announces the real digest with a size of 10^12 bytes before the
/// seed, so the tracker returns that size. The CLI and a serving peer (`POST /downloads`) download
/// the file from the seed all the same (not refused for room, not failed), and only the liar is
/// named: when its manifest contradicts the root it announced, or when it announced a root of
/// its own, which the seed's last piece refutes (issue 27) without a byte asked of the liar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_size_claim_costs_the_liar_never_the_honest_seed() {
    let dir = tempfile::tempdir().unwrap();
    let f = file("sized.bin", (9 << 20) + 77, 41);
    let huge = 1_000_000_000_000u64;
    let made_up = made_up_manifest(huge, 0xee, &f.sha);
    let (lie, lie_root) = (manifest_answer(&f.sha, &made_up), made_up.root().to_hex());

    // (case, the root the liar announces)
    for (i, (case, announced)) in [
        ("announces the seed's root", f.root.clone()),
        ("announces a root of its own", lie_root.clone()),
    ]
    .into_iter()
    .enumerate()
    {
        let tracker = start_tracker().await;
        let t = tracker.local_addr;
        let seen = Seen::default();
        let m = lie.clone();
        // Counts the requests for anything but its manifest (pieces, bitfields).
        let other = Seen::default();
        let (op, ob) = (other.clone(), other.clone());
        let fake = serve(holder_app(
            &seen,
            move || json_answer(&m),
            move || {
                op.requests.fetch_add(1, Ordering::SeqCst);
                not_found()
            },
            move || {
                ob.requests.fetch_add(1, Ordering::SeqCst);
                not_found()
            },
        ))
        .await;
        let liar = File {
            root: announced.clone(),
            ..f.clone()
        };
        // First, so that the tracker's size for the name is the liar's.
        register(t, "liar", fake, &liar, huge).await;
        let _seed = seed(t, &dir.path().join(format!("case-{i}")), &f).await;
        let (size, _, ids) = tracker_says(t, &f.name).await;
        assert_eq!(
            size, huge,
            "{case}: the tracker returns the last size claim"
        );
        assert_eq!(ids, ["liar", "seed"], "{case}");

        let out = dir.path().join(format!("out-{i}"));
        let (code, stdout, err) = cli(t, &["get", &f.name, "-o", out.to_str().unwrap()]).await;
        assert_eq!(code, 0, "{case}: {err}");
        assert_eq!(sha256_hex(&std::fs::read(&out).unwrap()), f.sha, "{case}");
        // The size said is the one the seed served.
        assert!(
            stdout.contains(&format!("{} bytes), sha256", f.content.len())),
            "{case}: {stdout}"
        );
        assert!(
            stderr_line(&err, "seed").is_none(),
            "{case}: the seed was named: {err}"
        );
        // Its manifest, when it was read before the seed's, contradicts the root it announced:
        // named for that. It serves no piece either way.
        if let Some(line) = stderr_line(&err, "liar") {
            assert!(
                line.contains("pieces_root is")
                    || line.contains("not held there")
                    || line.contains("the file's own bytes refute"),
                "{case}: {line}"
            );
        }
        if announced != f.root {
            // A root of its own, for a larger file than the seed's: refuted by the seed's last
            // piece (issue 27), which proves the file's size, so it was asked for nothing but
            // its manifest (checked below) and named for its claim.
            assert!(
                stderr_line(&err, "liar").is_some_and(|l| l.contains("refute")),
                "{case}: {err}"
            );
        }

        // A serving peer's download through `POST /downloads`: checked against the disk
        // with the size the holders serve, not refused with 507 for 10^12 bytes.
        let share = dir.path().join(format!("via-{i}"));
        std::fs::create_dir_all(&share).unwrap();
        let via = start_peer(t, &format!("via-{i}"), &share, |_| {}).await;
        let (code, _, err) = cli(t, &["get", &f.name, "--via", &via.local_addr.to_string()]).await;
        assert_eq!(code, 0, "{case}: {err}");
        assert_eq!(
            sha256_hex(&std::fs::read(share.join(&f.name)).unwrap()),
            f.sha,
            "{case}"
        );
        if announced != f.root {
            // A claim of its own: asked for its manifest, never used as a source.
            assert_eq!(other.requests(), 0, "{case}");
        }
        assert!(seen.requests() >= 1, "{case}: the liar was never asked");
    }
}

/// A holder of `content` answering manifests with `manifest` and block requests (`Range`,
/// relative to the piece) with the bytes asked for, counting what it sends.
fn ranged_holder(seen: &Seen, manifest: serde_json::Value, content: Arc<Vec<u8>>) -> Router {
    let sent = seen.clone();
    let ps = p2p_peer::share::pieces::piece_size(content.len() as u64) as usize;
    let piece = move |Path((_, index)): Path<(String, usize)>, headers: HeaderMap| {
        let (content, sent) = (Arc::clone(&content), sent.clone());
        async move {
            let start = index * ps;
            let Some(piece) = content.get(start..(start + ps).min(content.len())) else {
                return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            };
            let range = headers
                .get("range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes="))
                .and_then(|v| v.split_once('-'))
                .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
            let Some((a, b)) = range.filter(|(a, b)| a <= b && *b < piece.len()) else {
                return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            };
            sent.body_bytes
                .fetch_add((b + 1 - a) as u64, Ordering::SeqCst);
            (
                StatusCode::PARTIAL_CONTENT,
                [("content-range", format!("bytes {a}-{b}/{}", piece.len()))],
                piece[a..=b].to_vec(),
            )
                .into_response()
        }
    };
    let counted = seen.clone();
    Router::new()
        .route(
            "/blobs/{sha}/manifest",
            get(move || {
                let m = manifest.clone();
                async move { json_answer(&m) }
            }),
        )
        .route("/blobs/{sha}/pieces/{index}", get(piece))
        .route("/blobs/{sha}/bitfield", get(|| async { not_found() }))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                counted.requests.fetch_add(1, Ordering::SeqCst);
                next.run(req)
            },
        ))
}

/// Point 5 (with issue 27's chains): two fake holders announce the seed's digest with one bogus
/// root (the majority, so the tracker returns it) and serve pieces that match it. Its chain
/// ends at the other bytes' digest, not the file's: refused with the manifest, before a piece
/// is asked; both fakes are named and the download succeeds from the seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sybil_majority_for_a_bogus_root_loses_to_the_honest_seed() {
    let tracker = start_tracker().await;
    let t = tracker.local_addr;
    let dir = tempfile::tempdir().unwrap();
    let len = 3 << 20;
    let f = file("contested.bin", len, 51);
    let _seed = seed(t, dir.path(), &f).await;
    // Same size, other bytes: a manifest that matches them, under the seed's digest.
    let bogus = file("contested.bin", len, 52);
    let mut manifest = bogus.manifest.clone();
    manifest["sha256"] = json!(f.sha);
    let content = Arc::new(bogus.content.clone());
    let mut sybils = Vec::new();
    for id in ["sybil-1", "sybil-2"] {
        let seen = Seen::default();
        let addr = serve(ranged_holder(&seen, manifest.clone(), Arc::clone(&content))).await;
        let claim = File {
            root: bogus.root.clone(),
            ..f.clone()
        };
        register(t, id, addr, &claim, len as u64).await;
        sybils.push((id, seen));
    }
    let (_, root, ids) = tracker_says(t, &f.name).await;
    assert_eq!(
        root, bogus.root,
        "the majority's root is the tracker's answer"
    );
    assert_eq!(ids, ["seed", "sybil-1", "sybil-2"]);

    let out = dir.path().join("contested.bin");
    let (code, _, err) = cli(t, &["get", &f.name, "-o", out.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), f.content);
    assert!(
        stderr_line(&err, "seed").is_none(),
        "the seed was named: {err}"
    );
    for (id, _) in &sybils {
        let line = stderr_line(&err, id).unwrap_or_else(|| panic!("{id} not named: {err}"));
        assert!(
            line.contains("sent bad data") && line.contains("not at the file's SHA-256"),
            "{line}"
        );
    }
    // Not one piece of the bogus root was fetched.
    let wasted: u64 = sybils.iter().map(|(_, s)| s.body_bytes()).sum();
    assert_eq!(wasted, 0, "the bogus root cost {wasted} bytes");
}

/// Issue 27: a bogus claim whose chain does end at the file's digest can only be fake before
/// some piece; its holders serve bytes of their own that pass up to there. No bytes pass the
/// piece where the fake chain meets the real one, so the claim cannot complete: the download
/// moves to the honest seed's claim and the file is the seed's, byte for byte (before chains,
/// only the whole-file digest at the end caught a bogus claim). The fakes cost at most one
/// file's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_fake_before_some_piece_cannot_complete_and_the_seed_wins() {
    let tracker = start_tracker().await;
    let t = tracker.local_addr;
    let dir = tempfile::tempdir().unwrap();
    let len = 3 << 20;
    let f = file("spliced.bin", len, 61);
    let _seed = seed(t, dir.path(), &f).await;
    // Other bytes for the first three pieces, the seed's after: their chain is fake up to the
    // end of piece 2 and real from piece 3's end on, so it still ends at the file's digest.
    let ps = p2p_peer::share::pieces::piece_size(len as u64) as usize;
    let mut spliced = f.content.clone();
    spliced[..3 * ps].fill(0x5a);
    let theirs = p2p_peer::share::pieces::hash_bytes(&spliced).manifest;
    let real = p2p_peer::share::pieces::hash_bytes(&f.content).manifest;
    let mut values = real.digests().to_vec();
    values[..3].copy_from_slice(&theirs.digests()[..3]);
    let bogus = p2p_peer::share::Manifest::new(len as u64, values).unwrap();
    let manifest = manifest_answer(&f.sha, &bogus);
    let content = Arc::new(spliced);
    let mut sybils = Vec::new();
    for id in ["sybil-1", "sybil-2"] {
        let seen = Seen::default();
        let addr = serve(ranged_holder(&seen, manifest.clone(), Arc::clone(&content))).await;
        let claim = File {
            root: bogus.root().to_hex(),
            ..f.clone()
        };
        register(t, id, addr, &claim, len as u64).await;
        sybils.push(seen);
    }
    let (_, root, _) = tracker_says(t, &f.name).await;
    assert_eq!(
        root,
        bogus.root().to_hex(),
        "the majority's root is tried first"
    );

    let out = dir.path().join("spliced.bin");
    let (code, _, err) = cli(t, &["get", &f.name, "-o", out.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), f.content);
    assert!(
        stderr_line(&err, "seed").is_none(),
        "the seed was named: {err}"
    );
    let wasted: u64 = sybils.iter().map(|s| s.body_bytes()).sum();
    assert!(
        wasted <= 2 * len as u64,
        "the bogus root cost {wasted} bytes; the file has {len}"
    );
}

/// Issue 27: many fake identities announce many bogus claims next to one honest seed, each
/// claim with more holders than the honest one (before chains, only four claims were tried,
/// most holders first, so the seed's was never reached and the download failed). Chains fake up
/// to piece 0, 4, 9 and 10 (the last but one: refuted by the last piece), and sizes that end at
/// the real digest (smaller, larger, twice): the file's own bytes decide between them before
/// the download, every fake is named, the file is the seed's, and all the fakes together sent at
/// most two pieces per bogus claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_bogus_claims_cost_at_most_two_pieces_each_and_the_seed_wins() {
    let tracker = start_tracker().await;
    let t = tracker.local_addr;
    let dir = tempfile::tempdir().unwrap();
    let len = 3 << 20;
    let f = file("crowded.bin", len, 71);
    let _seed = seed(t, dir.path(), &f).await;
    let ps = p2p_peer::share::pieces::piece_size(len as u64) as usize;
    let real = p2p_peer::share::pieces::hash_bytes(&f.content).manifest;
    assert_eq!(real.piece_count(), 12);

    // (manifest, the bytes its holders serve)
    let mut bogus: Vec<(p2p_peer::share::Manifest, Vec<u8>)> = Vec::new();
    for k in [0usize, 4, 9, 10] {
        let mut spliced = f.content.clone();
        spliced[..(k + 1) * ps].fill(k as u8 + 1);
        let theirs = p2p_peer::share::pieces::hash_bytes(&spliced).manifest;
        let mut values = real.digests().to_vec();
        values[..=k].copy_from_slice(&theirs.digests()[..=k]);
        bogus.push((
            p2p_peer::share::Manifest::new(len as u64, values).unwrap(),
            spliced,
        ));
    }
    for (i, size) in [len - ps, len + 1000, 2 * len].into_iter().enumerate() {
        let m = made_up_manifest(size as u64, 0x40 + i as u8, &f.sha);
        bogus.push((m, file("junk", size, 90 + i as u64).content));
    }
    let mut fakes = Vec::new();
    for (i, (m, content)) in bogus.iter().enumerate() {
        let (answer, content) = (manifest_answer(&f.sha, m), Arc::new(content.clone()));
        for side in ["a", "b"] {
            let seen = Seen::default();
            let addr = serve(ranged_holder(&seen, answer.clone(), Arc::clone(&content))).await;
            let id = format!("fake-{i}{side}");
            let claim = File {
                root: m.root().to_hex(),
                ..f.clone()
            };
            register(t, &id, addr, &claim, m.size()).await;
            fakes.push((id, seen));
        }
    }

    let out = dir.path().join("crowded.bin");
    let (code, _, err) = cli(t, &["get", &f.name, "-o", out.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), f.content);
    assert!(
        stderr_line(&err, "seed").is_none(),
        "the seed was named: {err}"
    );
    let sent: u64 = fakes.iter().map(|(_, s)| s.body_bytes()).sum();
    assert!(
        sent <= 2 * (ps * bogus.len()) as u64,
        "{} bogus claims cost {sent} bytes, {:.1} pieces each",
        bogus.len(),
        sent as f64 / ps as f64 / bogus.len() as f64
    );
    for (id, _) in &fakes {
        assert!(stderr_line(&err, id).is_some(), "{id} not named: {err}");
    }
}

/// Issue 28 point 1: a fake peer id registered at the honest seed's own address, announcing the
/// file with a made-up root and no server of its own. The seed answers for the fake's address
/// with its real manifest, which contradicts the fake's root: the fake id is named for that,
/// never the address, so the seed stays a source and every `get` succeeds (before, failures
/// were remembered by address and all three failed with exit 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_id_at_the_seeds_address_does_not_get_the_seed_excluded() {
    let tracker = start_tracker().await;
    let t = tracker.local_addr;
    let dir = tempfile::tempdir().unwrap();
    let len = 2 << 20;
    let f = file("squatted.bin", len, 81);
    let seed = seed(t, dir.path(), &f).await;
    let made_up = made_up_manifest(len as u64, 0x33, &f.sha);
    let fake = File {
        root: made_up.root().to_hex(),
        ..f.clone()
    };
    register(t, "squatter", seed.local_addr, &fake, len as u64).await;
    let (_, _, ids) = tracker_says(t, &f.name).await;
    assert_eq!(ids, ["seed", "squatter"]);
    for i in 0..3 {
        let out = dir.path().join(format!("out-{i}.bin"));
        let (code, _, err) = cli(t, &["get", &f.name, "-o", out.to_str().unwrap()]).await;
        assert_eq!(code, 0, "get {i}: {err}");
        assert_eq!(std::fs::read(&out).unwrap(), f.content, "get {i}");
        assert!(
            stderr_line(&err, "seed").is_none(),
            "get {i}: the seed was named: {err}"
        );
    }
}
