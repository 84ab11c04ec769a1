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

fn multipart(data: Vec<u8>) -> reqwest::multipart::Form {
    let part = reqwest::multipart::Part::bytes(data).file_name("big.bin");
    reqwest::multipart::Form::new().part("file", part)
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
    let r = c
        .post(format!("{url}/upload"))
        .multipart(multipart(vec![7u8; 12 << 20]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 507, "{}", r.text().await.unwrap_or_default());

    // No length declared: the disk fills while it is written.
    let data = vec![9u8; 12 << 20];
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(1 << 20).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::stream(body).file_name("big.bin"),
    );
    let r = c
        .post(format!("{url}/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 507, "{}", r.text().await.unwrap_or_default());

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
