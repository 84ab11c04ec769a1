//! Errors a user can act on, from the real binary: a mistyped subcommand, an empty search, a
//! tracker URL that points at a peer, a peer given as a URL, a taken port, a bad duration.

mod common;

use std::process::{Command, Stdio};

use common::*;

/// Runs `p2p-peer ARGS` with a clean environment plus `env`; (exit code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(peer_bin())
        .args(args)
        .env_remove("P2P_CONFIG")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run p2p-peer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_mistyped_subcommand_is_a_usage_error_with_a_suggestion() {
    let (code, _, err) = run(&["serach", "photo"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("unrecognized subcommand 'serach' (did you mean 'search'?)"),
        "{err}"
    );
    // Three words would otherwise start a peer called "sevre".
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("s");
    let (code, _, err) = run(&["sevre", "0", share.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean 'serve'?"), "{err}");
    assert!(!share.exists(), "a peer started");
}

#[test]
fn an_empty_search_is_a_usage_error() {
    let (code, _, err) = run(&["--tracker", "http://127.0.0.1:1", "search", ""], &[]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_bad_duration_shows_an_example() {
    let (code, _, err) = run(&["ls"], &[("P2P_TRACKER__REQUEST_TIMEOUT", "5")]);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("tracker.request_timeout") && err.contains("\"30s\""),
        "{err}"
    );
}

#[test]
fn a_peer_address_as_tracker_is_named_as_not_a_tracker() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = spawn_tracker(dir.path(), 0, "30s");
    let share = dir.path().join("share");
    let peer = spawn_peer(
        dir.path(),
        PeerOpts {
            id: "p1",
            files_dir: &share,
            tracker: &tracker.url(),
            heartbeat: "1s",
            env: vec![],
        },
    );
    wait_ready(&peer);
    let (code, _, err) = cli(&peer.url(), &["search", "x"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("does not answer as a tracker"), "{err}");

    // A peer given as a URL, as users paste it, is accepted.
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, b"hello").unwrap();
    let (code, out, err) = cli(
        &tracker.url(),
        &[
            "put",
            file.to_str().unwrap(),
            "--peer",
            &format!("{}/", peer.url()),
        ],
    );
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(std::fs::read(share.join("hello.txt")).unwrap(), b"hello");
}

#[test]
fn serve_on_a_taken_port_names_the_cause_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    let (code, _, err) = run(
        &[
            "serve",
            "--listen",
            &addr,
            "--files-dir",
            share.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.matches(&format!("cannot listen on {addr}")).count(),
        1,
        "{err}"
    );
    assert!(err.contains("in use"), "{err}");
}
