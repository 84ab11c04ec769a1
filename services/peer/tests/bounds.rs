//! Issue 19: what downloads may take of the disk (`transfer.max_concurrent_downloads`,
//! `transfer.min_free_space`), stale partials swept (`transfer.partial_ttl`), and hostile
//! holders (redirects, a bound on everything they send). Fake holders (`common::fake`) register
//! with a real tracker like a peer; downloads run in the real `p2p-peer` (CLI or serving peer).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{any, get};
use common::fake::{
    File, Seen, bytes_answer, endless, file, holder_app, json_answer, made_up_manifest,
    manifest_answer, not_found, register, register_partial, serve, slow_holder, tracker_client,
};
use common::{PeerOpts, eventually, metric, sha256_hex, spawn_peer, start_tracker};
use p2p_common::proto::{FileInfo, RegisterRequest};
use serde_json::json;

/// Runs the CLI against `tracker` with extra environment; (exit code, stdout, stderr).
async fn cli(tracker: SocketAddr, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut sec = common::Sec::plain();
    sec.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        sec.cli(&format!("http://{tracker}"), &args)
    })
    .await
    .unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Point 3: a holder that answers with redirects (to what would be an internal admin URL)
/// makes nobody request anything there: not the downloading CLI, not `get --via`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_from_holders_are_not_followed() {
    let tracker = start_tracker().await;
    let t = tracker.local_addr;
    let target_seen = Seen::default();
    let target = serve(Router::new().fallback(any({
        let s = target_seen.clone();
        move || {
            s.requests.fetch_add(1, Ordering::SeqCst);
            async { "deleted everything" }
        }
    })))
    .await;
    let admin = format!("http://{target}/internal/admin?cmd=delete");
    let redirect = {
        let admin = admin.clone();
        move || {
            Response::builder()
                .status(StatusCode::FOUND)
                .header("location", admin.clone())
                .body(Body::empty())
                .unwrap()
        }
    };
    let dir = tempfile::tempdir().unwrap();

    // Every answer a redirect, the manifest first.
    let f = file("redirect.bin", 100_000, 1);
    let seen = Seen::default();
    let fake = serve(holder_app(
        &seen,
        redirect.clone(),
        redirect.clone(),
        redirect.clone(),
    ))
    .await;
    register(t, "redirector", fake, &f, f.content.len() as u64).await;
    let out = dir.path().join("redirect.bin");
    let (code, _, err) = cli(
        t,
        &["get", "redirect.bin", "-o", out.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("302 Found (a redirect to") && err.contains("not followed"),
        "{err}"
    );
    assert!(seen.requests() >= 1, "the holder itself was asked");

    // A sound manifest, then pieces that redirect.
    let g = file("redirect2.bin", 100_000, 2);
    let m = g.manifest.clone();
    let seen2 = Seen::default();
    let fake2 = serve(holder_app(
        &seen2,
        move || json_answer(&m),
        redirect.clone(),
        redirect.clone(),
    ))
    .await;
    register(t, "redirector2", fake2, &g, g.content.len() as u64).await;
    let out = dir.path().join("redirect2.bin");
    let (code, _, err) = cli(
        t,
        &["get", "redirect2.bin", "-o", out.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("not followed"), "{err}");
    assert!(seen2.requests() >= 2, "manifest and a piece were asked");

    // `get --via` at an address whose POST /downloads redirects.
    let r = redirect.clone();
    let via = serve(Router::new().fallback(any(move || {
        let mut resp = r();
        *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        async move { resp }
    })))
    .await;
    let (code, _, err) = cli(t, &["get", "x.bin", "--via", &via.to_string()], &[]).await;
    assert_eq!(code, 4, "{err}");

    assert_eq!(target_seen.requests(), 0, "a redirect target was requested");
    assert!(!out.exists());
}

/// Point 7: each thing a complete holder sends, wrong, is refused without reading (or keeping)
/// what it claims, and the holder is named as a bad source (point 8: with what became of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_holder_sends_is_bounded() {
    let tracker = start_tracker().await;
    let t = tracker.local_addr;
    let dir = tempfile::tempdir().unwrap();
    // (case, what the manifest answer is, what a piece answer is, part of the reason, most
    // body bytes the fake may have produced: reads stop at the bound, the kernel's socket
    // buffers take a few MiB more, an endless body would be 1 GiB)
    type Answer = Arc<dyn Fn(&File, &Seen) -> Response + Send + Sync>;
    let good_manifest: Answer = Arc::new(|f, _| json_answer(&f.manifest));
    let good_piece: Answer = Arc::new(|f, _| bytes_answer(&f.content));
    let cases: Vec<(&str, Answer, Answer, &str, u64)> = vec![
        (
            "manifest without end",
            Arc::new(|f, s| {
                let head = format!("{{\"sha256\":\"{}\",\"pieces\":[\"", f.sha);
                Response::new(endless(s, head.as_bytes(), b'a'))
            }),
            good_piece.clone(),
            "answer longer than the 4194304 bytes expected",
            32 << 20,
        ),
        (
            "manifest announced as 1 TiB",
            // Then nothing: only a downloader that takes the claim at its word is quick.
            Arc::new(|_, _| {
                let nothing = futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
                Response::builder()
                    .header("content-length", 1u64 << 40)
                    .body(Body::from_stream(nothing))
                    .unwrap()
            }),
            good_piece.clone(),
            "answer announced as 1099511627776 bytes, more than the 4194304 expected",
            0,
        ),
        (
            "manifest with too many pieces",
            Arc::new(|f, _| {
                let mut m = f.manifest.clone();
                m["pieces"] = json!(vec![f.sha.clone(); 8]);
                json_answer(&m)
            }),
            good_piece.clone(),
            "8 piece digests for 1 pieces",
            1 << 20,
        ),
        (
            "manifest of another size",
            Arc::new(|f, _| {
                let other = file("other", 5000, 99);
                let mut m = other.manifest.clone();
                m["sha256"] = json!(f.sha);
                json_answer(&m)
            }),
            good_piece.clone(),
            // Its size is its own claim; its chain must end at the file's digest.
            "not at the file's SHA-256",
            1 << 20,
        ),
        (
            "piece announced longer than the piece",
            good_manifest.clone(),
            Arc::new(|f, s| {
                Response::builder()
                    .header("content-length", f.content.len() as u64 + (1 << 30))
                    .body(endless(s, &f.content, 0))
                    .unwrap()
            }),
            "announced as Some(1073841824) bytes, expected 100000",
            32 << 20,
        ),
        (
            "piece body longer than the piece",
            good_manifest.clone(),
            Arc::new(|f, s| Response::new(endless(s, &f.content, 0))),
            "longer than 100000 bytes",
            32 << 20,
        ),
    ];
    for (i, (case, manifest, piece, reason, most)) in cases.into_iter().enumerate() {
        let f = file(&format!("case-{i}.bin"), 100_000, 10 + i as u64);
        let seen = Seen::default();
        let (fm, fp) = (f.clone(), f.clone());
        let (sm, sp) = (seen.clone(), seen.clone());
        let fake = serve(holder_app(
            &seen,
            move || manifest(&fm, &sm),
            move || piece(&fp, &sp),
            not_found,
        ))
        .await;
        let id = format!("liar-{i}");
        register(t, &id, fake, &f, f.content.len() as u64).await;
        let out = dir.path().join(&f.name);
        // A holder that stops sending is cut after 10 s: none of these may take that long.
        let started = std::time::Instant::now();
        let (code, _, err) = cli(
            t,
            &["get", &f.name, "-o", out.to_str().unwrap()],
            &[("P2P_PEER__IO_TIMEOUT", "10s")],
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(8), "{case}: {err}");
        assert_eq!(code, 5, "{case}: {err}");
        assert!(err.contains(reason), "{case}: {err}");
        assert!(
            err.contains(&format!("{id} ({fake}): sent bad data ("))
                && err.contains("dropped from this download and counted as a bad source"),
            "{case}: {err}"
        );
        assert!(
            seen.body_bytes() <= most,
            "{case}: the fake produced {} body bytes",
            seen.body_bytes()
        );
        assert!(!out.exists(), "{case}");
        assert_eq!(entries(dir.path()), Vec::<String>::new(), "{case}");
    }
}

