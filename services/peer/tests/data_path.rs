//! The peer's data path under things outside the process: a CLI writing into its share, FIFOs
//! and symlinks where files should be, clients that stall, a disk that runs out of room.

mod common;
use common::{start_peer, start_tracker};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{PeerOpts, bytes, eventually, sha256_hex};
use tokio::io::AsyncWriteExt;

fn client() -> reqwest::Client {
    p2p_common::tls::install_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn upload(base: &str, name: &str, content: &[u8]) -> (u16, serde_json::Value) {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(content.to_vec()).file_name(name.to_owned()),
    );
    let r = client()
        .post(format!("{base}/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("upload {name:?}: {e}"));
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

async fn status_of(url: &str) -> u16 {
    client()
        .get(url)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Polls `f` every 100 ms until it returns Some, failing after `limit`.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    limit: Duration,
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_cli(tracker: String, args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        common::cli(&tracker, &a)
    })
    .await
    .unwrap()
}

async fn announced(tracker: &str, name: &str) {
    let (t, n) = (tracker.to_owned(), name.to_owned());
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(20), "file announced", || {
            (!common::holders(&t, &n).is_empty()).then_some(())
        })
    })
    .await
    .unwrap();
}

/// Issue 8.1: a CLI `get -o` into a peer's share used to delete the peer's `.partial/`, after
/// which every upload answered 500 and health went NOT_SERVING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_get_into_a_share_leaves_the_peer_working() {
    let root = tempfile::tempdir().unwrap();
    let (share_a, share_b) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir_all(&share_b).unwrap();
    let content = bytes(300 * 1024, 3);
    std::fs::write(share_b.join("data.bin"), &content).unwrap();
    let tracker = start_tracker().await;
    let turl = format!("http://{}", tracker.local_addr);
    let a = start_peer(tracker.local_addr, "a", &share_a, |_| {}).await;
    let _b = start_peer(tracker.local_addr, "b", &share_b, |_| {}).await;
    let a_url = format!("http://{}", a.local_addr);
    announced(&turl, "data.bin").await;

    let args = |out: &Path| {
        vec![
            "get".to_string(),
            "data.bin".into(),
            "-o".into(),
            out.display().to_string(),
        ]
    };
    let (code, _, err) = run_cli(turl.clone(), args(&share_a)).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(share_a.join("data.bin")).unwrap(), content);
    assert!(
        share_a.join(".partial").is_dir(),
        "the CLI removed the peer's .partial/"
    );
    let (s, b) = upload(&a_url, "after.txt", b"after").await;
    assert_eq!(s, 201, "{b}");

    // A directory of the user's own: the CLI tidies what it used.
    let mine = root.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    let (code, _, err) = run_cli(turl, args(&mine)).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        !mine.join(".partial").exists(),
        "empty .partial/ left behind"
    );

    // Whatever removes them, the peer recreates what it needs and stays ready.
    std::fs::remove_dir_all(share_a.join(".partial")).unwrap();
    std::fs::remove_dir_all(share_a.join(".p2pshare")).unwrap();
    assert!(a.store.usable().await);
    let (s, b) = upload(&a_url, "again.txt", b"again").await;
    assert_eq!(s, 201, "{b}");
    std::fs::remove_dir_all(share_a.join(".partial")).unwrap();
    // The scanner's usability check recreates it rather than reporting NOT_SERVING.
    let mut changed = a.store.subscribe();
    std::fs::write(share_a.join("by-hand.txt"), b"x").unwrap();
    tokio::time::timeout(Duration::from_secs(20), changed.changed())
        .await
        .expect("rescan")
        .unwrap();
    let partial_a = &share_a.join(".partial");
    until(
        Duration::from_secs(20),
        ".partial/ recreated",
        || async move { partial_a.is_dir().then_some(()) },
    )
    .await;
    assert_eq!(status_of(&format!("{a_url}/healthz")).await, 200);
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// Issue 8.3: an upload under the name of a FIFO (or a symlink to one) hung forever, blocked
/// other uploads and indexing, and SIGTERM never completed. Real binary, real SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_in_the_share_never_hangs_anything() {
    let root = tempfile::tempdir().unwrap();
    let share = root.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("plain.txt"), b"plain").unwrap();
    mkfifo(&share.join("fifo"));
    std::os::unix::fs::symlink(share.join("fifo"), share.join("to-fifo")).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(share.join("sock")).unwrap();
    let tracker = start_tracker().await;
    let turl = format!("http://{}", tracker.local_addr);
    let (dir, t) = (root.path().to_path_buf(), turl.clone());
    let mut peer = tokio::task::spawn_blocking(move || {
        let share = dir.join("share");
        let p = common::spawn_peer(
            &dir,
            PeerOpts {
                id: "fifo-peer",
                files_dir: &share,
                tracker: &t,
                heartbeat: "500ms",
                env: vec![],
            },
        );
        common::wait_ready(&p);
        p
    })
    .await
    .unwrap();
    let url = peer.url();

    for name in ["fifo", "to-fifo", "sock"] {
        let (s, b) = upload(&url, name, b"anything").await;
        assert_eq!(s, 409, "{name}: {b}");
        assert!(
            b["error"]
                .as_str()
                .unwrap_or_default()
                .contains("not a shared file"),
            "{name}: {b}"
        );
        assert_eq!(status_of(&format!("{url}/files/{name}")).await, 404);
    }
    let (s, b) = upload(&url, "ok.txt", b"ok").await;
    assert_eq!(s, 201, "{b}");
    // Indexing goes on: a file added by hand is found.
    std::fs::write(share.join("later.txt"), b"later").unwrap();
    announced(&turl, "later.txt").await;
    let names: Vec<String> = client()
        .get(format!("{url}/files"))
        .send()
        .await
        .unwrap()
        .json::<Vec<serde_json::Value>>()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, ["later.txt", "ok.txt", "plain.txt"]);
    let log = std::fs::read_to_string(&peer.log).unwrap();
    assert_eq!(
        log.matches("not a regular file").count(),
        3,
        "one line per odd entry, not one per scan:\n{log}"
    );

    peer.sigterm();
    let status = tokio::task::spawn_blocking(move || peer.wait_exit(Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// Issue 8.12: uploading under the name of a symlink answered 200 "identical" when the target
/// held the same bytes and 409 otherwise, an oracle for any file the peer can read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_name_is_refused_whatever_its_target_holds() {
    let root = tempfile::tempdir().unwrap();
    let share = root.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(root.path().join("secret.txt"), b"TOPSECRET").unwrap();
    std::os::unix::fs::symlink(root.path().join("secret.txt"), share.join("link")).unwrap();
    std::fs::create_dir(share.join("subdir")).unwrap();
    let tracker = start_tracker().await;
    let peer = start_peer(tracker.local_addr, "p", &share, |_| {}).await;
    let url = format!("http://{}", peer.local_addr);

    let mut answers = Vec::new();
    for name in ["link", "subdir"] {
        for guess in [&b"TOPSECRET"[..], b"wrong guess"] {
            answers.push(upload(&url, name, guess).await);
        }
    }
    for (s, b) in &answers {
        assert_eq!(*s, 409, "{b}");
    }
    let msgs: Vec<_> = answers.iter().map(|(_, b)| b["error"].clone()).collect();
    assert_eq!(msgs[0], msgs[1], "the answer depends on the target's bytes");
    assert_eq!(msgs[2], msgs[3]);
    assert_eq!(
        std::fs::read(root.path().join("secret.txt")).unwrap(),
        b"TOPSECRET"
    );
    assert!(
        std::fs::symlink_metadata(share.join("link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// Issue 8.5 (transfers): clients that request a file and never read, or start an upload and
/// never send, held every transfer slot: all GETs and uploads answered 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_transfers_give_their_slots_back() {
    const SLOTS: usize = 8;
    let io_timeout = Duration::from_secs(5);
    let root = tempfile::tempdir().unwrap();
    let share = root.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    // Far more than the socket buffers on both sides hold.
    std::fs::write(share.join("big.bin"), vec![7u8; 32 << 20]).unwrap();
    std::fs::write(share.join("small.txt"), b"small").unwrap();
    let tracker = start_tracker().await;
    let peer = start_peer(tracker.local_addr, "p", &share, |c| {
        c.peer.max_concurrent_transfers = SLOTS;
        c.peer.io_timeout = io_timeout;
        c.peer.uploads_per_minute = 100_000;
    })
    .await;
    let url = format!("http://{}", peer.local_addr);
    let small = &format!("{url}/files/small.txt");
    let url = &url;
    // io_timeout plus generous slack for a loaded machine.
    let limit = io_timeout + Duration::from_secs(30);

    let mut readers = Vec::new();
    for _ in 0..SLOTS {
        let mut s = tokio::net::TcpStream::connect(peer.local_addr)
            .await
            .unwrap();
        s.write_all(b"GET /files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        readers.push(s); // never read
    }
    until(
        limit,
        "the stalled readers to hold every slot",
        || async move { (status_of(small).await == 503).then_some(()) },
    )
    .await;
    until(limit, "a GET to succeed again", || async move {
        (status_of(small).await == 200).then_some(())
    })
    .await;
    let got = client().get(small).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"small");
    // Every stalled reader gives its slot back, not just one.
    let serving = &peer.metrics.active_transfers.with_label_values(&["upload"]);
    until(limit, "every stalled download to be cut", || async move {
        (serving.get() == 0).then_some(())
    })
    .await;

    let mut senders = Vec::new();
    for i in 0..SLOTS {
        let mut s = tokio::net::TcpStream::connect(peer.local_addr)
            .await
            .unwrap();
        let head =
            "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"stall.bin\"\r\n\r\n";
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 100000\r\n\r\n")
            .await
            .unwrap();
        // Half stall before the part's headers, half in the middle of the file.
        if i % 2 == 1 {
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(&[1u8; 1000]).await.unwrap();
        }
        senders.push(s); // never finishes
    }
    until(
        limit,
        "the stalled uploads to hold every slot",
        || async move { (upload(url, "probe.txt", b"probe").await.0 == 503).then_some(()) },
    )
    .await;
    let (s, b) = until(limit, "an upload to succeed again", || async move {
        let r = upload(url, "fine.txt", b"fine").await;
        (r.0 != 503).then_some(r)
    })
    .await;
    assert_eq!(s, 201, "{b}");
    let receiving = &peer
        .metrics
        .active_transfers
        .with_label_values(&["download"]);
    until(limit, "every stalled upload to be cut", || async move {
        (receiving.get() == 0).then_some(())
    })
    .await;
    drop((readers, senders));
}

/// Issue 8.13: a `get` that failed for lack of room left its partial file behind, so the disk
/// stayed full. The CLI runs with `RLIMIT_FSIZE` (writes past it fail with EFBIG, as a full disk
/// fails with ENOSPC, through the same path): portable, no root, no mount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_without_room_frees_what_it_wrote() {
    use std::os::unix::process::CommandExt;
    let root = tempfile::tempdir().unwrap();
    let share = root.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let content = bytes(4 << 20, 13);
    std::fs::write(share.join("big.bin"), &content).unwrap();
    let tracker = start_tracker().await;
    let turl = format!("http://{}", tracker.local_addr);
    let _peer = start_peer(tracker.local_addr, "p", &share, |_| {}).await;
    announced(&turl, "big.bin").await;

    let out: PathBuf = root.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut cmd = Command::new(common::peer_bin());
    cmd.args(["--tracker", &turl, "get", "big.bin", "-o"])
        .arg(&out)
        .env_remove("P2P_CONFIG")
        .stdin(Stdio::null());
    // SAFETY: setrlimit and signal are async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1 << 20,
                rlim_max: 1 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // A write past the limit then fails with EFBIG instead of killing the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let output = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("removed the partial download"), "{err}");
    let part = out
        .join(".partial")
        .join(format!("{}.data", sha256_hex(&content)));
    assert!(!part.exists(), "partial left behind: {err}");
    assert!(!out.join("big.bin").exists());
    assert!(
        !out.join(".partial").exists(),
        "empty .partial/ left behind"
    );
}
