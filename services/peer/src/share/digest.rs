//! The one place that picks the hash implementations (the [`Digest`] type itself is
//! `p2p_common`'s, shared with the tracker): [`Sha256`] for a file's identity and the records
//! that hang off it (pieces are checked by SHA-256 too, as a chain: `super::chain`), and
//! [`fingerprint`] (BLAKE3) to tell blocks from different sources apart, which verifies nothing.
//!
//! Every hash in the share modules goes through these, so swapping an implementation is a
//! change to this file only. The choice is measured by `benches/hashes.rs` (see the report in
//! `docs/DESIGN.md`, "As built").

pub use p2p_common::digest::{BadDigest, Digest};

/// Incremental SHA-256 over the implementation this crate uses.
#[derive(Clone)]
pub struct Sha256(ring::digest::Context);

impl Sha256 {
    pub fn new() -> Self {
        Sha256(ring::digest::Context::new(&ring::digest::SHA256))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> Digest {
        let d = self.0.finish();
        let mut out = [0u8; 32];
        // SHA-256 output is always 32 bytes.
        out.copy_from_slice(d.as_ref());
        Digest(out)
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

/// Incremental BLAKE3, for fingerprints (3-5 times SHA-256's speed with SHA-NI here).
#[derive(Clone, Default)]
pub struct PieceHasher(blake3::Hasher);

impl PieceHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> Digest {
        Digest(*self.0.finalize().as_bytes())
    }
}

/// A fingerprint of one buffer (BLAKE3): compares the blocks of a piece that failed its check
/// with the same blocks from other sources, to tell which source sent the bad one.
pub fn fingerprint(bytes: &[u8]) -> Digest {
    let mut h = PieceHasher::new();
    h.update(bytes);
    h.finish()
}

/// SHA-256 of one buffer.
pub fn sha256(bytes: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update(bytes);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(
            sha256(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn fingerprint_is_blake3() {
        // The BLAKE3 reference vector for the empty input.
        assert_eq!(
            fingerprint(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut h = PieceHasher::new();
        for chunk in data.chunks(65_521) {
            h.update(chunk);
        }
        assert_eq!(h.finish(), fingerprint(&data));
        assert_ne!(fingerprint(&data), sha256(&data));
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut h = Sha256::new();
        for chunk in data.chunks(4093) {
            h.update(chunk);
        }
        assert_eq!(h.finish(), sha256(&data));
    }
}
