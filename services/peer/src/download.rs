//! Fetching a file from the peers that hold it: resumable (`Range` + `If-Range`), verified
//! (SHA-256 of the whole file), tried peer after peer. The bytes land in a partial file named
//! after the digest; only a verified file leaves it.

use std::io::Read;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use p2p_common::proto::{FileMatch, PeerInfo};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, RANGE};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};

use crate::error::{Error, Result};
use crate::net::Net;

/// Characters left as they are in a path segment; everything else is percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn file_path(name: &str) -> String {
    format!("/files/{}", utf8_percent_encode(name, SEGMENT))
}

/// What to fetch.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Hex `pieces_root` the tracker returned with the file (empty: not announced).
    pub pieces_root: String,
    pub peers: Vec<PeerInfo>,
}

impl Target {
    pub fn from_match(m: FileMatch) -> Option<Self> {
        let f = m.file?;
        Some(Self {
            name: f.name,
            size: f.size,
            sha256: f.sha256,
            pieces_root: f.pieces_root,
            peers: m.peers,
        })
    }
}

/// Where a download reports how it goes (a progress bar or plain lines).
pub trait Progress: Send + Sync {
    fn attempt(&self, peer: &PeerInfo, total: u64, already: u64);
    fn advance(&self, bytes: u64);
    /// `integrity`: the bytes arrived but did not hash right.
    fn failed(&self, peer: &PeerInfo, why: &str, integrity: bool);
    fn done(&self);
}

/// No output at all (the peer's own downloads).
pub struct Silent;

impl Progress for Silent {
    fn attempt(&self, _: &PeerInfo, _: u64, _: u64) {}
    fn advance(&self, _: u64) {}
    fn failed(&self, peer: &PeerInfo, why: &str, _: bool) {
        tracing::warn!(peer = %peer.peer_id, "download attempt failed: {why}");
    }
    fn done(&self) {}
}

enum Attempt {
    NotThere(String),
    Unreachable(String),
    Integrity(String),
    Local(std::io::Error),
}

/// A verified copy of `target` at the returned path (inside `partial_dir`), fetched from the
/// first peer that delivers the right bytes. `skip` is an address never to use (our own).
pub async fn fetch(
    net: &Net,
    target: &Target,
    partial_dir: &Path,
    skip: Option<&str>,
    progress: &dyn Progress,
) -> Result<PathBuf> {
    tokio::fs::create_dir_all(partial_dir)
        .await
        .map_err(|e| Error::Other(anyhow::anyhow!("{}: {e}", partial_dir.display())))?;
    let part = partial_dir.join(format!("{}.part", target.sha256));
    let mut peers: Vec<&PeerInfo> = target
        .peers
        .iter()
        .filter(|p| Some(p.address.as_str()) != skip)
        .collect();
    // Spread load: start at a random holder.
    if peers.len() > 1 {
        let mut b = [0u8; 2];
        if getrandom::fill(&mut b).is_ok() {
            let n = peers.len();
            peers.rotate_left(u16::from_le_bytes(b) as usize % n);
        }
    }
    if peers.is_empty() {
        return Err(Error::NotFound(format!(
            "no other live peer holds {:?}",
            target.name
        )));
    }
    let (mut integrity, mut unreachable, mut missing) = (0, 0, 0);
    let mut last = String::new();
    for peer in peers {
        let span = tracing::info_span!(
            "fetch",
            otel.name = "fetch from peer",
            otel.kind = "client",
            peer = %peer.peer_id,
            address = %peer.address,
        );
        match p2p_common::telemetry::traced(span, attempt(net, peer, target, &part, progress)).await
        {
            Ok(()) => {
                progress.done();
                return Ok(part);
            }
            Err(Attempt::Local(e)) => return Err(local_failure(&part, e).await),
            Err(a) => {
                let (why, bad_bytes) = match a {
                    Attempt::NotThere(w) => {
                        missing += 1;
                        (w, false)
                    }
                    Attempt::Unreachable(w) => {
                        unreachable += 1;
                        (w, false)
                    }
                    Attempt::Integrity(w) => {
                        integrity += 1;
                        (w, true)
                    }
                    Attempt::Local(_) => unreachable!("handled above"),
                };
                progress.failed(peer, &why, bad_bytes);
                last = format!("{} ({}): {why}", peer.peer_id, peer.address);
            }
        }
    }
    let summary = format!("could not download {:?}; last failure: {last}", target.name);
    Err(if integrity > 0 {
        Error::Integrity(summary)
    } else if unreachable == 0 && missing > 0 {
        Error::NotFound(summary)
    } else {
        Error::Unreachable(summary)
    })
}

