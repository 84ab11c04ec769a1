//! GetPeersByDigest as a file's swarm grows, for `scripts/bench-holders.sh`. `fill` registers
//! N holders of one digest (nine complete for each partial one); `time` asks for them CALLS
//! times one after another on one connection and prints `answer=K us_per_call=T`.
//!
//!   bench_holders fill TRACKER_URL N
//!   bench_holders time TRACKER_URL CALLS

use std::time::Instant;

use anyhow::Context;
use p2p_common::failover::FailoverChannel;
use p2p_common::proto::{AnnounceRequest, FileInfo, GetPeersByDigestRequest, RegisterRequest};

const SHA: &str = "ab";
const SIZE: u64 = 1 << 30;

fn digest() -> String {
    SHA.repeat(32)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, url, n] = args.as_slice() else {
        anyhow::bail!("usage: bench_holders fill|time TRACKER_URL N");
    };
    let n: usize = n.parse().context("N")?;
    let channel = tonic::transport::Endpoint::from_shared(url.clone())?.connect_lazy();
    let fo = FailoverChannel::new(vec![channel]).context("no endpoint")?;
    let client = p2p_common::tracker_client(fo, None);
    match mode.as_str() {
        "fill" => fill(client, n).await,
        "time" => time(client, n).await,
        _ => anyhow::bail!("usage: bench_holders fill|time TRACKER_URL N"),
    }
}

type Client = p2p_common::TrackerClient;

async fn fill(client: Client, holders: usize) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..holders {
        let mut c = client.clone();
        tasks.spawn(async move {
            let partial = p % 10 == 9;
            let file = FileInfo {
                name: "image.tar".into(),
                size: SIZE,
                sha256: digest(),
                pieces_root: "cd".repeat(32),
            };
            let id = format!("peer-{p:06}");
            let secret = c
                .register(RegisterRequest {
                    peer_id: id.clone(),
                    address: format!("10.{}.{}.{}:5000", p / 62500, p / 250 % 250, p % 250 + 1),
                    files: if partial { vec![] } else { vec![file.clone()] },
                    lease_secret: String::new(),
                })
                .await?
                .into_inner()
                .lease_secret;
            if partial {
                c.announce(AnnounceRequest {
                    peer_id: id,
                    lease_secret: secret,
                    partial_added: vec![file],
                    ..Default::default()
                })
                .await?;
            }
            Ok::<_, tonic::Status>(())
        });
        while tasks.len() >= 32 {
            if let Some(r) = tasks.join_next().await {
                r??;
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

async fn time(mut c: Client, calls: usize) -> anyhow::Result<()> {
    let ask = || GetPeersByDigestRequest { sha256: digest() };
    for _ in 0..calls / 10 {
        c.get_peers_by_digest(ask()).await?;
    }
    let t0 = Instant::now();
    let mut answer = 0;
    for _ in 0..calls {
        answer = c.get_peers_by_digest(ask()).await?.into_inner().peers.len();
    }
    let us = t0.elapsed().as_secs_f64() * 1e6 / calls as f64;
    println!("answer={answer} us_per_call={us:.1}");
    Ok(())
}
