//! The tracker as the simulated downloaders see it: who holds the file, complete or partial,
//! and a holders answer as the store gives it (`MemoryStore::holders_of_digest`: the real
//! `answer_mix` of complete and partial holders, each kind a uniform sample without
//! replacement; `Registry::peers_by_digest` then orders the answer by peer id).

use rand::Rng;
use rand::seq::SliceRandom;

/// A set of hosts with O(1) insert, remove and index (the store's `IndexMap`).
#[derive(Debug, Default)]
struct Set {
    items: Vec<u32>,
    /// Position of each host in `items` (`u32::MAX`: absent).
    at: Vec<u32>,
}

impl Set {
    fn insert(&mut self, h: u32) {
        let h_us = h as usize;
        if self.at.len() <= h_us {
            self.at.resize(h_us + 1, u32::MAX);
        }
        if self.at[h_us] == u32::MAX {
            self.at[h_us] = self.items.len() as u32;
            self.items.push(h);
        }
    }

    fn remove(&mut self, h: u32) {
        let Some(&pos) = self.at.get(h as usize) else {
            return;
        };
        if pos == u32::MAX {
            return;
        }
        self.items.swap_remove(pos as usize);
        if let Some(&moved) = self.items.get(pos as usize) {
            self.at[moved as usize] = pos;
        }
        self.at[h as usize] = u32::MAX;
    }

    fn sample(&self, rng: &mut impl Rng, n: usize, out: &mut Vec<u32>) {
        for i in rand::seq::index::sample(rng, self.items.len(), n.min(self.items.len())) {
            out.push(self.items[i]);
        }
    }
}

/// The live holders of the one file.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    complete: Set,
    partial: Set,
    /// `GetPeersByDigest` calls answered.
    pub calls: u64,
}

/// One holder in an answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Named {
    pub host: u32,
    pub partial: bool,
}

impl Tracker {
    pub(crate) fn set_partial(&mut self, h: u32) {
        self.complete.remove(h);
        self.partial.insert(h);
    }

    pub(crate) fn set_complete(&mut self, h: u32) {
        self.partial.remove(h);
        self.complete.insert(h);
    }

    pub(crate) fn remove(&mut self, h: u32) {
        self.partial.remove(h);
        self.complete.remove(h);
    }

    /// One holders answer of at most `limit`, ordered as the tracker orders it (by peer id;
    /// `ids` gives each host's).
    pub(crate) fn answer(
        &mut self,
        rng: &mut impl Rng,
        limit: usize,
        ids: &[u64],
        shuffled: bool,
    ) -> Vec<Named> {
        self.calls += 1;
        let (nc, np) =
            p2p_tracker::answer_mix(self.complete.items.len(), self.partial.items.len(), limit);
        let mut c = Vec::with_capacity(nc);
        self.complete.sample(rng, nc, &mut c);
        let mut p = Vec::with_capacity(np);
        self.partial.sample(rng, np, &mut p);
        if shuffled {
            // The experiment `--shuffle-answers`: the sample in random order.
            c.shuffle(rng);
            p.shuffle(rng);
        } else {
            c.sort_by_key(|&h| ids[h as usize]);
            p.sort_by_key(|&h| ids[h as usize]);
        }
        // The answer lists complete holders, then partial ones (`DigestHolders`), each kind in
        // peer-id order.
        c.into_iter()
            .map(|host| Named {
                host,
                partial: false,
            })
            .chain(p.into_iter().map(|host| Named {
                host,
                partial: true,
            }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn an_answer_mixes_as_the_store_does_and_moves_with_the_holders() {
        let mut t = Tracker::default();
        let ids: Vec<u64> = (0..200).collect();
        t.set_complete(0);
        for h in 1..200 {
            t.set_partial(h);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a = t.answer(&mut rng, 50, &ids, false);
        assert_eq!(a.len(), 50);
        assert_eq!(a.iter().filter(|n| !n.partial).count(), 1);
        t.set_complete(5);
        t.remove(0);
        let b = t.answer(&mut rng, 50, &ids, false);
        assert!(b.iter().all(|n| n.host != 0));
        assert_eq!(b.iter().filter(|n| !n.partial).count(), 1);
        assert_eq!(t.calls, 2);
    }
}
