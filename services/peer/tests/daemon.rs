//! `p2p-peer get NAME --via ADDR`: the running peer at ADDR downloads into its share and streams
//! its progress; who may ask; the exit codes; `-o` copies the file out. Real processes on
//! loopback.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use common::*;

struct Net {
    tracker: Proc,
    turl: String,
    seed: Proc,
    peer: Proc,
    peer_dir: std::path::PathBuf,
}

fn network(root: &Path, sec: &Sec, file: &[u8]) -> Net {
    let (seed_dir, peer_dir) = (root.join("seed"), root.join("peer"));
    std::fs::create_dir_all(&seed_dir).unwrap();
    std::fs::create_dir_all(&peer_dir).unwrap();
    std::fs::write(seed_dir.join("data.bin"), file).unwrap();
    let tracker = spawn_tracker_with(root, 0, "30s", &sec.env_refs());
    let turl = tracker.url_in(sec);
    let env = || -> Vec<(&str, String)> {
        sec.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect()
    };
    let seed = spawn_peer(
        root,
        PeerOpts {
            id: "seed",
            files_dir: &seed_dir,
            tracker: &turl,
            heartbeat: "1s",
            env: env(),
        },
    );
    let peer = spawn_peer(
        root,
        PeerOpts {
            id: "daemon",
            files_dir: &peer_dir,
            tracker: &turl,
            heartbeat: "1s",
            env: env(),
        },
    );
    sec.wait_ready(&seed);
    sec.wait_ready(&peer);
    eventually(Duration::from_secs(20), "data.bin registered", || {
        (!sec.holders(&turl, "data.bin").is_empty()).then_some(())
    });
    Net {
        tracker,
        turl,
        seed,
        peer,
        peer_dir,
    }
}