/// A download that cannot be written here (no space, over a size limit, an I/O error) frees
/// what it wrote: a partial kept on a full disk keeps the disk full, and resuming needs room
/// this attempt did not have. Only failures on the network side keep the partial for a resume.
async fn local_failure(part: &Path, e: std::io::Error) -> Error {
    let removed = match tokio::fs::remove_file(part).await {
        Ok(()) => "; removed the partial download",
        Err(r) if r.kind() == std::io::ErrorKind::NotFound => "",
        Err(_) => "; could not remove the partial download",
    };
    let why = match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => "no space left to write the download",
        Some(libc::EFBIG) => "the download is larger than this process may write",
        _ => "cannot write the download",
    };
    Error::Other(anyhow::anyhow!("{why}: {}: {e}{removed}", part.display()))
}

async fn hash_prefix(path: PathBuf, len: u64) -> std::io::Result<Sha256> {
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(path)?.take(len);
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(h);
            }
            h.update(&buf[..n]);
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn attempt(
    net: &Net,
    peer: &PeerInfo,
    target: &Target,
    part: &Path,
    progress: &dyn Progress,
) -> Result<(), Attempt> {
    let etag = format!("\"{}\"", target.sha256);
    let mut have = tokio::fs::metadata(part).await.map_or(0, |m| m.len());
    if have > target.size {
        have = 0;
    }
    let mut req = net
        .http
        .get(net.url(&peer.address, &file_path(&target.name)));
    for (k, v) in p2p_common::telemetry::inject_http() {
        req = req.header(k, v);
    }
    if have > 0 {
        req = req
            .header(RANGE, format!("bytes={have}-"))
            .header(IF_RANGE, &etag);
    }
    let resp = if have == target.size && have > 0 {
        None // complete but not yet verified: no bytes needed
    } else {
        let resp = req
            .send()
            .await
            .map_err(|e| Attempt::Unreachable(format!("cannot connect: {e}")))?;
        match resp.status() {
            StatusCode::OK => have = 0,
            StatusCode::PARTIAL_CONTENT => {
                let expected = format!("bytes {have}-");
                let ok = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with(&expected));
                if !ok {
                    return Err(Attempt::Unreachable("unexpected Content-Range".into()));
                }
            }
            StatusCode::NOT_FOUND => return Err(Attempt::NotThere("not found there".into())),
            s => return Err(Attempt::Unreachable(format!("HTTP {s}"))),
        }
        if let Some(tag) = resp.headers().get(ETAG) {
            if tag.as_bytes() != etag.as_bytes() {
                return Err(Attempt::NotThere(
                    "that peer now holds other bytes under this name".into(),
                ));
            }
        }
        Some(resp)
    };

    let mut hasher = if have > 0 {
        hash_prefix(part.to_path_buf(), have)
            .await
            .map_err(Attempt::Local)?
    } else {
        Sha256::new()
    };
    progress.attempt(peer, target.size, have);
    if let Some(resp) = resp {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(part)
            .await
            .map_err(Attempt::Local)?;
        file.set_len(have).await.map_err(Attempt::Local)?;
        file.seek(std::io::SeekFrom::Start(have))
            .await
            .map_err(Attempt::Local)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut body = resp.bytes_stream();
        let mut broken = None;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    broken = Some(format!("transfer interrupted: {e}"));
                    break;
                }
            };
            if have + chunk.len() as u64 > target.size {
                drop(out);
                let _ = tokio::fs::remove_file(part).await;
                return Err(Attempt::Integrity(
                    "peer sent more bytes than the file has".into(),
                ));
            }
            out.write_all(&chunk).await.map_err(Attempt::Local)?;
            hasher.update(&chunk);
            have += chunk.len() as u64;
            progress.advance(chunk.len() as u64);
        }
        out.flush().await.map_err(Attempt::Local)?;
        out.get_ref().sync_all().await.map_err(Attempt::Local)?;
        if let Some(why) = broken {
            // The partial file stays: the next peer resumes from here.
            return Err(Attempt::Unreachable(why));
        }
        if have < target.size {
            return Err(Attempt::Unreachable(format!(
                "connection closed after {have} of {} bytes",
                target.size
            )));
        }
    }
    let digest = hex::encode(hasher.finalize());
    if digest != target.sha256 {
        let _ = tokio::fs::remove_file(part).await;
        return Err(Attempt::Integrity(format!(
            "SHA-256 mismatch: expected {}, got {digest}",
            target.sha256
        )));
    }
    Ok(())
}
