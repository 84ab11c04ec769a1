//! What the tracker agrees to hold, in all and per source address (issue 28): peers, index
//! entries (files and partial holdings) and bytes of file names. The store keeps the data; this
//! table keeps, per live peer, the address it registered from and what it holds, so a Register
//! or Announce that would pass a bound is refused before the store sees it.
//!
//! Entries count exactly what a peer registered; an Announce is counted from above (every added
//! name as new, capped at `entries x 255` bytes), so no claim of a removal can lower a count.
//! With several replicas on one Redis each replica counts the peers whose calls it answered.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use p2p_common::names::MAX_FILE_NAME_BYTES;

/// The bounds; 0 in a per-address bound means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    pub max_peers: usize,
    pub max_entries: usize,
    pub max_name_bytes: u64,
    pub max_peers_per_address: usize,
    pub max_entries_per_address: usize,
    pub max_name_bytes_per_address: u64,
}

impl Default for QuotaLimits {
    fn default() -> Self {
        Self {
            max_peers: 100_000,
            max_entries: 1_000_000,
            max_name_bytes: 128 << 20,
            max_peers_per_address: 256,
            max_entries_per_address: 200_000,
            max_name_bytes_per_address: 32 << 20,
        }
    }
}

/// Which bound a refused call would have passed: the `reason` label of
/// `p2p_tracker_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Peers,
    Entries,
    NameBytes,
    PeersPerAddress,
    EntriesPerAddress,
    NameBytesPerAddress,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::Peers,
        Refusal::Entries,
        Refusal::NameBytes,
        Refusal::PeersPerAddress,
        Refusal::EntriesPerAddress,
        Refusal::NameBytesPerAddress,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::Peers => "peers",
            Refusal::Entries => "files",
            Refusal::NameBytes => "name_bytes",
            Refusal::PeersPerAddress => "peers_per_address",
            Refusal::EntriesPerAddress => "files_per_address",
            Refusal::NameBytesPerAddress => "name_bytes_per_address",
        }
    }

    /// The config key that sets the bound.
    pub fn key(self) -> &'static str {
        match self {
            Refusal::Peers => "registry.max_peers",
            Refusal::Entries => "registry.max_files",
            Refusal::NameBytes => "registry.max_name_bytes",
            Refusal::PeersPerAddress => "registry.max_peers_per_address",
            Refusal::EntriesPerAddress => "registry.max_files_per_address",
            Refusal::NameBytesPerAddress => "registry.max_name_bytes_per_address",
        }
    }
}

impl Refusal {
    /// What a refused client is told: the bound, its key, and its own address.
    pub fn message(self, l: &QuotaLimits, src: Option<IpAddr>) -> String {
        let (what, limit) = match self {
            Refusal::Peers => ("peers in all", l.max_peers as u64),
            Refusal::Entries => ("files in all", l.max_entries as u64),
            Refusal::NameBytes => ("bytes of file names in all", l.max_name_bytes),
            Refusal::PeersPerAddress => ("peers from one address", l.max_peers_per_address as u64),
            Refusal::EntriesPerAddress => {
                ("files from one address", l.max_entries_per_address as u64)
            }
            Refusal::NameBytesPerAddress => (
                "bytes of file names from one address",
                l.max_name_bytes_per_address,
            ),
        };
        let from = src.map(|a| format!(" ({a})")).unwrap_or_default();
        format!(
            "the tracker holds at most {limit} {what}{from} ({}); nothing was written",
            self.key()
        )
    }
}

/// What one peer holds, as counted here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Use {
    pub addr: Option<IpAddr>,
    pub entries: usize,
    pub name_bytes: u64,
    pub expires_at_ms: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    peers: usize,
    entries: usize,
    name_bytes: u64,
}

impl Sum {
    fn add(&mut self, u: &Use) {
        self.peers += 1;
        self.entries += u.entries;
        self.name_bytes += u.name_bytes;
    }

    fn sub(&mut self, u: &Use) {
        self.peers = self.peers.saturating_sub(1);
        self.entries = self.entries.saturating_sub(u.entries);
        self.name_bytes = self.name_bytes.saturating_sub(u.name_bytes);
    }
}

#[derive(Default)]
struct Table {
    peers: HashMap<String, Use>,
    by_addr: HashMap<IpAddr, Sum>,
    total: Sum,
}

impl Table {
    fn take(&mut self, id: &str) -> Option<Use> {
        let old = self.peers.remove(id)?;
        self.total.sub(&old);
        if let Some(addr) = old.addr
            && let Some(sum) = self.by_addr.get_mut(&addr)
        {
            sum.sub(&old);
            if sum.peers == 0 {
                self.by_addr.remove(&addr);
            }
        }
        Some(old)
    }

    fn put(&mut self, id: &str, u: Use) {
        self.total.add(&u);
        if let Some(addr) = u.addr {
            self.by_addr.entry(addr).or_default().add(&u);
        }
        self.peers.insert(id.to_owned(), u);
    }
}

/// The most name bytes `entries` entries can hold.
pub fn name_bytes_cap(entries: usize) -> u64 {
    entries as u64 * MAX_FILE_NAME_BYTES as u64
}

pub struct Quota {
    limits: QuotaLimits,
    table: Mutex<Table>,
}

impl Quota {
    pub fn new(limits: QuotaLimits) -> Self {
        Self {
            limits,
            table: Mutex::default(),
        }
    }

