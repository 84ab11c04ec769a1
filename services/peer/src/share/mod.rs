//! What a peer holds, by digest: piece manifests and the record of verified pieces.

pub mod bitfield;
pub mod chain;
pub mod digest;
mod error;
mod index;
pub mod partial;
pub mod pieces;
pub(crate) mod sweep;

pub use digest::Digest;
pub(crate) use error::ShareError;
pub(crate) use error::io_err;
pub use pieces::{Manifest, PieceIndex};
