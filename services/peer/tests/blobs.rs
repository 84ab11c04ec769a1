//! The serving side of swarm downloads: `/blobs/{sha256}` (bytes, manifest, bitfield, pieces)
//! from complete files and from downloads in progress, and the upload rate limit on what a peer
//! serves.

mod common;
use common::start_tracker;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{PeerOpts, bytes, eventually, sha256_hex};
use p2p_peer::share::bitfield::Bitfield;
use p2p_peer::share::partial::PartialFile;
use p2p_peer::share::pieces::{self, PieceIndex};
use p2p_peer::share::{Digest, digest::sha256};
use p2p_peer::transfer::ByteRate;

const MIB: usize = 1 << 20;
/// The piece size of the small files here (the smallest there is).
const PIECE: usize = pieces::MIN_PIECE_SIZE as usize;

/// The piece entries of `data` as the contract defines them: the SHA-256 chaining value at each
/// piece's end, the last one the file's SHA-256. Checked here against another SHA-256: resumed
/// from each value, the chain over the rest of the file ends at the file's digest.
fn expected_pieces(data: &[u8]) -> Vec<Digest> {
    let want = pieces::hash_bytes(data).manifest.digests().to_vec();
    let size = pieces::piece_size(data.len() as u64) as usize;
    assert_eq!(want.len(), data.len().div_ceil(size));
    assert_eq!(want.last(), Some(&sha256(data)));
    for (i, value) in want.iter().enumerate().take(want.len() - 1) {
        let end = (i + 1) * size;
        let mut chain = p2p_peer::share::chain::Chain::resume(Some(value), end as u64);
        chain.update(&data[end..]);
        assert_eq!(chain.finish(), sha256(data), "entry {i}");
    }
    want
}

fn peer_cfg(tracker: SocketAddr, share: &Path) -> p2p_peer::config::PeerConfig {
    let mut cfg = p2p_peer::config::PeerConfig::default();
    cfg.peer.id = "blobs".into();
    cfg.peer.listen = "127.0.0.1:0".parse().unwrap();
    cfg.peer.files_dir = share.to_path_buf();
    cfg.tracker.endpoint = format!("http://{tracker}");
    cfg.tracker.heartbeat_interval = Duration::from_millis(500);
    cfg
}

fn client() -> reqwest::Client {
    p2p_common::tls::install_provider();
    reqwest::Client::new()
}

async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let r = client()
        .get(url)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.bytes().await.unwrap().to_vec())
}

async fn metric(base: &str, series: &str) -> f64 {
    let (status, _, body) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not in /metrics:\n{text}"))
}

fn json_error(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not a JSON error: {}", String::from_utf8_lossy(body)));
    v["error"].as_str().expect("error field").to_owned()
}

