//! Pieces, manifests and the hashing pass, without a network.

use super::*;
use crate::share::digest::{piece_digest, sha256};

const MIB: u64 = 1 << 20;

/// Deterministic bytes that differ from piece to piece.
fn data(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn piece_size_follows_the_contract() {
    const KIB: u64 = 1 << 10;
    assert_eq!(piece_size(0), 256 * KIB);
    assert_eq!(piece_size(1), 256 * KIB);
    // 1,024 pieces of 256 KiB = 256 MiB: still 256 KiB; one byte more doubles.
    assert_eq!(piece_size(256 * MIB), 256 * KIB);
    assert_eq!(piece_size(256 * MIB + 1), 512 * KIB);
    assert_eq!(piece_size(512 * MIB), 512 * KIB);
    assert_eq!(piece_size(1024 * MIB), MIB);
    assert_eq!(piece_size(1024 * MIB + 1), 2 * MIB);
    // Capped at 64 MiB even when that makes more than 1,024 pieces.
    assert_eq!(piece_size(64 << 30), 64 * MIB);
    assert_eq!(piece_size((64 << 30) + 1), 64 * MIB);
    assert_eq!(piece_size(u64::MAX), 64 * MIB);
    for size in [0, 1, 5 * MIB, 8192 * MIB + 1, 100 << 30, 1 << 40] {
        let p = piece_size(size);
        assert!(p.is_power_of_two() && (MIN_PIECE_SIZE..=MAX_PIECE_SIZE).contains(&p));
        assert!(p == MAX_PIECE_SIZE || piece_count(size, p) <= TARGET_MAX_PIECES);
    }
}

#[test]
fn an_older_layout_is_another_version_not_a_lie() {
    let size = 128 * MIB;
    let older = Manifest {
        piece_hash: PieceHash::Blake3,
        size,
        piece_size: 4 * MIB,
        digests: vec![piece_digest(b"x"); 32],
    };
    assert!(matches!(older.check(), Err(ShareError::OtherPieceHash(_))));
    // Any other piece size is a contradiction.
    let odd = Manifest {
        piece_size: 2 * MIB,
        digests: vec![piece_digest(b"x"); 64],
        ..older
    };
    assert!(matches!(odd.check(), Err(ShareError::BadManifest(_))));
}

#[test]
fn ranges_cover_the_file_exactly() {
    let size = 10 * MIB + 3;
    let p = 4 * MIB;
    assert_eq!(piece_count(size, p), 3);
    assert_eq!(piece_range(size, p, PieceIndex(0)), Some(0..4 * MIB));
    assert_eq!(piece_range(size, p, PieceIndex(1)), Some(4 * MIB..8 * MIB));
    assert_eq!(piece_range(size, p, PieceIndex(2)), Some(8 * MIB..size));
    assert_eq!(piece_range(size, p, PieceIndex(3)), None);
    let q = piece_size(size);
    assert_eq!(piece_count(size, q), 41);
    assert_eq!(piece_range(size, q, PieceIndex(40)), Some(40 * q..size));
    assert_eq!(piece_range(0, p, PieceIndex(0)), None);
    assert_eq!(
        piece_range(u64::MAX, p, PieceIndex(u32::MAX)),
        Some(u64::from(u32::MAX) * p..u64::from(u32::MAX) * p + p)
    );
}

fn hash_bytes(bytes: &[u8]) -> Hashed {
    hash_reader(bytes, bytes.len() as u64).unwrap()
}

#[test]
fn one_pass_matches_separate_hashes() {
    // Sizes around block and piece boundaries.
    for size in [
        0,
        1,
        BLOCK - 1,
        BLOCK,
        BLOCK + 1,
        4 * BLOCK,
        4 * BLOCK + 1,
        9 * BLOCK + 12345,
    ] {
        let bytes = data(size);
        let h = hash_bytes(&bytes);
        assert_eq!(h.sha256, sha256(&bytes), "size {size}");
        let expected: Vec<Digest> = bytes
            .chunks(piece_size(size as u64) as usize)
            .map(piece_digest)
            .collect();
        assert_eq!(h.manifest.digests(), &expected[..], "size {size}");
        assert_eq!(h.manifest.size(), size as u64);
        assert_eq!(h.manifest.piece_hash(), PieceHash::Blake3);
        assert_eq!(h.manifest.root(), pieces_root(PieceHash::Blake3, &expected));
    }
}

#[test]
fn pieces_root_is_sha256_of_the_tag_and_raw_digests() {
    let a = piece_digest(b"a");
    let b = piece_digest(b"b");
    let mut cat = b"p2pshare pieces_root blake3\n".to_vec();
    cat.extend_from_slice(a.as_bytes());
    cat.extend_from_slice(b.as_bytes());
    let root = pieces_root(PieceHash::Blake3, &[a, b]);
    assert_eq!(root, sha256(&cat));
    assert_ne!(root, pieces_root(PieceHash::Blake3, &[b, a]));
    // An older peer's root of the same digests (SHA-256 of the digests alone) differs: a
    // root names its piece hash.
    assert_ne!(root, sha256(&cat[b"p2pshare pieces_root blake3\n".len()..]));
    assert_ne!(pieces_root(PieceHash::Blake3, &[]), sha256(b""));
}

#[test]
fn a_manifest_names_its_piece_hash_and_older_ones_are_refused_by_name() {
    assert_eq!(
        PieceHash::from_name(Some("blake3")).unwrap(),
        PieceHash::Blake3
    );
    let old = PieceHash::from_name(None).unwrap_err().to_string();
    assert!(
        old.contains("SHA-256 pieces") && old.contains("older"),
        "{old}"
    );
    let odd = PieceHash::from_name(Some("md5")).unwrap_err().to_string();
    assert!(odd.contains("\"md5\"") && odd.contains("blake3"), "{odd}");
    let m = Manifest::new(5, vec![piece_digest(b"hello")]).unwrap();
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["piece_hash"], "blake3");
    // A cached manifest of an older version (no piece hash) does not parse as one.
    let mut old = json.clone();
    old.as_object_mut().unwrap().remove("piece_hash");
    assert!(serde_json::from_value::<Manifest>(old).is_err());
}

