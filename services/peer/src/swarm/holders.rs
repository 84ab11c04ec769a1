//! Who a download asks: the holders it starts from, the root they must agree on, the manifest
//! from the first that answers, and what went wrong with those that did not.

use std::collections::{HashMap, HashSet};

use super::source::{self, Failure};
use super::target::{Report, Swarm, Target};
use crate::error::{Error, Result};
use crate::share::{Digest, Manifest};
use crate::tracker::Holder;
use crate::wire::download::Event;

/// Where a download starts: its holders in a random order (so downloads spread their load),
/// all of the root they follow.
pub(super) struct Start {
    pub holders: Vec<Holder>,
    /// The `pieces_root` holders must have announced (`None`: nobody announces roots).
    pub root: Option<Digest>,
}

/// The target's holders, or the tracker's when it came with none; never this peer itself.
pub(super) async fn start(swarm: &Swarm, target: &Target) -> Result<Start> {
    let not_me = |p: &Holder| Some(p.address.as_str()) != swarm.skip.as_deref();
    let mut peers: Vec<Holder> = target
        .holders
        .iter()
        .filter(|p| not_me(p))
        .cloned()
        .collect();
    if peers.is_empty()
        && let Some(t) = &swarm.tracker
    {
        peers = t
            .peers_by_digest(&target.sha256)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(not_me)
            .collect();
    }
    if peers.is_empty() {
        return Err(Error::NotFound(format!(
            "no other live peer holds {:?}",
            target.name
        )));
    }
    let n = peers.len();
    peers.rotate_left(seed() as usize % n);
    let root = choose_root(&peers, target.pieces_root.as_ref());
    peers.retain(|p| fits(p, root.as_ref()));
    Ok(Start {
        holders: peers,
        root,
    })
}

/// Holders asked for the manifest at once; every [`MANIFEST_WAVE`] without an answer, as many
/// more: a holder that accepts the connection and keeps quiet costs a second, not a timeout.
const MANIFEST_AT_ONCE: usize = 4;
const MANIFEST_WAVE: std::time::Duration = std::time::Duration::from_secs(1);

/// The manifest from the first holder that gives one matching the file and the root, and who
/// gave it (named in the error should the whole file not match). Holders are asked a few at a
/// time, more joining while none has answered. Holders that fail are recorded in `failures`
/// and `failed`; those still quiet when one answers are left alone.
pub(super) async fn manifest(
    swarm: &Swarm,
    target: &Target,
    start: &Start,
    failures: &mut Failures,
    failed: &mut HashSet<String>,
    report: &dyn Report,
) -> Result<(Manifest, String)> {
    use futures::StreamExt;
    if target.size == 0 {
        return Ok((Manifest::new(0, Vec::new())?, String::from("(empty file)")));
    }
    let ask = |p: &Holder| {
        let p = p.clone();
        async move {
            let got = source::manifest(
                &swarm.net,
                &p.address,
                &target.sha256,
                target.size,
                start.root.as_ref(),
                swarm.io_timeout,
            )
            .await;
            (p, got)
        }
    };
    let mut waiting = start.holders.iter();
    let mut asking = futures::stream::FuturesUnordered::new();
    let mut at_once = MANIFEST_AT_ONCE;
    let mut wave = tokio::time::interval(MANIFEST_WAVE);
    wave.tick().await;
    loop {
        while asking.len() < at_once {
            let Some(p) = waiting.next() else { break };
            asking.push(ask(p));
        }
        if asking.is_empty() {
            return Err(failures.error(&target.name));
        }
        tokio::select! {
            Some((p, got)) = asking.next() => match got {
                Ok(m) => return Ok((m, format!("{} ({})", p.peer_id, p.address))),
                Err(f) => {
                    failures.note(swarm, &p, &f, report);
                    failed.insert(p.address.clone());
                }
            },
            _ = wave.tick() => at_once += MANIFEST_AT_ONCE,
        }
    }
}

/// The root the download follows: the one most holders announced (the tracker's own choice
/// breaks ties), or, when no holder announced one, the tracker's.
pub(super) fn choose_root(peers: &[Holder], announced: Option<&Digest>) -> Option<Digest> {
    let mut counts: HashMap<Digest, usize> = HashMap::new();
    for r in peers.iter().filter_map(|p| p.pieces_root) {
        *counts.entry(r).or_default() += 1;
    }
    let announced = announced.copied();
    counts
        .into_iter()
        .max_by_key(|(r, n)| (*n, Some(*r) == announced, *r))
        .map(|(r, _)| r)
        .or(announced)
}

