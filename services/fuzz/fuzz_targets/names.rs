//! Name validation never panics, and what it accepts can never leave a flat directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_common::names;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if names::validate_file_name(s).is_ok() {
        assert!(!s.is_empty() && s.len() <= names::MAX_FILE_NAME_BYTES);
        assert!(!s.contains(['/', '\\', '\0']) && s != "." && s != "..");
        assert!(!s.chars().any(char::is_control));
        // Joined under a directory, it names exactly one entry of that directory.
        let p = std::path::Path::new("/share").join(s);
        assert_eq!(p.parent(), Some(std::path::Path::new("/share")));
    }
    if names::validate_peer_id(s).is_ok() {
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
    }
    let _ = names::validate_digest(s);
    let _ = names::validate_address(s);
    let _ = p2p_peer::store::check_name(s);
});
