//! How many sources hold each piece, kept true as sources change instead of counted again on
//! every round of handing out blocks: that recount walked every source's bitfield each time
//! and was over half of the simulator's time at 200 hosts (`perf`, issue 26). Every change to
//! a source that the counts depend on goes through `Plan::change`.

use crate::share::bitfield::Bitfield;

#[derive(Debug)]
pub(super) struct Counts {
    /// Per piece: live sources whose bitfield is known (complete holders: everything) and
    /// holds it.
    all: Vec<u32>,
    /// Per piece: the same among live partial holders that have delivered a block.
    partial: Vec<u32>,
    /// How many sources `partial` counts.
    partial_sources: usize,
}

impl Counts {
    pub(super) fn new(pieces: u32) -> Self {
        Counts {
            all: vec![0; pieces as usize],
            partial: vec![0; pieces as usize],
            partial_sources: 0,
        }
    }

    /// Per piece, how many live sources are known to hold it.
    pub(super) fn all(&self) -> &[u32] {
        &self.all
    }

    /// Per piece, how many live partial holders that delivered a block hold it; `None` while
    /// there is no such holder.
    pub(super) fn partial(&self) -> Option<&[u32]> {
        (self.partial_sources > 0).then_some(&self.partial[..])
    }

    /// A source's part goes from `before` to `after` (what it holds, and whether it counts as a
    /// partial holder that delivered): when only its pieces change (the usual case, a "have"),
    /// only the pieces that differ are touched.
    pub(super) fn replace(
        &mut self,
        before: (Option<&Bitfield>, bool),
        after: (Option<&Bitfield>, bool),
    ) {
        match (before, after) {
            ((Some(old), was), (Some(new), is)) if was == is && old.len() == new.len() => {
                for i in old.differing(new) {
                    let add = new.get(i);
                    let step = |c: &mut u32| *c = if add { *c + 1 } else { c.saturating_sub(1) };
                    if let Some(c) = self.all.get_mut(i.as_usize()) {
                        step(c);
                    }
                    if is && let Some(c) = self.partial.get_mut(i.as_usize()) {
                        step(c);
                    }
                }
            }
            _ => {
                self.apply(before.0, before.1, false);
                self.apply(after.0, after.1, true);
            }
        }
    }

    /// Counts (`add`) or uncounts a source that holds `has` (`None`: not known, or dropped);
    /// `partial`: a partial holder that has delivered a block.
    pub(super) fn apply(&mut self, has: Option<&Bitfield>, partial: bool, add: bool) {
        let Some(has) = has else {
            return;
        };
        let step = |c: &mut u32| *c = if add { *c + 1 } else { c.saturating_sub(1) };
        if partial {
            if add {
                self.partial_sources += 1;
            } else {
                self.partial_sources = self.partial_sources.saturating_sub(1);
            }
        }
        for i in has.ones() {
            let i = i.as_usize();
            if let Some(c) = self.all.get_mut(i) {
                step(c);
            }
            if partial && let Some(c) = self.partial.get_mut(i) {
                step(c);
            }
        }
    }
}