#[test]
fn get_via_downloads_into_the_peer_shows_progress_and_copies_out() {
    let tmp = tempfile::tempdir().unwrap();
    let sec = Sec::plain();
    let file = bytes(9 * 1024 * 1024 + 123, 7);
    let n = network(tmp.path(), &sec, &file);
    let via = n.peer.addr.to_string();

    // Without -o: the peer downloads; the CLI prints the events as lines (no terminal here).
    let (code, out, err) = sec.cli(&n.turl, &["get", "data.bin", "--via", &via]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert!(
        err.contains(&format!(
            "{via} downloading data.bin (9.00 MiB ({} bytes)",
            file.len()
        )),
        "{err}"
    );
    assert!(out.starts_with("created: data.bin on "), "{out}");
    assert!(out.contains(&sha256_hex(&file)), "{out}");
    assert_eq!(std::fs::read(n.peer_dir.join("data.bin")).unwrap(), file);
    assert!(
        !n.peer_dir
            .join(".partial")
            .join(format!("{}.data", sha256_hex(&file)))
            .exists(),
        "the partial download is gone once published"
    );
    // It is shared: the original curl route serves it, and the tracker lists both holders.
    let (status, body) = http_get(&format!("{}/files/data.bin", n.peer.url())).unwrap();
    assert_eq!((status, body.len()), (200, file.len()));
    assert!(body == file);
    eventually(Duration::from_secs(20), "two holders", || {
        (sec.holders(&n.turl, "data.bin").len() == 2).then_some(())
    });

    // Again: nothing to download; --json prints the final answer only.
    let (code, out, err) = sec.cli(&n.turl, &["--json", "get", "data.bin", "--via", &via]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["status"], "identical");
    assert_eq!(v["sha256"], sha256_hex(&file));
    assert_eq!(v["size"], file.len() as u64);

    // -o: a verified copy of the peer's file lands here too.
    let dest = tmp.path().join("copy.bin");
    let (code, out, err) = sec.cli(
        &n.turl,
        &[
            "get",
            "data.bin",
            "--via",
            &via,
            "-o",
            dest.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert!(out.contains("verified"), "{out}");
    assert_eq!(std::fs::read(&dest).unwrap(), file);
    assert!(
        !tmp.path().join(".partial").exists(),
        "the client's own .partial/ is tidied away"
    );
    // A different file at -o is not replaced.
    std::fs::write(&dest, b"mine").unwrap();
    let (code, _, err) = sec.cli(
        &n.turl,
        &[
            "get",
            "data.bin",
            "--via",
            &via,
            "-o",
            dest.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("exists with other content"), "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"mine");
    drop(n.seed);
    drop(n.tracker);
}

#[test]
fn get_via_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let sec = Sec::plain();
    let n = network(tmp.path(), &sec, b"small file\n");
    let via = n.peer.addr.to_string();

    // Unknown file: the peer's "not_found" is exit 3, with the kind in --json.
    let (code, out, err) = sec.cli(&n.turl, &["--json", "get", "nope.bin", "--via", &via]);
    assert_eq!(code, 3, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json error");
    assert_eq!(v["kind"], "not_found");
    assert!(err.contains("nope.bin"), "{err}");

    // A bad name is refused before anything is asked; so is a digest that is not one, by the
    // peer (the same check as a plain get's).
    let (code, _, err) = sec.cli(&n.turl, &["get", "a/b", "--via", &via]);
    assert_eq!(code, 1, "{err}");
    for args in [
        &["get", "data.bin", "--via", &via, "--sha256", "ABC"][..],
        &["get", "data.bin", "--sha256", "ABC"][..],
    ] {
        let (code, _, err) = sec.cli(&n.turl, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("bad sha256"), "{args:?}: {err}");
    }

    // Nobody at the address: exit 4.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (code, _, err) = sec.cli(&n.turl, &["get", "data.bin", "--via", &dead]);
    assert_eq!(code, 4, "{err}");

    // A malformed body is a 400 with a JSON error, not a download.
    let resp = post(
        &format!("{}/downloads", n.peer.url()),
        None,
        b"{\"nmae\":\"x\"}",
    );
    assert_eq!(resp.0, 400, "{}", resp.1);
    assert!(resp.1.contains("\"error\""), "{}", resp.1);
}

/// A server that starts an NDJSON answer and hangs up before its last line.
fn cut_stream_server() -> (String, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 4096];
        let mut req = Vec::new();
        // Headers, then the small JSON body.
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let line = b"{\"event\":\"start\",\"name\":\"data.bin\",\"sha256\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\",\"size\":10,\"have\":0}\n";
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            line.len()
        );
        let _ = s.write_all(line);
    });
    (addr, h)
}

#[test]
fn a_progress_stream_without_its_last_line_is_unreachable() {
    let (addr, h) = cut_stream_server();
    let (code, _, err) = cli("http://127.0.0.1:9", &["get", "data.bin", "--via", &addr]);
    h.join().unwrap();
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("ended before the download finished"), "{err}");
}

/// Blocking POST with an optional bearer token; (status, body).
fn post(url: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("POST");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    })
}

/// With auth on, the token is what counts (loopback is no way around it); with it, `--via`
/// works over TLS as over plaintext.
#[test]
fn with_auth_a_download_needs_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let sec = Sec::secure(tmp.path());
    let file = bytes(3 * 1024 * 1024, 11);
    let n = network(tmp.path(), &sec, &file);
    let via = n.peer.url_in(&sec);

    // Without a token (over TLS, trusting the test CA): 401, nothing downloaded.
    p2p_common::tls::install_provider();
    let tls = p2p_common::tls::TlsConfig {
        ca: tmp.path().join("certs").join("ca.pem"),
        ..Default::default()
    }
    .client_config()
    .unwrap()
    .expect("a CA makes a TLS client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap();
        client
            .post(format!("{via}/downloads"))
            .json(&serde_json::json!({"name": "data.bin"}))
            .send()
            .await
            .expect("POST")
            .status()
            .as_u16()
    });
    assert_eq!(status, 401);
    assert!(!n.peer_dir.join("data.bin").exists());

    // The CLI configured with the token: accepted.
    let (code, out, err) = sec.cli(&n.turl, &["get", "data.bin", "--via", &via]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert_eq!(std::fs::read(n.peer_dir.join("data.bin")).unwrap(), file);
}
