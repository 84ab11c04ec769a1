//! Pieces, manifests and the hashing pass, without a network.

use super::*;
use crate::share::chain::Chain;
use crate::share::digest::sha256;

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
        piece_hash: PieceHash::Sha256Chain,
        size,
        piece_size: 4 * MIB,
        digests: vec![sha256(b"x"); 32],
    };
    assert!(matches!(older.check(), Err(ShareError::OtherPieceHash(_))));
    // Any other piece size is a contradiction.
    let odd = Manifest {
        piece_size: 2 * MIB,
        digests: vec![sha256(b"x"); 64],
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
        assert_chain_of(&h.manifest, &bytes);
        assert_eq!(h.manifest.size(), size as u64);
        assert_eq!(h.manifest.piece_hash(), PieceHash::Sha256Chain);
    }
}

/// Every entry of `m` is the real SHA-256 state at its piece's end: resumed from it, a chain
/// over the rest of the file ends at the file's SHA-256 (computed by another implementation);
/// the last entry is that digest.
fn assert_chain_of(m: &Manifest, bytes: &[u8]) {
    let want = sha256(bytes);
    assert_eq!(
        m.piece_count() as u64,
        piece_count(bytes.len() as u64, m.piece_size())
    );
    for (i, value) in m.digests().iter().enumerate() {
        let end = m.range(PieceIndex(i as u32)).unwrap().end as usize;
        if end == bytes.len() {
            assert_eq!(*value, want, "the last entry is the file's digest");
        } else {
            let mut c = Chain::resume(Some(value), end as u64);
            c.update(&bytes[end..]);
            assert_eq!(c.finish(), want, "entry {i} of {}", bytes.len());
        }
    }
}

#[test]
fn pieces_root_is_sha256_of_the_tag_and_raw_digests() {
    let a = sha256(b"a");
    let b = sha256(b"b");
    let tag = b"p2pshare pieces_root sha256-chain\n";
    let mut cat = tag.to_vec();
    cat.extend_from_slice(a.as_bytes());
    cat.extend_from_slice(b.as_bytes());
    let root = pieces_root(PieceHash::Sha256Chain, &[a, b]);
    assert_eq!(root, sha256(&cat));
    assert_ne!(root, pieces_root(PieceHash::Sha256Chain, &[b, a]));
    // An older peer's root of the same digests (SHA-256 of the digests alone) differs: a
    // root names its piece hash.
    assert_ne!(root, sha256(&cat[tag.len()..]));
    assert_ne!(pieces_root(PieceHash::Sha256Chain, &[]), sha256(b""));
}

#[test]
fn a_manifest_names_its_piece_hash_and_older_ones_are_refused_by_name() {
    assert_eq!(
        PieceHash::from_name(Some("sha256-chain")).unwrap(),
        PieceHash::Sha256Chain
    );
    let old = PieceHash::from_name(None).unwrap_err().to_string();
    assert!(
        old.contains("SHA-256 pieces") && old.contains("older"),
        "{old}"
    );
    let blake = PieceHash::from_name(Some("blake3"))
        .unwrap_err()
        .to_string();
    assert!(
        blake.contains("BLAKE3") && blake.contains("older"),
        "{blake}"
    );
    let odd = PieceHash::from_name(Some("md5")).unwrap_err().to_string();
    assert!(
        odd.contains("\"md5\"") && odd.contains("sha256-chain"),
        "{odd}"
    );
    let m = Manifest::new(5, vec![sha256(b"hello")]).unwrap();
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["piece_hash"], "sha256-chain");
    // A cached manifest of BLAKE3 pieces does not parse as one either.
    let mut blake = json.clone();
    blake["piece_hash"] = "blake3".into();
    assert!(serde_json::from_value::<Manifest>(blake).is_err());
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
        // At most one piece: its entry is the file's digest.
        let want = if len == 0 {
            vec![]
        } else {
            vec![sha256(&bytes)]
        };
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
    assert!(err.to_string().contains("piece 1: sha256-chain"), "{err}");
    // A changed last piece, or a last piece checked as if the file were longer, fails too.
    let r2 = m.range(PieceIndex(2)).unwrap();
    let mut tail = bytes[r2.start as usize..r2.end as usize].to_vec();
    *tail.last_mut().unwrap() ^= 1;
    assert!(m.verify_parts(PieceIndex(2), &[&tail]).is_err());
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
}

/// A manifest that ends at the file's digest but whose chain is fake before that (values of
/// other bytes, or a fake value just before the last piece) cannot pass with any bytes at the
/// piece where it meets the real chain; the real bytes pass everywhere else it is real.
#[test]
fn a_chain_fake_in_the_middle_fails_where_it_meets_the_real_one() {
    let bytes = data(6 * MIN_PIECE_SIZE as usize + 777);
    let real = hash_bytes(&bytes).manifest;
    let mut other = bytes.clone();
    other[..3 * MIN_PIECE_SIZE as usize].fill(7);
    let fake_prefix = hash_bytes(&other).manifest;
    // The first three values from other bytes, the rest real (so it still ends at the digest).
    let mut values = real.digests().to_vec();
    values[..3].copy_from_slice(&fake_prefix.digests()[..3]);
    let forged = Manifest::new(bytes.len() as u64, values).unwrap();
    forged.validate(&sha256(&bytes), None).unwrap();
    let piece = |b: &[u8], i: u32| {
        let r = real.range(PieceIndex(i)).unwrap();
        b[r.start as usize..r.end as usize].to_vec()
    };
    // The liar's own bytes pass before the meeting point...
    for i in 0..3 {
        forged
            .verify_parts(PieceIndex(i), &[piece(&other, i)])
            .unwrap();
    }
    // ... the meeting point passes with neither the liar's bytes nor the real ones...
    assert!(
        forged
            .verify_parts(PieceIndex(3), &[piece(&other, 3)])
            .is_err()
    );
    assert!(
        forged
            .verify_parts(PieceIndex(3), &[piece(&bytes, 3)])
            .is_err()
    );
    // ... and after it the real bytes pass under both.
    for i in 4..7 {
        forged
            .verify_parts(PieceIndex(i), &[piece(&bytes, i)])
            .unwrap();
        real.verify_parts(PieceIndex(i), &[piece(&bytes, i)])
            .unwrap();
    }
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
    m.validate(&d, Some(&m.root())).unwrap();
    let err = m.validate(&d, Some(&sha256(b"y"))).unwrap_err();
    assert!(err.to_string().contains("pieces_root"), "{err}");
    // A chain that does not end at the file's digest is refused before any piece.
    let err = m.validate(&sha256(b"y"), None).unwrap_err();
    assert!(
        err.to_string().contains("not at the file's SHA-256"),
        "{err}"
    );
    let empty = Manifest::new(0, vec![]).unwrap();
    empty.validate(&sha256(b""), None).unwrap();
    assert!(empty.validate(&d, None).is_err());

    // A manifest from the wire with a piece size of its own choosing is refused.
    let json = format!(
        r#"{{"piece_hash":"sha256-chain","size":8388608,"piece_size":8388608,"digests":["{d}"]}}"#
    );
    let forged: Manifest = serde_json::from_str(&json).unwrap();
    assert!(
        forged
            .validate(&d, None)
            .unwrap_err()
            .to_string()
            .contains("piece size")
    );
    let round: Manifest = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(round, m);
}
