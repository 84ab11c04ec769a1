//! Who a download asks: the holders it starts from, the root they must agree on, the manifest
//! from the first that answers, and what went wrong with those that did not.

use std::collections::HashSet;
use std::sync::Arc;

use super::source::{self, Failure};
use super::target::{Report, Swarm, Target};
use crate::error::{Error, Result};
use crate::share::{Digest, Manifest};
use crate::tracker::Holder;
use crate::wire::download::Event;

/// Where a download starts: its holders in a random order (so downloads spread their load),
/// all of the root they follow.
#[derive(Clone)]
pub(super) struct Start {
    pub holders: Vec<Holder>,
    /// The `pieces_root` holders must have announced (`None`: nobody announces roots).
    pub root: Option<Digest>,
}

/// What some holders say the file is: the root they announced, the manifest one of them
/// served for it (which gives the size: the tracker's size is only the last announcement, a
/// claim like any other), and who served it.
pub(super) struct Claim {
    pub start: Start,
    pub manifest: Arc<Manifest>,
    pub from: String,
}

/// At most this many claims (roots) are asked for a manifest. A claim whose chain does not end
/// at the file's SHA-256 is refused with its manifest, before any piece; the others are decided
/// by the file's own bytes (`resolve`) at about one piece per bogus claim, so identities that
/// outnumber the honest holders with claims of their own cost little and cannot crowd the
/// honest claim out: the bound only caps the manifests asked for (4 MiB each at most).
pub(super) const MAX_CLAIMS: usize = 64;
/// Claims whose manifest is asked for at once (a manifest answer is read up to 4 MiB).
const CLAIMS_AT_ONCE: usize = 8;

/// The target's holders, or the tracker's when it came with none; never this peer itself.
async fn candidates(swarm: &Swarm, target: &Target) -> Result<Vec<Holder>> {
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
    Ok(peers)
}

/// The holders grouped by the root they announced, the groups most holders share first (the
/// tracker's root breaks ties), at most [`MAX_CLAIMS`]. Holders that announced no root count
/// only when nobody announced one (they could not be checked against a root).
pub(super) fn groups(peers: Vec<Holder>, announced: Option<&Digest>) -> Vec<Start> {
    let mut by_root: Vec<Start> = Vec::new();
    for p in peers.into_iter().filter(|p| p.pieces_root.is_some()) {
        match by_root.iter_mut().find(|g| g.root == p.pieces_root) {
            Some(g) => g.holders.push(p),
            None => by_root.push(Start {
                root: p.pieces_root,
                holders: vec![p],
            }),
        }
    }
    // Stable: holders keep their random order within a group.
    by_root.sort_by_key(|g| {
        (
            std::cmp::Reverse(g.holders.len()),
            g.root.as_ref() != announced,
            g.root,
        )
    });
    by_root.truncate(MAX_CLAIMS);
    by_root
}

/// What the holders claim the file is, in the order to try: the smallest file first (a claim
/// larger than the honest one is never fetched before it), then the claim most holders make.
/// Each claim's manifest comes from the first of its holders that serves one matching the
/// file's digest and the root it announced; holders that fail are recorded in `failures` and
/// `failed`. Empty only with an error: nobody served a manifest.
pub(super) async fn claims(
    swarm: &Swarm,
    target: &Target,
    failures: &mut Failures,
    failed: &mut HashSet<String>,
    report: &dyn Report,
) -> Result<Vec<Claim>> {
    if target.sha256 == crate::share::digest::sha256(b"") {
        return Ok(vec![Claim {
            start: Start {
                holders: Vec::new(),
                root: None,
            },
            manifest: Arc::new(Manifest::new(0, Vec::new())?),
            from: String::from("(empty file)"),
        }]);
    }
    let peers = candidates(swarm, target).await?;
    let shared = shared_addresses(&peers);
    let mut starts = groups(peers.clone(), target.pieces_root.as_ref());
    if starts.is_empty() {
        starts.push(Start {
            holders: peers,
            root: None,
        });
    }
    let asked = starts.into_iter().map(|start| async move {
        let mut failures = Failures::default();
        let mut failed = HashSet::new();
        let got = manifest(swarm, target, &start, &mut failures, &mut failed, report).await;
        (start, got, failures, failed)
    });
    let mut claims = Vec::new();
    // A few claims at a time: each manifest read may take up to 4 MiB.
    let answers: Vec<_> = futures::StreamExt::collect(futures::StreamExt::buffered(
        futures::stream::iter(asked),
        CLAIMS_AT_ONCE,
    ))
    .await;
    for (start, got, f, out) in answers {
        failures.absorb(f);
        failed.extend(out.into_iter().filter(|a| !shared.contains(a)));
        if let Ok((manifest, from)) = got {
            claims.push(Claim {
                start,
                manifest: Arc::new(manifest),
                from,
            });
        }
    }
    if claims.is_empty() {
        return Err(failures.error(&target.name));
    }
    claims.sort_by_key(|c| (c.manifest.size(), std::cmp::Reverse(c.start.holders.len())));
    Ok(claims)
}

