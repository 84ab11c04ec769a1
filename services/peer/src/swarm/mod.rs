//! Downloading one file from many holders at once. Swarm groundwork (issue 9): the piece picker
//! is complete and tested; the sources and the download loop that call it come next.

pub mod picker;