/// Point 7, partial holders: bitfields of the wrong length, unreadable counts, bits past the
/// last piece, bodies without end. Each liar is dropped before it is asked for a piece, and
/// the download succeeds from the honest holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitfields_from_partial_holders_are_bounded() {
    let tracker = start_tracker().await;
    let t = tracker.local_addr;
    let f = file("partly.bin", 100_000, 5);
    type Bits = fn(&Seen) -> Response;
    let liars: Vec<(Bits, &str)> = vec![
        (
            |_| {
                Response::builder()
                    .header("x-p2p-pieces", "2")
                    .body(Body::from(vec![0xc0u8]))
                    .unwrap()
            },
            "bitfield of 2 pieces, the file has 1",
        ),
        (
            |_| {
                Response::builder()
                    .header("x-p2p-pieces", "lots")
                    .body(Body::from(vec![0x80u8]))
                    .unwrap()
            },
            "x-p2p-pieces: \"lots\", not a piece count",
        ),
        (
            |_| bytes_answer(&[0x80, 0, 0]),
            "answer longer than the 2 bytes expected",
        ),
        (
            |s| Response::new(endless(s, &[0x80], 0xff)),
            "answer longer than the 2 bytes expected",
        ),
        (|_| bytes_answer(&[0xc0]), "bits set past piece 1"),
    ];
    let mut fakes = Vec::new();
    let all_asked = Arc::new(tokio::sync::Semaphore::new(0));
    for (i, (bits, reason)) in liars.iter().enumerate() {
        let seen = Seen::default();
        let (s, m, asked) = (seen.clone(), f.manifest.clone(), Arc::clone(&all_asked));
        let bits = *bits;
        let fake = serve(holder_app(
            &seen,
            move || json_answer(&m),
            || bytes_answer(b"never asked"),
            move || {
                asked.add_permits(1);
                bits(&s)
            },
        ))
        .await;
        let id = format!("partial-liar-{i}");
        register_partial(t, &id, fake, &f).await;
        fakes.push((id, fake, seen, *reason));
    }
    // The honest holder keeps its piece until every liar's bitfield was asked for (or 15 s),
    // and a moment more for their answers to be judged.
    let (m, content, asked) = (
        f.manifest.clone(),
        f.content.clone(),
        Arc::clone(&all_asked),
    );
    let n = liars.len() as u32;
    let honest = Router::new()
        .route(
            "/blobs/{sha}/manifest",
            get(move || {
                let m = m.clone();
                async move { json_answer(&m) }
            }),
        )
        .route(
            "/blobs/{sha}/pieces/{index}",
            get(move || {
                let (content, asked) = (content.clone(), Arc::clone(&asked));
                async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(15), asked.acquire_many(n)).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    bytes_answer(&content)
                }
            }),
        );
    let honest = serve(honest).await;
    register(t, "honest", honest, &f, f.content.len() as u64).await;

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("partly.bin");
    let (code, _, err) = cli(t, &["get", "partly.bin", "-o", out.to_str().unwrap()], &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), f.content);
    for (id, addr, seen, reason) in fakes {
        assert!(
            err.contains(&format!("{id} ({addr}): sent bad data (")) && err.contains(reason),
            "{id}: {reason}: {err}"
        );
        // Asked for its bitfield only (never for a piece), and read no further than needed.
        assert_eq!(seen.requests(), 1, "{id}");
        assert!(seen.body_bytes() <= 8 << 20, "{id}: {}", seen.body_bytes());
    }
}

