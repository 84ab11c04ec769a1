//! Where the tracker's wire messages meet its typed values. Digests arrive as hex strings and
//! become [`Digest`]s here, once, refused with the field names and messages peers have always
//! seen; answers go back out as hex. Past this module nothing in the tracker holds a digest as
//! a string (the Redis store's own encoding aside).

use p2p_common::Digest;
use p2p_common::names::NameError;
use p2p_common::proto::{
    FileInfo, FileMatch, GetPeersByDigestResponse, ListPeersResponse, PeerInfo,
};

use crate::peer_list::PeerPage;
use crate::registry::{Page, RegistryError};
use crate::store::{Announcement, DigestHolders, FileEntry, Holder, PartialEntry};

fn bad_digest(field: &'static str) -> RegistryError {
    RegistryError::BadName {
        field,
        source: NameError::BadDigest,
    }
}

pub(crate) fn digest(field: &'static str, hex: &str) -> Result<Digest, RegistryError> {
    hex.parse().map_err(|_| bad_digest(field))
}

/// A pieces_root is optional on the wire: peers that do not split files send "".
fn root(hex: &str) -> Result<Option<Digest>, RegistryError> {
    Digest::parse_optional(hex).map_err(|_| bad_digest("pieces_root"))
}

pub(crate) fn files(infos: Vec<FileInfo>) -> Result<Vec<FileEntry>, RegistryError> {
    infos
        .into_iter()
        .map(|f| {
            Ok(FileEntry {
                sha256: digest("sha256", &f.sha256)?,
                pieces_root: root(&f.pieces_root)?,
                name: f.name,
                size: f.size,
            })
        })
        .collect()
}

/// Partial holdings are keyed by digest; the name a peer may send with one is ignored. A
/// missing root is left for the registry to refuse (its rule, with its message).
fn partial_entries(infos: Vec<FileInfo>) -> Result<Vec<PartialEntry>, RegistryError> {
    infos
        .into_iter()
        .map(|f| {
            Ok(PartialEntry {
                sha256: digest("partial sha256", &f.sha256)?,
                size: f.size,
                pieces_root: root(&f.pieces_root)?,
            })
        })
        .collect()
}

/// The parts of an AnnounceRequest, parsed in the order the registry checks them.
pub(crate) fn announcement(
    added: Vec<FileInfo>,
    removed: Vec<String>,
    partial_added: Vec<FileInfo>,
    partial_removed: Vec<String>,
) -> Result<Announcement, RegistryError> {
    Ok(Announcement {
        added: files(added)?,
        removed,
        partial_added: partial_entries(partial_added)?,
        partial_removed: partial_removed
            .iter()
            .map(|d| digest("removed partial sha256", d))
            .collect::<Result<_, _>>()?,
    })
}

fn file_info(f: FileEntry) -> FileInfo {
    FileInfo {
        pieces_root: Digest::hex_or_empty(f.pieces_root.as_ref()),
        sha256: f.sha256.to_hex(),
        name: f.name,
        size: f.size,
    }
}

fn peers(holders: Vec<Holder>, partial: bool) -> impl Iterator<Item = PeerInfo> {
    holders.into_iter().map(move |h| PeerInfo {
        pieces_root: Digest::hex_or_empty(h.pieces_root.as_ref()),
        peer_id: h.peer_id,
        address: h.address,
        partial,
    })
}

/// A page as Search and ListFiles answer it: the matches and the next token ("" at the end).
pub(crate) fn matches(page: Page) -> (Vec<FileMatch>, String) {
    let files = page
        .files
        .into_iter()
        .map(|(f, holders, total)| FileMatch {
            file: Some(file_info(f)),
            peers: peers(holders, false).collect(),
            peer_count: u32::try_from(total).unwrap_or(u32::MAX),
        })
        .collect();
    (files, page.next_token.unwrap_or_default())
}

/// Complete holders first, then partial ones.
pub(crate) fn peers_by_digest(d: DigestHolders) -> GetPeersByDigestResponse {
    GetPeersByDigestResponse {
        peers: peers(d.complete, false)
            .chain(peers(d.partial, true))
            .collect(),
        size: d.size,
    }
}

/// A ListPeers page: each peer's id and address, and the next token ("" at the end).
pub(crate) fn live_peers(page: PeerPage) -> ListPeersResponse {
    ListPeersResponse {
        peers: page
            .peers
            .into_iter()
            .map(|p| p2p_common::proto::LivePeer {
                peer_id: p.id,
                address: p.address,
            })
            .collect(),
        next_page_token: page.next_token.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use tonic::{Code, Status};

    use super::*;
    use crate::store::conformance::{root as good_root, sha};

    fn info(sha256: &str, pieces_root: &str) -> FileInfo {
        FileInfo {
            name: "a".into(),
            size: 1,
            sha256: sha256.into(),
            pieces_root: pieces_root.into(),
        }
    }

    /// Refused as the registry refused it before digests were typed: INVALID_ARGUMENT with
    /// `message`, and the error names `field`.
    fn assert_refused<T: std::fmt::Debug>(
        got: Result<T, RegistryError>,
        field: &str,
        message: &str,
    ) {
        let err = got.unwrap_err();
        assert!(
            matches!(err, RegistryError::BadName { field: f, .. } if f == field),
            "{err:?}"
        );
        let status = Status::from(err);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), message);
    }

    const BAD: &str = "sha256 must be 64 lowercase hex characters";

    #[test]
    fn bad_digests_are_refused_with_the_registrys_messages() {
        let sha256 = format!("sha256: {BAD}");
        assert_refused(files(vec![info("XYZ", "")]), "sha256", &sha256);
        assert_refused(digest("sha256", "abc"), "sha256", &sha256);
        assert_refused(
            announcement(
                vec![],
                vec![],
                vec![info("XYZ", &good_root(1).to_hex())],
                vec![],
            ),
            "partial sha256",
            &format!("partial sha256: {BAD}"),
        );
        assert_refused(
            announcement(vec![], vec![], vec![], vec!["not-a-digest".into()]),
            "removed partial sha256",
            &format!("removed partial sha256: {BAD}"),
        );
    }

    #[test]
    fn bad_roots_are_refused_on_files_and_partial_holdings() {
        let good = sha(1).to_hex();
        let upper = good_root(1).to_hex().to_uppercase();
        let message = format!("pieces_root: {BAD}");
        for bad_root in [upper.as_str(), "abc", &"g".repeat(64)] {
            let f = info(&good, bad_root);
            assert_refused(files(vec![f.clone()]), "pieces_root", &message);
            assert_refused(
                announcement(vec![f.clone()], vec![], vec![], vec![]),
                "pieces_root",
                &message,
            );
            assert_refused(
                announcement(vec![], vec![], vec![f], vec![]),
                "pieces_root",
                &message,
            );
        }
    }

    #[test]
    fn digests_and_roots_round_trip_and_no_root_stays_empty() {
        let f = files(vec![info(&sha(1).to_hex(), "")]).unwrap().remove(0);
        assert_eq!((f.sha256, f.pieces_root), (sha(1), None));
        let p = announcement(vec![], vec![], vec![info(&sha(2).to_hex(), "")], vec![])
            .unwrap()
            .partial_added
            .remove(0);
        assert_eq!(
            p.pieces_root, None,
            "the registry refuses it, with its message"
        );
        let back = file_info(FileEntry {
            pieces_root: Some(good_root(1)),
            ..f.clone()
        });
        assert_eq!(back, info(&sha(1).to_hex(), &good_root(1).to_hex()));
        assert_eq!(file_info(f).pieces_root, "");
    }
}
