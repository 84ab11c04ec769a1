//! Pieces and manifests (DESIGN "Swarm downloads"): the piece size is a pure function of the file
//! size, so every peer derives the same piece list without talking; a manifest names its piece
//! hash ([`PieceHash`]), lists the SHA-256 chaining values at the pieces' ends (the last one is
//! the file's SHA-256 itself, see [`super::chain`]), and `pieces_root` binds them, and the
//! hash's name, to one value the tracker can carry.

use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use super::chain::Chain;
use super::digest::{Digest, Sha256};
use super::error::{ShareError, io_err};
pub use super::index::PieceIndex;

/// The smallest piece size (256 KiB, one block of a download's requests).
pub const MIN_PIECE_SIZE: u64 = 256 << 10;
/// The largest piece size (64 MiB): bounds the memory a piece in transit may need.
pub(crate) const MAX_PIECE_SIZE: u64 = 64 << 20;
/// The piece size doubles while a file would have more pieces than this.
pub(crate) const TARGET_MAX_PIECES: u64 = 1024;

/// The layout of peers before pieces were sized for the swarm (4 MiB, doubled past 2,048
/// pieces): its manifests are recognised and refused as another version, not as lies.
const LEGACY_MIN_PIECE_SIZE: u64 = 4 << 20;
const LEGACY_TARGET_MAX_PIECES: u64 = 2048;

/// Read size of the hashing pass (pieces may be smaller or larger: the pass cuts buffers at
/// piece boundaries).
const BLOCK: usize = 1 << 20;
/// Blocks in flight between the reader and the piece hasher: enough to absorb jitter, small
/// enough that the pass stays within a few MiB of memory whatever the piece size.
const BLOCKS_IN_FLIGHT: usize = 4;

/// The piece size for a file of `file_size` bytes: 256 KiB, doubled while the file would have
/// more than 1,024 pieces, at most 64 MiB.
///
/// Chosen between hosts (`scripts/bench-swarm.sh --netns`, README): a piece is what a
/// downloader can pass on once it is verified, so a swarm trades sooner and spreads its upload
/// better with many small pieces (4 MiB pieces left a 128 MiB file 32 pieces to trade among 16
/// peers, and half of their upload idle); 1,024 pieces keep a bitfield at 128 bytes and a
/// manifest at 32 KiB of digests.
pub fn piece_size(file_size: u64) -> u64 {
    doubled(file_size, MIN_PIECE_SIZE, TARGET_MAX_PIECES)
}

fn doubled(file_size: u64, min: u64, max_pieces: u64) -> u64 {
    let mut size = min;
    while size < MAX_PIECE_SIZE && file_size.div_ceil(size) > max_pieces {
        size *= 2;
    }
    size
}

/// Number of pieces of a file (an empty file has none).
pub fn piece_count(file_size: u64, piece_size: u64) -> u64 {
    file_size.div_ceil(piece_size)
}

/// How pieces are hashed, named in every manifest (on the wire and in the digest cache) so that
/// a later change is not a flag day: a manifest of a hash this peer does not know, or of none
/// (a peer from before issue 18), is refused with its name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PieceHash {
    /// The file's own SHA-256, as a chain: each manifest entry is the SHA-256 state at a
    /// piece's end, the last one the file's digest ([`super::chain`]).
    #[default]
    #[serde(rename = "sha256-chain")]
    Sha256Chain,
}

