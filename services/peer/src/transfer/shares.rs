//! A bounded number of slots shared between client addresses (issue 28): what one address
//! (IPv6: its /64, [`p2p_common::address::client_key`]) may hold of the transfer slots and of
//! the long-lived answers (event streams, listings). Each slot is held by a guard; the table
//! has one entry per address holding at least one slot, so it is bounded by the slots.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use p2p_common::address::client_key;

/// Why a slot was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Every slot is held.
    Full,
    /// This client holds its share and the rest is kept for others.
    ClientShare,
}

#[derive(Debug)]
pub(crate) struct Shares {
    total: usize,
    per_client: usize,
    /// Past its share, a client still gets a slot while more than this many are free.
    lend_while_free_above: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    held: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// One slot; dropping it gives it back.
#[derive(Debug)]
pub(crate) struct Share {
    owner: Arc<Shares>,
    client: IpAddr,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut s = self.owner.lock();
        s.held = s.held.saturating_sub(1);
        if let Some(n) = s.by_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.by_client.remove(&self.client);
            }
        }
    }
}

impl Shares {
    /// `total` slots, at most `per_client` per client address whatever is free.
    pub(crate) fn strict(total: usize, per_client: usize) -> Arc<Self> {
        Self::new(total, per_client, usize::MAX)
    }

    /// `total` slots, `per_client` per client address while half or more of them are held;
    /// while more than half are free a client may take more (one downloader of an idle peer,
    /// or many behind one NAT, are not held to a share nobody else wants).
    pub(crate) fn lending(total: usize, per_client: usize) -> Arc<Self> {
        Self::new(total, per_client, total / 2)
    }

    fn new(total: usize, per_client: usize, lend_while_free_above: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            per_client: per_client.max(1),
            lend_while_free_above,
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The one rule: a slot for a request from `from`, or why not.
    pub(crate) fn take(self: &Arc<Self>, from: IpAddr) -> Result<Share, Refusal> {
        let client = client_key(from);
        let mut s = self.lock();
        if s.held >= self.total {
            return Err(Refusal::Full);
        }
        let free = self.total - s.held;
        let mine = s.by_client.get(&client).copied().unwrap_or(0);
        if mine >= self.per_client && free <= self.lend_while_free_above {
            return Err(Refusal::ClientShare);
        }
        s.held += 1;
        *s.by_client.entry(client).or_default() += 1;
        Ok(Share {
            owner: Arc::clone(self),
            client,
        })
    }

    /// Slots held in all, and clients holding any.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        let s = self.lock();
        (s.held, s.by_client.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_strict_share_holds_whatever_is_free() {
        let s = Shares::strict(4, 2);
        let a: Vec<_> = (0..2).map(|_| s.take(ip(1)).unwrap()).collect();
        assert_eq!(s.take(ip(1)).unwrap_err(), Refusal::ClientShare);
        let b: Vec<_> = (0..2).map(|_| s.take(ip(2)).unwrap()).collect();
        assert_eq!(s.take(ip(3)).unwrap_err(), Refusal::Full);
        assert_eq!(s.counts(), (4, 2));
        drop(a);
        assert_eq!(
            s.counts(),
            (2, 1),
            "an address holding nothing is forgotten"
        );
        assert!(s.take(ip(3)).is_ok());
        drop(b);
        assert_eq!(s.counts(), (0, 0));
    }

    #[test]
    fn a_lending_share_holds_once_half_is_taken() {
        let s = Shares::lending(8, 2);
        // Alone, one client takes slots until half are held.
        let a: Vec<_> = (0..4).map(|_| s.take(ip(1)).unwrap()).collect();
        assert_eq!(s.take(ip(1)).unwrap_err(), Refusal::ClientShare);
        // Others still get their share, and no more, from the half kept.
        let b: Vec<_> = (0..2).map(|_| s.take(ip(2)).unwrap()).collect();
        assert_eq!(s.take(ip(2)).unwrap_err(), Refusal::ClientShare);
        let c: Vec<_> = (0..2).map(|_| s.take(ip(3)).unwrap()).collect();
        assert_eq!(s.take(ip(4)).unwrap_err(), Refusal::Full);
        drop((a, b, c));
        assert_eq!(s.counts(), (0, 0));
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let s = Shares::strict(8, 1);
        let _a = s.take("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert_eq!(
            s.take("2001:db8:1:2::ffff".parse().unwrap()).unwrap_err(),
            Refusal::ClientShare
        );
        assert!(s.take("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }
}
