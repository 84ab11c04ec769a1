//! Fills a running tracker for `scripts/bench-tracker-memory.sh`: PEERS peers with FILES files
//! each, every name NAME_LEN bytes long (issue 28 point 5: what one client can make a tracker
//! hold), registered in batches of 1000 and never renewed, so every lease ends.
//!
//!   fill_names TRACKER_URL PEERS FILES NAME_LEN

use anyhow::Context;
use p2p_common::proto::tracker_service_client::TrackerServiceClient;
use p2p_common::proto::{AnnounceRequest, FileInfo, RegisterRequest};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, peers, files, name_len] = args.as_slice() else {
        anyhow::bail!("usage: fill_names TRACKER_URL PEERS FILES NAME_LEN");
    };
    let peers: usize = peers.parse().context("PEERS")?;
    let files: usize = files.parse().context("FILES")?;
    let name_len: usize = name_len.parse().context("NAME_LEN")?;
    let client = TrackerServiceClient::connect(url.clone())
        .await?
        .max_encoding_message_size(64 << 20);
    let (mut held, mut refused) = (0usize, 0usize);
    for p in 0..peers {
        let mut c = client.clone();
        let all: Vec<FileInfo> = (0..files)
            .map(|f| {
                let tag = format!("fill-{p:03}-{f:07}-");
                FileInfo {
                    name: format!("{tag:n<name_len$}"),
                    size: 1,
                    sha256: format!("{:064x}", p * files + f + 1),
                    pieces_root: String::new(),
                }
            })
            .collect();
        let mut chunks = all.chunks(1000);
        let first = chunks.next().map(<[FileInfo]>::to_vec).unwrap_or_default();
        let id = format!("fill-{p:03}");
        let secret = match c
            .register(RegisterRequest {
                peer_id: id.clone(),
                address: format!("10.9.0.{}:5000", p % 250 + 1),
                files: first.clone(),
                lease_secret: String::new(),
            })
            .await
        {
            Ok(r) => r.into_inner().lease_secret,
            Err(s) => {
                eprintln!("register {id}: {:?} {}", s.code(), s.message());
                refused += 1;
                continue;
            }
        };
        held += first.len();
        for chunk in chunks {
            match c
                .announce(AnnounceRequest {
                    peer_id: id.clone(),
                    lease_secret: secret.clone(),
                    added: chunk.to_vec(),
                    ..Default::default()
                })
                .await
            {
                Ok(_) => held += chunk.len(),
                Err(s) => {
                    eprintln!("announce {id}: {:?} {}", s.code(), s.message());
                    refused += 1;
                    break;
                }
            }
        }
    }
    println!("held {held} files; {refused} calls refused");
    Ok(())
}
