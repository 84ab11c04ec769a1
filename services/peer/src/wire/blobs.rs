//! `/blobs/{sha256}...`: bytes by digest for swarm downloads. A holder answers the manifest, its
//! bitfield and single pieces; a downloader checks each answer with the functions here.

use serde::{Deserialize, Serialize};

use crate::share::bitfield::Bitfield;
use crate::share::pieces::PieceHash;
use crate::share::{Digest, Manifest, PieceIndex, ShareError};

/// Header of `GET /blobs/{sha256}/bitfield`: the number of pieces the bits stand for.
pub const PIECES_HEADER: &str = "x-p2p-pieces";
/// Header of a bitfield answer from a holder that takes `?after=N` (the swarm's "have"): asked
/// so while it holds N pieces or fewer, it answers once it holds more, or after the seconds
/// this header gives. A holder without it answers at once and is polled instead.
pub const HAVE_WAIT_HEADER: &str = "x-p2p-have-wait";
/// How long a holder keeps a `?after=N` bitfield request waiting for a new piece.
pub const HAVE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The query of `GET /blobs/{sha256}/bitfield`: `after=N` waits for more than N pieces.
/// Other parameters are ignored, so a later downloader may add some.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct BitfieldQuery {
    pub after: Option<u32>,
}

/// Header of a refused piece (status 503): a complete holder hands out the pieces it sent
/// least first; ask for another piece, or insist.
pub(crate) const LEAST_SERVED_HEADER: &str = "x-p2p-least-served-first";
/// Header of a refused piece (status 503): the holder's upload queue is full; ask it again a
/// little later, or ask another holder.
pub(crate) const BUSY_HEADER: &str = "x-p2p-busy";
/// Header of a piece request that must be answered even if the piece went out more often than
/// others: the downloader has nothing else to ask this holder for.
pub(crate) const INSIST_HEADER: &str = "x-p2p-insist";

/// Header of a piece request from a serving peer: the address it serves at, as the tracker
/// lists it. The holder serves peers that gave it bytes lately first (`transfer::choker`); the
/// claim counts only from the IP those bytes came from.
pub(crate) const PEER_ADDR_HEADER: &str = "x-p2p-peer-addr";

/// The largest manifest a downloader reads, whatever size the file is said to have: a file of
/// 2,048 pieces (128 GiB) has a manifest of about 140 KiB; this takes files of about 60,000
/// pieces of 64 MiB (3.7 TiB). Not derived from the tracker's size: that is a claim too, and a
/// small one would refuse the honest holder's manifest.
pub(crate) const MANIFEST_LIMIT: usize = 4 << 20;

pub(crate) fn manifest_path(sha256: &Digest) -> String {
    format!("/blobs/{sha256}/manifest")
}

pub(crate) fn bitfield_path(sha256: &Digest) -> String {
    format!("/blobs/{sha256}/bitfield")
}

/// The bitfield's path asking to wait for more than `after` pieces ([`HAVE_WAIT_HEADER`]).
pub(crate) fn bitfield_after_path(sha256: &Digest, after: u32) -> String {
    format!("/blobs/{sha256}/bitfield?after={after}")
}

pub(crate) fn piece_path(sha256: &Digest, index: PieceIndex) -> String {
    format!("/blobs/{sha256}/pieces/{index}")
}

/// The body of `GET /blobs/{sha256}/manifest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestJson {
    /// The piece hash's name (`"sha256-chain"`). Absent from an older peer's manifest (SHA-256
    /// pieces), which is refused by name rather than misread. A string rather than the enum,
    /// so that an unknown name is refused with the same clear message.
    #[serde(default)]
    pub piece_hash: Option<String>,
    pub sha256: Digest,
    pub size: u64,
    pub piece_size: u64,
    pub pieces: Vec<Digest>,
    pub pieces_root: Digest,
}

