//! SHA-256 as a chain (FIPS 180-4, section 6.2): the state after each 64-byte block is
//! `compress(state, block)`, from a fixed initial value; the digest is the state after the
//! padded tail. A manifest lists the state at every piece boundary (its *chaining values*), so
//! each piece is checked on its own, from the value before it to the value after it, and the
//! last piece against the file's SHA-256 itself. Every piece checking proves the file's digest
//! without a second pass; why a manifest cannot lie and pass is in docs/DESIGN.md ("Pieces").
//!
//! `sha2`'s compression function picks SHA-NI (or AVX2) at run time, so the chain is as fast
//! as a whole-file SHA-256 on the same core, and pieces check in parallel on every core.

use super::digest::Digest;

/// SHA-256's block: pieces and piece boundaries are multiples of it.
pub const BLOCK: u64 = 64;

/// The initial state of SHA-256 (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// A SHA-256 in progress that can be started from any chaining value and read at any block
/// boundary.
#[derive(Clone)]
pub struct Chain {
    state: [u32; 8],
    /// Bytes of a block not yet complete (only the file's last piece ends inside a block).
    pending: [u8; 64],
    pending_len: usize,
    /// Bytes hashed since the start of the file (for the length in the padding).
    total: u64,
}

impl Chain {
    /// A chain at the start of a file.
    pub fn new() -> Self {
        Self::resume(None, 0)
    }

    /// A chain at byte `offset` of a file (a multiple of [`BLOCK`]), from the chaining value
    /// there (`None`: the start of the file).
    pub fn resume(value: Option<&Digest>, offset: u64) -> Self {
        debug_assert_eq!(offset % BLOCK, 0, "a chain resumes at a block boundary");
        Chain {
            state: value.map_or(IV, words),
            pending: [0; 64],
            pending_len: 0,
            total: offset,
        }
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.pending_len > 0 {
            let take = bytes.len().min(64 - self.pending_len);
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            self.pending_len += take;
            bytes = &bytes[take..];
            if self.pending_len < 64 {
                return;
            }
            sha2::block_api::compress256(&mut self.state, std::slice::from_ref(&self.pending));
            self.pending_len = 0;
        }
        let (blocks, rest) = bytes.as_chunks::<64>();
        if !blocks.is_empty() {
            sha2::block_api::compress256(&mut self.state, blocks);
        }
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// The chaining value after the last whole block: the value *here* when the bytes so far
    /// end at a block boundary, as every piece but a file's last does.
    pub fn value(&self) -> Digest {
        debug_assert_eq!(
            self.pending_len, 0,
            "a chaining value is read at a block boundary"
        );
        bytes(&self.state)
    }

    /// Whether the bytes so far end at a block boundary.
    pub fn at_boundary(&self) -> bool {
        self.pending_len == 0
    }

    /// The file's SHA-256, when the bytes so far are the whole file.
    pub fn finish(mut self) -> Digest {
        let bits = self.total.wrapping_mul(8);
        let mut tail = [0u8; 128];
        tail[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
        tail[self.pending_len] = 0x80;
        // The length takes the last 8 bytes of the tail's last block: two blocks when the
        // pending bytes leave fewer than 9.
        let len = if self.pending_len < 56 { 64 } else { 128 };
        tail[len - 8..len].copy_from_slice(&bits.to_be_bytes());
        let (blocks, _) = tail[..len].as_chunks::<64>();
        sha2::block_api::compress256(&mut self.state, blocks);
        bytes(&self.state)
    }
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

/// A chaining value as 32 bytes: the state's words big-endian, as SHA-256 writes its digest.
fn bytes(state: &[u32; 8]) -> Digest {
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    Digest(out)
}

fn words(d: &Digest) -> [u32; 8] {
    let mut state = [0u32; 8];
    for (w, b) in state.iter_mut().zip(d.as_bytes().chunks_exact(4)) {
        *w = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::digest::sha256;

    fn data(len: usize) -> Vec<u8> {
        (0..len as u32).map(|i| (i * 31 + i / 7) as u8).collect()
    }

    #[test]
    fn the_chain_is_sha256_at_every_length() {
        // Every case of the padding: empty, inside one block, 55/56/63/64 bytes, many blocks.
        for len in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 70_001] {
            let d = data(len);
            let mut c = Chain::new();
            c.update(&d);
            assert_eq!(c.finish(), sha256(&d), "length {len}");
            // Fed in odd pieces, the same.
            let mut c = Chain::new();
            for part in d.chunks(37) {
                c.update(part);
            }
            assert_eq!(c.finish(), sha256(&d), "length {len} in parts");
        }
    }

    #[test]
    fn a_chain_resumed_from_a_boundary_value_ends_at_the_same_digest() {
        let d = data(5 * 4096 + 100);
        let mut whole = Chain::new();
        whole.update(&d[..3 * 4096]);
        assert!(whole.at_boundary());
        let value = whole.value();
        let mut resumed = Chain::resume(Some(&value), 3 * 4096);
        resumed.update(&d[3 * 4096..]);
        assert_eq!(resumed.finish(), sha256(&d));
        // From any other value, or with another offset (the length in the padding), not.
        let mut other = value;
        other.0[31] ^= 1;
        let mut wrong = Chain::resume(Some(&other), 3 * 4096);
        wrong.update(&d[3 * 4096..]);
        assert_ne!(wrong.finish(), sha256(&d));
        let mut shifted = Chain::resume(Some(&value), 2 * 4096);
        shifted.update(&d[3 * 4096..]);
        assert_ne!(shifted.finish(), sha256(&d));
        let mut c = Chain::new();
        c.update(&d[..100]);
        assert!(!c.at_boundary());
    }
}