/// Point 8: a source that fails is said to be dropped from the download, not "trying the next
/// peer" (the swarm asks them all at once), with the cause of the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_source_is_said_to_be_dropped_with_its_cause() {
    let tracker = start_tracker().await;
    let t = tracker.local_addr;
    let f = file("gone.bin", 1000, 3);
    let mut dead = Vec::new();
    for i in 0..2 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let id = format!("dead-{i}");
        register(t, &id, addr, &f, 1000).await;
        dead.push((id, addr));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gone.bin");
    let (code, _, err) = cli(t, &["get", "gone.bin", "-o", out.to_str().unwrap()], &[]).await;
    assert_eq!(code, 4, "{err}");
    assert!(!err.contains("trying the next peer"), "{err}");
    for (id, addr) in dead {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("{id} ({addr}): ")))
            .unwrap_or_else(|| panic!("no line for {id}: {err}"));
        assert!(
            line.contains("cannot connect")
                && line.contains("Connection refused")
                && line.ends_with("; dropped from this download (not asked again)"),
            "{line}"
        );
    }
}

/// The `p2p-peer serve` binary sharing `share`, with one setting from the environment.
fn peer_with(
    log_dir: &Path,
    id: &str,
    share: &Path,
    tracker: &str,
    (key, value): (&str, &str),
) -> common::Proc {
    spawn_peer(
        log_dir,
        PeerOpts {
            id,
            files_dir: share,
            tracker,
            heartbeat: "500ms",
            env: vec![(key, value.to_owned())],
        },
    )
}

async fn post_download(peer: &str, name: &str) -> reqwest::Response {
    p2p_common::tls::install_provider();
    reqwest::Client::new()
        .post(format!("{peer}/downloads"))
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap()
}

