//! ListPeers: every live peer, whether it shares anything or not (what `p2p-peer replicate`
//! chooses from), paged in lease order under the same bounds as ListFiles.

use crate::paging;
use crate::registry::{Registry, RegistryError, now_ms};
use crate::store::{LeaseKey, LivePeer};

/// A page of live peers and the token of the next one (`None` at the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPage {
    pub peers: Vec<LivePeer>,
    pub next_token: Option<String>,
}

/// Bytes a listed peer takes on the wire at most: its two strings and their framing.
fn wire_bytes(p: &LivePeer) -> usize {
    const FRAME: usize = 16;
    p.id.len() + p.address.len() + 3 * FRAME
}

/// Tokens are the hex of `lease_end NUL id`: opaque to clients, stable across calls.
fn encode_token(key: &LeaseKey) -> String {
    hex::encode(format!("{}\0{}", key.expires_at_ms, key.id))
}

fn decode_token(token: &str) -> Result<Option<LeaseKey>, RegistryError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || RegistryError::Invalid("page_token is not one this tracker issued".into());
    let raw = hex::decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = text.split_once('\0').ok_or_else(bad)?;
    Ok(Some(LeaseKey {
        expires_at_ms: at.parse().map_err(|_| bad())?,
        id: id.to_owned(),
    }))
}

impl Registry {
    /// Live peers in lease order from `token` on: at most the page size (0: the default,
    /// capped by `max_page_size`), and short of `max_page_bytes`, as ListFiles pages are.
    pub async fn list_peers(&self, page_size: u32, token: &str) -> Result<PeerPage, RegistryError> {
        let limits = self.limits();
        let size = paging::page_len(page_size, limits.default_page_size, limits.max_page_size);
        let now = now_ms();
        // Leases that ended at or before now are passed over: the walk starts at the present.
        let present = LeaseKey {
            expires_at_ms: now,
            id: String::new(),
        };
        let after = decode_token(token)?.map_or(present.clone(), |k| k.max(present));
        let batch = self.store().peers_after(&after, size).await?;
        let more = batch.len() == size;
        let (mut peers, mut bytes, mut cursor) = (Vec::new(), 0usize, None);
        for p in batch {
            if p.expires_at_ms <= now {
                cursor = Some(p.key());
                continue;
            }
            let cost = wire_bytes(&p);
            if !peers.is_empty() && bytes + cost > limits.max_page_bytes {
                // Full by bytes: the next page starts at this peer.
                return Ok(PeerPage {
                    peers,
                    next_token: cursor.as_ref().map(encode_token),
                });
            }
            bytes += cost;
            cursor = Some(p.key());
            peers.push(p);
        }
        Ok(PeerPage {
            peers,
            next_token: if more {
                cursor.as_ref().map(encode_token)
            } else {
                None
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_what_was_not_issued() {
        let key = LeaseKey {
            expires_at_ms: 1_765_000_000_123,
            id: "peer_1".into(),
        };
        let token = encode_token(&key);
        assert_eq!(token, hex::encode("1765000000123\0peer_1"));
        assert_eq!(decode_token(&token).unwrap(), Some(key));
        assert_eq!(decode_token("").unwrap(), None);
        for bad in ["zz", &hex::encode("peer_1"), &hex::encode("soon\0peer_1")] {
            let err = decode_token(bad).unwrap_err();
            assert_eq!(err.to_string(), "page_token is not one this tracker issued");
        }
    }
}
