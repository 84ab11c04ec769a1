//! What the CLI says (issue 29 points 6 and 7), from the real binaries: an interrupted download
//! says what it kept and how to resume; `-o` into a missing directory is an error; a name in the
//! wrong case gets "did you mean"; `--tracker host:port` works like `--peer`; a peer that is not
//! there gets a hint, its address once; sizes for people; plain text logs off a terminal.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Net {
    _tracker: Proc,
    turl: String,
    _seed: Proc,
    tracker_addr: String,
}

/// A tracker and a seed sharing `files`, its upload paced at `rate` (a byte rate or "0").
fn network(root: &Path, files: &[(&str, Vec<u8>)], rate: &str) -> Net {
    let share = root.join("seed");
    std::fs::create_dir_all(&share).unwrap();
    for (name, bytes) in files {
        std::fs::write(share.join(name), bytes).unwrap();
    }
    let tracker = spawn_tracker(root, 0, "30s");
    let turl = tracker.url();
    let seed = spawn_peer(
        root,
        PeerOpts {
            id: "seed",
            files_dir: &share,
            tracker: &turl,
            heartbeat: "1s",
            env: vec![("P2P_TRANSFER__UPLOAD_LIMIT", rate.to_owned())],
        },
    );
    wait_ready(&seed);
    for (name, _) in files {
        eventually(Duration::from_secs(20), "the seed's files listed", || {
            (!holders(&turl, name).is_empty()).then_some(())
        });
    }
    Net {
        tracker_addr: tracker.addr.to_string(),
        _tracker: tracker,
        turl,
        _seed: seed,
    }
}

#[test]
fn names_sizes_and_addresses_are_said_so_a_person_can_act() {
    let tmp = tempfile::tempdir().unwrap();
    let photo = bytes(3 * 1024 * 1024 + 5, 1);
    let n = network(tmp.path(), &[("photo.bin", photo.clone())], "0");

    // Search is case-insensitive, get is exact: it says which name was meant.
    let (code, _, err) = cli(
        &n.turl,
        &["get", "PHOTO.BIN", "-o", tmp.path().to_str().unwrap()],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("did you mean \"photo.bin\"?"), "{err}");

    // --tracker as host:port, as --peer takes it (was exit 78).
    let (code, out, err) = cli(&n.tracker_addr, &["search", "photo"]);
    assert_eq!(code, 0, "{err}");
    // Sizes for people, with the exact count.
    assert!(
        out.contains("photo.bin  3.00 MiB (3145733 bytes)  sha256:"),
        "{out}"
    );

    // -o into a directory that does not exist: refused, nothing created.
    let missing = tmp.path().join("no-such-dir");
    let dest = missing.join("x.bin");
    let (code, _, err) = cli(&n.turl, &["get", "photo.bin", "-o", dest.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not a directory"), "{err}");
    assert!(!missing.exists(), "get created {}", missing.display());

    // A downloaded size is said both ways too.
    let dest = tmp.path().join("p.bin");
    let (code, out, err) = cli(&n.turl, &["get", "photo.bin", "-o", dest.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(3.00 MiB (3145733 bytes), sha256"), "{out}");
    assert!(
        err.contains("from 1 peer") || err.contains("source seed"),
        "{err}"
    );

    // Nobody at a peer address: the address once, the cause, and a hint.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (code, _, err) = cli(&n.turl, &["put", dest.to_str().unwrap(), "--peer", &dead]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("is the peer running"), "{err}");
    assert_eq!(err.matches(&dead).count(), 1, "{err}");
    // Nobody at the tracker's: a hint too.
    let (code, _, err) = cli(
        &format!("127.0.0.1:{}", dead.rsplit(':').next().unwrap()),
        &["ls"],
    );
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("is the tracker running"), "{err}");
}

/// Issue 29 point 6: Ctrl-C printed nothing, and the `.partial/` it left (the whole file
/// allocated) went unmentioned; the run after it counted the kept bytes as its own.
#[test]
fn an_interrupted_get_says_what_it_kept_and_the_next_run_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let big = bytes(6 * 1024 * 1024, 2);
    let n = network(tmp.path(), &[("big.bin", big.clone())], "1MiB");
    let out_dir = tmp.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let dest = out_dir.join("big.bin");

    let mut child = Command::new(peer_bin())
        .args(["--tracker", &n.turl, "get", "big.bin", "-o"])
        .arg(&dest)
        .env_remove("P2P_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Lines (stderr is no terminal) until a progress line shows bytes arrived.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a progress line within 30 s");
        if line.contains("MiB of 6.00 MiB from 1 peer") {
            break;
        }
    }
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    let err = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(
        err.contains(&format!(
            "of 6.00 MiB (6291456 bytes) kept in {}",
            out_dir.join(".partial").display()
        )) && err.contains("run the same command to resume"),
        "{err}"
    );
    assert!(!dest.exists());

    // The same command resumes: it says what it kept, and counts only the rest as this run's.
    let (code, out, err) = cli(
        &n.turl,
        &["--json", "get", "big.bin", "-o", dest.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON answer");
    let (kept, this_run) = (v["kept"].as_u64().unwrap(), v["this_run"].as_u64().unwrap());
    assert!(kept > 0, "{v}");
    assert_eq!(kept + this_run, big.len() as u64, "{v}");
    assert_eq!(std::fs::read(&dest).unwrap(), big);
    assert!(!out_dir.join(".partial").exists(), "tidied away once done");
}

/// Text logs carried colour codes into files and pipes.
#[test]
fn text_logs_off_a_terminal_are_plain() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("s");
    let mut child = Command::new(peer_bin())
        .args([
            "--tracker",
            "http://127.0.0.1:9",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--files-dir")
        .arg(&share)
        .env_remove("P2P_CONFIG")
        .env_remove("RUST_LOG")
        .env("P2P_TELEMETRY__LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let line = loop {
        let l = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a log line within 20 s");
        if l.contains("peer listening") {
            break l;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(!line.contains('\u{1b}'), "colour codes in {line:?}");
    assert!(line.contains("INFO"), "{line}");
}