/// Every route of the contract against a real `p2p-peer` process sharing a 3-piece file.
#[test]
fn blobs_of_a_complete_file() {
    let root = tempfile::tempdir().unwrap();
    let share = root.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let data = bytes(2 * PIECE + PIECE / 4 + 5, 9);
    std::fs::write(share.join("three-pieces.bin"), &data).unwrap();
    std::fs::write(share.join("empty"), b"").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tracker = rt.block_on(start_tracker());
    let peer = common::spawn_peer(
        root.path(),
        PeerOpts {
            id: "seed",
            files_dir: &share,
            tracker: &format!("http://{}", tracker.local_addr),
            heartbeat: "500ms",
            env: vec![],
        },
    );
    common::wait_ready(&peer);
    let base = peer.url();
    let sha = sha256_hex(&data);
    let want = expected_pieces(&data);
    assert_eq!(want.len(), 3);

    rt.block_on(async {
        let (s, h, body) = get(&format!("{base}/blobs/{sha}/manifest")).await;
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(h[reqwest::header::CONTENT_TYPE], "application/json");
        let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(m["sha256"], sha);
        assert_eq!(m["size"], data.len() as u64);
        assert_eq!(m["piece_size"], PIECE as u64);
        let listed: Vec<String> = serde_json::from_value(m["pieces"].clone()).unwrap();
        assert_eq!(listed, want.iter().map(Digest::to_hex).collect::<Vec<_>>());
        assert_eq!(m["piece_hash"], "sha256-chain");
        let mut tagged = b"p2pshare pieces_root sha256-chain\n".to_vec();
        want.iter()
            .for_each(|d| tagged.extend_from_slice(d.as_bytes()));
        assert_eq!(m["pieces_root"], sha256(&tagged).to_hex());
        // The typed form D's fetcher reads checks itself.
        let typed: p2p_peer::wire::blobs::ManifestJson = serde_json::from_slice(&body).unwrap();
        assert_eq!(typed.into_manifest().unwrap().digests(), &want[..]);

        let (s, h, body) = get(&format!("{base}/blobs/{sha}/bitfield")).await;
        assert_eq!(s, 200);
        assert_eq!(h[p2p_peer::wire::blobs::PIECES_HEADER], "3");
        assert_eq!(h[reqwest::header::CONTENT_TYPE], "application/octet-stream");
        assert_eq!(body, [0b1110_0000]);

        for (i, chunk) in data.chunks(PIECE).enumerate() {
            let (s, h, body) = get(&format!("{base}/blobs/{sha}/pieces/{i}")).await;
            assert_eq!(s, 200, "piece {i}");
            assert_eq!(h[reqwest::header::CONTENT_LENGTH], chunk.len().to_string());
            assert!(body == chunk, "piece {i}: wrong bytes");
        }
        let (s, _, body) = get(&format!("{base}/blobs/{sha}/pieces/3")).await;
        assert_eq!(s, 416);
        assert!(json_error(&body).contains("past the last piece"));
        for bad in ["x", "-1", "4294967296", "1.0"] {
            let (s, _, body) = get(&format!("{base}/blobs/{sha}/pieces/{bad}")).await;
            assert_eq!(s, 400, "index {bad}");
            assert!(json_error(&body).contains("bad piece index"), "{bad}");
        }

        // The whole file by digest, with ranges and the ETag of /files.
        let (s, h, body) = get(&format!("{base}/blobs/{sha}")).await;
        assert_eq!(s, 200);
        assert_eq!(h[reqwest::header::ETAG], format!("\"{sha}\""));
        assert!(body == data, "whole blob differs");
        let r = client()
            .get(format!("{base}/blobs/{sha}"))
            .header("Range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 206);
        assert_eq!(r.bytes().await.unwrap(), &data[10..20]);
        let r = client()
            .get(format!("{base}/blobs/{sha}"))
            .header("Range", "bytes=10-19")
            .header("If-Range", "\"stale\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "a stale If-Range gets everything");

        // An empty file: no pieces, an empty bitfield.
        let empty = sha256_hex(b"");
        let (s, _, body) = get(&format!("{base}/blobs/{empty}/manifest")).await;
        assert_eq!(s, 200);
        let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(m["pieces"], serde_json::json!([]));
        let (s, h, body) = get(&format!("{base}/blobs/{empty}/bitfield")).await;
        assert_eq!((s, body.len()), (200, 0));
        assert_eq!(h[p2p_peer::wire::blobs::PIECES_HEADER], "0");
        assert_eq!(get(&format!("{base}/blobs/{empty}/pieces/0")).await.0, 416);

        // Unknown and malformed digests.
        let unknown = sha256_hex(b"nobody has this");
        for tail in ["", "/manifest", "/bitfield", "/pieces/0"] {
            let (s, _, body) = get(&format!("{base}/blobs/{unknown}{tail}")).await;
            assert_eq!(s, 404, "{tail}");
            assert!(json_error(&body).contains(&unknown), "{tail}");
            for bad in [sha.to_uppercase(), sha[..63].to_owned(), "g".repeat(64)] {
                let (s, _, body) = get(&format!("{base}/blobs/{bad}{tail}")).await;
                assert_eq!(s, 400, "{bad}{tail}");
                assert!(json_error(&body).contains("not a SHA-256 digest"));
            }
        }

        // Counted under the route template, never the digest.
        let ok = metric(
            &base,
            "p2p_peer_http_requests_total{route=\"/blobs/{sha256}/pieces/{index}\",status=\"200\"}",
        )
        .await;
        assert_eq!(ok, 3.0);
        assert_eq!(
            metric(&base, "p2p_peer_partial_files").await,
            0.0,
            "no download in progress"
        );
    });
}

/// The blobs routes sit behind the same bearer token as /files.
#[tokio::test]
async fn blobs_require_the_token_when_auth_is_on() {
    let root = tempfile::tempdir().unwrap();
    let share = root.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("f"), b"secret bytes").unwrap();
    let sha = sha256_hex(b"secret bytes");
    let tracker = start_tracker().await;
    let mut cfg = peer_cfg(tracker.local_addr, &share);
    cfg.auth.token = "blob-token-0123456789abcdef".into();
    let peer = p2p_peer::server::start(cfg).await.unwrap();
    let base = format!("http://{}", peer.local_addr);
    for tail in ["", "/manifest", "/bitfield", "/pieces/0"] {
        let url = format!("{base}/blobs/{sha}{tail}");
        let (s, _, body) = get(&url).await;
        assert_eq!(s, 401, "{tail}");
        assert!(json_error(&body).contains("bearer token"));
        let r = client()
            .get(&url)
            .bearer_auth("blob-token-0123456789abcdef")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{tail}");
    }
    peer.shutdown().await.unwrap();
}

/// A download in progress serves its verified pieces, and only those, until it leaves the
/// registry.
#[tokio::test]
async fn pieces_of_a_download_in_progress() {
    let root = tempfile::tempdir().unwrap();
    let share = root.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let tracker = start_tracker().await;
    let peer = p2p_peer::server::start(peer_cfg(tracker.local_addr, &share))
        .await
        .unwrap();
    let base = format!("http://{}", peer.local_addr);

    let data = bytes(2 * PIECE + 100, 3);
    let sha = sha256(&data);
    let data_path = share.join(".partial").join(format!("{sha}.data"));
    // All the bytes are there, but only piece 1 is verified: nothing else may be served.
    std::fs::write(&data_path, &data).unwrap();
    let hashed = pieces::hash_file(&data_path).unwrap();
    assert_eq!(hashed.sha256, sha);
    let manifest = Arc::new(hashed.manifest);
    let mut verified = Bitfield::new(manifest.piece_count());
    verified.set(PieceIndex(1));
    let partial = Arc::new(PartialFile::new(sha, manifest.clone(), data_path, verified));
    peer.partials.insert(partial.clone());

    let (s, _, body) = get(&format!("{base}/blobs/{sha}/manifest")).await;
    assert_eq!(s, 200);
    let m: p2p_peer::wire::blobs::ManifestJson = serde_json::from_slice(&body).unwrap();
    assert_eq!(m.sha256, sha);
    assert_eq!(m.pieces_root, manifest.root());
    let (s, h, body) = get(&format!("{base}/blobs/{sha}/bitfield")).await;
    assert_eq!(s, 200);
    assert_eq!(h[p2p_peer::wire::blobs::PIECES_HEADER], "3");
    assert_eq!(body, [0b0100_0000]);

    let (s, _, body) = get(&format!("{base}/blobs/{sha}/pieces/1")).await;
    assert_eq!(s, 200);
    assert!(body == data[PIECE..2 * PIECE], "piece 1: wrong bytes");
    for i in [0, 2] {
        let (s, _, body) = get(&format!("{base}/blobs/{sha}/pieces/{i}")).await;
        assert_eq!(s, 404, "unverified piece {i} served");
        assert!(json_error(&body).contains("not verified"));
    }
    assert_eq!(get(&format!("{base}/blobs/{sha}/pieces/3")).await.0, 416);
    // Not complete here: the whole-file route does not serve it.
    assert_eq!(get(&format!("{base}/blobs/{sha}")).await.0, 404);
    assert_eq!(metric(&base, "p2p_peer_partial_files").await, 1.0);

    // A piece verified later is served from then on.
    partial.mark_verified(PieceIndex(2));
    let (s, _, body) = get(&format!("{base}/blobs/{sha}/pieces/2")).await;
    assert_eq!(s, 200);
    assert!(body == data[2 * PIECE..], "piece 2: wrong bytes");

    peer.partials.remove(&sha);
    for tail in ["/manifest", "/bitfield", "/pieces/1"] {
        assert_eq!(get(&format!("{base}/blobs/{sha}{tail}")).await.0, 404);
    }
    assert_eq!(metric(&base, "p2p_peer_partial_files").await, 0.0);
    peer.shutdown().await.unwrap();
}

/// The swarm's "have": a bitfield asked with `?after=N` of a download in progress waits until
/// it holds more than N pieces (and says it waits, so the asker keeps asking that way); a
/// complete file, or `after` already passed, answers at once.
#[tokio::test]
async fn a_bitfield_asked_after_n_pieces_waits_for_the_next_one() {
    let root = tempfile::tempdir().unwrap();
    let share = root.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let whole = bytes(3 * PIECE, 5);
    std::fs::write(share.join("whole.bin"), &whole).unwrap();
    let tracker = start_tracker().await;
    let peer = p2p_peer::server::start(peer_cfg(tracker.local_addr, &share))
        .await
        .unwrap();
    let base = format!("http://{}", peer.local_addr);
    let data = bytes(3 * PIECE, 4);
    let sha = sha256(&data);
    let data_path = share.join(".partial").join(format!("{sha}.data"));
    std::fs::write(&data_path, &data).unwrap();
    let manifest = Arc::new(pieces::hash_file(&data_path).unwrap().manifest);
    let mut verified = Bitfield::new(3);
    verified.set(PieceIndex(0));
    let partial = Arc::new(PartialFile::new(sha, manifest, data_path, verified));
    peer.partials.insert(partial.clone());
    let wait = p2p_peer::wire::blobs::HAVE_WAIT_HEADER;

    // Plain: at once, and it says it would wait.
    let (s, h, body) = get(&format!("{base}/blobs/{sha}/bitfield")).await;
    assert_eq!((s, body), (200, vec![0b1000_0000]));
    assert_eq!(h[wait], "5");
    // After a count it has passed: at once.
    let t = Instant::now();
    let (s, _, body) = get(&format!("{base}/blobs/{sha}/bitfield?after=0")).await;
    assert_eq!((s, body), (200, vec![0b1000_0000]));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // After what it holds: the answer comes when piece 2 is verified, not before.
    let asked = tokio::spawn({
        let url = format!("{base}/blobs/{sha}/bitfield?after=1");
        async move {
            let r = get(&url).await;
            (r, Instant::now())
        }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!asked.is_finished(), "answered before it had news");
    let marked = Instant::now();
    partial.mark_verified(PieceIndex(2));
    let ((s, h, body), answered) = asked.await.unwrap();
    assert_eq!((s, body), (200, vec![0b1010_0000]));
    assert_eq!(h[wait], "5");
    assert!(answered >= marked, "answered before the piece was verified");
    assert!(
        answered.duration_since(marked) < Duration::from_secs(2),
        "news took {:?}",
        answered.duration_since(marked)
    );

    // Nothing new: it answers after its wait, with what it has.
    let t = Instant::now();
    let (s, _, body) = get(&format!("{base}/blobs/{sha}/bitfield?after=2")).await;
    assert_eq!((s, body), (200, vec![0b1010_0000]));
    assert!(t.elapsed() >= Duration::from_secs(4), "{:?}", t.elapsed());

    // A complete file answers at once and does not wait.
    let t = Instant::now();
    let whole = sha256(&whole);
    let (s, h, body) = get(&format!("{base}/blobs/{whole}/bitfield?after=3")).await;
    assert_eq!((s, body), (200, vec![0b1110_0000]));
    assert!(!h.contains_key(wait));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    peer.shutdown().await.unwrap();
}

/// Reads a body to its end, counting bytes as they arrive.
async fn drain(url: String, count: Arc<std::sync::atomic::AtomicU64>) -> u64 {
    let mut r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut total = 0;
    while let Some(chunk) = r.chunk().await.unwrap() {
        total += chunk.len() as u64;
        count.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
    total
}

/// `transfer.upload_limit` paces everything the peer serves, shared fairly between concurrent
/// transfers (`/files` and `/blobs` alike). The rate is checked only as a generous sanity bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_limit_paces_served_bodies_fairly() {
    const LIMIT: u64 = 4 << 20;
    let root = tempfile::tempdir().unwrap();
    let share = root.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let data = bytes(16 * MIB, 5);
    let sha = sha256_hex(&data);
    std::fs::write(share.join("big"), &data).unwrap();
    let tracker = start_tracker().await;
    let mut cfg = peer_cfg(tracker.local_addr, &share);
    cfg.transfer.upload_limit = ByteRate::per_second(LIMIT);
    let peer = p2p_peer::server::start(cfg).await.unwrap();
    let base = format!("http://{}", peer.local_addr);

    let counts: Vec<_> = (0..2)
        .map(|_| Arc::new(std::sync::atomic::AtomicU64::new(0)))
        .collect();
    let started = Instant::now();
    let a = tokio::spawn(drain(format!("{base}/files/big"), counts[0].clone()));
    let b = tokio::spawn(drain(format!("{base}/blobs/{sha}"), counts[1].clone()));
    // Compare the two while both still run: 12 MiB of the 32 MiB, well past the 1 s burst.
    let load = move || {
        counts
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .collect::<Vec<_>>()
    };
    let seen = tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(120), "12 MiB served", || {
            let got = load();
            (got.iter().sum::<u64>() >= 12 * MIB as u64).then_some(got)
        })
    })
    .await
    .unwrap();
    let total: u64 = seen.iter().sum();
    for got in &seen {
        let share = *got as f64 / total as f64;
        assert!((0.3..0.7).contains(&share), "unfair split {seen:?}");
    }
    assert_eq!(a.await.unwrap(), 16 * MIB as u64);
    assert_eq!(b.await.unwrap(), 16 * MIB as u64);
    let secs = started.elapsed().as_secs_f64();
    // 32 MiB at 4 MiB/s after a 4 MiB burst is at least 7 s; allow slack for socket buffers.
    assert!(
        secs > 5.5,
        "32 MiB served in {secs:.1} s: the limit did not hold"
    );
    assert!(
        metric(
            &base,
            "p2p_peer_rate_limited_bytes_total{direction=\"upload\"}"
        )
        .await
            >= (16 * MIB) as f64,
        "waiting bytes not counted"
    );
    assert_eq!(
        metric(
            &base,
            "p2p_peer_rate_limited_bytes_total{direction=\"download\"}"
        )
        .await,
        0.0
    );
    peer.shutdown().await.unwrap();
}