/// Whether a holder may serve this download: it announced the chosen root (holders of other
/// roots would not agree on the pieces), or nobody announced one.
pub(super) fn fits(peer: &Holder, root: Option<&Digest>) -> bool {
    match root {
        None => true,
        Some(r) => peer.pieces_root.as_ref() == Some(r),
    }
}

pub(super) fn seed() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// What went wrong with the sources, for the final error.
#[derive(Default)]
pub(super) struct Failures {
    not_there: usize,
    unreachable: usize,
    bad: Vec<String>,
    last: String,
}

impl Failures {
    /// Records why `peer` failed, counts a bad source in the metrics and tells the report.
    pub(super) fn note(&mut self, swarm: &Swarm, peer: &Holder, f: &Failure, report: &dyn Report) {
        let name = format!("{} ({})", peer.peer_id, peer.address);
        match f {
            Failure::NotThere(_) => self.not_there += 1,
            // Not a failure: the piece is asked again.
            Failure::Deferred => return,
            Failure::Unreachable(_) => self.unreachable += 1,
            Failure::Bad(why) => {
                tracing::warn!(peer = %peer.peer_id, address = %peer.address, "dropping a source that sent bad data: {why}");
                if let Some(m) = &swarm.metrics {
                    m.bad_sources.with_label_values(&[&peer.peer_id]).inc();
                }
                self.bad.push(name.clone());
            }
        }
        self.last = format!("{name}: {f}");
        report.event(Event::SourceFailed {
            peer: peer.peer_id.clone(),
            address: peer.address.clone(),
            reason: f.to_string(),
            bad: matches!(f, Failure::Bad(_)),
        });
    }

    /// The download gives up because nothing moved for `waited`.
    pub(super) fn stalled(&mut self, waited: std::time::Duration) {
        self.last = format!(
            "no live holder has the missing pieces (waited {}s)",
            waited.as_secs()
        );
        self.unreachable += 1;
    }

    pub(super) fn error(&self, name: &str) -> Error {
        let mut summary = format!("could not download {name:?}");
        if !self.bad.is_empty() {
            summary.push_str(&format!(
                "; sources that sent bad data: {}",
                self.bad.join(", ")
            ));
        }
        if !self.last.is_empty() {
            summary.push_str(&format!("; last failure: {}", self.last));
        }
        if !self.bad.is_empty() {
            Error::Integrity(summary)
        } else if self.unreachable == 0 && self.not_there > 0 {
            Error::NotFound(summary)
        } else {
            Error::Unreachable(summary)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(n: u8, root: Option<u8>) -> Holder {
        Holder {
            peer_id: format!("peer-{n}"),
            address: format!("127.0.0.1:{}", 5000 + u16::from(n)),
            partial: false,
            pieces_root: root.map(|r| Digest([r; 32])),
        }
    }

    #[test]
    fn the_root_most_holders_announced_wins_and_the_trackers_breaks_ties() {
        let (a, b) = (Digest([1; 32]), Digest([2; 32]));
        let peers = [holder(0, Some(1)), holder(1, Some(2)), holder(2, Some(2))];
        assert_eq!(choose_root(&peers, Some(&a)), Some(b));
        let tie = [holder(0, Some(1)), holder(1, Some(2))];
        assert_eq!(choose_root(&tie, Some(&a)), Some(a));
        assert_eq!(choose_root(&tie, Some(&b)), Some(b));
        assert_eq!(choose_root(&[holder(0, None)], Some(&a)), Some(a));
        assert_eq!(choose_root(&[holder(0, None)], None), None);
        assert!(fits(&holder(0, Some(2)), Some(&b)));
        assert!(!fits(&holder(0, None), Some(&b)));
        assert!(fits(&holder(0, None), None));
    }

    #[test]
    fn the_final_error_says_whether_data_was_bad_missing_or_unreachable() {
        let mut f = Failures {
            not_there: 1,
            ..Failures::default()
        };
        assert!(matches!(f.error("x"), Error::NotFound(_)));
        f.unreachable = 1;
        assert!(matches!(f.error("x"), Error::Unreachable(_)));
        f.bad.push("peer-1 (127.0.0.1:5001)".into());
        let Error::Integrity(msg) = f.error("x") else {
            panic!("bad data is an integrity error");
        };
        assert!(msg.contains("peer-1"), "{msg}");
        let mut s = Failures::default();
        s.stalled(std::time::Duration::from_secs(30));
        let e = s.error("x").to_string();
        assert!(e.contains("waited 30s"), "{e}");
    }
}
