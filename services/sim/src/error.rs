//! The simulator's one error type.

/// What keeps a simulation from running.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A setting out of range: a usage error (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The trace file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}
