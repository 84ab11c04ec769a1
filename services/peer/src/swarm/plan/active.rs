//! Which holders a download uses at once: proven ones by their measured rate, untried ones
//! after them, and one place that goes in turn to the others.

use std::time::Instant;

use super::{FIRST_BYTE, OPTIMISTIC_EVERY, Plan, SourceId};
use crate::share::bitfield::Bitfield;

impl<H> Plan<H> {
    /// What each source has running, in one pass over the requests (a pass per source was
    /// most of the simulator's time at 10,000 hosts, where a download knows hundreds).
    fn running(&self, now: Instant) -> Vec<Running> {
        let mut running = vec![Running::default(); self.sources.len()];
        for r in &self.requests {
            let run = &mut running[r.source.0 as usize];
            run.count += 1;
            run.sent |= r.meter.bytes() > 0;
            run.old |= now.saturating_duration_since(r.started) >= FIRST_BYTE;
        }
        running
    }

    #[cfg(test)]
    pub(super) fn is_silent(&self, id: SourceId, now: Instant) -> bool {
        self.running(now)[id.0 as usize].silent()
    }

    /// Sources in use, at most `max_sources`: those that delivered blocks, fastest first,
    /// before untried ones, then those whose pieces are not known yet; holders with nothing
    /// useful wait (their bitfields are still refreshed, so they come in when they have
    /// something), and silent ones ([`Running::silent`]) come last.
    ///
    /// When more holders could serve than are used, the last place is an optimistic one: it
    /// goes in turn, for [`OPTIMISTIC_EVERY`] each, to a useful holder outside the others,
    /// the one tried longest ago first. Without it the first holders to deliver kept their
    /// places for the whole download in every downloader alike, and holders that came later
    /// sat idle with pieces everyone wanted (the testbed's pictures, README); with it every
    /// holder is tried, and a faster one takes the place of a slower for good.
    pub fn active(&mut self, verified: &Bitfield, now: Instant) -> Vec<SourceId> {
        let avail = self.counts.all();
        // The pieces being put together whose only known holder is one source: without it the
        // blocks already in wait for as long as it is outside (traced at 300 simulated hosts: a
        // seed pushed out by faster partial holders left pieces three quarters done for 30 s,
        // the last pieces of the whole swarm).
        let sole: Vec<_> = self
            .open
            .iter()
            .filter(|&(&p, o)| !o.is_complete() && avail.get(p.as_usize()) == Some(&1))
            .map(|(&p, _)| p)
            .collect();
        let running = self.running(now);
        let rank = |id: SourceId| {
            let s = self.source(id);
            let useful = |h: &Bitfield| h.has_any_beyond(verified);
            let proven = s.delivered > 0;
            // Faster first among proven ones (rates in bytes per second).
            let fast = std::cmp::Reverse(s.rate.map_or(0, |r| r as u64));
            let run = running[id.0 as usize];
            let fetching = run.count > 0;
            match &s.has {
                _ if run.silent() => (6, fast),
                Some(h) if sole.iter().any(|&p| h.get(p)) => (0, std::cmp::Reverse(u64::MAX)),
                _ if fetching && proven => (0, fast),
                Some(h) if useful(h) && proven => (0, fast),
                _ if fetching => (2, fast),
                Some(h) if useful(h) => (3, fast),
                None => (4, fast),
                Some(_) => (5, fast),
            }
        };
        // Stable: holders of one rank keep their (random) order. Each rank is read once: a
        // source's meters move under the sort (its fetches run on other threads), and a key
        // that changes mid-sort is not an order.
        let mut ranked: Vec<((u8, std::cmp::Reverse<u64>), SourceId)> = self
            .ids()
            .filter(|&i| !self.source(i).dropped)
            .map(|i| (rank(i), i))
            .collect();
        ranked.sort_by_key(|&(r, _)| r);
        let max = self.tuning.max_sources.max(1);
        // Holders that could serve: proven, untried or not yet known.
        let able = ranked.iter().filter(|(r, _)| r.0 <= 4).count();
        if able <= max || max < 2 {
            ranked.truncate(max);
            return ranked.into_iter().map(|(_, i)| i).collect();
        }
        let mut chosen: Vec<SourceId> = ranked[..max - 1].iter().map(|&(_, i)| i).collect();
        let outside = &ranked[max - 1..able];
        let kept = self.optimistic.filter(|&(id, since)| {
            now.saturating_duration_since(since) < OPTIMISTIC_EVERY
                && outside.iter().any(|&(_, i)| i == id)
        });
        let pick = match kept {
            Some((id, _)) => id,
            None => {
                let id = outside
                    .iter()
                    .map(|&(_, i)| i)
                    .min_by_key(|&i| self.source(i).optimistic_at)
                    .unwrap_or(ranked[max - 1].1);
                self.optimistic = Some((id, now));
                self.source_mut(id).optimistic_at = Some(now);
                id
            }
        };
        chosen.push(pick);
        chosen
    }
}

/// A source's running requests, as [`Plan::active`] reads them.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Running {
    count: u32,
    /// Any of them has received a byte.
    sent: bool,
    /// Any of them started [`FIRST_BYTE`] ago or more.
    old: bool,
}

impl Running {
    /// It has sent nothing since its oldest running request, for [`FIRST_BYTE`] or more: it
    /// accepted the connection and keeps quiet (or is stuck), so it does not take a place
    /// among the sources in use and its blocks are asked elsewhere.
    fn silent(&self) -> bool {
        self.count > 0 && !self.sent && self.old
    }
}