#[test]
fn hash_file_reads_a_real_file_and_reports_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let bytes = data(5 * BLOCK + 7);
    std::fs::write(&path, &bytes).unwrap();
    let h = hash_file(&path).unwrap();
    assert_eq!(h.sha256, sha256(&bytes));
    // 5 MiB + 7 bytes in pieces of 256 KiB.
    assert_eq!(h.manifest.piece_count(), 21);
    let err = hash_file(&dir.path().join("missing")).unwrap_err();
    assert!(matches!(err, ShareError::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn a_file_that_changes_length_while_hashed_is_an_error() {
    let bytes = data(3 * BLOCK);
    let shorter = hash_reader(&bytes[..], 3 * BLOCK as u64 + 10).unwrap_err();
    assert!(matches!(shorter, HashError::Changed { read, .. } if read == 3 * BLOCK as u64));
    let longer = hash_reader(&bytes[..], BLOCK as u64).unwrap_err();
    assert!(matches!(longer, HashError::Changed { expected, .. } if expected == BLOCK as u64));
}

#[test]
fn small_files_hash_as_the_threaded_pass_does() {
    for len in [0, 1, 4096, SMALL_FILE as usize, SMALL_FILE as usize + 1] {
        let bytes = data(len);
        let h = hash_reader(&bytes[..], len as u64).unwrap();
        assert_eq!(h.sha256, sha256(&bytes), "{len}");
        let want: Vec<Digest> = bytes
            .chunks(piece_size(len as u64) as usize)
            .map(super::super::digest::piece_digest)
            .collect();
        assert_eq!(
            h.manifest,
            Manifest::new(len as u64, want).unwrap(),
            "{len}"
        );
    }
    let bytes = data(100);
    let shorter = hash_reader(&bytes[..], 101).unwrap_err();
    assert!(matches!(shorter, HashError::Changed { read: 100, .. }));
    let longer = hash_reader(&bytes[..], 99).unwrap_err();
    assert!(matches!(
        longer,
        HashError::Changed {
            expected: 99,
            read: 100
        }
    ));
}

#[test]
fn read_errors_are_reported() {
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0);
            self.0 -= n;
            Ok(n)
        }
    }
    let err = hash_reader(Failing(2 * BLOCK + 5), 10 * BLOCK as u64).unwrap_err();
    assert!(matches!(err, HashError::Io(e) if e.to_string() == "disk on fire"));
}