/// More piece requests than the upload slots and their queue hold: the rest are answered busy
/// at once (503 with `x-p2p-busy`), queued ones that wait too long too, nothing hangs, and a
/// piece refused busy was not counted as sent by super-seeding (asked again, it is sent, not
/// deferred as "served already").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_upload_queue_are_answered_busy() {
    let root = tempfile::tempdir().unwrap();
    let share = root.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let data = bytes(16 * MIB, 9);
    let sha = sha256_hex(&data);
    std::fs::write(share.join("many-pieces"), &data).unwrap();
    let tracker = start_tracker().await;
    let mut cfg = peer_cfg(tracker.local_addr, &share);
    cfg.transfer.upload_slots = 1;
    cfg.transfer.upload_limit = ByteRate::per_second(MIB as u64);
    let peer = p2p_peer::server::start(cfg).await.unwrap();
    let base = format!("http://{}", peer.local_addr);
    let piece = pieces::piece_size(data.len() as u64) as usize;
    let count = 40.min(data.len() / piece);
    let started = Instant::now();
    let answers = futures::future::join_all((0..count).map(|i| {
        let url = format!("{base}/blobs/{sha}/pieces/{i}");
        async move { (i, get(&url).await) }
    }))
    .await;
    let elapsed = started.elapsed();
    let mut busy = Vec::new();
    for (i, (status, headers, body)) in &answers {
        match status {
            200 => assert!(body[..] == data[i * piece..(i + 1) * piece], "piece {i}"),
            503 => {
                assert!(headers.contains_key("x-p2p-busy"), "piece {i}: {headers:?}");
                busy.push(*i);
            }
            other => panic!("piece {i}: HTTP {other}: {}", String::from_utf8_lossy(body)),
        }
    }
    // One slot and 16 places: at most 17 can be taken in, and at 1 MiB/s only a few of
    // those are sent within the queue's 1 s wait.
    assert!(
        busy.len() >= count - 17,
        "only {} busy of {count}",
        busy.len()
    );
    assert!(busy.len() < count, "nothing sent");
    assert!(
        elapsed < Duration::from_secs(30),
        "answers took {elapsed:?}"
    );
    let refused = metric(
        &base,
        "p2p_peer_upload_slots_total{class=\"unnamed\",got=\"busy\"}",
    )
    .await;
    assert_eq!(refused, busy.len() as f64);
    let again = busy[busy.len() - 1];
    let (status, headers, body) = get(&format!("{base}/blobs/{sha}/pieces/{again}")).await;
    assert_eq!(
        status,
        200,
        "{headers:?} {}",
        String::from_utf8_lossy(&body)
    );
    assert!(body[..] == data[again * piece..(again + 1) * piece]);
    peer.shutdown().await.unwrap();
}