impl ManifestJson {
    pub fn new(sha256: Digest, m: &Manifest) -> Self {
        Self {
            piece_hash: Some(m.piece_hash().name().to_owned()),
            sha256,
            size: m.size(),
            piece_size: m.piece_size(),
            pieces: m.digests().to_vec(),
            pieces_root: m.root(),
        }
    }

    /// The manifest it describes, checked against itself (piece hash, piece size, count, root).
    pub fn into_manifest(self) -> Result<Manifest, ShareError> {
        let piece_hash = PieceHash::from_name(self.piece_hash.as_deref())?;
        let m = Manifest::new(self.size, self.pieces)?;
        debug_assert_eq!(m.piece_hash(), piece_hash, "one piece hash is known");
        if m.piece_size() != self.piece_size {
            return Err(ShareError::BadManifest(format!(
                "piece size {} for a {}-byte file, expected {}",
                self.piece_size,
                self.size,
                m.piece_size()
            )));
        }
        m.validate(&self.sha256, Some(&self.pieces_root))?;
        Ok(m)
    }

    /// What a downloader accepts: the manifest of the file it asked for (`sha256`), consistent
    /// with itself and, when the holder announced one, with `root`. The size is the manifest's
    /// own claim: checked by the last piece (its chain ends at `sha256`), not by what the tracker said.
    pub fn check(self, sha256: &Digest, root: Option<&Digest>) -> Result<Manifest, ShareError> {
        if &self.sha256 != sha256 {
            return Err(ShareError::BadManifest(format!(
                "manifest is for {} ({} bytes), asked for {sha256}",
                self.sha256, self.size
            )));
        }
        let m = self.into_manifest()?;
        m.validate(sha256, root)?;
        Ok(m)
    }
}

