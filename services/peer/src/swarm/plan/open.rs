//! Pieces split into blocks: the geometry (which bytes a block is) and the pieces being put
//! together from blocks that may come from several sources.

use std::ops::Range;
use std::time::Instant;

use super::super::picker::SourceId;
use crate::share::{Digest, PieceIndex};

/// Where the blocks of each piece lie. Pieces are the unit of verification; blocks are the
/// unit of a request, so one piece can come from several sources at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub size: u64,
    pub piece_size: u64,
    pub block: u64,
}

impl Geometry {
    pub fn new(size: u64, piece_size: u64, block: u64) -> Self {
        Geometry {
            size,
            piece_size: piece_size.max(1),
            block: block.clamp(1, piece_size.max(1)),
        }
    }

    pub fn piece_len(&self, piece: PieceIndex) -> u64 {
        let start = u64::from(piece.0) * self.piece_size;
        self.size.saturating_sub(start).min(self.piece_size)
    }

    pub fn blocks(&self, piece: PieceIndex) -> u32 {
        self.piece_len(piece).div_ceil(self.block).max(1) as u32
    }

    /// The bytes of `block` within its piece.
    pub fn block_range(&self, piece: PieceIndex, block: u32) -> Range<u64> {
        let len = self.piece_len(piece);
        let start = (u64::from(block) * self.block).min(len);
        start..(start + self.block).min(len)
    }
}

/// What a bad piece put together from several sources was made of: who sent each block and
/// the digest of what they sent. When a copy of the piece later verifies, the blocks that
/// differ name the senders that lied, and only them.
#[derive(Debug, Clone)]
pub(crate) struct Suspect {
    pub senders: Vec<SourceId>,
    pub digests: Vec<Digest>,
}

impl Suspect {
    /// The senders of the blocks whose digests differ from the verified copy's.
    pub(crate) fn liars(&self, good: &[Digest]) -> Vec<SourceId> {
        let mut liars: Vec<SourceId> = self
            .senders
            .iter()
            .zip(&self.digests)
            .zip(good)
            .filter(|((_, bad), good)| bad != good)
            .map(|((s, _), _)| *s)
            .collect();
        liars.sort();
        liars.dedup();
        liars
    }
}

/// A piece some of whose blocks are asked for or in.
#[derive(Debug)]
pub(crate) struct Open {
    /// Per block, the source whose copy was taken (`None`: not in yet).
    pub got: Vec<Option<SourceId>>,
    /// Every block is in and the piece is being checked.
    pub checking: bool,
    /// A copy made of several sources' blocks failed: this piece comes from one source alone
    /// now (`Some` once that source is chosen), and `suspect` names who lied once it verifies.
    pub solo: Option<Option<SourceId>>,
    pub suspect: Option<Suspect>,
    /// When its first block was asked for.
    pub opened: Instant,
}

impl Open {
    pub(crate) fn new(blocks: u32, now: Instant) -> Self {
        Open {
            opened: now,
            got: vec![None; blocks as usize],
            checking: false,
            solo: None,
            suspect: None,
        }
    }

    pub(crate) fn received(&self) -> usize {
        self.got.iter().filter(|g| g.is_some()).count()
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.got.iter().all(Option::is_some)
    }

    /// The sources whose blocks make up the piece.
    pub(crate) fn senders(&self) -> Vec<SourceId> {
        let mut s: Vec<SourceId> = self.got.iter().flatten().copied().collect();
        s.sort();
        s.dedup();
        s
    }

    /// Whether `src` may be asked for blocks of this piece.
    pub(crate) fn admits(&self, src: SourceId) -> bool {
        match self.solo {
            None | Some(None) => true,
            Some(Some(s)) => s == src,
        }
    }

    /// Starts over (after a bad copy): nothing is in.
    pub(crate) fn reset(&mut self) {
        self.got.iter_mut().for_each(|g| *g = None);
        self.checking = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_each_piece_exactly() {
        let g = Geometry::new(10 * 1024 + 100, 4096, 1000);
        assert_eq!(g.piece_len(PieceIndex(0)), 4096);
        assert_eq!(g.piece_len(PieceIndex(2)), 2148);
        assert_eq!(g.blocks(PieceIndex(0)), 5);
        assert_eq!(g.blocks(PieceIndex(2)), 3);
        for p in 0..3 {
            let p = PieceIndex(p);
            let mut next = 0;
            for b in 0..g.blocks(p) {
                let r = g.block_range(p, b);
                assert_eq!(r.start, next);
                assert!(r.end > r.start);
                next = r.end;
            }
            assert_eq!(next, g.piece_len(p));
        }
        // A block larger than the piece is the piece.
        let g = Geometry::new(100, 64, 1 << 20);
        assert_eq!(g.blocks(PieceIndex(0)), 1);
        assert_eq!(g.block_range(PieceIndex(1), 0), 0..36);
    }

    #[test]
    fn liars_are_the_senders_of_blocks_that_differ() {
        let d = |b: u8| Digest([b; 32]);
        let s = Suspect {
            senders: vec![SourceId(0), SourceId(1), SourceId(0), SourceId(2)],
            digests: vec![d(1), d(9), d(3), d(4)],
        };
        assert_eq!(s.liars(&[d(1), d(2), d(3), d(4)]), vec![SourceId(1)]);
        assert!(s.liars(&[d(1), d(9), d(3), d(4)]).is_empty());
    }
}
