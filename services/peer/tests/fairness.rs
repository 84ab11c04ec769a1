//! Fairness and churn end to end (issue 16): real tracker and peer processes on loopback, honest
//! downloads asked of running peers with `get --via`, free riders as the plain CLI `get` (it
//! serves nothing and names no address, so holders rank it after every peer).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MIB: usize = 1024 * 1024;

/// A running `p2p-peer get NAME` (`--via ADDR` when given, else alone into `-o PATH`).
struct Get {
    child: Child,
    what: String,
    err: PathBuf,
}

fn spawn_get(root: &Path, turl: &str, name: &str, via: Option<&str>, tag: &str) -> Get {
    let err = root.join(format!("get-{tag}.out"));
    let mut cmd = Command::new(peer_bin());
    cmd.args(["--tracker", turl, "get", name]);
    match via {
        Some(v) => cmd.args(["--via", v]),
        // Each in a directory of its own: two CLI downloads of one file into one directory
        // take turns (one `.partial/` lock), and these must run at once.
        None => {
            let dir = root.join(tag);
            std::fs::create_dir_all(&dir).unwrap();
            cmd.arg("-o").arg(dir.join("big.bin"))
        }
    };
    let child = cmd
        .env_remove("P2P_CONFIG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&err).unwrap())
        .stderr(std::fs::File::create(root.join(format!("get-{tag}.log"))).unwrap())
        .spawn()
        .expect("spawn get");
    Get {
        child,
        what: format!("get {tag}"),
        err,
    }
}

impl Get {
    /// Exited successfully: true; still running: false; failed: the test fails.
    fn done(&mut self) -> bool {
        match self.child.try_wait().unwrap() {
            None => false,
            Some(s) => {
                assert!(
                    s.success(),
                    "{} failed ({s}); output:\n{}\n{}",
                    self.what,
                    std::fs::read_to_string(&self.err).unwrap_or_default(),
                    std::fs::read_to_string(self.err.with_extension("log")).unwrap_or_default()
                );
                true
            }
        }
    }

    fn wait(&mut self, deadline: Instant) {
        while !self.done() {
            assert!(Instant::now() < deadline, "{} still running", self.what);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Get {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tracker, a seed holding `size` bytes as `big.bin` and `n` ready peers, every upload at
/// 8 MiB/s.
struct Swarm {
    _tracker: Proc,
    turl: String,
    seed: Proc,
    peers: Vec<(Proc, PathBuf)>,
    digest: String,
}

fn start(root: &Path, size: usize, lease_ttl: &str, n: usize) -> Swarm {
    let file = bytes(size, 31);
    let digest = sha256_hex(&file);
    let tracker = spawn_tracker(root, 0, lease_ttl);
    let turl = tracker.url();
    let env = [("P2P_TRANSFER__UPLOAD_LIMIT", "8MiB")];
    std::fs::create_dir_all(root.join("seed")).unwrap();
    std::fs::write(root.join("seed").join("big.bin"), &file).unwrap();
    drop(file);
    let (seed, _) = swarm_peer(root, "seed", &turl, &env);
    wait_ready(&seed);
    eventually(Duration::from_secs(30), "big.bin registered", || {
        (!holders(&turl, "big.bin").is_empty()).then_some(())
    });
    let peers: Vec<(Proc, PathBuf)> = (1..=n)
        .map(|i| swarm_peer(root, &format!("p{i}"), &turl, &env))
        .collect();
    peers.iter().for_each(|(p, _)| wait_ready(p));
    Swarm {
        _tracker: tracker,
        turl,
        seed,
        peers,
        digest,
    }
}

impl Swarm {
    /// `get --via` each peer.
    fn get_via_all(&self, root: &Path) -> Vec<Get> {
        self.peers
            .iter()
            .enumerate()
            .map(|(i, (p, _))| {
                let via = p.addr.to_string();
                spawn_get(root, &self.turl, "big.bin", Some(&via), &i.to_string())
            })
            .collect()
    }

    fn assert_peers_hold_the_file(&self) {
        for (_, dir) in &self.peers {
            let got = std::fs::read(dir.join("big.bin")).unwrap();
            assert_eq!(sha256_hex(&got), self.digest, "{}", dir.display());
        }
    }
}

/// Piece bytes `peers` sent: to free riders (the CLI names no address: `unnamed`), and to
/// everyone.
fn sent(peers: &[&Proc]) -> (f64, f64) {
    let mut riders = 0.0;
    let mut all = 0.0;
    for class in ["reciprocating", "newcomer", "unnamed"] {
        let series = format!("p2p_peer_served_piece_bytes_total{{class=\"{class}\"}}");
        let n: f64 = peers.iter().map(|p| metric(&p.url(), &series)).sum();
        all += n;
        if class == "unnamed" {
            riders += n;
        }
    }
    (riders, all)
}

/// A seed and `n` honest peers (`get --via`), and `riders` free riders (the plain CLI `get`,
/// which serves nothing) started at the same moment, every upload at 8 MiB/s. Everyone must end
/// with the verified file. Returns the share of the seed's upload that went to the riders while
/// every honest peer was still downloading.
fn swarm(n: usize, riders: usize) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let swarm = start(root, 64 * MIB, "10s", n);
    let honest: Vec<&Proc> = swarm.peers.iter().map(|(p, _)| p).collect();
    let started = Instant::now();
    let mut gets = swarm.get_via_all(root);
    let mut rides: Vec<Get> = (0..riders)
        .map(|i| spawn_get(root, &swarm.turl, "big.bin", None, &format!("rider{i}")))
        .collect();

    // The window ends when the first honest peer is done.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut done = vec![false; n];
    let mut window = None;
    while done.iter().any(|d| !d) {
        assert!(Instant::now() < deadline, "honest peers still downloading");
        for (g, d) in gets.iter_mut().zip(done.iter_mut()) {
            *d = *d || g.done();
        }
        if window.is_none() && done.iter().any(|d| *d) {
            window = Some((sent(&[&swarm.seed]), sent(&honest)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let honest_secs = started.elapsed().as_secs_f64();
    let ((seed_riders, seed_all), (honest_riders, honest_all)) = window.unwrap();
    for g in &mut rides {
        g.wait(deadline);
    }
    swarm.assert_peers_hold_the_file();
    for i in 0..riders {
        let got = std::fs::read(root.join(format!("rider{i}")).join("big.bin")).unwrap();
        assert_eq!(sha256_hex(&got), swarm.digest, "rider {i}");
    }
    eprintln!(
        "{n} honest peers, {riders} riders: the honest peers done in {honest_secs:.1} s; while they downloaded the seed sent {:.1} MiB ({:.0}% to riders), the honest peers {:.1} MiB ({:.0}% to riders)",
        seed_all / MIB as f64,
        seed_riders / seed_all * 100.0,
        honest_all / MIB as f64,
        honest_riders / honest_all * 100.0
    );
    seed_riders / seed_all
}

/// Two free riders join a seed and four honest peers: they do not take more than one
/// downloader's share where a rider hurts the others, the seed's upload (every piece leaves the
/// seed at least once, and the honest peers' own upload is more than they need of each other,
/// so what riders take there is spare): while every honest peer is still downloading, the riders
/// together get at most 1/(N+1) of what the seed sends, plus slack. Served in arrival order
/// (`transfer.upload_slots = 0`), two riders among six downloaders got 27% of it in the run
/// noted in the README; the rule holds them to one slot's share, 1/5 here. Completion times are
/// printed, not asserted: on a shared two-core machine they move with the CPU the riders' own
/// hashing takes.
#[test]
fn free_riders_get_no_more_than_a_share_of_the_seed() {
    let n = 4;
    let to_riders = swarm(n, 2);
    let share = 1.0 / (n as f64 + 1.0);
    assert!(
        to_riders <= share + 0.05,
        "free riders took {:.0}% of the seed's upload while the honest peers downloaded",
        to_riders * 100.0
    );
}

/// Churn: one of five downloading peers is stopped with SIGTERM half-way, while the others
/// fetch pieces from it: they all still finish with the verified file.
#[test]
fn a_downloader_that_leaves_half_way_stalls_nobody() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let size = 64 * MIB;
    let mut swarm = start(root, size, "3s", 5);
    let mut gets = swarm.get_via_all(root);

    let (leaver, _) = &swarm.peers[0];
    eventually(Duration::from_secs(120), "the leaver half-way", || {
        (metric(&leaver.url(), "p2p_peer_downloaded_bytes_total") >= size as f64 / 2.0)
            .then_some(())
    });
    let had = metric(&leaver.url(), "p2p_peer_downloaded_bytes_total");
    let gave = metric(&leaver.url(), "p2p_peer_served_bytes_total");
    assert!(had < size as f64, "the leaver finished before it left");
    assert!(
        gave > 0.0,
        "the leaver served nobody: its leaving proves nothing"
    );
    leaver.sigterm();
    let (mut left, _) = swarm.peers.remove(0);
    let status = left.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "the leaver exited with {status}");
    drop(gets.remove(0));

    let deadline = Instant::now() + Duration::from_secs(300);
    for g in gets.iter_mut() {
        g.wait(deadline);
    }
    swarm.assert_peers_hold_the_file();
}
