//! `replicate NAME --peers K | --all` (preheat): put a file on live peers before anyone asks
//! for it. The peers are the live ones the tracker lists (ListPeers: whether they share
//! anything or not), in id order; those the tracker names as complete holders of the file are
//! left alone. Each chosen peer downloads through the swarm by its own `POST /downloads` (so
//! every one of them serves the pieces it has to the others meanwhile), all at once; a line per
//! peer says how it goes, and a summary ends it.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use super::parse_sha256;
use crate::client::render::{Output, human_bytes};
use crate::client::{self, Placed};
use crate::config::PeerConfig;
use crate::error::{Error, Result};
use crate::net::Net;
use crate::wire::download::Event;

/// A peer's progress line is printed at most this often.
const LINE_EVERY: Duration = Duration::from_secs(1);

/// How many peers to put the file on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HowMany {
    Peers(usize),
    All,
}

pub(crate) async fn replicate(
    cfg: &PeerConfig,
    out: &Output,
    name: &str,
    sha256: Option<&str>,
    how_many: HowMany,
) -> Result<()> {
    let sha256 = parse_sha256(sha256)?;
    let tracker = client::tracker(cfg)?;
    let target = client::resolve(&tracker, name, sha256.as_ref()).await?;
    let holding: BTreeSet<String> = tracker
        .peers_by_digest(&target.sha256)
        .await?
        .into_iter()
        .filter(|h| !h.partial)
        .map(|h| h.peer_id)
        .collect();
    // Every live peer, by id: one that shares nothing yet is the usual target of a preheat.
    let live = tracker.live_peers().await?;
    let mut chosen: Vec<(String, String)> = live
        .into_iter()
        .filter(|(id, _)| !holding.contains(id))
        .collect();
    if let HowMany::Peers(k) = how_many {
        if chosen.len() < k && !out.json {
            eprintln!(
                "only {} live peer{} without {} (asked for {k})",
                chosen.len(),
                if chosen.len() == 1 { "" } else { "s" },
                target.name
            );
        }
        chosen.truncate(k);
    }
    if !out.json {
        eprintln!(
            "replicating {} ({}) to {} peer{}; {} already hold{} it",
            target.name,
            human_bytes(target.size),
            chosen.len(),
            if chosen.len() == 1 { "" } else { "s" },
            holding.len(),
            if holding.len() == 1 { "s" } else { "" }
        );
    }
    let net = Net::new(cfg)?;
    let runs = chosen.iter().map(|(id, addr)| {
        let (net, target) = (&net, &target);
        async move {
            let last = Mutex::new(None::<Instant>);
            let show = |e: &Event| {
                if out.json {
                    return;
                }
                if let Event::Progress { have, size, .. } = e {
                    let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                    if last.is_none_or(|t| t.elapsed() >= LINE_EVERY) {
                        *last = Some(Instant::now());
                        eprintln!("{id}: {} of {}", human_bytes(*have), human_bytes(*size));
                    }
                }
            };
            let r = client::peer::download_via(net, addr, &target.name, Some(&target.sha256), show)
                .await;
            if !out.json {
                match &r {
                    Ok(d) => eprintln!("{id}: {}", d.status),
                    Err(e) => eprintln!("{id}: failed: {e}"),
                }
            }
            (id.clone(), addr.clone(), r)
        }
    });
    let results = futures::future::join_all(runs).await;
    let count = |p: Placed| {
        results
            .iter()
            .filter(|(_, _, r)| r.as_ref().is_ok_and(|d| d.status == p))
            .count()
    };
    let (created, identical) = (count(Placed::Created), count(Placed::Identical));
    let failed = results.iter().filter(|(_, _, r)| r.is_err()).count();
    if out.json {
        let peers: Vec<_> = results
            .iter()
            .map(|(id, addr, r)| match r {
                Ok(d) => json!({"peer_id": id, "address": addr, "status": d.status}),
                Err(e) => {
                    json!({"peer_id": id, "address": addr, "status": "failed", "kind": e.kind(), "error": e.to_string()})
                }
            })
            .collect();
        println!(
            "{}",
            json!({"name": target.name, "sha256": target.sha256, "size": target.size,
                "already_held_by": holding, "peers": peers,
                "created": created, "identical": identical, "failed": failed})
        );
    } else {
        println!(
            "{} is now on {} more peer{} ({created} downloaded, {identical} already there, {failed} failed; {} held it before)",
            target.name,
            created + identical,
            if created + identical == 1 { "" } else { "s" },
            holding.len()
        );
    }
    match results.into_iter().find_map(|(_, _, r)| r.err()) {
        Some(e) => Err(e),
        None if chosen.is_empty() && matches!(how_many, HowMany::Peers(k) if k > 0) => {
            Err(Error::NotFound(format!(
                "no live peer without {} to replicate it to",
                target.name
            )))
        }
        None => Ok(()),
    }
}