impl PieceHash {
    pub const fn name(self) -> &'static str {
        match self {
            PieceHash::Sha256Chain => "sha256-chain",
        }
    }

    /// What `pieces_root` hashes ahead of the digests: a root of one piece hash can never equal
    /// a root of another (nor an older peer's, which hashed the digests alone).
    const fn root_tag(self) -> &'static [u8] {
        match self {
            PieceHash::Sha256Chain => b"p2pshare pieces_root sha256-chain\n",
        }
    }

    /// The piece hash a manifest from elsewhere names (`None`: it names none).
    pub(crate) fn from_name(name: Option<&str>) -> Result<Self, ShareError> {
        match name {
            Some("sha256-chain") => Ok(PieceHash::Sha256Chain),
            None => Err(ShareError::OtherPieceHash(
                "it names no piece hash: SHA-256 pieces from a p2pshare peer older than this \
                 one, whose pieces this peer does not check (it checks sha256-chain)"
                    .to_owned(),
            )),
            Some("blake3") => Err(ShareError::OtherPieceHash(
                "piece hash \"blake3\": BLAKE3 pieces from a p2pshare peer older than this one, \
                 whose pieces this peer does not check (it checks sha256-chain)"
                    .to_owned(),
            )),
            Some(other) => Err(ShareError::OtherPieceHash(format!(
                "piece hash {:?} is not one this peer checks (it checks sha256-chain)",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }
}

/// A file's size, piece size, piece hash and piece digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    piece_hash: PieceHash,
    size: u64,
    piece_size: u64,
    digests: Vec<Digest>,
}

impl Manifest {
    /// A manifest for a file of `size` bytes; the piece size is derived, the digests must be
    /// exactly one per piece.
    pub fn new(size: u64, digests: Vec<Digest>) -> Result<Self, ShareError> {
        let manifest = Manifest {
            piece_hash: PieceHash::default(),
            size,
            piece_size: piece_size(size),
            digests,
        };
        manifest.check()?;
        Ok(manifest)
    }

    /// Checks a manifest that came from elsewhere (another peer, a cache): consistent with its
    /// own size, ending at the file's SHA-256 (`sha256`), and, when given, with the
    /// `pieces_root` the tracker returned for the digest.
    ///
    /// The last entry being the file's digest is what lets a chain prove the file: a manifest
    /// that ends anywhere else is refused here, before a byte of the file is asked for.
    pub(crate) fn validate(
        &self,
        sha256: &Digest,
        expected_root: Option<&Digest>,
    ) -> Result<(), ShareError> {
        self.check()?;
        match self.digests.last() {
            Some(last) if last != sha256 => {
                return Err(ShareError::BadManifest(format!(
                    "its chain ends at {last}, not at the file's SHA-256 {sha256}"
                )));
            }
            None if *sha256 != super::digest::sha256(b"") => {
                return Err(ShareError::BadManifest(format!(
                    "an empty file, whose SHA-256 is not {sha256}"
                )));
            }
            _ => {}
        }
        if let Some(want) = expected_root {
            let got = self.root();
            if &got != want {
                return Err(ShareError::BadManifest(format!(
                    "pieces_root is {got}, expected {want}"
                )));
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ShareError> {
        let want_size = piece_size(self.size);
        if self.piece_size != want_size
            && self.piece_size
                == doubled(self.size, LEGACY_MIN_PIECE_SIZE, LEGACY_TARGET_MAX_PIECES)
        {
            return Err(ShareError::OtherPieceHash(format!(
                "pieces of {} bytes for a {}-byte file: the layout of a p2pshare peer older than \
                 this one, which uses {want_size}-byte pieces for it",
                self.piece_size, self.size
            )));
        }
        if self.piece_size != want_size {
            return Err(ShareError::BadManifest(format!(
                "piece size {} for a {}-byte file, expected {want_size}",
                self.piece_size, self.size
            )));
        }
        let count = piece_count(self.size, self.piece_size);
        if count > u64::from(u32::MAX) {
            return Err(ShareError::BadManifest(format!(
                "{count} pieces is more than a piece index can address"
            )));
        }
        if self.digests.len() as u64 != count {
            return Err(ShareError::BadManifest(format!(
                "{} piece digests for {count} pieces",
                self.digests.len()
            )));
        }
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn piece_hash(&self) -> PieceHash {
        self.piece_hash
    }

    pub fn piece_size(&self) -> u64 {
        self.piece_size
    }

    pub fn digests(&self) -> &[Digest] {
        &self.digests
    }

    pub fn piece_count(&self) -> u32 {
        // `check` bounds the count by u32::MAX.
        self.digests.len() as u32
    }

    pub fn pieces(&self) -> impl Iterator<Item = PieceIndex> + use<> {
        (0..self.piece_count()).map(PieceIndex)
    }

    /// The `pieces_root`: see [`pieces_root`].
    pub fn root(&self) -> Digest {
        pieces_root(self.piece_hash, &self.digests)
    }

    /// The byte range of a piece in the file, or `None` past the last piece.
    pub fn range(&self, index: PieceIndex) -> Option<Range<u64>> {
        piece_range(self.size, self.piece_size, index)
    }

    /// Checks a piece against the manifest, the right length and the chain through it (from
    /// the value before it to the value after it; the last piece to the file's SHA-256), from
    /// its parts (its blocks, in order; or one buffer), hashed where they lie rather than
    /// copied together first. Pieces check independently: on as many threads as there are.
    pub(crate) fn verify_parts<B: AsRef<[u8]>>(
        &self,
        index: PieceIndex,
        parts: &[B],
    ) -> Result<(), ShareError> {
        let range = self.range(index).ok_or_else(|| ShareError::BadPiece {
            index,
            reason: format!("no such piece (the file has {})", self.piece_count()),
        })?;
        let len: u64 = parts.iter().map(|p| p.as_ref().len() as u64).sum();
        let want_len = range.end - range.start;
        if len != want_len {
            return Err(ShareError::BadPiece {
                index,
                reason: format!("{len} bytes, expected {want_len}"),
            });
        }
        let i = index.as_usize();
        let before = i.checked_sub(1).map(|b| &self.digests[b]);
        let mut chain = Chain::resume(before, range.start);
        for p in parts {
            chain.update(p.as_ref());
        }
        // Every piece but the last ends at a block boundary (piece sizes are multiples of 64
        // bytes, and the length was checked above).
        let digest = if i + 1 == self.digests.len() {
            chain.finish()
        } else {
            chain.value()
        };
        let want = &self.digests[i];
        if &digest != want {
            return Err(ShareError::BadPiece {
                index,
                reason: format!("{} {digest}, expected {want}", self.piece_hash.name()),
            });
        }
        Ok(())
    }
}

/// SHA-256 of the piece hash's tag followed by the concatenated raw piece digests.
pub fn pieces_root(piece_hash: PieceHash, digests: &[Digest]) -> Digest {
    let mut h = Sha256::new();
    h.update(piece_hash.root_tag());
    for d in digests {
        h.update(d.as_bytes());
    }
    h.finish()
}

/// The byte range of piece `index` of a file, or `None` past the last piece.
pub(crate) fn piece_range(
    file_size: u64,
    piece_size: u64,
    index: PieceIndex,
) -> Option<Range<u64>> {
    let start = u64::from(index.0).checked_mul(piece_size)?;
    if start >= file_size {
        return None;
    }
    Some(start..file_size.min(start + piece_size))
}

/// The result of one pass over a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    /// The whole-file SHA-256: the file's identity.
    pub sha256: Digest,
    pub manifest: Manifest,
}

/// Reads a file once and returns its whole-file SHA-256 and its manifest.
///
/// Blocking: call it from `spawn_blocking` or a thread of its own. One SHA-256 over every byte
/// gives both: the chain's value at each piece's end is the manifest, its end the digest. A
/// second thread hashes while the calling thread reads the next blocks.
pub fn hash_file(path: &Path) -> Result<Hashed, ShareError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    hash_open(file, path)
}

/// [`hash_file`] of a file the caller opened (with its own checks: no symlinks, no FIFOs);
/// `path` names it in errors.
pub(crate) fn hash_open(file: std::fs::File, path: &Path) -> Result<Hashed, ShareError> {
    let expected = file.metadata().map_err(io_err(path))?.len();
    hash_reader(file, expected).map_err(|e| match e {
        HashError::Io(source) => ShareError::Io {
            path: path.to_path_buf(),
            source,
        },
        HashError::Changed { expected, read } => ShareError::Changed {
            path: path.to_path_buf(),
            expected,
            read,
        },
    })
}

#[derive(Debug)]
enum HashError {
    Io(std::io::Error),
    Changed { expected: u64, read: u64 },
}

/// [`hash_file`] over any reader that should yield exactly `expected` bytes.
fn hash_reader(mut reader: impl Read, expected: u64) -> Result<Hashed, HashError> {
    let piece_len = piece_size(expected);
    if expected <= SMALL_FILE {
        return hash_small(reader, expected);
    }
    let (to_pieces, from_reader) = mpsc::sync_channel::<(Arc<Vec<u8>>, usize)>(BLOCKS_IN_FLIGHT);
    let (to_reader, free) = mpsc::sync_channel::<Arc<Vec<u8>>>(BLOCKS_IN_FLIGHT);
    for _ in 0..BLOCKS_IN_FLIGHT {
        // Cannot fail: the channel has room for every buffer and its receiver is alive.
        let _ = to_reader.send(Arc::new(vec![0u8; BLOCK]));
    }

    std::thread::scope(|scope| {
        let piece_hasher = scope.spawn(move || {
            let mut digests = Vec::new();
            let mut chain = Chain::new();
            let mut in_piece = 0u64;
            for (buf, len) in from_reader {
                let mut rest = &buf[..len];
                while !rest.is_empty() {
                    let take = rest.len().min((piece_len - in_piece) as usize);
                    chain.update(&rest[..take]);
                    in_piece += take as u64;
                    rest = &rest[take..];
                    if in_piece == piece_len {
                        // A piece's end is a block boundary.
                        digests.push(chain.value());
                        in_piece = 0;
                    }
                }
                // The reader may already have stopped; then the buffer is simply dropped.
                let _ = to_reader.send(buf);
            }
            // The last entry is the digest itself, whether the last piece is whole or not.
            if in_piece == 0 {
                digests.pop();
            }
            let sha256 = chain.finish();
            digests.push(sha256);
            (digests, sha256)
        });

        let mut read = 0u64;
        let result = loop {
            let Ok(mut buf) = free.recv() else {
                // The piece hasher is gone: it panicked; its join below reports that.
                break Ok(());
            };
            // The piece hasher hands each buffer back only after its last use, and this thread
            // dropped its own clone, so the buffer is unshared and this does not copy.
            let block = Arc::make_mut(&mut buf);
            let n = match fill(&mut reader, block) {
                Ok(n) => n,
                Err(e) => break Err(HashError::Io(e)),
            };
            if n == 0 {
                break Ok(());
            }
            read += n as u64;
            if read > expected {
                break Err(HashError::Changed { expected, read });
            }
            if to_pieces.send((buf, n)).is_err() {
                break Ok(());
            }
        };
        drop(to_pieces);
        let (digests, sha256) = match piece_hasher.join() {
            Ok(d) => d,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        result?;
        if read != expected {
            return Err(HashError::Changed { expected, read });
        }
        let manifest = Manifest {
            piece_hash: PieceHash::default(),
            size: read,
            piece_size: piece_len,
            digests,
        };
        debug_assert!(manifest.check().is_ok());
        Ok(Hashed { sha256, manifest })
    })
}

/// [`hash_file`] of bytes in memory, on the calling thread (tools and tests that describe a
/// file as every peer does).
pub fn hash_bytes(bytes: &[u8]) -> Hashed {
    let size = bytes.len() as u64;
    let mut chain = Chain::new();
    let mut digests: Vec<Digest> = Vec::new();
    for piece in bytes.chunks(piece_size(size) as usize) {
        chain.update(piece);
        if chain.at_boundary() {
            digests.push(chain.value());
        }
    }
    if !bytes.is_empty() && chain.at_boundary() {
        digests.pop();
    }
    let sha256 = chain.finish();
    if !bytes.is_empty() {
        digests.push(sha256);
    }
    let manifest = Manifest {
        piece_hash: PieceHash::default(),
        size,
        piece_size: piece_size(size),
        digests,
    };
    debug_assert!(manifest.check().is_ok());
    Hashed { sha256, manifest }
}

/// Files up to this size are hashed on the calling thread from one buffer of their size: a
/// share of 120,000 small files spent most of its start-up starting a hashing thread and
/// allocating its 4 MiB of blocks per file (`scripts/bench-register.sh`).
const SMALL_FILE: u64 = 64 << 10;

/// [`hash_reader`] of a file of at most [`SMALL_FILE`] bytes (one piece at most).
fn hash_small(reader: impl Read, expected: u64) -> Result<Hashed, HashError> {
    let mut bytes = Vec::with_capacity(expected as usize + 1);
    // One byte more than expected tells a file that grew from one that did not.
    reader
        .take(expected + 1)
        .read_to_end(&mut bytes)
        .map_err(HashError::Io)?;
    let read = bytes.len() as u64;
    if read != expected {
        return Err(HashError::Changed { expected, read });
    }
    let sha256 = super::digest::sha256(&bytes);
    // One piece at most: its entry is the file's digest.
    let digests = if bytes.is_empty() {
        Vec::new()
    } else {
        vec![sha256]
    };
    let manifest = Manifest {
        piece_hash: PieceHash::default(),
        size: read,
        piece_size: piece_size(read),
        digests,
    };
    debug_assert!(manifest.check().is_ok());
    Ok(Hashed { sha256, manifest })
}

/// Reads until `buf` is full or the reader ends, so that every block but the last is whole and
/// piece boundaries fall between blocks.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
