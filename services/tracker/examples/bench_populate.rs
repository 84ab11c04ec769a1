//! Fills a running tracker for `scripts/bench-tracker.sh`: PEERS peers with FILES files each
//! (names `report-<peer>-<file>.pdf`), then writes the gRPC-framed request bodies h2load sends.
//!
//!   bench_populate TRACKER_URL PEERS FILES OUT_DIR

use std::path::PathBuf;

use anyhow::Context;
use p2p_common::failover::FailoverChannel;
use p2p_common::proto::{
    AnnounceRequest, FileInfo, HeartbeatRequest, RegisterRequest, SearchRequest,
};
use prost::Message;

/// A gRPC message frame: uncompressed flag, big-endian length, protobuf bytes.
fn frame(msg: &impl Message) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(0);
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, peers, files, out] = args.as_slice() else {
        anyhow::bail!("usage: bench_populate TRACKER_URL PEERS FILES OUT_DIR");
    };
    let peers: usize = peers.parse().context("PEERS")?;
    let files: usize = files.parse().context("FILES")?;
    let out = PathBuf::from(out);
    let channel = tonic::transport::Endpoint::from_shared(url.clone())?.connect_lazy();
    let fo = FailoverChannel::new(vec![channel]).context("no endpoint")?;
    let client = p2p_common::tracker_client(fo, None);
    let mut secret = String::new();
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..peers {
        let mut c = client.clone();
        tasks.spawn(async move {
            let all: Vec<FileInfo> = (0..files)
                .map(|f| FileInfo {
                    name: format!("report-{p:05}-{f:03}.pdf"),
                    size: (p * files + f) as u64,
                    sha256: format!("{:064x}", p * files + f),
                    // Every file carries a root, as swarm-capable peers announce them.
                    pieces_root: format!("{:064x}", usize::MAX - (p * files + f)),
                })
                .collect();
            let mut chunks = all.chunks(1000);
            let first = chunks.next().map(<[FileInfo]>::to_vec).unwrap_or_default();
            let id = format!("peer-{p:05}");
            let secret = c
                .register(RegisterRequest {
                    peer_id: id.clone(),
                    address: format!("10.0.{}.{}:5000", p / 250, p % 250 + 1),
                    files: first,
                    lease_secret: String::new(),
                })
                .await?
                .into_inner()
                .lease_secret;
            for chunk in chunks {
                c.announce(AnnounceRequest {
                    peer_id: id.clone(),
                    lease_secret: secret.clone(),
                    added: chunk.to_vec(),
                    removed: vec![],
                    ..Default::default()
                })
                .await?;
            }
            Ok::<_, tonic::Status>((p, secret))
        });
        while tasks.len() >= 32 {
            if let Some(r) = tasks.join_next().await {
                let (p, s) = r??;
                if p == 0 {
                    secret = s;
                }
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        let (p, s) = r??;
        if p == 0 {
            secret = s;
        }
    }
    let search = |query: &str, exact: bool| SearchRequest {
        query: query.into(),
        exact,
        page_size: 0,
        page_token: String::new(),
    };
    let mid = peers / 2;
    std::fs::write(
        out.join("search-exact.bin"),
        frame(&search(&format!("report-{mid:05}-001.pdf"), true)),
    )?;
    // Matches the ten names report-<mid>-00x (case-insensitively).
    std::fs::write(
        out.join("search-substring.bin"),
        frame(&search(&format!("{mid:05}-00"), false)),
    )?;
    std::fs::write(
        out.join("heartbeat.bin"),
        frame(&HeartbeatRequest {
            peer_id: "peer-00000".into(),
            lease_secret: secret,
        }),
    )?;
    println!("registered {peers} peers x {files} files");
    Ok(())
}