    pub fn limits(&self) -> &QuotaLimits {
        &self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every method leaves the table consistent before anything that could panic.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What `id` holds now, as counted here.
    pub fn get(&self, id: &str) -> Option<Use> {
        self.lock().peers.get(id).copied()
    }

    /// Counts `id` as holding `new` instead of what it held, if no bound is passed; returns
    /// what it held before (for [`Quota::restore`] if the store then refuses).
    pub fn admit(&self, id: &str, new: Use) -> Result<Option<Use>, Refusal> {
        let l = &self.limits;
        let mut t = self.lock();
        let old = t.take(id);
        let per = new.addr.and_then(|a| t.by_addr.get(&a)).copied();
        let per = per.unwrap_or_default();
        let over = |n: u64, limit: u64| limit != 0 && n > limit;
        let refusal = if t.total.peers + 1 > l.max_peers {
            Some(Refusal::Peers)
        } else if t.total.entries + new.entries > l.max_entries {
            Some(Refusal::Entries)
        } else if t.total.name_bytes + new.name_bytes > l.max_name_bytes {
            Some(Refusal::NameBytes)
        } else if new.addr.is_some() && over(per.peers as u64 + 1, l.max_peers_per_address as u64) {
            Some(Refusal::PeersPerAddress)
        } else if new.addr.is_some()
            && over(
                (per.entries + new.entries) as u64,
                l.max_entries_per_address as u64,
            )
        {
            Some(Refusal::EntriesPerAddress)
        } else if new.addr.is_some()
            && over(
                per.name_bytes + new.name_bytes,
                l.max_name_bytes_per_address,
            )
        {
            Some(Refusal::NameBytesPerAddress)
        } else {
            None
        };
        match refusal {
            Some(r) => {
                if let Some(old) = old {
                    t.put(id, old);
                }
                Err(r)
            }
            None => {
                t.put(id, new);
                Ok(old)
            }
        }
    }

    /// Puts back what [`Quota::admit`] replaced.
    pub fn restore(&self, id: &str, old: Option<Use>) {
        let mut t = self.lock();
        t.take(id);
        if let Some(old) = old {
            t.put(id, old);
        }
    }

    /// Sets what `id` holds after the store applied a change (never more than admitted).
    pub fn settle(&self, id: &str, entries: usize, name_bytes: u64) {
        let mut t = self.lock();
        if let Some(mut u) = t.take(id) {
            u.entries = entries;
            u.name_bytes = name_bytes.min(u.name_bytes);
            t.put(id, u);
        }
    }

    pub fn renew(&self, id: &str, expires_at_ms: u64) {
        if let Some(u) = self.lock().peers.get_mut(id) {
            u.expires_at_ms = expires_at_ms;
        }
    }

    pub fn forget(&self, id: &str) {
        self.lock().take(id);
    }

    /// Forgets every peer whose lease (as last seen here) ended before `before_ms`: peers
    /// another replica swept, or renewed, out of this one's sight.
    pub fn purge(&self, before_ms: u64) {
        let mut t = self.lock();
        let stale: Vec<String> = t
            .peers
            .iter()
            .filter(|(_, u)| u.expires_at_ms < before_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            t.take(&id);
        }
        if t.peers.is_empty() {
            // Give the tables' memory back with their last peer.
            *t = Table::default();
        }
    }

    /// (peers, entries, name bytes) counted here.
    #[cfg(test)]
    pub fn totals(&self) -> (usize, usize, u64) {
        let t = self.lock();
        (t.total.peers, t.total.entries, t.total.name_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(addr: u8, entries: usize, name_bytes: u64) -> Use {
        Use {
            addr: Some(IpAddr::from([10, 0, 0, addr])),
            entries,
            name_bytes,
            expires_at_ms: 1000,
        }
    }

    #[test]
    fn bounds_in_all_and_per_address() {
        let q = Quota::new(QuotaLimits {
            max_peers: 4,
            max_entries: 100,
            max_name_bytes: 1000,
            max_peers_per_address: 2,
            max_entries_per_address: 50,
            max_name_bytes_per_address: 400,
        });
        assert!(q.admit("a", used(1, 10, 100)).is_ok());
        assert!(q.admit("b", used(1, 10, 100)).is_ok());
        assert_eq!(q.admit("c", used(1, 1, 1)), Err(Refusal::PeersPerAddress));
        // Re-admitting a peer replaces what it held.
        assert!(q.admit("b", used(1, 40, 300)).is_ok());
        assert_eq!(
            q.admit("b", used(1, 41, 1)),
            Err(Refusal::EntriesPerAddress)
        );
        assert_eq!(
            q.admit("b", used(1, 1, 301)),
            Err(Refusal::NameBytesPerAddress)
        );
        assert_eq!(q.totals(), (2, 50, 400), "a refusal leaves the count alone");
        assert!(q.admit("c", used(2, 50, 10)).is_ok());
        assert_eq!(q.admit("d", used(3, 1, 1)), Err(Refusal::Entries));
        assert!(q.admit("d", used(3, 0, 0)).is_ok());
        assert_eq!(q.admit("e", used(4, 0, 0)), Err(Refusal::Peers));
        q.forget("d");
        q.purge(2000);
        assert_eq!(q.totals(), (0, 0, 0));
        assert!(q.admit("e", used(4, 0, 0)).is_ok());
    }
}
