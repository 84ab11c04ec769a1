//! What Search, ListFiles and ListPeers pages are made of: how many entries a page holds, the
//! size a match takes on the wire, the root its holders agree on, a bounded sample of its
//! holders, and the cursor tokens.

use std::collections::BTreeMap;

use p2p_common::Digest;

use crate::store::{FileKey, Holder};

/// Entries in a page asked for with `asked` (0: the server's default), never past `max`.
pub(crate) fn page_len(asked: u32, default: usize, max: usize) -> usize {
    match asked as usize {
        0 => default,
        n => n.min(max),
    }
}

/// Bytes a match takes on the wire at most, given its name and holders: every field at its
/// longest encoding (hex digests, tags, lengths, the match's own framing).
pub(crate) fn wire_bytes(name: &str, holders: &[Holder]) -> usize {
    const FRAME: usize = 16;
    const DIGEST_HEX: usize = 64;
    let file = name.len() + 2 * DIGEST_HEX + 4 * FRAME;
    let peers: usize = holders
        .iter()
        .map(|h| h.peer_id.len() + h.address.len() + DIGEST_HEX + 5 * FRAME)
        .sum();
    file + peers + 2 * FRAME
}

/// The root most of `holders` announced: none only when none announced one; a tie goes to
/// the smallest root, so every replica answers alike.
pub(crate) fn majority_root(holders: &[Holder]) -> Option<Digest> {
    let mut roots = holders.iter().filter_map(|h| h.pieces_root);
    let first = roots.next()?;
    // The usual answer, without counting: every holder that announced a root agrees.
    if roots.all(|r| r == first) {
        return Some(first);
    }
    let mut tally: BTreeMap<Digest, usize> = BTreeMap::new();
    for root in holders.iter().filter_map(|h| h.pieces_root) {
        *tally.entry(root).or_default() += 1;
    }
    tally
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        .map(|(root, _)| root)
}

/// Keeps a uniform random sample of at most `limit` of `holders`, in peer-id order.
pub(crate) fn keep_sample(holders: &mut Vec<Holder>, limit: usize) {
    let total = holders.len();
    if total <= limit {
        return;
    }
    let mut keep = vec![false; total];
    for i in rand::seq::index::sample(&mut rand::rng(), total, limit) {
        keep[i] = true;
    }
    let mut flags = keep.into_iter();
    holders.retain(|_| flags.next().unwrap_or(false));
    holders.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
}

/// Cursor tokens are the hex of `name NUL digest`: opaque to clients, stable across calls.
pub(crate) fn encode_token(key: &FileKey) -> String {
    hex::encode(format!("{}\0{}", key.name, key.sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_majority_root_ignores_peers_without_one_and_breaks_ties_low() {
        let (a, b) = (Some(Digest([0xa; 32])), Some(Digest([0xb; 32])));
        let h = |root: Option<Digest>| Holder {
            peer_id: "p".into(),
            address: "h:1".into(),
            expires_at_ms: 0,
            pieces_root: root,
        };
        assert_eq!(majority_root(&[]), None);
        assert_eq!(majority_root(&[h(None), h(None)]), None);
        assert_eq!(majority_root(&[h(None), h(None), h(b)]), b);
        assert_eq!(majority_root(&[h(b), h(a)]), a);
        assert_eq!(majority_root(&[h(a), h(b), h(b)]), b);
    }
    #[test]
    fn a_sample_is_bounded_distinct_and_in_id_order() {
        let h = |i: usize| Holder {
            peer_id: format!("p{i:03}"),
            address: "h:1".into(),
            expires_at_ms: 0,
            pieces_root: None,
        };
        let mut all: Vec<Holder> = (0..100).map(h).collect();
        keep_sample(&mut all, 7);
        assert_eq!(all.len(), 7);
        assert!(all.windows(2).all(|w| w[0].peer_id < w[1].peer_id));
        let mut few: Vec<Holder> = (0..3).map(h).collect();
        keep_sample(&mut few, 7);
        assert_eq!(few.len(), 3);
    }
}
