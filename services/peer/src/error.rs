//! The client's errors, each with the exit code scripts can rely on.

/// Exit codes of the client commands (documented in the README).
pub mod exit {
    pub const OK: u8 = 0;
    pub(crate) const FAILURE: u8 = 1;
    pub(crate) const NOT_FOUND: u8 = 3;
    pub(crate) const UNREACHABLE: u8 = 4;
    pub(crate) const INTEGRITY: u8 = 5;
    /// `serve`: the peer id stayed held by a live peer for a whole lease TTL.
    pub(crate) const ID_TAKEN: u8 = 6;
    /// A download refused by `transfer.max_concurrent_downloads` or `transfer.min_free_space`.
    pub(crate) const NO_ROOM: u8 = 7;
    /// A download cancelled on the peer that ran it (`DELETE /downloads/{sha256}`).
    pub(crate) const CANCELLED: u8 = 8;
    /// The client was interrupted (Ctrl-C), as shells report a SIGINT.
    pub(crate) const INTERRUPTED: u8 = 130;
    pub(crate) const CONFIG: u8 = 78;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing matches: no such file, no live peer holding it.
    #[error("{0}")]
    NotFound(String),
    /// The tracker or every candidate peer could not be reached.
    #[error("{0}")]
    Unreachable(String),
    /// Bytes arrived but did not hash to the expected SHA-256.
    #[error("{0}")]
    Integrity(String),
    /// Another live peer holds this peer's id.
    #[error("{0}")]
    IdTaken(String),
    /// A download was refused by the process's bounds (`transfer.max_concurrent_downloads`,
    /// `transfer.min_free_space`); the message names the key.
    #[error("{0}")]
    NoRoom(String),
    /// A download was cancelled (`DELETE /downloads/{sha256}`); the message says whether its
    /// verified pieces were kept.
    #[error("{0}")]
    Cancelled(String),
    /// The client was interrupted (Ctrl-C).
    #[error("{0}")]
    Interrupted(String),
    /// The request was refused (bad name, conflict, too large, ...).
    #[error("{0}")]
    Refused(String),
    /// Shown with its causes ("cannot listen on ...: Address already in use"), not only the
    /// outermost context.
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NotFound(_) => exit::NOT_FOUND,
            Error::Unreachable(_) => exit::UNREACHABLE,
            Error::Integrity(_) => exit::INTEGRITY,
            Error::IdTaken(_) => exit::ID_TAKEN,
            Error::NoRoom(_) => exit::NO_ROOM,
            Error::Cancelled(_) => exit::CANCELLED,
            Error::Interrupted(_) => exit::INTERRUPTED,
            Error::Refused(_) | Error::Other(_) => exit::FAILURE,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::Unreachable(_) => "unreachable",
            Error::Integrity(_) => "integrity",
            Error::IdTaken(_) => "id_taken",
            Error::NoRoom(_) => "no_room",
            Error::Cancelled(_) => "cancelled",
            Error::Interrupted(_) => "interrupted",
            Error::Refused(_) => "refused",
            Error::Other(_) => "error",
        }
    }

    /// The error a peer reported by `kind` (see [`Error::kind`]) over the wire; an unknown
    /// kind is a plain error.
    pub(crate) fn from_kind(kind: &str, message: String) -> Self {
        match kind {
            "not_found" => Error::NotFound(message),
            "unreachable" => Error::Unreachable(message),
            "integrity" => Error::Integrity(message),
            "id_taken" => Error::IdTaken(message),
            "no_room" => Error::NoRoom(message),
            "cancelled" => Error::Cancelled(message),
            "refused" => Error::Refused(message),
            _ => Error::Other(anyhow::anyhow!(message)),
        }
    }

    /// A failed `serve`: errors of this crate keep their kind (and exit code).
    pub(crate) fn from_serve(e: anyhow::Error) -> Self {
        e.downcast::<Error>().unwrap_or_else(Error::Other)
    }

    /// A tracker answer, classified.
    pub(crate) fn from_status(what: &str, s: tonic::Status) -> Self {
        use tonic::Code;
        let msg = format!("{what}: {}", s.message());
        match s.code() {
            Code::NotFound => Error::NotFound(msg),
            // What a peer (or any plain HTTP server) answers to a tracker call.
            Code::Unimplemented => Error::Unreachable(format!(
                "{what} does not answer as a tracker (is it a peer's address? trackers listen on 50051 by default): {}",
                s.message()
            )),
            // A TLS failure arrives as "transport error"; its cause is in the source chain.
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                Error::Unreachable(format!(
                    "{what}: tracker unreachable ({}); is the tracker running, and is --tracker (tracker.endpoint) its address?",
                    p2p_common::tls::status_chain(&s)
                ))
            }
            _ => Error::Refused(msg),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
