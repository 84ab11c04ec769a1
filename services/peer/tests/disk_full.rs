//! A peer whose share sits on a full disk (issue 28 point 10): uploads answer 507 as downloads
//! do, and a failed index save leaves no empty `index.json.tmp`. The share is a small tmpfs
//! this test mounts, so it needs root (it says so and passes without testing otherwise).
//! Real tracker and peer servers in this process, on loopback.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{start_peer, start_tracker};

/// Polls `f` every 50 ms until it gives a value, for at most 20 s.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(c: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let r = c.get(url).send().await.ok()?;
    let s = r.status().as_u16();
    Some((s, r.text().await.ok()?))
}

/// A tmpfs of `mib` MiB at `at`, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, mib: u32) -> Option<Mount> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Uploads `len` bytes as the multipart field `file`, with a Content-Length or chunked, and
/// returns the answer's status and body. It reads the answer while it writes, as curl does:
/// a peer that refuses early closes the connection without reading the rest, and a client
/// that only reads after writing everything (reqwest) sees a broken pipe instead of the 507.
async fn upload(addr: std::net::SocketAddr, len: usize, declared: bool) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\
                Content-Type: application/octet-stream\r\n\r\n";
    let tail = "\r\n--b--\r\n";
    let framing = if declared {
        format!("Content-Length: {}", head.len() + len + tail.len())
    } else {
        "Transfer-Encoding: chunked".to_owned()
    };
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\n{framing}\r\n\r\n"
    );
    let (mut rd, mut wr) = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap()
        .into_split();
    let writer = tokio::spawn(async move {
        let chunk = |bytes: &[u8]| -> Vec<u8> {
            if declared {
                bytes.to_vec()
            } else {
                [format!("{:x}\r\n", bytes.len()).as_bytes(), bytes, b"\r\n"].concat()
            }
        };
        wr.write_all(request.as_bytes()).await?;
        wr.write_all(&chunk(head.as_bytes())).await?;
        let block = vec![9u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(block.len());
            wr.write_all(&chunk(&block[..n])).await?;
            left -= n;
        }
        wr.write_all(&chunk(tail.as_bytes())).await?;
        if !declared {
            wr.write_all(b"0\r\n\r\n").await?;
        }
        Ok::<_, std::io::Error>(wr)
    });
    // The answer is read up to its end or the peer's close; a write error is expected.
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        let mut b = [0u8; 4096];
        loop {
            match rd.read(&mut b).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&b[..n]),
            }
            let text = String::from_utf8_lossy(&buf);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                });
                if length.is_some_and(|n| body.len() >= n) {
                    break;
                }
            }
        }
    })
    .await;
    writer.abort();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_and_leaves_no_empty_index() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    let Some(_mount) = Mount::tmpfs(&share, 8) else {
        eprintln!("cannot mount a tmpfs (not root?): disk-full behaviour not tested");
        return;
    };
    let t = start_tracker().await;
    let p = start_peer(t.local_addr, "full", &share, |cfg| {
        cfg.transfer.min_free_space = "0".parse().unwrap();
    })
    .await;
    let url = format!("http://{}", p.local_addr);
    let c = reqwest::Client::new();
    until("peer ready", || async {
        get(&c, &format!("{url}/healthz"))
            .await
            .filter(|(s, _)| *s == 200)
    })
    .await;

    // Declared larger than the free space: refused before a byte is written.
    let (status, body) = upload(p.local_addr, 12 << 20, true).await;
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("space"), "{body}");

    // No length declared: the disk fills while it is written.
    let (status, body) = upload(p.local_addr, 12 << 20, false).await;
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("no space left"), "{body}");

    // The CLI's `put` (reqwest: it reads the answer only after sending all) hears the 507 too,
    // not a broken pipe: the peer reads what is left of a refused body, within bounds.
    let big = tmp.path().join("big.bin");
    std::fs::write(&big, vec![5u8; 12 << 20]).unwrap();
    let net = p2p_peer::net::Net::new(&p2p_peer::config::PeerConfig::default()).unwrap();
    for _ in 0..3 {
        let e = p2p_peer::client::upload(&net, &p.local_addr.to_string(), &big, None)
            .await
            .expect_err("an upload larger than the disk was taken");
        assert_eq!(e.exit_code(), 7, "{e}");
        assert!(e.to_string().contains("not enough free space"), "{e}");
    }
    let visible: Vec<_> = std::fs::read_dir(&share)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(visible.is_empty(), "a refused upload left {visible:?}");

    // A file that fills the disk: the scan indexes it and the index save fails.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(share.join("filler.bin")).unwrap();
        let block = vec![1u8; 64 << 10];
        while f.write_all(&block).is_ok() {}
        let _ = f.flush();
    }
    until("the filler listed", || async {
        let (s, body) = get(&c, &format!("{url}/files")).await?;
        (s == 200 && body.contains("filler.bin")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tmp_index = share.join(".p2pshare").join("index.json.tmp");
    assert!(
        !tmp_index.exists(),
        "{} left behind ({} bytes)",
        tmp_index.display(),
        std::fs::metadata(&tmp_index).map_or(0, |m| m.len())
    );
    p.shutdown().await.unwrap();
    t.shutdown().await.unwrap();
}