/// The headers of a bitfield answer.
pub(crate) fn bitfield_headers(bits: &Bitfield) -> [(&'static str, String); 2] {
    [
        ("content-type", "application/octet-stream".to_owned()),
        (PIECES_HEADER, bits.len().to_string()),
    ]
}

/// Checks a bitfield answer's declared piece count (the header may be absent, but not
/// unreadable) against the file's, before its body is read.
pub(crate) fn check_declared_pieces(declared: Option<&str>, pieces: u32) -> Result<(), String> {
    let Some(raw) = declared else { return Ok(()) };
    match raw.trim().parse::<u32>() {
        Ok(n) if n == pieces => Ok(()),
        Ok(n) => Err(format!("bitfield of {n} pieces, the file has {pieces}")),
        Err(_) => Err(format!(
            "bitfield with {PIECES_HEADER}: {:?}, not a piece count",
            raw.chars().take(40).collect::<String>()
        )),
    }
}

/// The most a bitfield answer of a file of `pieces` pieces may hold.
pub(crate) fn bitfield_limit(pieces: u32) -> usize {
    (pieces as usize).div_ceil(8) + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::digest::sha256;

    #[test]
    fn manifest_json_round_trips_and_is_checked() {
        let d = sha256(b"piece");
        let piece = crate::share::pieces::MIN_PIECE_SIZE;
        let whole = sha256(b"whole");
        // A chain ends at the file's digest.
        let m = Manifest::new(piece + 1, vec![d, whole]).unwrap();
        let json = serde_json::to_value(ManifestJson::new(whole, &m)).unwrap();
        assert_eq!(json["sha256"], whole.to_hex());
        assert_eq!(json["size"], piece + 1);
        assert_eq!(json["piece_size"], piece);
        assert_eq!(json["pieces"][0], d.to_hex());
        assert_eq!(json["pieces_root"], m.root().to_hex());
        assert_eq!(json["piece_hash"], "sha256-chain");
        let back: ManifestJson = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back.into_manifest().unwrap(), m);
        // The same chain offered for another file's digest is refused.
        let mut other = json.clone();
        other["sha256"] = serde_json::Value::String(d.to_hex());
        let err = serde_json::from_value::<ManifestJson>(other)
            .unwrap()
            .into_manifest()
            .unwrap_err();
        assert!(
            err.to_string().contains("not at the file's SHA-256"),
            "{err}"
        );

        let mut forged = json.clone();
        forged["pieces_root"] = serde_json::Value::String(d.to_hex());
        let err = serde_json::from_value::<ManifestJson>(forged)
            .unwrap()
            .into_manifest()
            .unwrap_err();
        assert!(err.to_string().contains("pieces_root"), "{err}");
        let mut forged = json;
        forged["piece_size"] = serde_json::Value::from(8 << 20);
        let err = serde_json::from_value::<ManifestJson>(forged)
            .unwrap()
            .into_manifest()
            .unwrap_err();
        assert!(err.to_string().contains("piece size"), "{err}");
    }

    #[test]
    fn an_older_peers_manifest_is_refused_by_name() {
        let m = Manifest::new(5, vec![sha256(b"hello")]).unwrap();
        let whole = sha256(b"hello");
        let mut json = serde_json::to_value(ManifestJson::new(whole, &m)).unwrap();
        // What a peer from before issue 18 sends: no piece hash, SHA-256 pieces and a root of
        // the digests alone.
        let fields = json.as_object_mut().unwrap();
        fields.remove("piece_hash");
        fields.insert(
            "pieces".into(),
            serde_json::json!([sha256(b"hello").to_hex()]),
        );
        let old_root = sha256(sha256(b"hello").as_bytes());
        fields.insert("pieces_root".into(), old_root.to_hex().into());
        let back: ManifestJson = serde_json::from_value(json.clone()).unwrap();
        let err = back.check(&whole, Some(&old_root)).unwrap_err().to_string();
        assert!(
            err.contains("SHA-256 pieces from a p2pshare peer older"),
            "{err}"
        );
        json["piece_hash"] = "sha3".into();
        let back: ManifestJson = serde_json::from_value(json).unwrap();
        let err = back.into_manifest().unwrap_err().to_string();
        assert!(
            err.contains("\"sha3\" is not one this peer checks"),
            "{err}"
        );
    }

    #[test]
    fn a_downloader_takes_only_the_manifest_it_asked_for() {
        let m = Manifest::new(5, vec![sha256(b"hello")]).unwrap();
        let whole = sha256(b"hello");
        let json = || ManifestJson::new(whole, &m);
        assert_eq!(json().check(&whole, Some(&m.root())).unwrap(), m);
        assert_eq!(json().check(&whole, None).unwrap(), m);
        let other = sha256(b"other");
        let err = json().check(&other, None).unwrap_err();
        assert!(err.to_string().contains("asked for"), "{err}");
        let err = json().check(&whole, Some(&other)).unwrap_err();
        assert!(err.to_string().contains("pieces_root"), "{err}");
    }

    #[test]
    fn bitfield_answers_are_bounded_and_counted() {
        assert!(check_declared_pieces(None, 3).is_ok());
        assert!(check_declared_pieces(Some("3"), 3).is_ok());
        assert!(check_declared_pieces(Some("4"), 3).is_err());
        assert!(check_declared_pieces(Some("lots"), 3).is_err());
        assert!(check_declared_pieces(Some(""), 3).is_err());
        // The manifest of a 3.5 TiB file (56,000 pieces of 64 MiB) fits.
        let m = Manifest::new(56_000 << 26, vec![Digest([0xab; 32]); 56_000]).unwrap();
        let json = serde_json::to_vec(&ManifestJson::new(Digest([1; 32]), &m)).unwrap();
        assert!(json.len() <= MANIFEST_LIMIT, "{}", json.len());
        assert_eq!(bitfield_limit(0), 1);
        assert_eq!(bitfield_limit(9), 3);
        let mut b = Bitfield::new(9);
        b.set(PieceIndex(8));
        assert_eq!(bitfield_headers(&b)[1], (PIECES_HEADER, "9".to_owned()));
    }
}
