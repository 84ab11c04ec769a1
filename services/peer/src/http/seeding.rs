//! Upload policy, super-seeding: a complete holder hands out the pieces it has sent least before sending any
//! piece again. When many peers fetch one file at once they all start from the seed, and each
//! one alone cannot see what the seed is already sending to the others; the seed can. A piece
//! it has sent more often than its least-sent piece is refused with a hint ("least served
//! first"), and the downloader asks for another piece, or for the same one again with
//! [`crate::wire::blobs::INSIST_HEADER`] when it has nothing else to ask this holder for, which is always answered.
//! So the seed's upload goes to pieces the swarm does not have yet, and the peers trade the rest.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::share::{Digest, PieceIndex};

/// Digests whose counts are kept; beyond this the oldest counts are forgotten (they only steer
/// which pieces go first, so forgetting them costs nothing but a little duplication).
const MAX_FILES: usize = 256;

/// How often each piece of each file was sent by this process.
#[derive(Debug, Default)]
pub(crate) struct Seeding {
    files: Mutex<HashMap<Digest, Counts>>,
}

#[derive(Debug)]
struct Counts {
    sent: Vec<u32>,
    /// Last use, for forgetting the oldest file first.
    tick: u64,
}

impl Seeding {
    /// Whether piece `index` of a file of `pieces` pieces is sent now; if so it is counted.
    /// Refused only when another piece has been sent fewer times and the request does not
    /// insist.
    pub(crate) fn admit(
        &self,
        sha256: &Digest,
        pieces: u32,
        index: PieceIndex,
        insist: bool,
    ) -> bool {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let tick = files.values().map(|c| c.tick).max().unwrap_or(0) + 1;
        if !files.contains_key(sha256) && files.len() >= MAX_FILES {
            if let Some(oldest) = files.iter().min_by_key(|(_, c)| c.tick).map(|(d, _)| *d) {
                files.remove(&oldest);
            }
        }
        let counts = files.entry(*sha256).or_insert_with(|| Counts {
            sent: vec![0; pieces as usize],
            tick,
        });
        counts.tick = tick;
        if counts.sent.len() != pieces as usize {
            counts.sent = vec![0; pieces as usize];
        }
        let Some(&mine) = counts.sent.get(index.as_usize()) else {
            return true;
        };
        let least = counts.sent.iter().copied().min().unwrap_or(0);
        if mine > least && !insist {
            return false;
        }
        counts.sent[index.as_usize()] = mine.saturating_add(1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::digest::sha256;

    #[test]
    fn every_piece_goes_out_once_before_any_goes_twice() {
        let s = Seeding::default();
        let d = sha256(b"file");
        assert!(s.admit(&d, 3, PieceIndex(0), false));
        assert!(
            !s.admit(&d, 3, PieceIndex(0), false),
            "sent twice before 1 and 2"
        );
        assert!(s.admit(&d, 3, PieceIndex(1), false));
        assert!(s.admit(&d, 3, PieceIndex(2), false));
        // A round is complete: any piece may go again, once per round.
        assert!(s.admit(&d, 3, PieceIndex(0), false));
        assert!(!s.admit(&d, 3, PieceIndex(0), false));
        // Insisting is always answered (and counted).
        assert!(s.admit(&d, 3, PieceIndex(0), true));
        // Files are counted apart; an index past the end is not this module's to refuse.
        assert!(s.admit(&sha256(b"other"), 3, PieceIndex(0), false));
        assert!(s.admit(&d, 3, PieceIndex(7), false));
    }

    #[test]
    fn the_oldest_file_is_forgotten_first() {
        let s = Seeding::default();
        let first = sha256(b"0");
        assert!(s.admit(&first, 2, PieceIndex(0), false));
        for i in 1..=MAX_FILES as u32 {
            assert!(s.admit(&sha256(&i.to_le_bytes()), 2, PieceIndex(0), false));
        }
        assert_eq!(s.files.lock().unwrap().len(), MAX_FILES);
        // Forgotten: piece 0 counts as never sent.
        assert!(s.admit(&first, 2, PieceIndex(0), false));
        assert!(!s.admit(&first, 2, PieceIndex(0), false));
    }
}
