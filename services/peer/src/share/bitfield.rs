//! The record of which pieces of a file are verified: in memory, on the wire, and on disk.
//!
//! On disk a bitfield names the file digest and piece count it belongs to and carries a checksum,
//! so a torn, stale or foreign file is never taken for progress: a resume point must only ever
//! cover bytes that were verified.

use std::io::Write;
use std::path::Path;

use super::digest::{Digest, sha256};
use super::error::{ShareError, io_err};
use super::index::PieceIndex;

/// Pieces verified, one bit each. Bit `i` is bit `7 - i % 8` of byte `i / 8` (most significant
/// first, as BitTorrent does), so the wire form reads left to right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitfield {
    len: u32,
    bits: Vec<u8>,
    ones: u32,
}

impl Bitfield {
    /// No pieces verified, out of `len`.
    pub fn new(len: u32) -> Self {
        Bitfield {
            len,
            bits: vec![0; byte_len(len)],
            ones: 0,
        }
    }

    /// Every piece verified (what a complete file's holder serves).
    pub fn full(len: u32) -> Self {
        let mut b = Self::new(len);
        for i in 0..len {
            b.set(PieceIndex(i));
        }
        b
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pieces set.
    pub fn count(&self) -> u32 {
        self.ones
    }

    pub fn is_complete(&self) -> bool {
        self.ones == self.len
    }

    /// Whether piece `i` is set; pieces past the end are not.
    pub fn get(&self, i: PieceIndex) -> bool {
        i.0 < self.len && self.bits[i.as_usize() / 8] & mask(i) != 0
    }

    /// Sets piece `i`; returns whether it was newly set. Pieces past the end are ignored (false).
    pub fn set(&mut self, i: PieceIndex) -> bool {
        if i.0 >= self.len || self.get(i) {
            return false;
        }
        self.bits[i.as_usize() / 8] |= mask(i);
        self.ones += 1;
        true
    }

    /// The pieces set in one of this and `other` but not both (both of one length).
    pub fn differing<'a>(&'a self, other: &'a Bitfield) -> impl Iterator<Item = PieceIndex> + 'a {
        let len = self.len.min(other.len);
        self.bits
            .iter()
            .zip(&other.bits)
            .enumerate()
            .filter(|&(_, (a, b))| a != b)
            .flat_map(|(at, (a, b))| pieces_in(at, a ^ b))
            .take_while(move |&i| i < len)
            .map(PieceIndex)
    }

    /// Whether this has a piece `other` lacks (a piece past `other`'s end counts as lacked
    /// there). Eight bytes at a time: the plan asks it of every known holder at each schedule.
    pub fn has_any_beyond(&self, other: &Bitfield) -> bool {
        if self.ones == 0 {
            return false;
        }
        // More pieces than `other` holds: one of them is not among its pieces.
        if self.ones > other.ones {
            return true;
        }
        let shared = self.bits.len().min(other.bits.len());
        let (mine, rest) = self.bits.split_at(shared);
        if rest.iter().any(|&b| b != 0) {
            return true;
        }
        let theirs = &other.bits[..shared];
        let words = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
        let (m8, t8) = (mine.chunks_exact(8), theirs.chunks_exact(8));
        let (m_tail, t_tail) = (m8.remainder(), t8.remainder());
        m8.zip(t8).any(|(m, t)| words(m) & !words(t) != 0)
            || m_tail.iter().zip(t_tail).any(|(m, t)| m & !t != 0)
    }

    pub fn ones(&self) -> impl Iterator<Item = PieceIndex> + '_ {
        self.set_bits(0)
    }

