//! The `p2p-tracker` binary as operators and scripts meet it: exit codes and messages for bad
//! config, a port already taken and a failed health probe.
//!
//! These tests also make `cargo test --workspace` build the `p2p-tracker` executable, which the
//! peer crate's end-to-end tests start as a real process.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CONFIG_ERROR: i32 = 78;

fn tracker() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_p2p-tracker"));
    // Keep the environment of whoever runs the tests from leaking into the config under test.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("P2P_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs to completion, but gives up (and kills the child) after a deadline so a tracker that
/// wrongly starts serving cannot hang the test suite.
fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn p2p-tracker");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "p2p-tracker still running after 20 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd`, checks its exit code and returns what it wrote to stderr.
fn expect_exit(cmd: Command, code: i32) -> String {
    let out = run(cmd);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    err
}

#[test]
fn unknown_key_in_config_file_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tracker.toml");
    std::fs::write(&path, "[registry]\nlease_tll = \"3s\"\n").unwrap();
    let mut cmd = tracker();
    cmd.arg("--config").arg(&path);
    let err = expect_exit(cmd, CONFIG_ERROR);
    assert!(err.contains("registry.lease_tll"), "stderr: {err}");
    assert!(err.contains(&path.display().to_string()), "stderr: {err}");
}

#[test]
fn unknown_env_key_names_the_variable() {
    let mut cmd = tracker();
    cmd.env("P2P_SERVER__LISTN", "127.0.0.1:0");
    let err = expect_exit(cmd, CONFIG_ERROR);
    assert!(err.contains("P2P_SERVER__LISTN"), "stderr: {err}");
}

#[test]
fn bad_flag_value_names_key_and_flag() {
    let mut cmd = tracker();
    cmd.args(["--lease-ttl", "banana"]);
    let err = expect_exit(cmd, CONFIG_ERROR);
    assert!(err.contains("registry.lease_ttl"), "stderr: {err}");
    assert!(err.contains("command-line flag"), "stderr: {err}");
}

#[test]
fn missing_config_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let mut cmd = tracker();
    cmd.arg("--config").arg(&path);
    let err = expect_exit(cmd, CONFIG_ERROR);
    assert!(err.contains("does not exist"), "stderr: {err}");
}

#[test]
fn port_in_use_fails_with_a_clear_message() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut cmd = tracker();
    cmd.args(["--listen", &addr.to_string()]);
    let err = expect_exit(cmd, 1);
    assert_eq!(
        err.matches(&format!("cannot listen on {addr}")).count(),
        1,
        "said once: {err}"
    );
}

#[test]
fn health_probe_of_nothing_exits_1() {
    // A port that was free a moment ago: nothing answers there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cmd = tracker();
    cmd.args(["health", "--addr", &addr.to_string()]);
    let err = expect_exit(cmd, 1);
    assert!(err.contains("cannot connect"), "stderr: {err}");
}
