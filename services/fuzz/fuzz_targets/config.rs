//! Loading any TOML file as either service's config never panics: it is accepted or refused
//! with an error message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_common::config::Flags;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("fuzz.toml");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    match p2p_peer::config::PeerConfig::load(Some(&path), Flags::new()) {
        Ok(_) => {}
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match p2p_tracker::config::TrackerConfig::load(Some(&path), Flags::new()) {
        Ok(_) => {}
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
