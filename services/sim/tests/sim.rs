//! A small simulated swarm through the library and the binary: it ends near its bound, the same
//! seed gives the same run, and bad arguments are a usage error.

use std::process::Command;

use p2p_sim::{Config, Scenario, Summary};

/// 16 downloaders of a 32 MiB file (128 pieces of 256 KiB) at 4 MiB/s each; bound 8 s.
fn small(seed: u64) -> Config {
    let mut c = Config::new(16, 32.0, 4.0);
    c.seed = seed;
    c
}

fn without_wall(mut s: Summary) -> Summary {
    s.wall_s = 0.0;
    s
}

#[test]
fn a_small_swarm_ends_near_its_bound_and_the_same_seed_repeats_it() {
    let (a, trace) = p2p_sim::run(&small(7)).expect("runs");
    assert_eq!(a.finished, 16, "{a:?}");
    assert_eq!(a.unfinished, 0);
    assert!((a.bound_s - 8.0).abs() < 1e-9, "{a:?}");
    // Measured 1.35-1.39 over seeds 1-3 and 7 (the testbed: 1.15x at 128 MiB).
    assert!(a.ratio <= 1.6, "last peer within 1.6x the bound: {a:?}");
    assert!(a.p50_s <= a.p99_s && a.p99_s <= a.last_s, "{a:?}");
    assert!(
        a.seed_served_f >= 1.0 && a.seed_served_f <= 1.5,
        "the seed sent every piece, and little twice: {a:?}"
    );
    assert!(a.tracker_calls_per_host_s > 0.0 && a.tracker_calls_per_host_s <= 2.0);
    assert_eq!(trace.completion_s.len(), 16);
    assert!(
        trace.upload_used.iter().any(|&u| u > 0.5),
        "peers trade: {trace:?}"
    );
    let (b, _) = p2p_sim::run(&small(7)).expect("runs");
    assert_eq!(
        without_wall(a.clone()),
        without_wall(b),
        "same seed, same run"
    );
    let (c, _) = p2p_sim::run(&small(8)).expect("runs");
    assert_ne!(
        without_wall(a),
        without_wall(c),
        "another seed draws other latencies and peer ids"
    );
}

#[test]
fn fifty_hosts_finish_and_repeat() {
    // 50 downloaders of 8 MiB (bound 2 s): past the 32 holders a download keeps, each keeps a
    // seeded choice of its own (`Plan::add_holders`); when every downloader kept the tracker's
    // first 32 (its answer is in peer-id order), this run took about 4x its bound; now about
    // 2.5x, the start-up (holders, manifests) weighing on a 2 s bound.
    let mut c = Config::new(50, 8.0, 4.0);
    c.seed = 7;
    let (a, _) = p2p_sim::run(&c).expect("runs");
    assert_eq!((a.finished, a.unfinished), (50, 0), "{a:?}");
    assert!(a.ratio <= 3.0, "{a:?}");
    let (b, _) = p2p_sim::run(&c).expect("runs");
    assert_eq!(without_wall(a), without_wall(b));
}

#[test]
fn the_result_does_not_depend_on_the_threads_the_plans_run_on() {
    // Enough hosts that more than one thread runs plans (64 due hosts per thread at least).
    let mut c = Config::new(150, 4.0, 4.0);
    c.threads = 1;
    let (one, _) = p2p_sim::run(&c).expect("runs");
    assert_eq!(one.finished, 150, "{one:?}");
    c.threads = 3;
    let (three, _) = p2p_sim::run(&c).expect("runs");
    assert_eq!(without_wall(one), without_wall(three));
}

#[test]
fn mixed_churn_and_late_runs_finish() {
    for scenario in [Scenario::Mixed, Scenario::Churn, Scenario::Late] {
        let mut c = Config::new(16, 8.0, 4.0);
        c.scenario = scenario;
        let (s, _) = p2p_sim::run(&c).expect("runs");
        assert_eq!(s.unfinished, 0, "{scenario:?}: {s:?}");
        match scenario {
            Scenario::Churn => assert_eq!((s.left, s.finished), (4, 12), "{s:?}"),
            _ => assert_eq!(s.finished, 16, "{s:?}"),
        }
        assert!(s.ratio <= 3.0, "{scenario:?}: {s:?}");
    }
}

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_p2p-sim"))
        .args(args)
        .output()
        .expect("p2p-sim starts")
}

#[test]
fn the_binary_prints_one_json_object_with_every_field() {
    let out = sim(&[
        "--hosts",
        "8",
        "--file-mib",
        "4",
        "--upload-mib",
        "4",
        "--seed",
        "3",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for field in [
        "hosts",
        "bound_s",
        "last_s",
        "ratio",
        "p50_s",
        "p99_s",
        "seed_served_f",
        "tracker_calls_per_host_s",
        "wall_s",
    ] {
        assert!(v[field].is_number(), "{field} in {v}");
    }
    assert_eq!(v["hosts"], 8);
}

#[test]
fn bad_arguments_are_a_usage_error() {
    for args in [
        &[
            "--hosts",
            "0",
            "--file-mib",
            "4",
            "--upload-mib",
            "4",
            "--json",
        ][..],
        &[
            "--hosts",
            "8",
            "--file-mib",
            "-1",
            "--upload-mib",
            "4",
            "--json",
        ],
        &[
            "--hosts",
            "8",
            "--file-mib",
            "4",
            "--upload-mib",
            "0",
            "--json",
        ],
        &[
            "--hosts",
            "8",
            "--file-mib",
            "4",
            "--upload-mib",
            "4",
            "--scenario",
            "storm",
        ],
        &["--hosts", "many", "--file-mib", "4", "--upload-mib", "4"],
        &["--file-mib", "4", "--upload-mib", "4"],
    ] {
        let out = sim(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: a message");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