#[test]
fn verify_parts_accepts_the_right_bytes_only() {
    // Three pieces, the last one short.
    let bytes = data(2 * MIN_PIECE_SIZE as usize + 100_000);
    let m = hash_bytes(&bytes).manifest;
    assert_eq!(m.piece_count(), 3);
    for i in m.pieces() {
        let r = m.range(i).unwrap();
        let piece = &bytes[r.start as usize..r.end as usize];
        m.verify_parts(i, &[piece]).unwrap();
    }
    let r1 = m.range(PieceIndex(1)).unwrap();
    let mut wrong = bytes[r1.start as usize..r1.end as usize].to_vec();
    wrong[12345] ^= 1;
    let err = m.verify_parts(PieceIndex(1), &[&wrong]).unwrap_err();
    assert!(err.to_string().contains("piece 1: blake3"), "{err}");
    // The right bytes of another piece are still wrong here.
    let r0 = m.range(PieceIndex(0)).unwrap();
    assert!(
        m.verify_parts(PieceIndex(1), &[&bytes[r0.start as usize..r0.end as usize]])
            .is_err()
    );
    let short = m.verify_parts(PieceIndex(2), &[&bytes[r1.start as usize..r1.end as usize]]);
    assert!(short.unwrap_err().to_string().contains("bytes, expected"));
    let r2 = m.range(PieceIndex(2)).unwrap();
    let whole = &bytes[r2.start as usize..r2.end as usize];
    let blocks: Vec<&[u8]> = whole.chunks(32 << 10).collect();
    m.verify_parts(PieceIndex(2), &blocks).unwrap();
    assert!(m.verify_parts(PieceIndex(2), &blocks[1..]).is_err());
    let none = m.verify_parts(PieceIndex(3), &[b""]).unwrap_err();
    assert!(none.to_string().contains("no such piece"), "{none}");
    let streamed = piece_digest(&bytes[r0.start as usize..r0.end as usize]);
    m.verify_digest(PieceIndex(0), r0.end - r0.start, streamed)
        .unwrap();
    assert!(
        m.verify_digest(PieceIndex(0), r0.end - r0.start - 1, streamed)
            .is_err()
    );
}

#[test]
fn manifests_are_validated() {
    let d = sha256(b"x");
    assert!(Manifest::new(0, vec![]).is_ok());
    assert!(Manifest::new(1, vec![]).is_err());
    let piece = MIN_PIECE_SIZE;
    assert!(Manifest::new(piece, vec![d]).is_ok());
    assert!(Manifest::new(piece + 1, vec![d]).is_err());
    let m = Manifest::new(piece + 1, vec![d, d]).unwrap();
    m.validate(Some(&m.root())).unwrap();
    let err = m.validate(Some(&d)).unwrap_err();
    assert!(err.to_string().contains("pieces_root"), "{err}");

    // A manifest from the wire with a piece size of its own choosing is refused.
    let json = format!(
        r#"{{"piece_hash":"blake3","size":8388608,"piece_size":8388608,"digests":["{d}"]}}"#
    );
    let forged: Manifest = serde_json::from_str(&json).unwrap();
    assert!(
        forged
            .validate(None)
            .unwrap_err()
            .to_string()
            .contains("piece size")
    );
    let round: Manifest = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(round, m);
}
