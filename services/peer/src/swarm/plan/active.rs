//! Which holders a download uses at once: proven ones by their measured rate, untried ones
//! after them, and one place that goes in turn to the others.

use std::time::Instant;

use super::{FIRST_BYTE, OPTIMISTIC_EVERY, Plan, SourceId};
use crate::share::bitfield::Bitfield;

impl<H> Plan<H> {
    /// A source that has sent nothing since its oldest running request, for [`FIRST_BYTE`] or
    /// more: it accepted the connection and keeps quiet (or is stuck), so it does not take a
    /// place among the sources in use and its blocks are asked elsewhere.
    pub(super) fn is_silent(&self, id: SourceId, now: Instant) -> bool {
        let mine = || self.requests.iter().filter(move |r| r.source == id);
        mine().next().is_some()
            && mine().all(|r| r.meter.bytes() == 0)
            && mine().any(|r| now.saturating_duration_since(r.started) >= FIRST_BYTE)
    }

    /// Sources in use, at most `max_sources`: those that delivered blocks, fastest first,
    /// before untried ones, then those whose pieces are not known yet; holders with nothing
    /// useful wait (their bitfields are still refreshed, so they come in when they have
    /// something), and silent ones ([`Plan::is_silent`]) come last.
    ///
    /// When more holders could serve than are used, the last place is an optimistic one: it
    /// goes in turn, for [`OPTIMISTIC_EVERY`] each, to a useful holder outside the others,
    /// the one tried longest ago first. Without it the first holders to deliver kept their
    /// places for the whole download in every downloader alike, and holders that came later
    /// sat idle with pieces everyone wanted (the testbed's pictures, README); with it every
    /// holder is tried, and a faster one takes the place of a slower for good.
    pub fn active(&mut self, verified: &Bitfield, now: Instant) -> Vec<SourceId> {
        let avail = self.counts.all();
        // The only known holder of a piece being put together: without it the blocks already
        // in wait for as long as it is outside (traced at 300 simulated hosts: a seed pushed
        // out by faster partial holders left pieces three quarters done for 30 s, the last
        // pieces of the whole swarm).
        let sole = |h: &Bitfield| {
            self.open
                .iter()
                .any(|(&p, o)| !o.is_complete() && h.get(p) && avail.get(p.as_usize()) == Some(&1))
        };
        let rank = |id: SourceId| {
            let s = self.source(id);
            let useful = |h: &Bitfield| h.has_any_beyond(verified);
            let proven = s.delivered > 0;
            // Faster first among proven ones (rates in bytes per second).
            let fast = std::cmp::Reverse(s.rate.map_or(0, |r| r as u64));
            let fetching = self.fetching(id) > 0;
            match &s.has {
                _ if fetching && self.is_silent(id, now) => (6, fast),
                Some(h) if sole(h) => (0, std::cmp::Reverse(u64::MAX)),
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
