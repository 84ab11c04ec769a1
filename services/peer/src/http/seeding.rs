//! Upload policy, super-seeding: a complete holder hands out the pieces it has sent least before sending any
//! piece again. When many peers fetch one file at once they all start from the seed, and each
//! one alone cannot see what the seed is already sending to the others; the seed can. A piece
//! it has sent more often than its least-sent piece is refused with a hint ("least served
//! first"), and the downloader asks for another piece, or for the same one again with
//! [`crate::wire::blobs::INSIST_HEADER`] when it has nothing else to ask this holder for, which is always answered.
//! So the seed's upload goes to pieces the swarm does not have yet, and the peers trade the rest.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::share::{Digest, Manifest, PieceIndex};

/// Digests whose counts are kept; beyond this the oldest counts are forgotten (they only steer
/// which pieces go first, so forgetting them costs nothing but a little duplication).
const MAX_FILES: usize = 256;

/// How much of each piece of each file this process sent.
#[derive(Debug, Default)]
pub struct Seeding {
    files: Mutex<HashMap<Digest, Counts>>,
}

#[derive(Debug)]
struct Counts {
    /// Bytes sent per piece.
    sent: Vec<u64>,
    /// Last use, for forgetting the oldest file first.
    tick: u64,
}

impl Seeding {
    /// Whether `bytes` of piece `index` (a block of it, or all of it) are sent now; if so they
    /// are counted. A piece is in its n-th round once part of its n-th copy went out; a piece
    /// in a later round than the least-sent one is refused unless the request insists (the
    /// downloader is already taking that piece from here, or has nothing else to ask for).
    pub fn admit(
        &self,
        sha256: &Digest,
        manifest: &Manifest,
        index: PieceIndex,
        bytes: u64,
        insist: bool,
    ) -> bool {
        let pieces = manifest.piece_count() as usize;
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let tick = files.values().map(|c| c.tick).max().unwrap_or(0) + 1;
        if !files.contains_key(sha256)
            && files.len() >= MAX_FILES
            && let Some(oldest) = files.iter().min_by_key(|(_, c)| c.tick).map(|(d, _)| *d)
        {
            files.remove(&oldest);
        }
        let counts = files.entry(*sha256).or_insert_with(|| Counts {
            sent: vec![0; pieces],
            tick,
        });
        counts.tick = tick;
        if counts.sent.len() != pieces {
            counts.sent = vec![0; pieces];
        }
        let round = |i: usize| {
            let len = manifest
                .range(PieceIndex(i as u32))
                .map_or(1, |r| (r.end - r.start).max(1));
            counts.sent[i].div_ceil(len)
        };
        let Some(mine) = (index.as_usize() < pieces).then(|| round(index.as_usize())) else {
            return true;
        };
        let least = (0..pieces).map(round).min().unwrap_or(0);
        if mine > least && !insist {
            return false;
        }
        let sent = &mut counts.sent[index.as_usize()];
        *sent = sent.saturating_add(bytes);
        true
    }

    /// `bytes` of piece `index` counted by [`Seeding::admit`] were not sent after all (the
    /// upload slots were busy): they no longer count.
    pub fn unsent(&self, sha256: &Digest, index: PieceIndex, bytes: u64) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sent) = files
            .get_mut(sha256)
            .and_then(|c| c.sent.get_mut(index.as_usize()))
        {
            *sent = sent.saturating_sub(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::digest::sha256;

    const PIECE: u64 = crate::share::pieces::MIN_PIECE_SIZE;

    /// A manifest of `pieces` pieces of [`PIECE`] (the digests do not matter here).
    fn manifest(pieces: u32) -> Manifest {
        let size = u64::from(pieces) * PIECE;
        Manifest::new(size, vec![sha256(b"x"); pieces as usize]).unwrap()
    }

    #[test]
    fn every_piece_goes_out_once_before_any_goes_twice() {
        let s = Seeding::default();
        let (d, m) = (sha256(b"file"), manifest(3));
        assert!(s.admit(&d, &m, PieceIndex(0), PIECE, false));
        assert!(
            !s.admit(&d, &m, PieceIndex(0), PIECE, false),
            "sent twice before 1 and 2"
        );
        assert!(s.admit(&d, &m, PieceIndex(1), PIECE, false));
        assert!(s.admit(&d, &m, PieceIndex(2), PIECE, false));
        // A round is complete: any piece may go again, once per round.
        assert!(s.admit(&d, &m, PieceIndex(0), PIECE, false));
        assert!(!s.admit(&d, &m, PieceIndex(0), PIECE, false));
        // Insisting is always answered (and counted).
        assert!(s.admit(&d, &m, PieceIndex(0), PIECE, true));
        // Files are counted apart; an index past the end is not this module's to refuse.
        assert!(s.admit(&sha256(b"other"), &m, PieceIndex(0), PIECE, false));
        assert!(s.admit(&d, &m, PieceIndex(7), PIECE, false));
    }

    #[test]
    fn a_piece_started_in_blocks_is_in_its_round_until_others_catch_up() {
        let s = Seeding::default();
        let (d, m) = (sha256(b"file"), manifest(2));
        let block = PIECE / 16;
        assert!(s.admit(&d, &m, PieceIndex(0), block, false));
        // Another downloader is sent elsewhere; the one taking piece 0 insists and goes on.
        assert!(!s.admit(&d, &m, PieceIndex(0), block, false));
        for _ in 1..16 {
            assert!(s.admit(&d, &m, PieceIndex(0), block, true));
        }
        assert!(s.admit(&d, &m, PieceIndex(1), block, false));
        // Both started: piece 0 may go again.
        assert!(s.admit(&d, &m, PieceIndex(0), block, false));
    }

    #[test]
    fn a_piece_not_sent_after_all_goes_back_to_its_round() {
        let s = Seeding::default();
        let (d, m) = (sha256(b"file"), manifest(2));
        assert!(s.admit(&d, &m, PieceIndex(0), PIECE, false));
        s.unsent(&d, PieceIndex(0), PIECE);
        // Piece 0 counts as never sent: it may go before piece 1.
        assert!(s.admit(&d, &m, PieceIndex(0), PIECE, false));
        assert!(!s.admit(&d, &m, PieceIndex(0), PIECE, false));
        // Unknown files and pieces are no-ops.
        s.unsent(&sha256(b"other"), PieceIndex(0), PIECE);
        s.unsent(&d, PieceIndex(9), PIECE);
    }

    #[test]
    fn the_oldest_file_is_forgotten_first() {
        let s = Seeding::default();
        let m = manifest(2);
        let first = sha256(b"0");
        assert!(s.admit(&first, &m, PieceIndex(0), PIECE, false));
        for i in 1..=MAX_FILES as u32 {
            assert!(s.admit(&sha256(&i.to_le_bytes()), &m, PieceIndex(0), PIECE, false));
        }
        assert_eq!(s.files.lock().unwrap().len(), MAX_FILES);
        // Forgotten: piece 0 counts as never sent.
        assert!(s.admit(&first, &m, PieceIndex(0), PIECE, false));
        assert!(!s.admit(&first, &m, PieceIndex(0), PIECE, false));
    }
}
