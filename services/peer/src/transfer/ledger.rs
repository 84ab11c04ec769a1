//! What this process received from whom: the downloading side credits each source (by the
//! address it was reached at, as the tracker lists it) as piece bytes arrive; the serving side
//! reads the credit of a requester that names itself by that address (see [`super::choker`]).
//!
//! Credit decays (half of it every [`HALF_LIFE`]): what counts is what a peer gave lately, as
//! BitTorrent ranks by the rate over the last 20 s, so a peer that stopped uploading long ago is
//! not served first forever.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Credit halves this often.
pub const HALF_LIFE: Duration = Duration::from_secs(20);
/// Sources remembered; beyond this the one with the least credit is forgotten first.
const MAX_ACCOUNTS: usize = 4096;

/// Bytes received per source address, decaying.
#[derive(Debug, Default)]
pub struct Ledger {
    accounts: Mutex<HashMap<String, Account>>,
}

#[derive(Debug, Clone, Copy)]
struct Account {
    /// The IP the bytes came from (what the address resolved to when we connected).
    ip: Option<IpAddr>,
    /// Decayed bytes as of `at`.
    bytes: f64,
    at: Instant,
    /// Bytes in all, never decayed: what a download's view of its sources' rates samples.
    received: u64,
}

impl Account {
    fn value(&self, now: Instant) -> f64 {
        let age = now.saturating_duration_since(self.at).as_secs_f64();
        self.bytes * (0.5f64).powf(age / HALF_LIFE.as_secs_f64())
    }
}

/// How a requester stands with this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Sent us this many bytes lately (decayed), from the IP the request comes from.
    Gave(u64),
    /// Nothing on record for the address it claims.
    Unknown,
    /// It names no address: a client that serves nothing (the CLI's standalone `get`).
    Unnamed,
    /// It claims an address we received from, but connects from another IP than the one the
    /// bytes came from: taken as a newcomer, never credited.
    Mismatch,
}

impl Ledger {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A handle that credits `address` (whose connection came from `ip`) as bytes arrive.
    pub(crate) fn source(self: &Arc<Self>, address: &str, ip: Option<IpAddr>) -> Credit {
        Credit {
            ledger: Arc::clone(self),
            address: address.to_owned(),
            ip: ip.map(|i| i.to_canonical()),
        }
    }

    pub fn credit(&self, address: &str, ip: Option<IpAddr>, n: u64, now: Instant) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        if !accounts.contains_key(address) && accounts.len() >= MAX_ACCOUNTS {
            let least = accounts
                .iter()
                .min_by(|a, b| a.1.value(now).total_cmp(&b.1.value(now)))
                .map(|(k, _)| k.clone());
            if let Some(k) = least {
                accounts.remove(&k);
            }
        }
        let a = accounts.entry(address.to_owned()).or_insert(Account {
            ip,
            bytes: 0.0,
            at: now,
            received: 0,
        });
        // The address now resolves elsewhere (a restarted pod, a new lease): the old credit was
        // another host's (the count of bytes goes on: it only ever grows).
        if ip.is_some() && a.ip != ip {
            *a = Account {
                ip,
                bytes: 0.0,
                at: now,
                received: a.received,
            };
        }
        a.bytes = a.value(now) + n as f64;
        a.at = now;
        a.received = a.received.saturating_add(n);
    }

    /// Bytes received from `address` in all (0 when none on record).
    pub(crate) fn received(&self, address: &str) -> u64 {
        let accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        accounts.get(address).map_or(0, |a| a.received)
    }

    /// The standing of a request that claims `claimed` (its advertised address) and comes
    /// from `from`.
    pub(crate) fn standing(&self, claimed: Option<&str>, from: IpAddr) -> Standing {
        self.standing_at(claimed, from, Instant::now())
    }

    pub fn standing_at(&self, claimed: Option<&str>, from: IpAddr, now: Instant) -> Standing {
        let Some(claimed) = claimed else {
            return Standing::Unnamed;
        };
        let accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        match accounts.get(claimed) {
            None => Standing::Unknown,
            Some(a) if a.ip != Some(from.to_canonical()) => Standing::Mismatch,
            Some(a) => Standing::Gave(a.value(now) as u64),
        }
    }
}

/// Credits one source for the bytes of one request.
#[derive(Debug)]
pub(crate) struct Credit {
    ledger: Arc<Ledger>,
    address: String,
    ip: Option<IpAddr>,
}

impl Credit {
    pub(crate) fn add(&self, n: u64) {
        self.ledger
            .credit(&self.address, self.ip, n, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "10.0.0.1:5000";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn credit_is_bound_to_the_ip_the_bytes_came_from() {
        let l = Ledger::new();
        let t = Instant::now();
        assert_eq!(l.standing_at(Some(A), ip("10.0.0.1"), t), Standing::Unknown);
        l.credit(A, Some(ip("10.0.0.1")), 1000, t);
        assert_eq!(
            l.standing_at(Some(A), ip("10.0.0.1"), t),
            Standing::Gave(1000)
        );
        // The same claim from another host is not the host that gave.
        assert_eq!(
            l.standing_at(Some(A), ip("10.0.0.9"), t),
            Standing::Mismatch
        );
        // IPv4 seen through an IPv6 socket is the same host.
        assert_eq!(
            l.standing_at(Some(A), ip("::ffff:10.0.0.1"), t),
            Standing::Gave(1000)
        );
        // No claim (the CLI's standalone get): unknown, whoever it is.
        assert_eq!(l.standing_at(None, ip("10.0.0.1"), t), Standing::Unnamed);
    }

    #[test]
    fn credit_decays_and_a_new_host_starts_from_nothing() {
        let l = Ledger::new();
        let t = Instant::now();
        l.credit(A, Some(ip("10.0.0.1")), 1000, t);
        let later = t + HALF_LIFE;
        assert_eq!(
            l.standing_at(Some(A), ip("10.0.0.1"), later),
            Standing::Gave(500)
        );
        l.credit(A, Some(ip("10.0.0.1")), 100, later);
        assert_eq!(
            l.standing_at(Some(A), ip("10.0.0.1"), later),
            Standing::Gave(600)
        );
        // The address moved to another host: its credit is not inherited.
        l.credit(A, Some(ip("10.0.0.2")), 10, later);
        assert_eq!(
            l.standing_at(Some(A), ip("10.0.0.2"), later),
            Standing::Gave(10)
        );
    }

    #[test]
    fn the_least_credited_source_is_forgotten_first() {
        let l = Ledger::new();
        let t = Instant::now();
        for i in 0..MAX_ACCOUNTS {
            l.credit(&format!("h{i}:1"), Some(ip("10.0.0.1")), 10 + i as u64, t);
        }
        l.credit("new:1", Some(ip("10.0.0.1")), 5, t);
        let from = ip("10.0.0.1");
        assert_eq!(l.standing_at(Some("h0:1"), from, t), Standing::Unknown);
        assert_eq!(l.standing_at(Some("h1:1"), from, t), Standing::Gave(11));
        assert_eq!(l.standing_at(Some("new:1"), from, t), Standing::Gave(5));
    }
}