/// Point 1: downloads beyond `transfer.max_concurrent_downloads` or the free space
/// `transfer.min_free_space` keeps are refused before anything is asked or written: HTTP 507
/// from `POST /downloads`, exit code 7 from the CLI, each naming the key, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_beyond_the_bounds_are_refused() {
    let tracker = start_tracker().await;
    let t = tracker.local_addr;
    let turl = format!("http://{t}");
    let (f, g) = (
        file("first.bin", 50_000, 21),
        file("second.bin", 50_000, 22),
    );
    let seen = Seen::default();
    let release = Arc::new(tokio::sync::Notify::new());
    let holder = serve(slow_holder(
        &seen,
        vec![f.clone(), g.clone()],
        Arc::clone(&release),
    ))
    .await;
    let mut c = tracker_client(t).await;
    c.register(RegisterRequest {
        peer_id: "slow".into(),
        address: holder.to_string(),
        files: [&f, &g]
            .iter()
            .map(|x| FileInfo {
                name: x.name.clone(),
                size: x.content.len() as u64,
                sha256: x.sha.clone(),
                pieces_root: x.root.clone(),
            })
            .collect(),
        lease_secret: String::new(),
    })
    .await
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let share = root.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let peer = peer_with(
        root.path(),
        "bounded",
        &share,
        &turl,
        ("P2P_TRANSFER__MAX_CONCURRENT_DOWNLOADS", "1"),
    );
    let peer = tokio::task::spawn_blocking(move || {
        common::wait_ready(&peer);
        peer
    })
    .await
    .unwrap();
    let url = peer.url();

    // One download runs (its holder holds the piece back)...
    let first = post_download(&url, "first.bin").await;
    assert_eq!(first.status(), 200);
    let s = seen.clone();
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(10), "the first download asks", || {
            (s.requests() >= 2).then_some(())
        })
    })
    .await
    .unwrap();
    // ...so a second is refused, by HTTP status and by exit code.
    let second = post_download(&url, "second.bin").await;
    assert_eq!(second.status(), 507);
    let body: serde_json::Value = second.json().await.unwrap();
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains("transfer.max_concurrent_downloads"), "{msg}");
    let (code, _, err) = cli(t, &["get", "second.bin", "--via", &url], &[]).await;
    assert_eq!(code, 7, "{err}");
    assert!(
        err.contains("507") && err.contains("transfer.max_concurrent_downloads"),
        "{err}"
    );
    let (base, series) = (
        url.clone(),
        r#"p2p_peer_downloads_refused_total{reason="max_concurrent_downloads"}"#,
    );
    let refused = tokio::task::spawn_blocking(move || metric(&base, series))
        .await
        .unwrap();
    assert_eq!(refused, 2.0);
    // The first one finishes once its holder lets go.
    release.notify_waiters();
    let stream = first.text().await.unwrap();
    assert!(stream.contains(r#""event":"done""#), "{stream}");
    assert_eq!(std::fs::read(share.join("first.bin")).unwrap(), f.content);

    // A peer that must keep all of its disk free downloads nothing, and asks nobody.
    let share2 = root.path().join("share2");
    std::fs::create_dir_all(&share2).unwrap();
    let full = peer_with(
        root.path(),
        "full",
        &share2,
        &turl,
        ("P2P_TRANSFER__MIN_FREE_SPACE", "100%"),
    );
    let full = tokio::task::spawn_blocking(move || {
        common::wait_ready(&full);
        full
    })
    .await
    .unwrap();
    let asked = seen.requests();
    let refused = post_download(&full.url(), "second.bin").await;
    assert_eq!(refused.status(), 507);
    let body: serde_json::Value = refused.json().await.unwrap();
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains("transfer.min_free_space (100%)"), "{msg}");
    let (base, series) = (
        full.url(),
        r#"p2p_peer_downloads_refused_total{reason="min_free_space"}"#,
    );
    let refused = tokio::task::spawn_blocking(move || metric(&base, series))
        .await
        .unwrap();
    assert_eq!(refused, 1.0);
    assert_eq!(entries(&share2.join(".partial")), Vec::<String>::new());

    // The CLI's own download: the same rule, exit code 7.
    let out_dir = root.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("second.bin");
    let (code, _, err) = cli(
        t,
        &["get", "second.bin", "-o", out.to_str().unwrap()],
        &[("P2P_TRANSFER__MIN_FREE_SPACE", "100%")],
    )
    .await;
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("transfer.min_free_space"), "{err}");
    // A size no disk here can take: the tracker's size is the liar's claim, checked against
    // the manifest it serves (1 TiB, consistent with the root it announced), and that is
    // refused before a piece is asked for.
    let huge = file("huge.bin", 1000, 23);
    let size = 1u64 << 40;
    let made_up = made_up_manifest(size, 7, &huge.sha);
    let (lie, root) = (
        manifest_answer(&huge.sha, &made_up),
        made_up.root().to_hex(),
    );
    let liar_seen = Seen::default();
    let liar = serve(holder_app(
        &liar_seen,
        move || json_answer(&lie),
        not_found,
        not_found,
    ))
    .await;
    let huge = File { root, ..huge };
    register(t, "liar", liar, &huge, 1 << 50).await;
    let out = out_dir.join("huge.bin");
    let (code, _, err) = cli(t, &["get", "huge.bin", "-o", out.to_str().unwrap()], &[]).await;
    assert_eq!(code, 7, "{err}");
    assert!(
        err.contains(&format!("needs {size} more bytes"))
            && err.contains("transfer.min_free_space"),
        "{err}"
    );
    // Its manifest, asked once to show the size and once by the download: nothing else.
    assert!(liar_seen.requests() <= 2, "{}", liar_seen.requests());
    assert_eq!(seen.requests(), asked, "a refused download asked a holder");
    assert_eq!(entries(&out_dir), Vec::<String>::new());
}

