//! `Range` parsing never panics and never answers outside the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_peer::range::{RangeReply, parse};

fuzz_target!(|input: (&str, u64)| {
    let (header, len) = input;
    match parse(Some(header), len) {
        RangeReply::Partial { start, end } => {
            assert!(start <= end, "{header:?} {len}: {start}-{end}");
            assert!(end < len, "{header:?} {len}: end {end}");
        }
        RangeReply::Full | RangeReply::Unsatisfiable => {}
    }
});
