//! Which SHA-256 to hash pieces with: each candidate's throughput on the same bytes, next to
//! `openssl dgst -sha256` of the same bytes in the same run (the machine is shared, so absolute
//! figures move; the ratio to openssl is what compares across runs and machines).
//!
//!     cargo bench -p p2p-peer --bench sha256 [--features bench-aws-lc] -- [MiB] [rounds]
//!
//! Candidates: `sha2` (runtime CPU detection: SHA-NI when present, else portable Rust),
//! `ring::digest`, `aws-lc-rs` (with the `bench-aws-lc` feature: it builds AWS-LC's C code),
//! the crate's own `share::digest::Sha256` (whatever it currently wraps), and
//! `share::pieces::hash_file`, the one pass that yields the whole-file digest and the manifest.
//! Every candidate must produce openssl's digest, or the bench fails.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use p2p_peer::share::digest::{Digest, Sha256};
use p2p_peer::share::pieces;

/// The update size the share code uses when it hashes files.
const BLOCK: usize = 1 << 20;

type Hasher = fn(&[u8]) -> Digest;

fn by_blocks<H>(
    data: &[u8],
    mut h: H,
    update: impl Fn(&mut H, &[u8]),
    fin: impl Fn(H) -> Vec<u8>,
) -> Digest {
    for chunk in data.chunks(BLOCK) {
        update(&mut h, chunk);
    }
    let out = fin(h);
    let mut d = [0u8; 32];
    d.copy_from_slice(&out);
    Digest(d)
}

fn with_sha2(data: &[u8]) -> Digest {
    use sha2::Digest as _;
    by_blocks(
        data,
        sha2::Sha256::new(),
        |h, b| h.update(b),
        |h| h.finalize().to_vec(),
    )
}

fn with_ring(data: &[u8]) -> Digest {
    by_blocks(
        data,
        ring::digest::Context::new(&ring::digest::SHA256),
        |h, b| h.update(b),
        |h| h.finish().as_ref().to_vec(),
    )
}

#[cfg(feature = "bench-aws-lc")]
fn with_aws_lc(data: &[u8]) -> Digest {
    by_blocks(
        data,
        aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
        |h, b| h.update(b),
        |h| h.finish().as_ref().to_vec(),
    )
}

fn with_share(data: &[u8]) -> Digest {
    let mut h = Sha256::new();
    for chunk in data.chunks(BLOCK) {
        h.update(chunk);
    }
    h.finish()
}

fn candidates() -> Vec<(&'static str, Hasher)> {
    let mut c: Vec<(&'static str, Hasher)> = vec![("sha2 0.11", with_sha2), ("ring", with_ring)];
    #[cfg(feature = "bench-aws-lc")]
    c.push(("aws-lc-rs", with_aws_lc));
    c.push(("share::digest", with_share));
    c
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; numbers are ours.
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let mib = args.first().copied().unwrap_or(256);
    let rounds = args.get(1).copied().unwrap_or(5).max(1);
    let len = usize::try_from(mib << 20)?;

    let mut x = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..len / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    let mut file = tempfile::NamedTempFile::new()?;
    file.write_all(&data)?;
    file.flush()?;
    let path = file.path().to_path_buf();

    let cands = candidates();
    let names: Vec<&str> = cands
        .iter()
        .map(|c| c.0)
        .chain(["pieces::hash_file (one pass)", "openssl dgst -sha256"])
        .collect();
    let openssl_at = names.len() - 1;
    let mut mbps: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut ratio: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mb = len as f64 / 1e6;
    let mut expected: Option<Digest> = None;
    let mut check = |name: &str, d: Digest| {
        let want = *expected.get_or_insert(d);
        assert_eq!(d, want, "{name} disagrees");
    };

    eprintln!("{mib} MiB, {rounds} rounds; cpu: {}", cpu_flags());
    for round in 0..rounds as usize {
        let mut secs = vec![0.0; names.len()];
        // Rotate the order so that no candidate always runs first (or after the file read).
        let n = names.len();
        for k in 0..n {
            let i = (k + round) % n;
            let t = Instant::now();
            if i < cands.len() {
                let d = (cands[i].1)(std::hint::black_box(&data));
                secs[i] = t.elapsed().as_secs_f64();
                check(names[i], d);
            } else if i == cands.len() {
                let h = pieces::hash_file(&path)?;
                secs[i] = t.elapsed().as_secs_f64();
                check(names[i], h.sha256);
            } else {
                let out = Command::new("openssl")
                    .args(["dgst", "-sha256", "-r"])
                    .arg(&path)
                    .output()?;
                secs[i] = t.elapsed().as_secs_f64();
                if !out.status.success() {
                    return Err(format!(
                        "openssl failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                    .into());
                }
                let text = String::from_utf8_lossy(&out.stdout);
                let hex = text.split_whitespace().next().unwrap_or_default();
                check(names[i], hex.parse()?);
            }
        }
        for i in 0..n {
            mbps[i].push(mb / secs[i]);
            ratio[i].push(secs[openssl_at] / secs[i]);
        }
    }

    println!(
        "{:<30} {:>10} {:>10} {:>10} {:>12}",
        "implementation", "median", "min", "max", "x openssl"
    );
    for (i, name) in names.iter().enumerate() {
        let v = &mbps[i];
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        println!(
            "{name:<30} {:>7.0} MB/s {:>5.0} MB/s {:>5.0} MB/s {:>10.2}x",
            median(v.clone()),
            lo,
            hi,
            median(ratio[i].clone())
        );
    }
    Ok(())
}

/// The CPU features that decide which code paths the implementations take.
fn cpu_flags() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    ["sha_ni", "avx2", "avx", "ssse3", "bmi2"]
        .iter()
        .filter(|f| flags.split_whitespace().any(|x| x == **f))
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}
