//! Claims tried by evidence (issue 27): when holders announce more than one root for a file,
//! the file's own bytes decide between them before the download starts, at a cost of about one
//! piece per bogus claim, however many there are.
//!
//! Every claim's chain ends at the file's SHA-256 (`Manifest::validate`). Bytes that pass a
//! claim's last piece prove that claim's size and last chaining value (anything else would be a
//! preimage of SHA-256), which refutes every claim with another size or value at once. Claims
//! left then share a suffix of their chains; the piece just after the last entry where they
//! differ starts from their differing values and ends at a shared one: its real bytes pass under
//! one of them only (a second preimage otherwise), refuting the others. Bytes that pass under no
//! claim were junk: their sender is dropped, never a claim. See docs/DESIGN.md, "Pieces are
//! checked by the file's own SHA-256".

use std::collections::HashSet;
use std::sync::Arc;

use super::holders::{Claim, Failures, shared_addresses};
use super::plan::{Geometry, Meter};
use super::source::{self, Failure};
use super::target::{Report, Swarm, Target};
use crate::share::{Digest, Manifest, PieceIndex};
use crate::tracker::Holder;
use crate::transfer::Direction;

/// The claims the file's bytes do not refute, in their order. `failed` gains the addresses of
/// holders that sent junk and of refuted claims' holders (not an address another peer id also
/// announced: there only the id is blamed); `failures` says why. Claims left without a holder
/// that may still be asked are dropped too (nobody could serve them).
pub(super) async fn resolve(
    swarm: &Swarm,
    target: &Target,
    mut alive: Vec<Claim>,
    failures: &mut Failures,
    failed: &mut HashSet<String>,
    report: &dyn Report,
) -> Vec<Claim> {
    let mut blamed = Blamed {
        shared: shared_addresses(alive.iter().flat_map(|c| c.start.holders.iter())),
        ids: HashSet::new(),
    };
    let mut tail_proven = false;
    loop {
        alive.retain(|c| c.start.holders.iter().any(|h| blamed.askable(h, failed)));
        if alive.len() < 2 {
            break;
        }
        let Some(test) = next_test(&alive, tail_proven) else {
            break;
        };
        let Some(holder) = first_askable(&alive, &test, |h| blamed.askable(h, failed)) else {
            // Nobody left to ask for this piece: the claims it would decide stay undecided.
            break;
        };
        let bytes = match fetch_piece(swarm, target, &holder, &test.layout, test.piece).await {
            Ok(b) => b,
            Err(f) => {
                failures.note(swarm, &holder, &f, report);
                blamed.blame(&holder, failed);
                continue;
            }
        };
        let passes: Vec<bool> = alive
            .iter()
            .map(|c| {
                test.applies(&c.manifest) && c.manifest.verify_parts(test.piece, &[&bytes]).is_ok()
            })
            .collect();
        if !passes.iter().any(|&p| p) {
            let why = Failure::Bad(format!(
                "sent piece {} of {}, which no claim's chain passes",
                test.piece, target.sha256
            ));
            failures.note(swarm, &holder, &why, report);
            blamed.blame(&holder, failed);
            continue;
        }
        tail_proven = true;
        let mut kept = Vec::with_capacity(alive.len());
        for (claim, pass) in alive.into_iter().zip(passes) {
            if pass {
                kept.push(claim);
            } else {
                let why = refutation(&claim, test.piece, &target.sha256);
                for h in &claim.start.holders {
                    if blamed.askable(h, failed) {
                        failures.note(swarm, h, &why, report);
                        blamed.blame(h, failed);
                    }
                }
            }
        }
        alive = kept;
    }
    alive
}

/// One piece whose real bytes decide between claims: its index, and the manifest whose layout
/// asks for it (claims of another size have no such piece: only `applies` ones are judged).
struct Test {
    piece: PieceIndex,
    layout: Arc<Manifest>,
    /// Only claims of this size are judged by the bytes; after a last piece passed, the others
    /// are refuted (they fail `applies`).
    size: u64,
}

impl Test {
    fn applies(&self, m: &Manifest) -> bool {
        m.size() == self.size
    }
}

/// What to fetch next: while no last piece has passed, the last piece of the first claim that
/// can still be asked; after, the piece just after the last entry where the claims differ.
fn next_test(alive: &[Claim], tail_proven: bool) -> Option<Test> {
    let first = alive.first()?;
    let m = &first.manifest;
    if !tail_proven {
        let last = m.piece_count().checked_sub(1)?;
        return Some(Test {
            piece: PieceIndex(last),
            layout: Arc::clone(m),
            size: m.size(),
        });
    }
    // All claims left share the size and the end of their chain.
    let n = m.digests().len();
    let differs = |k: usize| {
        alive
            .iter()
            .any(|c| c.manifest.digests()[k] != m.digests()[k])
    };
    let k = (0..n.saturating_sub(1)).rev().find(|&k| differs(k))?;
    Some(Test {
        piece: PieceIndex(k as u32 + 1),
        layout: Arc::clone(m),
        size: m.size(),
    })
}

/// Who was found wrong: by peer id always, by address where no other id announced it.
struct Blamed {
    shared: HashSet<String>,
    ids: HashSet<(String, String)>,
}

impl Blamed {
    fn askable(&self, h: &Holder, failed: &HashSet<String>) -> bool {
        !failed.contains(&h.address) && !self.ids.contains(&(h.peer_id.clone(), h.address.clone()))
    }

    fn blame(&mut self, h: &Holder, failed: &mut HashSet<String>) {
        self.ids.insert((h.peer_id.clone(), h.address.clone()));
        if !self.shared.contains(&h.address) {
            failed.insert(h.address.clone());
        }
    }
}

/// The first holder, in claim order, of a claim the test judges, that may still be asked.
fn first_askable(
    alive: &[Claim],
    test: &Test,
    askable: impl Fn(&Holder) -> bool,
) -> Option<Holder> {
    alive
        .iter()
        .filter(|c| test.applies(&c.manifest))
        .flat_map(|c| c.start.holders.iter())
        .find(|h| askable(h))
        .cloned()
}

/// Why the holders of a claim the bytes refute are named.
fn refutation(claim: &Claim, piece: PieceIndex, sha256: &Digest) -> Failure {
    let root = claim
        .start
        .root
        .map_or_else(|| String::from("(none)"), |r| r.to_string());
    tracing::warn!(root = %root, piece = piece.0, "a claim refuted by the file's bytes");
    Failure::Bad(format!(
        "announced pieces_root {root} for {sha256}, a claim of {} bytes that the file's own bytes refute at piece {piece}",
        claim.manifest.size()
    ))
}

/// One whole piece from one holder, block by block (as the engine asks for them).
async fn fetch_piece(
    swarm: &Swarm,
    target: &Target,
    holder: &Holder,
    layout: &Manifest,
    piece: PieceIndex,
) -> Result<Vec<u8>, Failure> {
    let geometry = Geometry::new(layout.size(), layout.piece_size(), super::engine::BLOCK);
    let piece_len = geometry.piece_len(piece);
    let meter = Arc::new(Meter::default());
    let mut out = Vec::with_capacity(piece_len as usize);
    for block in 0..geometry.blocks(piece) {
        let got = source::block(
            &swarm.net,
            &holder.address,
            &target.sha256,
            piece,
            geometry.block_range(piece, block),
            piece_len,
            swarm.io_timeout,
            swarm.limits.throttle(Direction::Download),
            Arc::clone(&meter),
            true,
        )
        .await?;
        out.extend_from_slice(&got);
    }
    Ok(out)
}