/// Addresses that more than one peer id announced. What one id there did wrong is blamed on
/// that id, never on the address (issue 28 point 1): a fake id registered at an honest peer's
/// address, announcing a root of its own, must not get the honest peer excluded.
pub(super) fn shared_addresses<'a>(
    holders: impl IntoIterator<Item = &'a Holder>,
) -> HashSet<String> {
    let mut first: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    let mut shared = HashSet::new();
    for h in holders {
        let id = *first
            .entry(h.address.as_str())
            .or_insert(h.peer_id.as_str());
        if id != h.peer_id {
            shared.insert(h.address.clone());
        }
    }
    shared
}

/// Holders asked for the manifest at once; every [`MANIFEST_WAVE`] without an answer, as many
/// more: a holder that accepts the connection and keeps quiet costs a second, not a timeout.
const MANIFEST_AT_ONCE: usize = 4;
const MANIFEST_WAVE: std::time::Duration = std::time::Duration::from_secs(1);

/// The manifest from the first holder of `start` that gives one matching the file and the
/// root, and who gave it (named in the log should the claim not complete). Holders are
/// asked a few at a time, more joining while none has answered. Holders that fail are
/// recorded in `failures` and `failed`; those still quiet when one answers are left alone.
async fn manifest(
    swarm: &Swarm,
    target: &Target,
    start: &Start,
    failures: &mut Failures,
    failed: &mut HashSet<String>,
    report: &dyn Report,
) -> Result<(Manifest, String)> {
    use futures::StreamExt;
    let ask = |p: &Holder| {
        let p = p.clone();
        async move {
            let got = source::manifest(
                &swarm.net,
                &p.address,
                &target.sha256,
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
            Failure::Deferred | Failure::Busy => return,
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

    /// Takes in what another part of the download recorded.
    pub(super) fn absorb(&mut self, other: Failures) {
        self.not_there += other.not_there;
        self.unreachable += other.unreachable;
        self.bad.extend(other.bad);
        if !other.last.is_empty() {
            self.last = other.last;
        }
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
    fn holders_are_grouped_by_root_most_holders_first_and_the_trackers_breaks_ties() {
        let (a, b) = (Digest([1; 32]), Digest([2; 32]));
        let roots = |g: &[Start]| {
            g.iter()
                .map(|s| (s.root, s.holders.len()))
                .collect::<Vec<_>>()
        };
        let peers = vec![holder(0, Some(1)), holder(1, Some(2)), holder(2, Some(2))];
        assert_eq!(
            roots(&groups(peers, Some(&a))),
            [(Some(b), 2), (Some(a), 1)]
        );
        let tie = || vec![holder(0, Some(1)), holder(1, Some(2))];
        assert_eq!(roots(&groups(tie(), Some(&a)))[0].0, Some(a));
        assert_eq!(roots(&groups(tie(), Some(&b)))[0].0, Some(b));
        // Unrooted holders are no group of their own next to rooted ones.
        let mixed = vec![holder(0, None), holder(1, Some(2))];
        assert_eq!(roots(&groups(mixed, None)), [(Some(b), 1)]);
        assert!(groups(vec![holder(0, None)], Some(&a)).is_empty());
        // A crowd of roots is cut at MAX_CLAIMS.
        let many = (0..=MAX_CLAIMS as u8).map(|n| holder(n, Some(n))).collect();
        assert_eq!(groups(many, None).len(), MAX_CLAIMS);
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
