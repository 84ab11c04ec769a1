//! What the page needs that the rest of the API does not: who this peer is, its sessions, its
//! downloads in progress and the rates of its byte counters.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use p2p_common::address::client_key as address_key;

use super::live::Rate;
use super::session::Sessions;
use crate::config::PeerConfig;
use crate::transfer::TransferSection;

/// What the page needs that the rest of the API does not: who this peer is, its sessions and
/// its downloads in progress.
pub(crate) struct Web {
    pub peer_id: String,
    pub advertised: String,
    pub tracker_endpoint: String,
    pub transfer: TransferSection,
    pub max_concurrent_transfers: usize,
    pub sessions: Arc<Sessions>,
    /// The names the page and browser requests are answered under (DNS rebinding).
    pub hosts: Arc<crate::http::host::Hosts>,
    /// Token guesses, per client address and in all.
    pub logins: Arc<Logins>,
    pub(super) served: Rate,
    pub(super) received: Rate,
}

impl Web {
    pub(crate) fn new(cfg: &PeerConfig, advertised: &str, port: u16) -> Self {
        Self {
            peer_id: cfg.peer.id.clone(),
            advertised: advertised.to_owned(),
            tracker_endpoint: cfg.tracker.endpoint.clone(),
            transfer: cfg.transfer.clone(),
            max_concurrent_transfers: cfg.peer.max_concurrent_transfers,
            sessions: Arc::new(Sessions::new(port, cfg.tls.serves())),
            hosts: Arc::new(crate::http::host::Hosts::new(
                &cfg.peer.allowed_hosts,
                advertised,
            )),
            logins: Arc::new(Logins::new(DefaultClock::default())),
            served: Rate::default(),
            received: Rate::default(),
        }
    }
}

/// Logins one client address may try per minute (an IPv6 address counts by its /64).
const LOGINS_PER_MINUTE: NonZeroU32 = NonZeroU32::new(10).unwrap();
/// Logins all clients together may try per minute: many addresses guess no faster than this.
const LOGINS_PER_MINUTE_IN_ALL: NonZeroU32 = NonZeroU32::new(60).unwrap();
/// The address table is pruned of addresses that have not tried for a minute when it
/// reaches this size ...
const PRUNE_AT: usize = 1024;
/// ... and past this size (every address recent) a new address is refused as if the limit in
/// all were reached: the table stays under about 1 MB whatever the number of addresses.
const MAX_ADDRESSES: usize = 16_384;

/// Why a login was not even tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginRefused {
    /// This address tried too often.
    Address,
    /// All addresses together tried too often.
    InAll,
}

/// Login attempts, per client address and in all.
pub(crate) struct Logins<C: Clock = DefaultClock> {
    per_address: RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, C, NoOpMiddleware<C::Instant>>,
    all: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    /// The table size at which it is pruned next: twice what a pruning left, between
    /// [`PRUNE_AT`] and [`MAX_ADDRESSES`], so pruning costs O(1) per attempt (amortised) until
    /// the table is full of recent addresses.
    prune_at: AtomicUsize,
}

impl<C: Clock + Clone> Logins<C> {
    pub(crate) fn new(clock: C) -> Self {
        Self {
            per_address: RateLimiter::new(
                Quota::per_minute(LOGINS_PER_MINUTE),
                DefaultKeyedStateStore::default(),
                clock.clone(),
            ),
            all: RateLimiter::direct_with_clock(Quota::per_minute(LOGINS_PER_MINUTE_IN_ALL), clock),
            prune_at: AtomicUsize::new(PRUNE_AT),
        }
    }

    /// Takes one attempt for `ip`, or says which limit it would pass.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), LoginRefused> {
        if self.per_address.len() >= self.prune_at.load(Ordering::Relaxed) {
            self.per_address.retain_recent();
            self.per_address.shrink_to_fit();
            let next = (self.per_address.len() * 2).clamp(PRUNE_AT, MAX_ADDRESSES);
            self.prune_at.store(next, Ordering::Relaxed);
        }
        let key = address_key(ip);
        if self.per_address.len() >= MAX_ADDRESSES {
            return Err(LoginRefused::InAll);
        }
        self.per_address
            .check_key(&key)
            .map_err(|_| LoginRefused::Address)?;
        self.all.check().map_err(|_| LoginRefused::InAll)
    }

    /// Addresses in the table.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.per_address.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn ip(i: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x7f00_0000 + i))
    }

    #[test]
    fn many_addresses_get_no_more_than_the_limit_in_all() {
        let logins = Logins::new(FakeRelativeClock::default());
        let mut ok = 0;
        for round in 0..10 {
            for i in 0..300 {
                match logins.check(ip(i)) {
                    Ok(()) => ok += 1,
                    Err(r) => assert!(round > 0 || i >= 60, "{round} {i} {r:?}"),
                }
            }
        }
        assert_eq!(ok, 60);
        assert_eq!(logins.check(ip(1)), Err(LoginRefused::Address));
    }

    #[test]
    fn the_address_table_is_pruned_and_bounded() {
        let clock = FakeRelativeClock::default();
        let logins = Logins::new(clock.clone());
        for i in 0..PRUNE_AT as u32 {
            let _ = logins.check(ip(i));
        }
        assert_eq!(logins.addresses(), PRUNE_AT);
        clock.advance(Duration::from_secs(61));
        let _ = logins.check(ip(1 << 20));
        assert_eq!(logins.addresses(), 1, "stale addresses went");
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            let _ = logins.check(ip(i));
        }
        assert_eq!(logins.addresses(), MAX_ADDRESSES);
        let v6 = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
        assert_eq!(address_key(v6(1)), address_key(v6(2)));
    }
}