/// Writes `len` bytes to `path` and dates it `age` ago.
fn old_file(path: &Path, len: usize, age: Duration) {
    std::fs::write(path, vec![3u8; len]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

/// Takes the writer's lock of a download in `dir` the way another process's writer does.
fn hold_lock(dir: &Path, sha: &str) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(format!("{sha}.lock")))
        .unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    f
}

/// Point 2: partials untouched for `transfer.partial_ttl` are removed when the peer starts and
/// periodically after, counted in bytes; one a live writer holds never is, nor anything that is
/// not a download's file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_partials_are_swept_but_never_a_held_one() {
    let tracker = start_tracker().await;
    let turl = format!("http://{}", tracker.local_addr);
    let root = tempfile::tempdir().unwrap();
    let share = root.path().join("share");
    let partial = share.join(".partial");
    std::fs::create_dir_all(&partial).unwrap();
    let day = Duration::from_secs(86_400);
    let (stale, held, later) = (
        sha256_hex(b"stale"),
        sha256_hex(b"held"),
        sha256_hex(b"later"),
    );
    old_file(&partial.join(format!("{stale}.data")), 1 << 20, day);
    old_file(&partial.join(format!("{stale}.bitfield")), 80, day);
    old_file(&partial.join(format!("{held}.data")), 4096, day);
    old_file(&partial.join("notes.txt"), 10, day);
    old_file(&share.join("shared.bin"), 1000, day);
    let lock = hold_lock(&partial, &held);

    let peer = peer_with(
        root.path(),
        "sweeper",
        &share,
        &turl,
        ("P2P_TRANSFER__PARTIAL_TTL", "2s"),
    );
    // At start-up, before it listens: the stale one is gone already.
    let left = entries(&partial);
    assert!(!left.iter().any(|n| n.starts_with(&stale)), "{left:?}");
    assert!(left.contains(&format!("{held}.data")), "{left:?}");
    let url = peer.url();
    let (base, series) = (url.clone(), "p2p_peer_partials_swept_bytes_total");
    let freed = tokio::task::spawn_blocking(move || metric(&base, series))
        .await
        .unwrap();
    assert!(freed >= (1 << 20) as f64, "{freed}");

    // Later: another abandoned one goes within a sweep or two.
    old_file(&partial.join(format!("{later}.data")), 4096, day);
    let p = partial.clone();
    let l = later.clone();
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(10), "the later partial swept", || {
            (!p.join(format!("{l}.data")).exists()).then_some(())
        })
    })
    .await
    .unwrap();
    let (base, series) = (url.clone(), "p2p_peer_partials_swept_total");
    let swept = tokio::task::spawn_blocking(move || metric(&base, series))
        .await
        .unwrap();
    assert_eq!(swept, 2.0);
    // Held all along, through several sweeps: still there.
    assert!(partial.join(format!("{held}.data")).exists());
    // Its writer gone, it goes too.
    drop(lock);
    let p = partial.clone();
    tokio::task::spawn_blocking(move || {
        eventually(
            Duration::from_secs(10),
            "the released partial swept",
            || (!p.join(format!("{held}.data")).exists()).then_some(()),
        )
    })
    .await
    .unwrap();
    // Never anything else.
    assert_eq!(entries(&partial), ["notes.txt"]);
    assert!(share.join("shared.bin").exists());
}