    pub fn zeros(&self) -> impl Iterator<Item = PieceIndex> + '_ {
        self.set_bits(0xff)
    }

    /// The pieces whose bit differs from `flip`'s, a byte at a time: bytes with nothing to
    /// give are skipped whole (the scheduler walks these on every block it hands out, and a
    /// bit-by-bit walk was most of the simulator's time at 1,000 hosts).
    fn set_bits(&self, flip: u8) -> impl Iterator<Item = PieceIndex> + '_ {
        let len = self.len;
        self.bits
            .iter()
            .enumerate()
            .filter(move |&(_, &b)| b ^ flip != 0)
            .flat_map(move |(at, &b)| pieces_in(at, b ^ flip))
            .take_while(move |&i| i < len)
            .map(PieceIndex)
    }

    /// The compact wire form: `ceil(len / 8)` bytes, spare bits zero.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Parses the wire form of a bitfield of `len` pieces (the length comes from the manifest).
    pub(crate) fn from_bytes(len: u32, bytes: &[u8]) -> Result<Self, ShareError> {
        if bytes.len() != byte_len(len) {
            return Err(ShareError::BadBitfield(format!(
                "{} bytes for {len} pieces, expected {}",
                bytes.len(),
                byte_len(len)
            )));
        }
        let spare = (byte_len(len) * 8) as u64 - u64::from(len);
        if let Some(last) = bytes.last()
            && spare > 0
            && last & ((1u8 << spare) - 1) != 0
        {
            return Err(ShareError::BadBitfield(format!(
                "bits set past piece {len}"
            )));
        }
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Ok(Bitfield {
            len,
            bits: bytes.to_vec(),
            ones,
        })
    }
}

fn byte_len(len: u32) -> usize {
    (len as usize).div_ceil(8)
}

/// The pieces whose bits are set in `bits`, byte `at` of a bitfield, in order (piece 8k is
/// the byte's high bit: the wire form, as BitTorrent's).
fn pieces_in(at: usize, bits: u8) -> impl Iterator<Item = u32> {
    let mut rest = bits;
    std::iter::from_fn(move || {
        if rest == 0 {
            return None;
        }
        let bit = rest.leading_zeros();
        rest &= !(0x80 >> bit);
        Some(at as u32 * 8 + bit)
    })
}

fn mask(i: PieceIndex) -> u8 {
    0x80 >> (i.0 % 8)
}

/// File format: magic, version, the key it belongs to (the claim's `pieces_root`, see
/// `PartialFile::record_key`), piece count (u32 LE), the wire-form bits, then the SHA-256 of
/// everything before it. Version 1 was keyed by the file's digest, with BLAKE3 pieces.
const MAGIC: &[u8; 8] = b"P2PBITF\0";
const VERSION: u8 = 2;
const HEADER: usize = MAGIC.len() + 1 + Digest::LEN + 4;

fn encode(digest: &Digest, field: &Bitfield) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + field.bits.len() + Digest::LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(digest.as_bytes());
    out.extend_from_slice(&field.len.to_le_bytes());
    out.extend_from_slice(&field.bits);
    let sum = sha256(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Decodes a persisted bitfield; the error says why it is not trusted.
fn decode(bytes: &[u8], digest: &Digest, piece_count: u32) -> Result<Bitfield, String> {
    if bytes.len() < HEADER + Digest::LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a bitfield file".into());
    }
    let (body, sum) = bytes.split_at(bytes.len() - Digest::LEN);
    if sha256(body).as_bytes() != sum {
        return Err("checksum mismatch (torn or corrupted write)".into());
    }
    let version = body[MAGIC.len()];
    if version != VERSION {
        return Err(format!(
            "format version {version}, this peer reads {VERSION}"
        ));
    }
    let mut at = MAGIC.len() + 1;
    let mut file_digest = [0u8; 32];
    file_digest.copy_from_slice(&body[at..at + Digest::LEN]);
    let file_digest = Digest(file_digest);
    if &file_digest != digest {
        return Err(format!("belongs to {file_digest}, not {digest}"));
    }
    at += Digest::LEN;
    let mut count = [0u8; 4];
    count.copy_from_slice(&body[at..at + 4]);
    let count = u32::from_le_bytes(count);
    if count != piece_count {
        return Err(format!("{count} pieces, the manifest has {piece_count}"));
    }
    Bitfield::from_bytes(count, &body[HEADER..]).map_err(|e| e.to_string())
}

