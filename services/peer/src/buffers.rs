//! Data-path buffers kept for the next use. Buffers of a block's size (256 KiB) are past
//! glibc's threshold for fresh mappings, so a new one per block cost page faults and the
//! kernel's zeroing each time: a tenth of the serving peer's CPU under `perf` (issue 27).
//! Used for the serving side's reads; the receiving side's blocks were tried too and gave no
//! difference `bench-transfer.sh` could tell from noise, so they are allocated as before.

use std::sync::Mutex;

/// A bounded set of kept buffers: at most `keep` of them, none larger than `size` bytes (so
/// that what is kept is bounded by `keep * size`); more in use at once are allocated and freed.
#[derive(Debug)]
pub(crate) struct Buffers {
    kept: Mutex<Vec<Vec<u8>>>,
    keep: usize,
    size: usize,
}

impl Buffers {
    pub(crate) const fn new(keep: usize, size: usize) -> Self {
        Buffers {
            kept: Mutex::new(Vec::new()),
            keep,
            size,
        }
    }

    /// A kept buffer, holding what its last user left in it; `None` when none is kept.
    pub(crate) fn take(&self) -> Option<Vec<u8>> {
        self.kept.lock().ok()?.pop()
    }

    /// Keeps `buf` for a later [`Buffers::take`], or frees it when enough are kept (or it is
    /// empty, or larger than the set's size).
    pub(crate) fn give(&self, buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > self.size {
            return;
        }
        if let Ok(mut kept) = self.kept.lock()
            && kept.len() < self.keep
        {
            kept.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_its_bound_and_hands_back_what_it_kept() {
        let b = Buffers::new(2, 4);
        assert!(b.take().is_none());
        b.give(Vec::new());
        b.give(vec![9; 5]);
        assert!(b.take().is_none(), "an empty or too large buffer was kept");
        for i in 0..3u8 {
            b.give(vec![i; 4]);
        }
        let mut got = [b.take(), b.take(), b.take()];
        got.sort();
        assert_eq!(got, [None, Some(vec![0; 4]), Some(vec![1; 4])]);
    }
}
