//! `p2p-peer replicate NAME --peers K | --all` (issue 29 point 11, preheat): the file is put on
//! live peers the tracker lists (ListPeers, sharing or not), each downloading through the swarm
//! by its own `POST /downloads`; a line per peer and a summary. Real binaries on loopback.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn replicate_puts_a_file_on_k_peers_then_on_all() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = spawn_tracker(tmp.path(), 0, "30s");
    let turl = tracker.url();
    let big = bytes(3 * 1024 * 1024 + 17, 11);
    let (seed, seed_dir) = swarm_peer(tmp.path(), "seed", &turl, &[]);
    std::fs::write(seed_dir.join("image.bin"), &big).unwrap();
    // p1 shares nothing (a fresh peer: what a preheat is for), so no file listing names it;
    // p2 and p3 each share something small of their own.
    let mut peers = Vec::new();
    for id in ["p1", "p2", "p3"] {
        let (p, dir) = swarm_peer(tmp.path(), id, &turl, &[]);
        if id != "p1" {
            std::fs::write(dir.join(format!("{id}.txt")), id.as_bytes()).unwrap();
        }
        peers.push((p, dir));
    }
    // Ready means registered with the tracker.
    wait_ready(&seed);
    for (p, _) in &peers {
        wait_ready(p);
    }
    eventually(Duration::from_secs(20), "every file listed", || {
        let (code, out, _) = cli(&turl, &["ls"]);
        (code == 0
            && ["image.bin", "p2.txt", "p3.txt"]
                .iter()
                .all(|n| out.contains(n)))
        .then_some(())
    });
    let holding = |dirs: &[(Proc, std::path::PathBuf)]| {
        dirs.iter()
            .filter(|(_, d)| std::fs::read(d.join("image.bin")).is_ok_and(|b| b == big))
            .count()
    };

    // Two of the three.
    let (code, out, err) = cli(&turl, &["replicate", "image.bin", "--peers", "2"]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    assert!(
        err.contains("replicating image.bin (3.00 MiB) to 2 peers; 1 already holds it"),
        "{err}"
    );
    assert_eq!(
        err.matches(": created").count(),
        2,
        "a line per peer: {err}"
    );
    assert!(
        out.contains("is now on 2 more peers (2 downloaded, 0 already there, 0 failed"),
        "{out}"
    );
    assert_eq!(holding(&peers), 2);
    // Chosen in id order among all live peers: the one sharing nothing is one of the two.
    assert!(
        err.contains("p1: created"),
        "the peer that shares nothing was not chosen: {err}"
    );

    // All: only the one left downloads (the tracker lists the two new holders).
    eventually(Duration::from_secs(20), "three holders", || {
        (holders(&turl, "image.bin").len() == 3).then_some(())
    });
    let (code, out, err) = cli(&turl, &["--json", "replicate", "image.bin", "--all"]);
    assert_eq!(code, 0, "stdout {out}\nstderr {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON answer");
    assert_eq!(v["created"], 1, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["already_held_by"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(holding(&peers), 3);

    // Nothing left to do: fine with --all, "not found" when K more were asked for.
    eventually(Duration::from_secs(20), "four holders", || {
        (holders(&turl, "image.bin").len() == 4).then_some(())
    });
    let (code, _, err) = cli(&turl, &["replicate", "image.bin", "--all"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&turl, &["replicate", "image.bin", "--peers", "1"]);
    assert_eq!(code, 3, "{err}");
    // Neither --peers nor --all: a usage error.
    let (code, _, _) = cli(&turl, &["replicate", "image.bin"]);
    assert_eq!(code, 2);
}
