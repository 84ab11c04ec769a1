//! `POST /downloads`: a running peer downloads a file into its share and streams how it goes as
//! NDJSON, one [`Event`] per line; the last line is `done` or `error`.
//!
//! [`Event`] is also the one progress type inside the peer: the download engine reports with
//! it, the CLI renders it, and the daemon streams it. Two of its events are for the process
//! that runs the download only (see [`Event::on_wire`]), so that clients that know the five
//! streamed events keep working.

use serde::{Deserialize, Serialize};

use super::Placed;
use crate::share::Digest;

pub const CONTENT_TYPE: &str = "application/x-ndjson";
/// One event is a short line; a peer that sends more without a newline is not a peer.
pub(crate) const LINE_LIMIT: usize = 1 << 20;

/// The body of `POST /downloads`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct DownloadRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Digest>,
}

/// What a download that succeeded did (the `done` line's fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub name: String,
    pub sha256: Digest,
    pub size: u64,
    pub status: Placed,
}

/// How a download goes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The daemon took the request.
    Start {
        name: String,
        sha256: Digest,
        size: u64,
        /// Bytes already verified here (a file already shared).
        have: u64,
    },
    /// Local only: a holder is asked for its first piece.
    Source {
        peer: String,
        address: String,
        size: u64,
        /// Bytes verified when it started (a resumed download, at first).
        have: u64,
    },
    Progress {
        /// Bytes verified so far.
        have: u64,
        size: u64,
        /// Holders the download is using now.
        sources: u64,
    },
    SourceFailed {
        peer: String,
        address: String,
        reason: String,
        /// The source sent bytes that did not verify (dropped for this download).
        bad: bool,
    },
    /// Local only: every piece and the whole file verified; publication comes next.
    Verified { size: u64 },
    Done {
        name: String,
        sha256: Digest,
        size: u64,
        status: Placed,
    },
    Error {
        /// `crate::error::Error::kind`: the CLI maps it to its exit code.
        kind: String,
        message: String,
    },
}

impl Event {
    /// The form this event takes on the NDJSON stream: `Source` is not streamed, `Verified`
    /// goes out as the last progress line.
    pub(crate) fn on_wire(self) -> Option<Event> {
        match self {
            Event::Source { .. } => None,
            Event::Verified { size } => Some(Event::Progress {
                have: size,
                size,
                sources: 0,
            }),
            e => Some(e),
        }
    }

    /// What became of a source that failed, as the CLI and the logs say it. A download asks
    /// its holders at once, so a failed one is not "the next one tried": it is dropped from
    /// this download.
    pub(crate) fn source_fate(reason: &str, bad: bool) -> String {
        if bad {
            format!(
                "sent bad data ({reason}); dropped from this download and counted as a bad source"
            )
        } else {
            format!("{reason}; dropped from this download (not asked again)")
        }
    }

    /// One NDJSON line.
    pub(crate) fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// An NDJSON line (without its newline); `None` for a blank one.
    pub(crate) fn parse_line(line: &[u8]) -> Result<Option<Event>, serde_json::Error> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(line).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn events_have_the_wire_shape() {
        let e = Event::SourceFailed {
            peer: "p1".into(),
            address: "127.0.0.1:5000".into(),
            reason: "bad piece 3".into(),
            bad: true,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "source_failed");
        assert_eq!(v["bad"], true);
        let line =
            format!(r#"{{"event":"done","name":"a","sha256":"{D}","size":3,"status":"created"}}"#);
        assert_eq!(
            Event::parse_line(line.as_bytes()).unwrap(),
            Some(Event::Done {
                name: "a".into(),
                sha256: D.parse().unwrap(),
                size: 3,
                status: Placed::Created,
            })
        );
        assert_eq!(Event::parse_line(b"  ").unwrap(), None);
        let req: DownloadRequest = serde_json::from_str(r#"{"name":"a"}"#).unwrap();
        assert_eq!(req.sha256, None);
        assert!(serde_json::from_str::<DownloadRequest>(r#"{"nmae":"a"}"#).is_err());
    }

    #[test]
    fn local_events_stay_local() {
        let source = Event::Source {
            peer: "p".into(),
            address: "a".into(),
            size: 9,
            have: 0,
        };
        assert_eq!(source.on_wire(), None);
        assert_eq!(
            Event::Verified { size: 9 }.on_wire(),
            Some(Event::Progress {
                have: 9,
                size: 9,
                sources: 0
            })
        );
        let line = Event::Verified { size: 9 }.on_wire().unwrap().to_line();
        assert_eq!(line.last(), Some(&b'\n'));
    }
}
