//! A host's serving state: its upload slots and who waits for one, its ledger, its
//! super-seeding counts (the origin only) and the downloaders waiting on `?after=N`.

use std::time::Duration;

use p2p_peer::serving::{self, Class, Ledger, Seeding, Slots};
use p2p_peer::swarm::core::SourceId;

/// A downloader waiting on `?after=N` for news of this holder.
pub(crate) struct HaveWait {
    pub from: u32,
    pub src: SourceId,
    pub after: u32,
    pub deadline: Duration,
}

/// One host's serving state.
pub(crate) struct Serving {
    pub held: Slots,
    pub waiting: Vec<(u64, Class)>,
    pub ledger: Ledger,
    pub seeding: Option<Seeding>,
    pub waits: Vec<HaveWait>,
    /// The paced classes' budget (bytes per second; infinite when there is none).
    pub newcomer_rate: f64,
}

impl Serving {
    pub(crate) fn new(seeding: Option<Seeding>, slots: usize, up: f64) -> Self {
        Serving {
            held: Slots {
                cap: slots,
                ..Slots::default()
            },
            waiting: Vec::new(),
            ledger: Ledger::default(),
            seeding,
            waits: Vec::new(),
            newcomer_rate: serving::newcomer_rate(up as u64, slots)
                .map_or(f64::INFINITY, |r| r as f64),
        }
    }

    pub(crate) fn classes(&self) -> Vec<Class> {
        self.waiting.iter().map(|w| w.1).collect()
    }
}