/// Writes the bitfield of `digest` to `path` atomically: a temporary file in the same directory,
/// fsynced, renamed over the old one, and the directory fsynced, so a crash leaves either the
/// old record or the new one.
pub fn save(path: &Path, digest: &Digest, field: &Bitfield) -> Result<(), ShareError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".bitfield-")
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    tmp.write_all(&encode(digest, field))
        .map_err(io_err(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
    tmp.persist(path).map_err(|e| ShareError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Reads the bitfield of `digest` (a file of `piece_count` pieces) from `path`. `Ok(None)` when
/// there is none; an error when there is one that cannot be trusted (corrupt, another version,
/// another file, another piece count).
pub fn load(
    path: &Path,
    digest: &Digest,
    piece_count: u32,
) -> Result<Option<Bitfield>, ShareError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    decode(&bytes, digest, piece_count)
        .map(Some)
        .map_err(|reason| ShareError::UntrustedBitfield {
            path: path.to_path_buf(),
            reason,
        })
}

/// [`load`] for resuming: a record that cannot be read or trusted is logged and treated as no
/// progress, so the pieces are fetched (and verified) again rather than believed.
pub(crate) fn load_or_empty(path: &Path, digest: &Digest, piece_count: u32) -> Bitfield {
    match load(path, digest, piece_count) {
        Ok(Some(b)) => b,
        Ok(None) => Bitfield::new(piece_count),
        Err(e) => {
            tracing::warn!(error = %e, "starting from no verified pieces");
            Bitfield::new(piece_count)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: u32, every: u32) -> Bitfield {
        let mut b = Bitfield::new(len);
        for i in (0..len).step_by(every as usize) {
            assert!(b.set(PieceIndex(i)));
        }
        b
    }

    /// One piece held and lacked is found wherever it sits (in a word of eight bytes or in
    /// the bytes after the last whole word), against a field as long or shorter.
    #[test]
    fn has_any_beyond_finds_one_piece_anywhere() {
        for len in [1, 63, 64, 65, 130, 200] {
            for at in 0..len {
                let mut one = Bitfield::new(len);
                one.set(PieceIndex(at));
                let mut all_but = Bitfield::new(len);
                (0..len).filter(|&i| i != at).for_each(|i| {
                    all_but.set(PieceIndex(i));
                });
                assert!(one.has_any_beyond(&all_but), "{len} {at}");
                assert!(!one.has_any_beyond(&Bitfield::full(len)), "{len} {at}");
                let shorter = Bitfield::full(at);
                assert!(
                    one.has_any_beyond(&shorter),
                    "{len} {at}: past the other's end"
                );
            }
        }
    }

    /// The byte-at-a-time walk gives exactly the pieces `get` says, in order, for lengths on
    /// and off byte boundaries (spare bits of the last byte never show as missing pieces).
    #[test]
    fn ones_and_zeros_agree_with_get() {
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000] {
            for every in [1, 2, 3, 5, 8, 13] {
                let b = sample(len, every);
                let by_bit = |want: bool| -> Vec<PieceIndex> {
                    (0..len)
                        .map(PieceIndex)
                        .filter(|&i| b.get(i) == want)
                        .collect()
                };
                assert_eq!(b.ones().collect::<Vec<_>>(), by_bit(true), "{len} {every}");
                assert_eq!(
                    b.zeros().collect::<Vec<_>>(),
                    by_bit(false),
                    "{len} {every}"
                );
            }
            let b = sample(len, 3);
            assert_eq!(
                b.has_any_beyond(&sample(len, 6)),
                b.ones().any(|i| !sample(len, 6).get(i)),
                "{len}"
            );
            assert!(!b.has_any_beyond(&b), "{len}");
            assert!(!b.has_any_beyond(&Bitfield::full(len)), "{len}");
            assert_eq!(b.has_any_beyond(&Bitfield::new(len)), b.count() > 0);
            assert_eq!(Bitfield::full(len).zeros().count(), 0);
            assert_eq!(Bitfield::full(len).ones().count(), len as usize);
            assert_eq!(Bitfield::new(len).zeros().count(), len as usize);
        }
    }

    #[test]
    fn set_get_count() {
        let mut b = Bitfield::new(10);
        assert_eq!((b.len(), b.count(), b.is_complete()), (10, 0, false));
        assert!(b.set(PieceIndex(0)));
        assert!(!b.set(PieceIndex(0)), "setting twice is not new");
        assert!(b.set(PieceIndex(9)));
        assert!(!b.set(PieceIndex(10)), "past the end");
        assert!(b.get(PieceIndex(0)) && b.get(PieceIndex(9)));
        assert!(!b.get(PieceIndex(1)) && !b.get(PieceIndex(10)));
        assert_eq!(b.count(), 2);
        assert_eq!(b.ones().collect::<Vec<_>>(), [PieceIndex(0), PieceIndex(9)]);
        assert_eq!(b.zeros().count(), 8);
        assert!(Bitfield::full(10).is_complete());
        assert!(Bitfield::new(0).is_complete());
    }

    #[test]
    fn wire_form_is_msb_first_and_round_trips() {
        let b = sample(10, 3); // pieces 0, 3, 6, 9
        assert_eq!(b.as_bytes(), &[0b1001_0010, 0b0100_0000]);
        assert_eq!(Bitfield::from_bytes(10, b.as_bytes()).unwrap(), b);
        for len in [0, 1, 7, 8, 9, 2049] {
            let b = sample(len, 2);
            assert_eq!(Bitfield::from_bytes(len, b.as_bytes()).unwrap(), b);
        }
    }

    #[test]
    fn wire_form_rejects_wrong_length_and_spare_bits() {
        let err = Bitfield::from_bytes(10, &[0]).unwrap_err();
        assert!(err.to_string().contains("1 bytes for 10 pieces"), "{err}");
        assert!(Bitfield::from_bytes(10, &[0, 0, 0]).is_err());
        let err = Bitfield::from_bytes(10, &[0, 0b0010_0000]).unwrap_err();
        assert!(err.to_string().contains("past piece 10"), "{err}");
        assert!(
            Bitfield::from_bytes(16, &[0xff, 0xff])
                .unwrap()
                .is_complete()
        );
    }

    #[test]
    fn persisted_round_trip_and_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bitfield");
        let digest = sha256(b"file");
        assert_eq!(load(&path, &digest, 100).unwrap(), None);
        let b = sample(100, 7);
        save(&path, &digest, &b).unwrap();
        assert_eq!(load(&path, &digest, 100).unwrap(), Some(b.clone()));
        let mut more = b.clone();
        more.set(PieceIndex(1));
        save(&path, &digest, &more).unwrap();
        assert_eq!(load(&path, &digest, 100).unwrap(), Some(more));
        // Nothing but the record is left in the directory.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn untrusted_records_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bitfield");
        let digest = sha256(b"file");
        let b = sample(100, 3);
        save(&path, &digest, &b).unwrap();
        let good = std::fs::read(&path).unwrap();

        let reason = |bytes: &[u8], digest: &Digest, count: u32| {
            std::fs::write(&path, bytes).unwrap();
            let err = load(&path, digest, count).unwrap_err();
            assert!(matches!(err, ShareError::UntrustedBitfield { .. }));
            err.to_string()
        };
        assert!(reason(&good, &sha256(b"other"), 100).contains("belongs to"));
        assert!(reason(&good, &digest, 101).contains("101"));
        let mut flipped = good.clone();
        flipped[HEADER + 2] ^= 0x10;
        assert!(reason(&flipped, &digest, 100).contains("checksum"));
        assert!(reason(&good[..good.len() - 1], &digest, 100).contains("checksum"));
        assert!(reason(b"hello", &digest, 100).contains("not a bitfield"));
        // Another format version (with a valid checksum) is not guessed at: a future one, or
        // version 1, whose records were of BLAKE3 pieces.
        for other in [1u8, 3] {
            let mut v = good[..good.len() - Digest::LEN].to_vec();
            v[MAGIC.len()] = other;
            let sum = sha256(&v);
            v.extend_from_slice(sum.as_bytes());
            assert!(reason(&v, &digest, 100).contains(&format!("version {other}")));
        }

        // Resuming from an untrusted record starts from nothing.
        std::fs::write(&path, &flipped).unwrap();
        assert_eq!(load_or_empty(&path, &digest, 100), Bitfield::new(100));
        std::fs::write(&path, &good).unwrap();
        assert_eq!(load_or_empty(&path, &digest, 100), b);
    }

    #[test]
    fn save_into_a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/x.bitfield");
        let err = save(&path, &sha256(b"f"), &Bitfield::new(3)).unwrap_err();
        assert!(matches!(err, ShareError::Io { .. }), "{err}");
    }
}
