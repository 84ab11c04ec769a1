//! The network at flow level: each flow crosses a few links (its sender's upload, its
//! receiver's download, and the sender's newcomer budget when it is paced), each link has a
//! capacity in bytes per second, and the flows share the links max-min fairly (progressive
//! filling: the most constrained link fixes the rate of every flow through it, its capacity is
//! taken from the flows' other links, and so on).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Links a flow crosses at most.
pub(crate) const MAX_LINKS: usize = 3;

/// One flow's links (`u32::MAX`: none).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route(pub [u32; MAX_LINKS]);

impl Route {
    pub(crate) const NONE: u32 = u32::MAX;

    fn links(&self) -> impl Iterator<Item = usize> + '_ {
        self.0
            .iter()
            .filter(|&&l| l != Self::NONE)
            .map(|&l| l as usize)
    }
}

/// A link's fair share so far, ordered smallest first (ties by link index, so the order of
/// equal shares is fixed and runs repeat).
#[derive(Debug, PartialEq)]
struct Share(f64, usize);

impl Eq for Share {}

impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Share {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(other.1.cmp(&self.1))
    }
}

/// Reused buffers for [`max_min`], so a step allocates nothing once warm.
#[derive(Debug, Default)]
pub(crate) struct Fairness {
    left: Vec<f64>,
    count: Vec<u32>,
    start: Vec<u32>,
    members: Vec<u32>,
    fixed: Vec<bool>,
    heap: BinaryHeap<Share>,
}

impl Fairness {
    /// The max-min fair rate of each flow (`rates[i]` for `routes[i]`) over links of
    /// `capacity` bytes per second (`f64::INFINITY`: unlimited).
    pub(crate) fn max_min(&mut self, capacity: &[f64], routes: &[Route], rates: &mut Vec<f64>) {
        let links = capacity.len();
        rates.clear();
        rates.resize(routes.len(), 0.0);
        self.left.clear();
        self.left.extend_from_slice(capacity);
        self.count.clear();
        self.count.resize(links, 0);
        for r in routes {
            for l in r.links() {
                self.count[l] += 1;
            }
        }
        // Flows per link, as one array (counting sort).
        self.start.clear();
        self.start.resize(links + 1, 0);
        for l in 0..links {
            self.start[l + 1] = self.start[l] + self.count[l];
        }
        self.members.clear();
        self.members.resize(self.start[links] as usize, 0);
        let mut fill = self.start.clone();
        for (f, r) in routes.iter().enumerate() {
            for l in r.links() {
                self.members[fill[l] as usize] = f as u32;
                fill[l] += 1;
            }
        }
        self.fixed.clear();
        self.fixed.resize(routes.len(), false);
        self.heap.clear();
        for l in 0..links {
            if self.count[l] > 0 && self.left[l].is_finite() {
                self.heap
                    .push(Share(self.left[l] / f64::from(self.count[l]), l));
            }
        }
        while let Some(Share(share, l)) = self.heap.pop() {
            if self.count[l] == 0 {
                continue;
            }
            let now = self.left[l].max(0.0) / f64::from(self.count[l]);
            if now != share {
                continue; // stale: this link's share changed since it was pushed
            }
            for m in self.start[l]..self.start[l + 1] {
                let f = self.members[m as usize] as usize;
                if self.fixed[f] {
                    continue;
                }
                self.fixed[f] = true;
                rates[f] = share;
                for other in routes[f].links() {
                    self.count[other] -= 1;
                    self.left[other] -= share;
                    if other != l && self.count[other] > 0 && self.left[other].is_finite() {
                        let s = self.left[other].max(0.0) / f64::from(self.count[other]);
                        self.heap.push(Share(s, other));
                    }
                }
            }
        }
        // Flows whose every link is unlimited (none in practice: an upload is always finite).
        for (f, fixed) in self.fixed.iter().enumerate() {
            if !fixed {
                rates[f] = f64::MAX;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(links: &[u32]) -> Route {
        let mut r = [Route::NONE; MAX_LINKS];
        r[..links.len()].copy_from_slice(links);
        Route(r)
    }

    #[test]
    fn flows_share_the_tightest_link_and_the_rest_take_what_is_left() {
        // Link 0: upload of 12 shared by flows a, b, c; link 1: a download of 2 that only c
        // crosses. c is held to 2; a and b split the remaining 10.
        let mut f = Fairness::default();
        let mut rates = Vec::new();
        let routes = [route(&[0]), route(&[0]), route(&[0, 1])];
        f.max_min(&[12.0, 2.0], &routes, &mut rates);
        assert_eq!(rates, vec![5.0, 5.0, 2.0]);
    }

    #[test]
    fn an_unlimited_link_does_not_bound_its_flows() {
        let mut f = Fairness::default();
        let mut rates = Vec::new();
        let routes = [route(&[0, 2]), route(&[1, 2])];
        f.max_min(&[4.0, 6.0, f64::INFINITY], &routes, &mut rates);
        assert_eq!(rates, vec![4.0, 6.0]);
    }

    #[test]
    fn a_receiver_shared_by_two_senders_splits_its_download() {
        // Two uploads of 10 into one download of 8: 4 each, not 10.
        let mut f = Fairness::default();
        let mut rates = Vec::new();
        let routes = [route(&[0, 2]), route(&[1, 2])];
        f.max_min(&[10.0, 10.0, 8.0], &routes, &mut rates);
        assert_eq!(rates, vec![4.0, 4.0]);
    }
}
