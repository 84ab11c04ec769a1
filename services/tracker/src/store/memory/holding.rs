//! Who holds one digest complete, for the memory store. Most digests have a single holder: a
//! map per digest (an index table and an entry vector, a few hundred bytes) was the largest
//! per-file cost at 100,000 files, so one holder is kept inline and a map is made at the second.

use std::sync::Arc;

use indexmap::IndexMap;
use p2p_common::Digest;

/// A peer id, shared by every structure that names the peer.
pub type PeerId = Arc<str>;

/// One peer's holding of a digest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hold {
    /// How many of the peer's names carry these bytes.
    pub names: u32,
    /// The root it announced last with them (one digest has one root unless a peer lies).
    pub root: Option<Digest>,
}

/// The holders of one digest, indexed so a random sample costs O(sample).
#[derive(Debug, Default)]
pub enum Holding {
    #[default]
    Empty,
    One(PeerId, Hold),
    Many(IndexMap<PeerId, Hold>),
}

impl Holding {
    pub fn len(&self) -> usize {
        match self {
            Holding::Empty => 0,
            Holding::One(..) => 1,
            Holding::Many(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, id: &str) -> Option<&Hold> {
        match self {
            Holding::Empty => None,
            Holding::One(p, h) => (&**p == id).then_some(h),
            Holding::Many(m) => m.get(id),
        }
    }

    /// The `i`th holder, in no meaningful order.
    pub fn get_index(&self, i: usize) -> Option<(&PeerId, &Hold)> {
        match self {
            Holding::Empty => None,
            Holding::One(p, h) => (i == 0).then_some((p, h)),
            Holding::Many(m) => m.get_index(i),
        }
    }

    /// `id`'s holding, made (empty) if it had none.
    pub fn hold_mut(&mut self, id: &PeerId) -> &mut Hold {
        match std::mem::take(self) {
            Holding::Empty => *self = Holding::One(id.clone(), Hold::default()),
            Holding::One(p, h) if p == *id => *self = Holding::One(p, h),
            Holding::One(p, h) => {
                let mut m = IndexMap::with_capacity(2);
                m.insert(p, h);
                *self = Holding::Many(m);
            }
            many @ Holding::Many(_) => *self = many,
        }
        match self {
            Holding::One(_, h) => h,
            Holding::Many(m) => m.entry(id.clone()).or_default(),
            // Set just above.
            Holding::Empty => unreachable!("a holding was just made"),
        }
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Hold> {
        match self {
            Holding::Empty => None,
            Holding::One(p, h) => (&**p == id).then_some(h),
            Holding::Many(m) => m.get_mut(id),
        }
    }

    pub fn remove(&mut self, id: &str) {
        match self {
            Holding::One(p, _) if &**p == id => *self = Holding::Empty,
            Holding::Many(m) => {
                m.swap_remove(id);
                if m.is_empty() {
                    *self = Holding::Empty;
                }
            }
            _ => {}
        }
    }
}

/// The holders of one (name, digest), sorted by id. Nearly always one: kept inline, as a
/// one-element vector would cost a heap allocation per file.
#[derive(Debug)]
pub enum PeerList {
    One(PeerId),
    Many(Vec<PeerId>),
}

impl PeerList {
    pub fn as_slice(&self) -> &[PeerId] {
        match self {
            PeerList::One(p) => std::slice::from_ref(p),
            PeerList::Many(v) => v,
        }
    }

    pub fn insert(&mut self, id: &PeerId) {
        match self {
            PeerList::One(p) if p == id => {}
            PeerList::One(p) => {
                let mut v = vec![p.clone(), id.clone()];
                v.sort_unstable();
                *self = PeerList::Many(v);
            }
            PeerList::Many(v) => {
                if let Err(at) = v.binary_search(id) {
                    v.insert(at, id.clone());
                }
            }
        }
    }

    /// Removes `id`; false when the list would be left empty (the caller drops it instead).
    pub fn remove(&mut self, id: &str) -> bool {
        match self {
            PeerList::One(p) => &**p != id,
            PeerList::Many(v) => {
                if let Ok(at) = v.binary_search_by(|h| (**h).cmp(id)) {
                    v.remove(at);
                }
                !v.is_empty()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_list_stays_sorted_and_says_when_it_empties() {
        let ids: Vec<PeerId> = ["c", "a", "b"].into_iter().map(Arc::from).collect();
        let mut l = PeerList::One(ids[0].clone());
        l.insert(&ids[0]);
        assert!(
            matches!(l, PeerList::One(_)),
            "the same id twice is one holder"
        );
        l.insert(&ids[1]);
        l.insert(&ids[2]);
        let names: Vec<&str> = l.as_slice().iter().map(|p| &**p).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(l.remove("b") && l.remove("x") && l.remove("a"));
        assert!(!l.remove("c"));
        assert!(PeerList::One(ids[0].clone()).remove("a"));
        assert!(!PeerList::One(ids[0].clone()).remove("c"));
    }

    #[test]
    fn one_holder_inline_then_a_map_then_none() {
        let (a, b): (PeerId, PeerId) = (Arc::from("a"), Arc::from("b"));
        let mut h = Holding::default();
        h.hold_mut(&a).names += 1;
        h.hold_mut(&a).names += 1;
        assert!(matches!(h, Holding::One(..)));
        assert_eq!(h.get("a").map(|h| h.names), Some(2));
        assert_eq!(h.get("b"), None);
        h.hold_mut(&b).root = Some(Digest([7; 32]));
        assert!(matches!(h, Holding::Many(_)));
        assert_eq!(h.len(), 2);
        assert_eq!(
            h.get("a").map(|h| h.names),
            Some(2),
            "the first holder survives"
        );
        assert_eq!(h.get("b").and_then(|h| h.root), Some(Digest([7; 32])));
        let ids: Vec<&str> = (0..3)
            .filter_map(|i| h.get_index(i).map(|(p, _)| &**p))
            .collect();
        assert_eq!(ids, ["a", "b"]);
        h.remove("a");
        h.remove("b");
        assert!(matches!(h, Holding::Empty), "an emptied map is let go");
        h.hold_mut(&b);
        h.remove("a");
        assert_eq!(h.len(), 1, "removing another id leaves the one holder");
        h.remove("b");
        assert!(matches!(h, Holding::Empty));
    }
}
